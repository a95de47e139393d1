//! One type for every byte stream a session or upstream leg may run over (TCP, TLS, in-process).

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream. Boxed so the transport can change (STARTTLS) under a session.
pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

pub type BoxStream = Box<dyn AsyncStream>;
