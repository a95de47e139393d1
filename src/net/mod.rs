//! The network edges: listeners, their connection limit and their balance over workers, TLS configurations, the inbound
//! PROXY header, client name lookups, read deadlines, and the stream type sessions run over.
//!
//! Thin wrappers the session calls; no SMTP logic and no policy decisions live here.

pub mod admin;
pub mod balance;
pub mod client_cert;
pub mod deadline;
pub mod limit;
pub mod listener;
pub mod proxy_header;
pub mod resolve;
pub mod shutdown;
pub mod stream;
pub mod tls;
pub mod tls_server;
