//! Shared harness: a real runner on a `MemoryQueue` and the gRPC server on a loopback port.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use order_fsm::{
    Command, CommandSink, Dwell, Error as CoreError, Lifecycle, MemoryQueue, MemorySink,
    MemoryStore, OrderId, OrderStore, Runner,
};
use order_fsm_grpc::{
    ClientConfig, GrpcError, OrderClient, OrderServiceBuilder, OrderView, ServerConfig, WatchHub,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How to start a harness.
#[derive(Default)]
pub struct Options {
    /// `None`: the runner only applies commands; `Some`: it also advances orders.
    pub auto_advance: Option<Dwell>,
    /// Replaces the queue as the server's command sink (the queue still feeds the runner).
    pub commands: Option<Arc<dyn CommandSink>>,
    /// Replaces the store the server reads (the runner keeps writing the memory store).
    pub store: Option<Arc<dyn OrderStore>>,
    /// The queue the runner reads (default: a new one).
    pub queue: Option<MemoryQueue>,
    pub config: ServerConfig,
}

impl Options {
    /// Options whose command sink is a [`FlakySink`] in front of the runner's queue: it fails
    /// its first `failures` submissions and waits `delay` before each. The sink is returned
    /// too, to look at what it was sent.
    pub fn flaky_commands(failures: u32, delay: Duration) -> (Self, Arc<FlakySink>) {
        let queue = MemoryQueue::new();
        let sink = Arc::new(FlakySink::new(queue.clone(), failures, delay));
        let options = Self {
            commands: Some(sink.clone()),
            queue: Some(queue),
            ..Self::default()
        };
        (options, sink)
    }
}

pub struct Harness {
    pub addr: SocketAddr,
    pub queue: MemoryQueue,
    pub store: Arc<MemoryStore>,
    pub sink: Arc<MemorySink>,
    pub hub: WatchHub,
    stop_server: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<Result<(), GrpcError>>>,
    stop_runner: Option<oneshot::Sender<()>>,
    runner: Option<JoinHandle<()>>,
}

impl Harness {
    pub async fn start(options: Options) -> Self {
        let lifecycle = Arc::new(Lifecycle::ecommerce());
        let queue = options.queue.unwrap_or_default();
        let store = Arc::new(MemoryStore::new());
        let sink = Arc::new(MemorySink::new());
        let hub = WatchHub::default();

        let mut builder = Runner::builder(Arc::clone(&lifecycle))
            .with_store(store.clone())
            .with_sink(sink.clone())
            .with_sink(Arc::new(hub.clone()));
        if let Some(dwell) = options.auto_advance {
            builder = builder.with_auto_advance(dwell);
        }
        let runner = builder.build().expect("runner");
        let (stop_runner, runner_rx) = oneshot::channel::<()>();
        let source = queue.subscribe();
        let runner = tokio::spawn(async move {
            runner
                .run(source, async {
                    let _ = runner_rx.await;
                })
                .await
                .expect("runner failed");
        });

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let commands = options
            .commands
            .unwrap_or_else(|| Arc::new(queue.clone()) as Arc<dyn CommandSink>);
        let read_store = options
            .store
            .unwrap_or_else(|| store.clone() as Arc<dyn OrderStore>);
        let (stop_server, server_rx) = oneshot::channel::<()>();
        let server = OrderServiceBuilder::new(lifecycle)
            .with_commands(commands)
            .with_store(read_store)
            .with_watch_hub(hub.clone())
            .with_config(options.config);
        let server = tokio::spawn(server.serve_with_listener(listener, async {
            let _ = server_rx.await;
        }));
        Self {
            addr,
            queue,
            store,
            sink,
            hub,
            stop_server: Some(stop_server),
            server: Some(server),
            stop_runner: Some(stop_runner),
            runner: Some(runner),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn client(&self) -> OrderClient {
        OrderClient::connect(ClientConfig::new(self.url()))
            .await
            .expect("connect")
    }

    pub async fn raw(
        &self,
    ) -> order_fsm_grpc::proto::order_service_client::OrderServiceClient<tonic::transport::Channel>
    {
        order_fsm_grpc::proto::order_service_client::OrderServiceClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// Signals the server to shut down (without waiting).
    pub fn shutdown_server(&mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
    }

    /// Stops server and runner and waits for both.
    pub async fn stop(mut self) {
        self.shutdown_server();
        if let Some(server) = self.server.take() {
            server.await.unwrap().expect("server failed");
        }
        if let Some(stop) = self.stop_runner.take() {
            let _ = stop.send(());
        }
        if let Some(runner) = self.runner.take() {
            runner.await.unwrap();
        }
    }

    /// Waits until every submitted command was processed.
    pub async fn drained(&self) {
        wait_until(|| self.queue.pending() == 0).await;
    }
}

/// Polls `check` every 5 ms for up to 10 s.
pub async fn wait_until(mut check: impl FnMut() -> bool) {
    for _ in 0..2_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached within 10 s");
}

/// Reads an order until `accept` holds (reads are eventually consistent).
pub async fn read_until(
    client: &OrderClient,
    id: OrderId,
    accept: impl Fn(&OrderView) -> bool,
) -> OrderView {
    for _ in 0..2_000 {
        match client.get_order(id).await {
            Ok(order) if accept(&order) => return order,
            Ok(_) => {}
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {}
            // Placed here and not processed yet, after the client's own retries.
            Err(e) if e.code() == Some(tonic::Code::Unavailable) => {}
            Err(e) => panic!("get_order: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("order {id} never reached the expected state");
}

/// A sink that fails with `UNAVAILABLE` the first `failures` times, then forwards, and
/// remembers every command it was asked to submit.
pub struct FlakySink {
    pub inner: MemoryQueue,
    pub failures: AtomicU32,
    pub seen: Mutex<Vec<Command>>,
    pub delay: Duration,
}

impl FlakySink {
    pub fn new(inner: MemoryQueue, failures: u32, delay: Duration) -> Self {
        Self {
            inner,
            failures: AtomicU32::new(failures),
            seen: Mutex::new(Vec::new()),
            delay,
        }
    }
}

#[async_trait]
impl CommandSink for FlakySink {
    async fn submit(&self, commands: &[Command]) -> Result<(), CoreError> {
        self.seen.lock().unwrap().extend_from_slice(commands);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(CoreError::unavailable("kafka", "broker down"));
        }
        self.inner.submit(commands).await
    }
}

/// A store whose reads always fail with `UNAVAILABLE`.
pub struct DownStore;

#[async_trait]
impl OrderStore for DownStore {
    async fn get(&self, _: OrderId) -> Result<Option<order_fsm::OrderState>, CoreError> {
        Err(CoreError::unavailable(
            "elasticsearch",
            "connection refused",
        ))
    }
    async fn compare_and_set(&self, _: u64, _: order_fsm::OrderState) -> Result<(), CoreError> {
        Err(CoreError::unavailable(
            "elasticsearch",
            "connection refused",
        ))
    }
    async fn list(&self, _: order_fsm::ListQuery) -> Result<Vec<order_fsm::OrderState>, CoreError> {
        Err(CoreError::unavailable(
            "elasticsearch",
            "connection refused",
        ))
    }
}

/// Asserts a failed call's code and that its message mentions every one of `words`.
pub fn assert_status(
    result: Result<impl std::fmt::Debug, GrpcError>,
    code: tonic::Code,
    words: &[&str],
) {
    let error = result.expect_err("the call should fail");
    assert_eq!(error.code(), Some(code), "{error}");
    let text = error.to_string();
    for word in words {
        assert!(text.contains(word), "{text:?} should mention {word:?}");
    }
}
