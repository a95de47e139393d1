//! relayguard: a transparent SMTP submission proxy with Postfix-compatible relay and AUTH policy.
//!
//! Bytes are parsed in [`smtp`], decisions are made in [`policy`], bytes move in [`session`] and
//! the edges ([`net`], [`upstream`]). See `README.md` for the layout.

pub mod cli;
pub mod config;
pub mod limits;
pub mod lookup;
pub mod net;
pub mod observe;
pub mod policy;
pub mod postscreen;
pub mod session;
pub mod smtp;
pub mod state;
pub mod upstream;

#[cfg(test)]
mod purity;
