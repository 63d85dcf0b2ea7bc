//! The accept loop of the gRPC listener.
//!
//! tonic's own loop takes every connection and waits for ever for the HTTP/2
//! handshake: a few thousand idle sockets starve the process. Here:
//!
//! - at most [`GrpcLimits::max_connections`] connections are open, those still in
//!   their handshake included: the next ones are closed at once;
//! - the client's connection preface and its first `SETTINGS` frame (RFC 9113 §3.4,
//!   the whole of what a client sends before its first request) must arrive within
//!   [`GrpcLimits::handshake_timeout`], else the connection is closed; what was read
//!   is then handed to tonic untouched;
//! - once connected, HTTP/2 pings close dead peers (see `app::run`);
//! - accept errors (`EMFILE`) pause the loop instead of spinning on it.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// How long the loop pauses after an accept error such as `EMFILE`.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(250);

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest first `SETTINGS` frame read during the handshake (a handful of 6-byte
/// settings in practice; 16 kB is HTTP/2's smallest maximum frame size).
const MAX_SETTINGS_LEN: usize = 16_384;

/// Connection cap and handshake deadline of the gRPC listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcLimits {
    /// Connections open at once, handshakes included; more are closed at once.
    pub max_connections: usize,
    /// Time for the HTTP/2 preface and first `SETTINGS` frame to arrive.
    pub handshake_timeout: Duration,
}

impl Default for GrpcLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A gRPC connection past its handshake: the bytes already read, then the socket.
/// Holds its slot of [`GrpcLimits::max_connections`] until tonic drops it.
#[derive(Debug)]
pub struct GrpcStream {
    head: Vec<u8>,
    replayed: usize,
    tcp: TcpStream,
    info: TcpConnectInfo,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for GrpcStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.replayed < this.head.len() {
            let rest = &this.head[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GrpcStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl Connected for GrpcStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

/// Reads the preface and the first frame, which must be `SETTINGS`; returns what was
/// read, or `None` when the peer does not speak HTTP/2.
async fn handshake(tcp: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = vec![0_u8; PREFACE.len() + 9];
    tcp.read_exact(&mut head).await?;
    if &head[..PREFACE.len()] != PREFACE {
        return Ok(None);
    }
    let frame = &head[PREFACE.len()..];
    let len = usize::from(frame[0]) << 16 | usize::from(frame[1]) << 8 | usize::from(frame[2]);
    // Type 4: SETTINGS.
    if frame[3] != 4 || len > MAX_SETTINGS_LEN {
        return Ok(None);
    }
    let start = head.len();
    head.resize(start + len, 0);
    tcp.read_exact(&mut head[start..]).await?;
    Ok(Some(head))
}

/// The connections of `listener` that completed their handshake within `limits`, as
/// tonic's `serve_with_incoming_shutdown` takes them, until `shutdown` completes.
pub fn incoming(
    listener: TcpListener,
    limits: GrpcLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> ReceiverStream<Result<GrpcStream, Infallible>> {
    let (ready_tx, ready_rx) = mpsc::channel(64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let (mut tcp, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept error; pausing");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "gRPC connection refused: too many open connections"
                );
                drop(tcp);
                continue;
            };
            let ready_tx = ready_tx.clone();
            tokio::spawn(async move {
                let head = match tokio::time::timeout(limits.handshake_timeout, handshake(&mut tcp))
                    .await
                {
                    Ok(Ok(Some(head))) => head,
                    Ok(Ok(None)) => {
                        tracing::debug!("gRPC connection closed: not HTTP/2");
                        return;
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "gRPC connection closed during its handshake");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("gRPC connection closed: no HTTP/2 handshake in time");
                        return;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let info = TcpConnectInfo {
                    local_addr: tcp.local_addr().ok(),
                    remote_addr: Some(peer),
                };
                let stream = GrpcStream {
                    head,
                    replayed: 0,
                    tcp,
                    info,
                    _slot: slot,
                };
                // The server is stopping when nobody takes it: the connection closes.
                let _ = ready_tx.send(Ok(stream)).await;
            });
        }
    });
    ReceiverStream::new(ready_rx)
}
