//! One `_bulk` request with retries: whole-request retries on 429 / 5xx / transport errors,
//! item retries on 429 / 503, and per-item classification of the rest.

use bytes::{Bytes, BytesMut};
use elasticsearch::http::Method;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::client::Client;
use crate::document::Target;
use crate::error::is_retryable_item_status;
use crate::ElasticError;

/// What became of one operation.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Indexed (or, on the orders index, already superseded by a newer version).
    Indexed,
    /// Refused for good by the server.
    Rejected { status: u16, reason: String },
    /// Not indexed, but may be later (server down, overloaded).
    Failed(ElasticError),
}

#[derive(Deserialize)]
struct Summary {
    errors: bool,
    #[allow(dead_code)]
    items: IgnoredAny,
}

#[derive(Deserialize)]
struct Items {
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    #[serde(alias = "create", alias = "update", alias = "delete")]
    index: ItemResult,
}

#[derive(Deserialize)]
struct ItemResult {
    status: u16,
    #[serde(default)]
    error: Option<ItemError>,
}

#[derive(Deserialize)]
struct ItemError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    reason: String,
}

/// The item of an operation, classified.
fn classify(target: Target, item: ItemResult) -> Result<(), (bool, u16, String)> {
    if (200..300).contains(&item.status) {
        return Ok(());
    }
    let reason = item
        .error
        .map(|e| format!("{}: {}", e.kind, e.reason))
        .unwrap_or_default();
    // The version guard of the orders index: a newer (or the same) version is already
    // there, which is exactly what the guard is for.
    if target == Target::Orders && item.status == 409 {
        return Ok(());
    }
    Err((is_retryable_item_status(item.status), item.status, reason))
}

/// An operation to send: its target and its encoded lines.
pub(crate) struct Pending<'a> {
    pub(crate) target: Target,
    pub(crate) id: &'a str,
    pub(crate) index: &'a str,
    pub(crate) bytes: &'a Bytes,
}

/// Sends `ops` with `client`, retrying as its configuration says; returns one outcome per
/// op, in order.
pub(crate) async fn execute(client: &Client, ops: &[Pending<'_>]) -> Vec<Outcome> {
    let policy = client.config.retry;
    let mut outcomes: Vec<Option<Outcome>> = ops.iter().map(|_| None).collect();
    let mut remaining: Vec<usize> = (0..ops.len()).collect();
    let mut attempt = 1u32;
    loop {
        let len = remaining.iter().map(|&i| ops[i].bytes.len()).sum();
        let mut body = BytesMut::with_capacity(len);
        for &i in &remaining {
            body.extend_from_slice(ops[i].bytes);
        }
        let result = send(client, body.freeze(), remaining.len()).await;
        let mut retry = Vec::new();
        let mut last_error = None;
        match result {
            Err(e) if e.is_retryable() => {
                last_error = Some(e);
                retry = std::mem::take(&mut remaining);
            }
            Err(e) => {
                for &i in &remaining {
                    outcomes[i] = Some(Outcome::Failed(e.clone()));
                }
                remaining.clear();
            }
            Ok(None) => {
                for &i in &remaining {
                    outcomes[i] = Some(Outcome::Indexed);
                }
                remaining.clear();
            }
            Ok(Some(items)) => {
                for (&i, item) in remaining.iter().zip(items) {
                    match classify(ops[i].target, item.index) {
                        Ok(()) => outcomes[i] = Some(Outcome::Indexed),
                        Err((true, status, _)) => {
                            last_error = Some(ElasticError::Overloaded {
                                index: ops[i].index.to_owned(),
                                id: ops[i].id.to_owned(),
                                status,
                                attempts: attempt,
                            });
                            retry.push(i);
                        }
                        Err((false, status, reason)) => {
                            outcomes[i] = Some(Outcome::Rejected { status, reason });
                        }
                    }
                }
                remaining.clear();
            }
        }
        if retry.is_empty() {
            break;
        }
        if !policy.allows(attempt) {
            let e = last_error.expect("a retry has a reason");
            for &i in &retry {
                outcomes[i] = Some(Outcome::Failed(e.clone()));
            }
            break;
        }
        tracing::debug!(attempt, docs = retry.len(), error = ?last_error, "retrying bulk");
        tokio::time::sleep(policy.backoff(attempt)).await;
        attempt += 1;
        remaining = retry;
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Outcome::Failed(ElasticError::decode("bulk", "no outcome"))))
        .collect()
}

/// One `_bulk` round trip: `Ok(None)` when every item succeeded, `Ok(Some(items))` when
/// some failed, `Err` when the request as a whole did.
async fn send(
    client: &Client,
    body: Bytes,
    expected: usize,
) -> Result<Option<Vec<Item>>, ElasticError> {
    let reply = client
        .request(Method::Post, "/_bulk", Some(body), true)
        .await?;
    if !(200..300).contains(&reply.status) {
        return Err(reply.into_error("bulk"));
    }
    let summary: Summary =
        serde_json::from_slice(&reply.body).map_err(|e| ElasticError::decode("bulk", e))?;
    if !summary.errors {
        return Ok(None);
    }
    let items: Items =
        serde_json::from_slice(&reply.body).map_err(|e| ElasticError::decode("bulk", e))?;
    if items.items.len() != expected {
        return Err(ElasticError::decode(
            "bulk",
            format!("{} items for {expected} operations", items.items.len()),
        ));
    }
    Ok(Some(items.items))
}
