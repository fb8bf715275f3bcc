//! Strict JSON bodies: what the gateway accepts, and how it says what it refused.
//!
//! - The body must be declared `Content-Type: application/json` (`415` otherwise): a
//!   browser's cross-site form (`text/plain`, `application/x-www-form-urlencoded`) cannot
//!   place an order.
//! - Objects only, with known fields only: a purchase as a positional array, or a
//!   misspelt field (`"prise"`), is refused naming it, never guessed or ignored.
//! - A price is a decimal string in canonical form, exactly as the API writes it
//!   (`"1299.90"`): no float (`12.3`), no integer, no padding (`" 1.00"`), no sign on zero
//!   (`"-0.00"`), no leading zeros.
//! - A refusal names the field (`"field"`, and `"index"` for a purchase of a batch) and
//!   its message (every error's) is at most [`MAX_MESSAGE_CHARS`] characters: a megabyte
//!   of wrong-typed value is not echoed back.

use axum::http::{header, HeaderMap, StatusCode};
use order_fsm::intake::PlaceRequest;
use order_fsm::{Error, Money, Purchase};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::api_error::ApiError;

/// Longest `error` message of a refused body, in characters.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// The fields of a purchase body (`order_fsm::Purchase`, plus `idempotency_key`).
pub(crate) const PURCHASE_FIELDS: &[&str] = &[
    "product",
    "price",
    "payment_gateway",
    "card_brand",
    "bank",
    "region",
    "shipping_address",
    "customer_email",
    "quantity",
    "category",
    "idempotency_key",
];

/// The fields of an event body.
pub(crate) const EVENT_FIELDS: &[&str] =
    &["event", "expected_version", "reason", "idempotency_key"];

/// A refusal of the body: `400` (or `status`), naming `field` when known.
fn refused(status: StatusCode, field: Option<String>, message: String) -> ApiError {
    let mut error = ApiError::from(Error::Decode {
        reason: bounded(message),
    });
    error.status = Some(status);
    error.field_path = field;
    error
}

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters.
pub(crate) fn bounded(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Refuses a body not declared as JSON.
pub(crate) fn json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match declared.as_deref() {
        Some("application/json") => Ok(()),
        other => Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
            format!(
                "the body must be sent as Content-Type: application/json (got {})",
                other.map_or("none".to_owned(), |t| format!(
                    "`{}`",
                    bounded(t.to_owned())
                ))
            ),
        )),
    }
}

/// Parses the body as JSON.
pub(crate) fn parse(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        refused(
            StatusCode::BAD_REQUEST,
            None,
            format!("the body is not JSON: {e}"),
        )
    })
}

/// Checks that `value` is an object of `fields` only; `at` prefixes the paths it names.
pub(crate) fn object<'a>(
    value: &'a Value,
    fields: &[&str],
    what: &str,
    at: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    let Some(object) = value.as_object() else {
        let field = (!at.is_empty()).then(|| at.trim_end_matches('.').to_owned());
        return Err(refused(
            StatusCode::BAD_REQUEST,
            field,
            format!("{at}{what} must be a JSON object with named fields"),
        ));
    };
    if let Some(unknown) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        let path = format!("{at}{}", bounded(unknown.clone()));
        return Err(refused(
            StatusCode::BAD_REQUEST,
            Some(path.clone()),
            format!("`{path}` is not a field of {what}"),
        ));
    }
    Ok(object)
}

/// Checks a purchase object: its fields, and its price in canonical form.
pub(crate) fn purchase(value: &Value, at: &str) -> Result<(), ApiError> {
    let object = object(value, PURCHASE_FIELDS, "a purchase", at)?;
    if let Some(price) = object.get("price") {
        let canonical = price
            .as_str()
            .and_then(|s| s.parse::<Money>().ok().filter(|m| m.to_string() == s));
        if canonical.is_none() {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                Some(format!("{at}price")),
                format!(
                    "{at}price must be a decimal string with two places, like \"12.50\" \
                     (no number, sign on zero, padding or leading zero)"
                ),
            ));
        }
    }
    Ok(())
}

/// Reads a placement (a purchase and its optional `idempotency_key`) out of `value`.
pub(crate) fn place_request(mut value: Value) -> Result<PlaceRequest, ApiError> {
    purchase(&value, "")?;
    let key = value
        .as_object_mut()
        .and_then(|o| o.remove("idempotency_key"));
    let idempotency_key = match key {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key),
        Some(_) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                Some("idempotency_key".into()),
                "idempotency_key must be a string".into(),
            ))
        }
    };
    // Read as a `Purchase` itself (not flattened into a keyed struct), so the path of a
    // wrong-typed field is known.
    let purchase: Purchase = read(value, "a purchase")?;
    let mut request = PlaceRequest::new(purchase);
    request.idempotency_key = idempotency_key;
    Ok(request)
}

/// Reads `T` out of a checked value, naming the field of the first problem.
pub(crate) fn read<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        let message = match &field {
            Some(path) => format!("{path}: {}", e.inner()),
            None => format!("the body is not {what}: {}", e.inner()),
        };
        refused(StatusCode::BAD_REQUEST, field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_bounded() {
        let long = "x".repeat(10_000);
        let cut = bounded(long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
    }

    #[test]
    fn only_canonical_prices_pass() {
        let with = |price: Value| {
            let mut p = serde_json::to_value(order_fsm::Purchase::example()).unwrap();
            p["price"] = price;
            purchase(&p, "")
        };
        assert!(with("1299.90".into()).is_ok());
        assert!(with("0.00".into()).is_ok());
        for bad in [
            Value::from(12.5),
            Value::from(12),
            " 1.00".into(),
            "-0.00".into(),
            "1.5".into(),
            "01.00".into(),
            "1".into(),
        ] {
            assert!(with(bad.clone()).is_err(), "{bad} was accepted");
        }
    }
}
