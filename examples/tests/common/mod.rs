//! Helpers of the separate-process tests: programs as child processes, private Elasticsearch
//! and SMTP servers a test may pause or stop, and readers of what landed where.
#![allow(dead_code, unreachable_pub)]

pub mod gate;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use order_fsm::{OrderId, TransitionRecord};
use order_fsm_kafka::{provision_topics, KafkaCommandSink, KafkaConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A child process, killed when the test ends, however it ends.
pub struct Process(pub Child);

impl Process {
    /// Sends `signal` (`STOP`, `CONT`, `KILL`, `INT`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.0.id());
    }

    /// Stops the process with SIGKILL and reaps it.
    pub fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            // A stopped process dies of SIGKILL, but continue it so nothing is left paused.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.0.id().to_string())
                .stderr(Stdio::null())
                .status();
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `binary` with `args`, warnings and errors on the test's stderr. The test's
/// `ORDER_FSM_*` variables (the shared services) are not passed on: a program serves only
/// what its arguments name.
pub fn spawn(binary: &str, args: &[String]) -> Process {
    spawn_logging(binary, args, None)
}

/// [`spawn`], with everything the program logs at `debug` and above (stdout and stderr)
/// written to `log` when given.
pub fn spawn_logging(binary: &str, args: &[String], log: Option<&Path>) -> Process {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("ORDER_FSM_")) {
        command.env_remove(name);
    }
    command.args(args);
    match log {
        None => command.env("RUST_LOG", "warn").stdout(Stdio::null()),
        Some(path) => {
            let file = std::fs::File::create(path).unwrap();
            command
                .env("RUST_LOG", "debug")
                .stdout(file.try_clone().unwrap())
                .stderr(file)
        }
    };
    Process(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}")),
    )
}

/// Waits until `check` holds, polling every 200 ms; panics naming `what` after `timeout`.
pub async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An osmem-server (Elasticsearch API) of the test's own, which it may pause.
pub struct PrivateElastic {
    pub process: Process,
    pub url: String,
}

impl PrivateElastic {
    /// Starts one on a free port; `None` (with the reason printed) if osmem-server is not
    /// installed, which `scripts/elastic.sh install` does.
    pub fn start() -> Option<Self> {
        let binary = Command::new("python3")
            .args([
                "-c",
                "import osmem_server; print(osmem_server.resolve_binary())",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let Some(binary) = binary else {
            eprintln!("SKIPPED: osmem-server is not installed (scripts/elastic.sh install)");
            return None;
        };
        let mut child = Command::new(&binary)
            .args(["-addr", "127.0.0.1:0", "-no-stdin-watch", "-no-ja"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {binary}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let process = Process(child);
        let mut lines = BufReader::new(stdout).lines();
        let url = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| {
                let start = line.find("\"url\":\"")? + "\"url\":\"".len();
                let end = line[start..].find('"')? + start;
                Some(line[start..end].to_owned())
            })
            .expect("osmem-server printed its url");
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Some(Self { process, url })
    }
}

/// An aiosmtpd server of the test's own storing mail in a Maildir, which it may stop and
/// start again on the same port.
pub struct PrivateSmtp {
    pub process: Option<Process>,
    pub port: u16,
    pub maildir: PathBuf,
    root: PathBuf,
}

impl PrivateSmtp {
    /// Starts one on a free port, storing mail under `dir`.
    pub fn start(dir: &Path) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_owned();
        let mut server = Self {
            process: None,
            port: free_port(),
            maildir: dir.join("maildir"),
            root,
        };
        server.restart();
        server
    }

    /// The URL the programs take.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL): connections are refused until [`Self::restart`].
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts the server (again) on its port.
    pub fn restart(&mut self) {
        let mut child = Command::new("python3")
            .arg(self.root.join("scripts/smtp_server.py"))
            .arg("--maildir")
            .arg(&self.maildir)
            .arg("--port")
            .arg(self.port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/smtp_server.py (pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("piped stdout");
        let process = Process(child);
        let mut first = String::new();
        BufReader::new(stdout)
            .read_line(&mut first)
            .expect("the SMTP server's port");
        assert_eq!(
            first.trim(),
            self.port.to_string(),
            "SMTP server on its port"
        );
        self.process = Some(process);
    }

    /// The `(order, version)` of every mail received, one entry per mail, from their
    /// `Message-ID: <order.version@order-fsm>`.
    pub fn mails(&self) -> Vec<(OrderId, u64)> {
        mails_in(&self.maildir)
    }
}

/// The `(order, version)` of every mail in `maildir`, one entry per mail.
pub fn mails_in(maildir: &Path) -> Vec<(OrderId, u64)> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap_or_default();
        let Some(start) = text
            .find("Message-ID: <")
            .map(|i| i + "Message-ID: <".len())
        else {
            continue;
        };
        let Some(id) = text[start..].split_once('@').map(|(id, _)| id) else {
            continue;
        };
        let Some((order, version)) = id.split_once('.') else {
            continue;
        };
        if let (Ok(order), Ok(version)) = (order.parse(), version.parse()) {
            out.push((order, version));
        }
    }
    out
}

/// A transition record and where it is in the topic.
pub struct Located {
    pub partition: i32,
    pub offset: i64,
    pub record: TransitionRecord,
}

/// Reads `topic` from the start until it holds at least `records` records (or panics after
/// 60 s).
pub fn read_transitions(brokers: &str, topic: &str, records: usize) -> Vec<Located> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("test-reader-{}", OrderId::random()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out.len() < records {
        assert!(
            Instant::now() < deadline,
            "{topic}: {} of {records} records",
            out.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume");
        let record = serde_json::from_slice(message.payload().unwrap_or_default())
            .expect("a transition record");
        out.push(Located {
            partition: message.partition(),
            offset: message.offset(),
            record,
        });
    }
    out
}

/// Records `topic` holds (the sum over its partitions of high minus low watermark).
pub fn topic_records(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("watermarks reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

/// The offsets `group` committed on `topic`, by partition.
pub fn committed_offsets(brokers: &str, group: &str, topic: &str) -> HashMap<i32, i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("offsets reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition(topic, partition.id());
    }
    let committed = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    committed
        .elements()
        .iter()
        .filter_map(|e| Some((e.partition(), e.offset().to_raw().filter(|o| *o >= 0)?)))
        .collect()
}

/// Command-line arguments of the programs for a unique topic prefix on `brokers`.
pub fn kafka_args(brokers: &str, prefix: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--brokers",
        brokers,
        "--topic-prefix",
        prefix,
        "--partitions",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The adapter configuration of the programs started with `--topic-prefix prefix`, their
/// topics created (4 partitions).
pub async fn provisioned(brokers: &str, prefix: &str) -> KafkaConfig {
    let config = KafkaConfig::new(brokers)
        .with_commands_topic(format!("{prefix}orders"))
        .with_transitions_topic(format!("{prefix}order-transitions"))
        .with_dead_letter_topic(format!("{prefix}orders-dlq"))
        .with_state_topic(format!("{prefix}order-state"));
    provision_topics(&config, 4).await.expect("topics");
    config
}

/// Places `orders` example purchases on the commands topic.
pub async fn place(commands: &KafkaCommandSink, orders: usize) {
    let batch: Vec<order_fsm::Command> = (0..orders)
        .map(|_| order_fsm::Command::place(order_fsm::Purchase::example()))
        .collect();
    order_fsm::CommandSink::submit(commands, &batch)
        .await
        .expect("commands placed");
}

/// A unique topic prefix for `test`.
pub fn unique_prefix(test: &str) -> String {
    format!("{test}-{}-", OrderId::random().as_u128() % 1_000_000_007)
}

/// Whether the command-line tool `program` runs (`program --version`). When it does not,
/// CI fails (its scripts install it: scripts/services.sh) and elsewhere the test prints
/// why it skips.
pub fn tool_available(program: &str, install: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").is_err(),
            "{program} is required in CI: {install} (scripts/services.sh)"
        );
        eprintln!("SKIPPED: no {program}; {install}");
    }
    found
}

/// An intake and a worker process on one group of their own topics.
pub struct IntakeAndWorker {
    pub intake: Process,
    pub worker: Process,
    /// The intake's gRPC address.
    pub grpc: String,
    /// The intake's HTTP address.
    pub http: String,
    /// The prefix of their topics (`{prefix}order-transitions`, ...).
    pub prefix: String,
}

impl IntakeAndWorker {
    /// Starts both on tansu at `brokers`, topics prefixed for `test`, each with its extra
    /// flags.
    pub fn start(brokers: &str, test: &str, worker: &[&str], intake: &[&str]) -> Self {
        Self::start_logging(brokers, test, worker, intake, None)
    }

    /// [`Self::start`], the intake logging at `debug` into `intake_log` when given.
    pub fn start_logging(
        brokers: &str,
        test: &str,
        worker: &[&str],
        intake: &[&str],
        intake_log: Option<&Path>,
    ) -> Self {
        let prefix = unique_prefix(test);
        let group = format!("{prefix}workers");
        let grpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut worker_args = vec!["--group", &group];
        worker_args.extend_from_slice(worker);
        let worker = spawn(
            env!("CARGO_BIN_EXE_worker"),
            &kafka_args(brokers, &prefix, &worker_args),
        );
        let mut intake_args = vec![
            "--group",
            &group,
            "--grpc-addr",
            &grpc,
            "--http-addr",
            &http,
        ];
        intake_args.extend_from_slice(intake);
        let intake = spawn_logging(
            env!("CARGO_BIN_EXE_intake"),
            &kafka_args(brokers, &prefix, &intake_args),
            intake_log,
        );
        Self {
            intake,
            worker,
            grpc,
            http,
            prefix,
        }
    }
}

/// Sends the raw HTTP/1.1 `request` over TLS to `addr` (certificate for `localhost`,
/// trusting `ca_pem`) and returns the whole answer.
pub async fn https(addr: &str, ca_pem: &str, request: &str) -> std::io::Result<String> {
    https_as(addr, ca_pem, request, None).await
}

/// [`https`], presenting the client certificate and key `client` (PEM) when given.
pub async fn https_as(
    addr: &str,
    ca_pem: &str,
    request: &str,
    client: Option<(&str, &str)>,
) -> std::io::Result<String> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await?;
    tls.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    tls.read_to_string(&mut answer).await?;
    Ok(answer)
}

/// A certificate for `localhost` made for the test, and the PEM files of it and its key
/// in `dir`: (certificate PEM, certificate path, key path).
pub fn localhost_certificate(dir: &Path) -> (String, String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let pem = certified.cert.pem();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, &pem).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let path = |p: PathBuf| p.to_str().unwrap().to_owned();
    (pem, path(cert), path(key))
}
