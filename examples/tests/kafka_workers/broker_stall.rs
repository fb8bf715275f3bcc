//! The broker stalls (SIGSTOP for 15 s) under a lone worker process in the middle of a run:
//! afterwards the worker recovers by itself, with no second worker joining, and every order
//! completes. Before the source's stall watchdog, 1,003 of 1,500 orders stayed unprocessed
//! 95 s later; with a re-join but without the watchdog's second commit, 1,200 never moved
//! (tansu 0.6.0 kept the evicted worker as the group's leader; see `source/watchdog.rs`).
//!
//! Runs on a tansu of its own (pausing the shared one would disturb other tests), so it
//! needs the `tansu` program that `scripts/kafka.sh` installs.

use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use crate::common::{eventually, topic_size, Broker};
use crate::process::{assert_all_complete, one_at_a_time, outcome, place_orders, WorkerProcess};

const ORDERS: usize = 1_500;
const DWELL_MS: u64 = 100;
const STALL: Duration = Duration::from_secs(15);

/// A tansu broker on a free loopback port, killed when dropped.
struct PrivateTansu {
    child: Child,
    address: String,
}

impl PrivateTansu {
    /// Starts one, or says why it cannot (`None` outside CI, a failure in CI).
    fn start() -> Option<Self> {
        let kind = std::env::var("ORDER_FSM_KAFKA_BROKER_KIND").unwrap_or_default();
        if !kind.starts_with("tansu") {
            let reason = "ORDER_FSM_KAFKA_BROKER_KIND is not tansu (start scripts/kafka.sh)";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI must provide tansu: {reason}"
            );
            eprintln!("SKIPPED broker_stall: {reason}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Process::new("tansu")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu (installed by scripts/kafka.sh)");
        // Owned before the wait, so that a broker that never listens is still killed.
        let tansu = Self {
            child,
            address: format!("127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&tansu.address).is_ok() {
                return Some(tansu);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tansu did not listen on {}", tansu.address);
    }

    fn signal(&self, signal: &str) {
        let status = Process::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("send a signal");
        assert!(status.success(), "kill {signal} tansu");
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_worker_recovers_from_a_broker_stall_by_itself() {
    let Some(tansu) = PrivateTansu::start() else {
        return;
    };
    let _alone = one_at_a_time().await;
    let config = Broker::External(tansu.address.clone())
        .config("stall", 6)
        .await;
    let worker = WorkerProcess::start(&config, "lone", DWELL_MS);
    // 50 orders every 300 ms: about 9 s of placements, so the stall lands mid-stream.
    let (ids, producer) = place_orders(&config, ORDERS, Duration::from_millis(300));
    let topic = config.transitions_topic().to_owned();
    eventually("the worker's progress", Duration::from_secs(120), || {
        let (config, topic) = (config.clone(), topic.clone());
        async move { topic_size(&config, &topic).await >= 1_000 }
    })
    .await;
    tansu.signal("-STOP");
    eprintln!("tansu stopped for {} s", STALL.as_secs());
    tokio::time::sleep(STALL).await;
    tansu.signal("-CONT");
    eprintln!("tansu continued");
    producer.await.expect("producer");
    let after = outcome(&config, &ids).await;
    eprintln!("right after the stall: {after}");
    assert_all_complete(&config, &ids, Duration::from_secs(150)).await;
    drop(worker);
}
