//! Building and serving: the order service beside health and reflection.

use std::future::Future;
use std::sync::Arc;

use order_fsm::intake::Intake;
use order_fsm::{CommandSink, Engine, Lifecycle, OrderStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Server;
use tonic_reflection::server::{v1, v1alpha};

use crate::proto::order_service_server::OrderServiceServer;
use crate::service::Service;
use crate::{proto, GrpcError, ServerConfig, WatchHub};

/// How long a keep-alive ping may go unanswered before the connection is closed.
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Configures and runs the gRPC server: `order_fsm.v1.OrderService`, the standard health
/// service (`grpc.health.v1.Health`, reporting `SERVING` for the order service until
/// shutdown) and, unless [`ServerConfig::reflection`] is off, server reflection
/// (`grpc.reflection.v1` and the older `grpc.reflection.v1alpha`, for grpcio-reflection and
/// older grpcurl).
///
/// # Shutdown
/// When the shutdown future completes, health turns `NOT_SERVING`, open `WatchOrder`
/// streams end with `UNAVAILABLE`, the listener stops accepting, and the serve call returns
/// once in-flight calls have finished.
#[must_use]
pub struct OrderServiceBuilder {
    lifecycle: Arc<Lifecycle>,
    commands: Option<Arc<dyn CommandSink>>,
    store: Option<Arc<dyn OrderStore>>,
    hub: Option<WatchHub>,
    config: ServerConfig,
}

impl std::fmt::Debug for OrderServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderServiceBuilder")
            .field("lifecycle", &self.lifecycle.name())
            .field("commands", &self.commands.is_some())
            .field("store", &self.store.is_some())
            .field("hub", &self.hub.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl OrderServiceBuilder {
    /// A server for orders following `lifecycle`, with the default [`ServerConfig`].
    pub fn new(lifecycle: impl Into<Arc<Lifecycle>>) -> Self {
        Self {
            lifecycle: lifecycle.into(),
            commands: None,
            store: None,
            hub: None,
            config: ServerConfig::default(),
        }
    }

    /// Where placements and events are submitted (required).
    pub fn with_commands(mut self, commands: Arc<dyn CommandSink>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// Where orders are read from (required); the store the runner writes.
    pub fn with_store(mut self, store: Arc<dyn OrderStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The hub the runner publishes to, for live `WatchOrder` updates. Without one, watch
    /// streams poll the store every [`ServerConfig::watch_poll_interval`].
    pub fn with_watch_hub(mut self, hub: WatchHub) -> Self {
        self.hub = Some(hub);
        self
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Binds [`ServerConfig::addr`] and serves until `shutdown` completes.
    ///
    /// # Errors
    /// [`GrpcError::Config`] for a missing sink or store or a bad setting, [`GrpcError::Io`] when
    /// the address cannot be bound, [`GrpcError::Transport`] when serving fails.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), GrpcError> {
        let listener = TcpListener::bind(self.config.addr).await?;
        self.serve_with_listener(listener, shutdown).await
    }

    /// Serves on an already bound listener (bind `127.0.0.1:0` to get a free port) until
    /// `shutdown` completes.
    ///
    /// # Errors
    /// As [`OrderServiceBuilder::serve`].
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), GrpcError> {
        let config = self.config;
        config.check()?;
        let commands = self.commands.ok_or_else(|| {
            GrpcError::Config("a command sink is required (with_commands)".into())
        })?;
        let store = self
            .store
            .ok_or_else(|| GrpcError::Config("an order store is required (with_store)".into()))?;
        if self.lifecycle.event(&config.cancel_event).is_none() {
            return Err(GrpcError::Config(format!(
                "the lifecycle has no cancel event `{}`",
                config.cancel_event
            )));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let engine = Engine::new(self.lifecycle);
        let service = Service {
            intake: Intake::new(engine.clone(), commands, Arc::clone(&store)),
            engine,
            store,
            hub: self.hub,
            request_timeout: config.request_timeout,
            default_page_size: config.default_page_size,
            max_page_size: config.max_page_size,
            cancel_event: config.cancel_event.clone(),
            watch_poll_interval: config.watch_poll_interval,
            shutdown: stop_rx,
        };
        let orders = OrderServiceServer::new(service)
            .max_decoding_message_size(config.max_request_bytes)
            .max_encoding_message_size(config.max_response_bytes);

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<OrderServiceServer<Service>>().await;
        let (reflection_v1, reflection_v1alpha) = match config.reflection {
            true => {
                let (v1, v1alpha) = reflection()?;
                (Some(v1), Some(v1alpha))
            }
            false => (None, None),
        };

        let mut server = Server::builder();
        if let Some(limit) = config.concurrency_limit_per_connection {
            server = server.concurrency_limit_per_connection(limit);
        }
        server = server
            .http2_keepalive_interval(config.keepalive_interval)
            .http2_keepalive_timeout(config.keepalive_interval.map(|_| KEEPALIVE_TIMEOUT));
        if let Some(identity) = &config.tls {
            server = with_tls(server, identity)?;
        }
        let signal = async move {
            shutdown.await;
            tracing::info!("order service shutting down");
            health
                .set_not_serving::<OrderServiceServer<Service>>()
                .await;
            stop_tx.send_replace(true);
        };
        let incoming =
            crate::edge::incoming(listener, config.max_connections, config.handshake_timeout);
        let access = config.access.clone().map(crate::access::AccessLayer::grpc);
        let rate = config.rate_limit.map(crate::rate::RateLimitLayer::grpc);
        server
            .layer(crate::edge::EdgeLayer::new())
            .layer(tower::util::option_layer(access))
            .layer(tower::util::option_layer(rate))
            .add_service(health_service)
            .add_optional_service(reflection_v1)
            .add_optional_service(reflection_v1alpha)
            .add_service(orders)
            .serve_with_incoming_shutdown(incoming, signal)
            .await?;
        Ok(())
    }
}

/// Server reflection in both protocol versions: `grpc.reflection.v1`, and
/// `grpc.reflection.v1alpha`, which Python's grpcio-reflection and older grpcurl speak.
/// Both describe the same files, each reflection service included, so either lists all
/// four services.
fn reflection() -> Result<
    (
        v1::ServerReflectionServer<impl v1::ServerReflection>,
        v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    ),
    GrpcError,
> {
    // Each build registers its own version's descriptors; the other's is added here.
    let files = |other_version: &'static [u8]| {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(other_version)
    };
    let failed = |e: tonic_reflection::server::Error| GrpcError::Config(format!("reflection: {e}"));
    let v1 = files(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(failed)?;
    let v1alpha = files(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(failed)?;
    Ok((v1, v1alpha))
}

#[cfg(feature = "tls")]
fn with_tls(server: Server, identity: &crate::TlsIdentity) -> Result<Server, GrpcError> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let mut tls =
        ServerTlsConfig::new().identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
    if let Some(ca) = &identity.client_ca_pem {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    Ok(server.tls_config(tls)?)
}

#[cfg(not(feature = "tls"))]
fn with_tls(_: Server, _: &crate::TlsIdentity) -> Result<Server, GrpcError> {
    Err(GrpcError::Config(
        "TLS needs the crate's `tls` feature".into(),
    ))
}
