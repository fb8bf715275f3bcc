//! Deadlines: the client's `grpc-timeout`, capped by the server's own limit.

use std::future::Future;
use std::time::Duration;

use tonic::metadata::MetadataMap;
use tonic::Status;

/// The time a call may take: the smaller of the client's `grpc-timeout` and `cap`.
pub(crate) fn budget(metadata: &MetadataMap, cap: Option<Duration>) -> Option<Duration> {
    let client = metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout);
    match (client, cap) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Runs `work` within `budget`, failing with `DEADLINE_EXCEEDED` when it runs out.
pub(crate) async fn within<T>(
    budget: Option<Duration>,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    match budget {
        None => work.await,
        Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
            Err(Status::deadline_exceeded(format!(
                "deadline of {} ms exceeded",
                limit.as_millis()
            )))
        }),
    }
}

/// Parses the gRPC wire format: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_wire_format_and_takes_the_smaller_budget() {
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        let mut meta = MetadataMap::new();
        meta.insert("grpc-timeout", "100m".parse().unwrap());
        let cap = Some(Duration::from_secs(1));
        assert_eq!(budget(&meta, cap), Some(Duration::from_millis(100)));
        assert_eq!(budget(&MetadataMap::new(), cap), cap);
    }
}
