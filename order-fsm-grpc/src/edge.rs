//! The gRPC listener's edge: what a slow, idle or hostile client meets before and around
//! the service.
//!
//! - **Connections**: at most [`ServerConfig::max_connections`] open at once (more wait in
//!   the kernel's accept queue); a connection that has not sent its first 24 bytes (the
//!   HTTP/2 preface, or a TLS hello) within [`ServerConfig::handshake_timeout`] is closed,
//!   so a client that connects and says nothing cannot hold a slot. HTTP/2 keep-alive
//!   pings ([`ServerConfig::keepalive_interval`]) close connections whose peer vanished.
//! - **Undecodable requests** answer `INVALID_ARGUMENT`, not `INTERNAL`: tonic's prost codec
//!   maps every decode failure to `INTERNAL` (right for a client decoding a server's answer,
//!   wrong for a server decoding a client's request: garbage bytes or invalid UTF-8 would
//!   alert as a server fault and be retried). The codec is shared by the generated client
//!   and server, so the server relabels: a response with status `INTERNAL` and the prost
//!   decode message (which names the message and field) becomes `INVALID_ARGUMENT` with the
//!   same message.
//! - **Rejections are logged** at `warn` (method, code, message cut to 200 characters; our
//!   messages name fields, never their values), at most 10 lines a second with a count of
//!   the lines left out.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use order_fsm::Throttle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tower::{Layer, Service};

#[cfg(doc)]
use crate::ServerConfig;

/// `grpc-status` of `INTERNAL` and `INVALID_ARGUMENT`.
const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";

/// How tonic's messages for an undecodable request begin (`grpc-message` is
/// percent-encoded on the wire).
const UNDECODABLE: [&str; 2] = [
    "failed%20to%20decode%20Protobuf%20message",
    "failed to decode Protobuf message",
];

/// Bytes a new connection must send within the handshake timeout.
const HANDSHAKE_BYTES: usize = 24;

/// Longest logged message, in characters.
const LOGGED_MESSAGE_CHARS: usize = 200;

/// The layer of the server's own stack: relabels undecodable requests and logs rejections.
#[derive(Clone, Debug)]
pub(crate) struct EdgeLayer {
    throttle: Arc<Throttle>,
}

impl EdgeLayer {
    pub(crate) fn new() -> Self {
        Self {
            throttle: Arc::new(Throttle::per_second(10)),
        }
    }
}

impl<S> Layer<S> for EdgeLayer {
    type Service = Edge<S>;

    fn layer(&self, inner: S) -> Edge<S> {
        Edge {
            inner,
            throttle: Arc::clone(&self.throttle),
        }
    }
}

/// See [`EdgeLayer`].
#[derive(Clone, Debug)]
pub(crate) struct Edge<S> {
    inner: S,
    throttle: Arc<Throttle>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> Service<Request<B>> for Edge<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let throttle = Arc::clone(&self.throttle);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = relabel(response.await?);
            log_rejection(&throttle, &method, &response);
            Ok(response)
        })
    }
}

/// Relabels the status of a response to an undecodable request (see the module docs).
fn relabel<B>(mut response: Response<B>) -> Response<B> {
    let headers = response.headers_mut();
    let undecodable = headers.get("grpc-status").is_some_and(|s| s == INTERNAL)
        && headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| UNDECODABLE.iter().any(|prefix| m.starts_with(prefix)));
    if undecodable {
        headers.insert("grpc-status", HeaderValue::from_static(INVALID_ARGUMENT));
    }
    response
}

/// Counts and logs (rate-limited) a call answered with an error status (tonic sends a handler's error status in the
/// response headers).
fn log_rejection<B>(throttle: &Throttle, method: &str, response: &Response<B>) {
    let headers = response.headers();
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|s| s.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|&code| code != 0)
    else {
        return;
    };
    let code = tonic::Code::from_i32(code);
    order_fsm::telemetry::refused("grpc", code_name(code));
    let Some(suppressed) = throttle.admit() else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| {
            let decoded = percent_decode(m);
            decoded
                .chars()
                .take(LOGGED_MESSAGE_CHARS)
                .collect::<String>()
        })
        .unwrap_or_default();
    tracing::warn!(%method, ?code, %message, suppressed, "grpc: call rejected");
}

/// The status code's name as Prometheus labels spell it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// `grpc-message` is percent-encoded; decodes the `%XX` escapes (invalid ones stay as they
/// are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Accepted connections, at most `limit` open at once, each closed unless it sends its
/// first bytes within `handshake_timeout`.
pub(crate) fn incoming(
    listener: TcpListener,
    limit: usize,
    handshake_timeout: Duration,
) -> impl Stream<Item = io::Result<Guarded>> {
    let permits = Arc::new(Semaphore::new(limit.max(1)));
    futures_util::stream::unfold((listener, permits), move |(listener, permits)| async move {
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let accepted = match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                Ok(Guarded {
                    stream,
                    handshake: Some(Box::pin(tokio::time::sleep(handshake_timeout))),
                    received: 0,
                    _permit: permit,
                })
            }
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning (tonic goes on
                // with the next connection).
                tracing::warn!(error = %e, "grpc: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(e)
            }
        };
        Some((accepted, (listener, permits)))
    })
}

/// A connection holding its slot, with a deadline for its first bytes.
#[derive(Debug)]
pub(crate) struct Guarded {
    stream: TcpStream,
    handshake: Option<Pin<Box<Sleep>>>,
    received: usize,
    _permit: OwnedSemaphorePermit,
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.received += buf.filled().len() - before;
                if this.received >= HANDSHAKE_BYTES {
                    this.handshake = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .handshake
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client sent nothing within the handshake timeout",
                    )));
                }
                Poll::Pending
            }
            error => error,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("a%20b%3A%20c"), "a b: c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
