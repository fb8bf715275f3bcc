//! Helpers shared by the integration tests: the server's URL (skip or fail when unset), unique
//! index prefixes, and a tiny HTTP proxy that can answer 429, refuse bulk items or go down.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use order_fsm::RetryPolicy;
use order_fsm_elastic::ElasticBuilder;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The server's URL from `ORDER_FSM_ES_URL`. Unset: panics under `CI=true`, otherwise
/// prints why the test is skipped and returns `None`.
pub fn es_url() -> Option<String> {
    order_fsm::testing::service_address("ORDER_FSM_ES_URL")
}

/// A fresh index prefix so tests can share one server.
pub fn prefix(test: &str) -> String {
    let id = order_fsm::OrderId::random().to_string();
    format!("t-{test}-{}-", &id[..8])
}

/// A builder with a unique prefix and quick retries.
pub fn builder(url: &str, test: &str) -> ElasticBuilder {
    ElasticBuilder::new(url)
        .with_index_prefix(prefix(test))
        .with_retry(quick_retry(6))
        .with_request_timeout(Duration::from_secs(10))
}

/// `attempts` attempts, 10 ms doubling to 100 ms.
pub fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(attempts)
        .with_backoff(Duration::from_millis(10), Duration::from_millis(100))
}

/// One plain HTTP/1.0 request to the server, beside the crate's client: status and body.
pub async fn raw(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let req = format!(
        "{method} /{path} HTTP/1.0\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What the proxy does; counters say what it saw.
#[derive(Debug, Default)]
pub struct ProxyState {
    /// `_bulk` requests still to answer with HTTP 429 (not forwarded).
    pub reject_bulks: AtomicUsize,
    /// `_bulk` requests still to answer with every second item refused with 429 (only the
    /// other items are forwarded).
    pub refuse_odd_items: AtomicUsize,
    /// Drop every connection at once, as a server that went away.
    pub down: AtomicBool,
    /// `_bulk` requests received.
    pub bulk_requests: AtomicUsize,
    /// Items answered with 429 without forwarding.
    pub refused_items: AtomicUsize,
}

/// A loopback HTTP/1.1 proxy to the server (one task per connection).
pub struct Proxy {
    pub url: String,
    pub state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream_url: &str) -> Proxy {
        let upstream: SocketAddr = upstream_url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("ORDER_FSM_ES_URL is http://host:port");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(ProxyState::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = serve(client, upstream, state).await;
                });
            }
        });
        Proxy { url, state, task }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let total = head_end + 4 + length;
    while buf.len() < total {
        let mut chunk = [0u8; 64 * 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = buf[head_end + 4..total].to_vec();
    buf.drain(..total);
    Ok(Some(Request {
        method,
        path,
        headers,
        body,
    }))
}

/// Sends `req` (with `body`) to the server as HTTP/1.0 with `Connection: close`, so the
/// answer is plain bytes up to EOF; returns status and body.
async fn forward(
    upstream: SocketAddr,
    req: &Request,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut head = format!("{} {} HTTP/1.0\r\n", req.method, req.path);
    for (k, v) in &req.headers {
        if !matches!(k.as_str(), "connection" | "keep-alive" | "content-length") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    server.write_all(head.as_bytes()).await?;
    server.write_all(body).await?;
    let mut reply = Vec::new();
    server.read_to_end(&mut reply).await?;
    let end = find(&reply, b"\r\n\r\n").unwrap_or(reply.len());
    let status = String::from_utf8_lossy(&reply[..end])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let body = reply.get(end + 4..).unwrap_or_default().to_vec();
    Ok((status, body))
}

async fn respond(client: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body).await
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Forwards every second operation of a bulk body, answers the others with item 429s.
async fn refuse_odd_items(
    upstream: SocketAddr,
    req: &Request,
    state: &ProxyState,
) -> std::io::Result<(u16, Vec<u8>)> {
    let text = String::from_utf8_lossy(&req.body).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let ops: Vec<(&str, &str)> = lines.chunks(2).map(|c| (c[0], c[1])).collect();
    let mut forwarded = String::new();
    for (action, source) in ops.iter().step_by(2) {
        forwarded.push_str(&format!("{action}\n{source}\n"));
    }
    let (status, body) = forward(upstream, req, forwarded.as_bytes()).await?;
    let reply: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut upstream_items = reply["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter();
    let mut items = Vec::new();
    for (i, (action, _)) in ops.iter().enumerate() {
        if i % 2 == 0 {
            items.push(upstream_items.next().unwrap_or(Value::Null));
        } else {
            state.refused_items.fetch_add(1, Ordering::SeqCst);
            let action: Value = serde_json::from_str(action).unwrap_or(Value::Null);
            items.push(json!({ "index": {
                "_index": action["index"]["_index"],
                "_id": action["index"]["_id"],
                "status": 429,
                "error": { "type": "es_rejected_execution_exception", "reason": "test proxy: queue full" },
            }}));
        }
    }
    let body = serde_json::to_vec(&json!({ "took": 1, "errors": true, "items": items }))
        .unwrap_or_default();
    Ok((status, body))
}

async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    state: Arc<ProxyState>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        if state.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let Some(req) = read_request(&mut client, &mut buf).await? else {
            return Ok(());
        };
        if state.down.load(Ordering::SeqCst) {
            return Ok(());
        }
        let bulk = req.path.starts_with("/_bulk");
        if bulk {
            state.bulk_requests.fetch_add(1, Ordering::SeqCst);
        }
        let (status, body) = if bulk && take_one(&state.reject_bulks) {
            let body = br#"{"error":{"type":"es_rejected_execution_exception","reason":"test proxy: too many requests"},"status":429}"#;
            (429, body.to_vec())
        } else if bulk && take_one(&state.refuse_odd_items) {
            refuse_odd_items(upstream, &req, &state).await?
        } else {
            forward(upstream, &req, &req.body).await?
        };
        respond(&mut client, status, &body).await?;
    }
}
