//! The network edges: TLS configurations, the inbound PROXY header, and client name lookups.
//!
//! Thin wrappers the session calls; no SMTP logic and no policy decisions live here.

pub mod proxy_header;
pub mod tls;
