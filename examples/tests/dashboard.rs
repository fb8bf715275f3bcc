//! The intake's live dashboard in headless Chromium, against intake and worker processes on
//! tansu: loaded while orders flow it draws what has happened so far; once every order is
//! finished its per-state counts equal the orders placed, its charts hold data points, and
//! a screenshot goes to `target/dashboard.png`.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{tool_available, until, IntakeAndWorker};
use order_fsm::testing::service_address;
use order_fsm::Purchase;

const ORDERS: usize = 120;

/// The orders the test places: a generated data set, so the breakdowns have several rows.
fn purchases() -> Vec<Purchase> {
    order_fsm_examples::dataset::generate(ORDERS, 11)
        .into_iter()
        .map(Purchase::from)
        .collect()
}

/// Runs headless Chromium on `url` with `extra` flags, after `budget_ms` of virtual time
/// (the page's timers run; fetches complete in real time).
fn headless(binary: &str, url: &str, budget_ms: u64, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of attribute `name` on the element whose `id` is `id`, in a dumped DOM.
fn attribute(dom: &str, id: &str, name: &str) -> Option<String> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..start].rfind('<')?;
    let tag = &dom[tag_start..tag_start + dom[tag_start..].find('>')?];
    let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
    Some(tag[at..at + tag[at..].find('"')?].to_owned())
}

/// The count the dashboard shows for the state `state` (its row of the states table).
fn state_count(dom: &str, state: &str) -> Option<u64> {
    let table = &dom[dom.find("id=\"states\"")?..];
    let row = &table[table.find(&format!("data-name=\"{state}\""))?..];
    let cell = &row[row.find("class=\"count\">")? + "class=\"count\">".len()..];
    cell[..cell.find('<')?].parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_the_orders_in_a_real_browser() {
    let Some(brokers) = service_address("ORDER_FSM_KAFKA_BROKERS") else {
        return;
    };
    if !tool_available("chromium", "apt-get install chromium") {
        return;
    }
    let browser = "chromium";
    let processes = IntakeAndWorker::start(&brokers, "dashboard", &["--dwell-ms", "300"], &[]);
    let http_addr = &processes.http;
    let http = reqwest::Client::new();
    let page = format!("http://{http_addr}/dashboard");
    until("the intake's dashboard", Duration::from_secs(60), || {
        let (http, page) = (http.clone(), page.clone());
        async move {
            http.get(page)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;

    // Orders flow for about three seconds, a few at a time, while the browser looks.
    let sender = {
        let (http, url) = (http.clone(), format!("http://{http_addr}/orders"));
        tokio::spawn(async move {
            for chunk in purchases().chunks(10) {
                for purchase in chunk {
                    let answer = http.post(&url).json(purchase).send().await.unwrap();
                    assert_eq!(answer.status(), 202);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let flowing = {
        let (browser, page) = (browser.to_owned(), page.clone());
        tokio::task::spawn_blocking(move || {
            headless(&browser, &page, 2_500, &["--dump-dom".into()])
        })
        .await
        .unwrap()
    };
    let updates: u32 = attribute(&flowing, "status", "data-updates")
        .expect("the page read /dashboard/data")
        .parse()
        .unwrap();
    assert!(updates >= 1, "{flowing}");
    let shown: u64 = [
        "processing",
        "preparing",
        "shipped",
        "delivered",
        "completed",
    ]
    .iter()
    .filter_map(|s| state_count(&flowing, s))
    .sum();
    assert!(
        shown > 0 && shown <= ORDERS as u64,
        "mid-run the page shows some of the orders: {shown}"
    );
    sender.await.unwrap();

    let data = format!("http://{http_addr}/dashboard/data");
    until("every order completed", Duration::from_secs(120), || {
        let (http, data) = (http.clone(), data.clone());
        async move {
            let Ok(answer) = http.get(data).send().await else {
                return false;
            };
            let json: serde_json::Value = answer.json().await.unwrap_or_default();
            json["states"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s["name"] == "completed" && s["count"] == ORDERS as u64)
        }
    })
    .await;

    let done = {
        let (browser, page) = (browser.to_owned(), page.clone());
        tokio::task::spawn_blocking(move || {
            headless(&browser, &page, 2_500, &["--dump-dom".into()])
        })
        .await
        .unwrap()
    };
    assert_eq!(
        state_count(&done, "completed"),
        Some(ORDERS as u64),
        "{done}"
    );
    for state in ["processing", "preparing", "shipped", "delivered"] {
        assert_eq!(state_count(&done, state), Some(0), "{state}");
    }
    let points: usize = attribute(&done, "throughput", "data-points")
        .unwrap()
        .parse()
        .unwrap();
    assert!(points >= 2, "a point per second of the run: {points}");
    assert_eq!(
        done.matches("data-series=").count(),
        3,
        "placed, finished and state-change lines"
    );
    assert_eq!(
        attribute(&done, "latency", "data-bars").as_deref(),
        Some("4"),
        "one bar pair per transition of the happy path"
    );
    let mut banks: Vec<String> = purchases().into_iter().map(|p| p.bank).collect();
    banks.sort();
    banks.dedup();
    assert!(banks.len() > 1);
    let table = &done[done.find("id=\"by_bank\"").unwrap()..];
    let table = &table[..table.find("</table>").unwrap()];
    for bank in banks.iter().take(12) {
        assert!(
            table.contains(&format!("data-name=\"{bank}\"")),
            "the per-bank breakdown names {bank}"
        );
    }

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let browser = browser.to_owned();
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || {
        headless(
            &browser,
            &page,
            2_500,
            &[arg, "--window-size=1280,900".into()],
        )
    })
    .await
    .unwrap();
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    eprintln!("screenshot: {}", shot.display());
}
