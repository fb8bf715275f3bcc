//! The HTTP listener's edge: what a slow, idle or hostile client meets before and around
//! the routes, in one place (see [`HttpEdge`] for the limits and what each one answers).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use order_fsm::intake::MAX_REQUEST_BYTES;
use order_fsm::Throttle;
use order_fsm_grpc::rate::ClientAddr;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;

use crate::HttpError;

/// The HTTP listener: its limits against slow, idle, hostile and too many clients, and
/// TLS. [`HttpEdge::default`], then `with_*` setters, then [`HttpEdge::serve`].
///
/// | limit | default | answer |
/// |---|---|---|
/// | request head (start line and headers) read within | 10 s ([`Self::with_head_timeout`]) | connection closed |
/// | idle keep-alive connection closed after | 10 s (the head timeout: waiting for the next request is reading its head) | connection closed |
/// | whole request (body included) answered within | 30 s ([`Self::with_request_timeout`]) | `408` |
/// | open connections | 1,024 ([`Self::with_max_connections`]; more wait in the kernel's accept queue) | - |
/// | request body | [`MAX_REQUEST_BYTES`] (the gRPC limit too) | `413` |
/// | request head | 16 KiB | `431` |
///
/// Every answer of `400` and above is logged at `warn` (method, route, status, the field
/// at fault; never a body or a header value), at most 10 lines a second with a count of
/// the lines left out.
///
/// Only HTTP/1.1: the gateway is for scripts and backends; gRPC is the HTTP/2 API. With
/// [`HttpEdge::with_tls`] it speaks only HTTPS (rustls, TLS 1.2 and 1.3); the TLS handshake
/// counts against the head timeout.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpEdge {
    /// Longest wait for a request's head, and for the next request on an idle connection.
    pub head_timeout: Duration,
    /// Longest a request may take, its body included.
    pub request_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    tls: Option<Tls>,
}

/// The server side of TLS; its key is never printed.
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Default for HttpEdge {
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1_024,
            tls: None,
        }
    }
}

impl HttpEdge {
    /// Sets the head (and idle) timeout.
    #[must_use]
    pub fn with_head_timeout(mut self, timeout: Duration) -> Self {
        self.head_timeout = timeout;
        self
    }

    /// Sets the whole-request timeout.
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the most connections open at once (at least one).
    #[must_use]
    pub fn with_max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Serves HTTPS only, with the PEM certificate chain `cert_pem` and private key
    /// `key_pem`.
    ///
    /// # Errors
    /// [`HttpError::Tls`] naming what is wrong with the PEM or the key.
    pub fn with_tls(self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, HttpError> {
        self.with_mutual_tls(cert_pem, key_pem, None)
    }

    /// [`Self::with_tls`], and with `client_ca_pem` only clients presenting a certificate
    /// signed by one of its CAs may connect (mutual TLS).
    ///
    /// # Errors
    /// [`HttpError::Tls`] naming what is wrong with a PEM or the key.
    pub fn with_mutual_tls(
        mut self,
        cert_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> Result<Self, HttpError> {
        let invalid = HttpError::tls;
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("TLS certificate", &e))?;
        if chain.is_empty() {
            return Err(invalid("TLS certificate", &"no certificate in the PEM"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("TLS key", &e))?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("TLS", &e))?;
        let builder = match client_ca_pem {
            None => builder.with_no_client_auth(),
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| invalid("TLS client CA", &e))?;
                    roots.add(cert).map_err(|e| invalid("TLS client CA", &e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| invalid("TLS client CA", &e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| invalid("TLS certificate and key", &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.tls = Some(Tls(TlsAcceptor::from(Arc::new(config))));
        Ok(self)
    }

    /// Whether it serves HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `app` with the request-level limits and the rejection log around it.
    pub fn wrap(&self, app: Router) -> Router {
        let throttle = Arc::new(Throttle::per_second(10));
        app.layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .layer(axum::middleware::from_fn(move |request, next| {
                log_rejection(Arc::clone(&throttle), request, next)
            }))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                self.request_timeout,
            ))
    }

    /// Serves `app` (wrapped by [`Self::wrap`]) on `listener` until `shutdown` completes,
    /// then stops accepting and waits for the requests in flight (idle connections close
    /// at once).
    ///
    /// # Errors
    /// Never for a client's misbehaviour (that only closes its connection); the signature
    /// leaves room for listener failures ([`HttpError::Io`]).
    pub async fn serve(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), HttpError> {
        let app = self.wrap(app);
        let permits = Arc::new(Semaphore::new(self.max_connections));
        let graceful = GracefulShutdown::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.head_timeout)
            .max_header_size(MAX_HEAD_BYTES);
        tokio::pin!(shutdown);
        loop {
            let permit = tokio::select! {
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => {
                    permit.expect("the semaphore is never closed")
                }
            };
            let (stream, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, say: back off instead of spinning.
                        tracing::warn!(error = %e, "http: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            // The peer's address, for the per-client rate limit.
            let service = TowerToHyperService::new(app.clone().map_request(
                move |mut request: axum::http::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ClientAddr(peer));
                    request
                },
            ));
            let (http, watcher) = (http.clone(), graceful.watcher());
            let (tls, handshake_timeout) = (self.tls.clone(), self.head_timeout);
            tokio::spawn(async move {
                let served = match tls {
                    None => {
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                    Some(Tls(acceptor)) => {
                        let handshake =
                            tokio::time::timeout(handshake_timeout, acceptor.accept(stream));
                        let stream = match handshake.await {
                            Ok(Ok(stream)) => stream,
                            Ok(Err(e)) => {
                                return tracing::debug!(error = %e, "http: TLS handshake failed")
                            }
                            Err(_) => return tracing::debug!("http: TLS handshake timed out"),
                        };
                        let connection = http.serve_connection(TokioIo::new(stream), service);
                        watcher.watch(connection).await
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(error = %e, "http: connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        graceful.shutdown().await;
        Ok(())
    }
}

/// Largest request head; hyper answers `431` beyond it.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What a handler knew about a rejection, for the log line (the error's field).
#[derive(Clone, Debug)]
pub(crate) struct RejectedField(pub(crate) String);

async fn log_rejection(throttle: Arc<Throttle>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        order_fsm::telemetry::refused("http", status.as_u16().to_string());
        if let Some(suppressed) = throttle.admit() {
            let field = response
                .extensions()
                .get::<RejectedField>()
                .map(|f| f.0.as_str());
            tracing::warn!(
                %method, %route, status = status.as_u16(), field, suppressed,
                "http: request rejected"
            );
        }
    }
    response
}
