//! The upstream MTA leg: how relayguard tells it who the client is.

pub mod identity;
