//! Undecodable requests answer `INVALID_ARGUMENT`, not `INTERNAL`.
//!
//! tonic's prost codec maps every decode failure to `INTERNAL` (right for a client decoding
//! a server's answer, wrong for a server decoding a client's request): garbage bytes or
//! invalid UTF-8 in a string field would alert as a server fault and be retried. The codec
//! is shared by the generated client and server, so the server re-labels instead: a
//! response that tonic produced before any handler ran, with status `INTERNAL` and the
//! prost decode message (which names the message and field), becomes `INVALID_ARGUMENT`
//! with the same message.

use tonic::codegen::http::{HeaderValue, Response};

/// `grpc-status` of `INTERNAL` and `INVALID_ARGUMENT`.
const INTERNAL: &str = "13";
const INVALID_ARGUMENT: &str = "3";

/// How tonic's messages for an undecodable request begin (`grpc-message` is
/// percent-encoded on the wire).
const UNDECODABLE: [&str; 2] = [
    "failed%20to%20decode%20Protobuf%20message",
    "failed to decode Protobuf message",
];

/// Relabels the status of a response to an undecodable request (see the module docs).
pub(crate) fn relabel<B>(mut response: Response<B>) -> Response<B> {
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
