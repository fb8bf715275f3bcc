//! Personal data out of dead letters: the redacted payload of a letter, and its reason with
//! customer values scrubbed, for the log.

use order_fsm::OrderId;
use serde_json::Value;

/// What replaces a personal value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Parts of a JSON key (lower-cased, without `_` and `-`) that mark its value as personal
/// data: the personal fields of [`order_fsm::Purchase`] (`customer_email`,
/// `shipping_address`) and the usual names of e-mail addresses, addresses, phone numbers and
/// people's names, so that the malformed payloads of other producers are covered too.
const PERSONAL_KEY_PARTS: &[&str] = &[
    "mail",
    "address",
    "phone",
    "customername",
    "fullname",
    "firstname",
    "lastname",
    "surname",
];

/// Whether the value of `key` is personal data.
fn is_personal(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect();
    PERSONAL_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// `payload` without personal data: a JSON object or array with the value of every personal
/// field (see [`PERSONAL_KEY_PARTS`]), and every string holding an e-mail address, replaced
/// by `"[redacted]"` at any depth; anything else (not JSON, or a bare JSON scalar) replaced
/// whole by `{"redacted":true,"bytes":N}`. Also returns the texts it removed.
pub(crate) fn redact_payload(payload: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut removed = Vec::new();
    match serde_json::from_slice::<Value>(payload) {
        Ok(mut value @ (Value::Object(_) | Value::Array(_))) => {
            redact_value(&mut value, &mut removed);
            let bytes = serde_json::to_vec(&value).expect("a JSON value serializes");
            (bytes, removed)
        }
        _ => {
            let marker = serde_json::json!({ "redacted": true, "bytes": payload.len() });
            (marker.to_string().into_bytes(), removed)
        }
    }
}

fn redact_value(value: &mut Value, removed: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                if is_personal(key) && !field.is_null() {
                    collect_texts(field, removed);
                    *field = Value::String(REDACTED.into());
                } else {
                    redact_value(field, removed);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| redact_value(item, removed)),
        Value::String(text) if contains_email(text) => {
            removed.push(std::mem::replace(text, REDACTED.into()));
        }
        _ => {}
    }
}

/// Every string and number in `value`, for scrubbing them from a reason.
fn collect_texts(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::String(text) if !text.is_empty() => into.push(text.clone()),
        Value::Number(n) => into.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|item| collect_texts(item, into)),
        Value::Object(fields) => fields.values().for_each(|field| collect_texts(field, into)),
        _ => {}
    }
}

/// The personal values in `payload` (when it is JSON), for [`scrub`].
pub(crate) fn personal_values(payload: &[u8]) -> Vec<String> {
    if payload.first().is_some_and(|b| matches!(b, b'{' | b'[')) {
        redact_payload(payload).1
    } else {
        Vec::new()
    }
}

/// `text` with each of `values` and every e-mail address replaced by `[redacted]`: a reason
/// can quote a value of the payload (serde's "invalid type: string \"...\"").
pub(crate) fn scrub(text: &str, values: &[String]) -> String {
    let mut text = text.to_owned();
    for value in values {
        // Short values ("1", "a") would shred the reason; they are no one's address.
        if value.chars().count() >= 4 && text.contains(value.as_str()) {
            text = text.replace(value.as_str(), REDACTED);
        }
    }
    if !text.contains('@') {
        return text;
    }
    let is_separator = |c: char| c.is_whitespace() || "\"'`<>()[]{},;".contains(c);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_separator(c) {
            out.push_str(if contains_email(&word) {
                REDACTED
            } else {
                &word
            });
            word.clear();
            out.push(c);
        } else {
            word.push(c);
        }
    }
    out.pop(); // the space chained on
    out
}

/// Whether `text` holds something shaped like an e-mail address (`local@domain.tld`).
fn contains_email(text: &str) -> bool {
    text.match_indices('@').any(|(at, _)| {
        let (local, domain) = (&text[..at], &text[at + 1..]);
        let domain = domain.split(char::is_whitespace).next().unwrap_or_default();
        local
            .chars()
            .next_back()
            .is_some_and(|c| !c.is_whitespace())
            && domain
                .split_once('.')
                .is_some_and(|(name, tld)| !name.is_empty() && !tld.is_empty())
    })
}

/// The order id of a dead letter's payload: its top-level `order_id` field, when the
/// payload is a JSON object with a UUID there.
pub(crate) fn order_id_in(payload: &[u8]) -> Option<OrderId> {
    #[derive(serde::Deserialize)]
    struct WithOrderId {
        order_id: OrderId,
    }
    if payload.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<WithOrderId>(payload)
        .ok()
        .map(|w| w.order_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::{Command, Purchase};

    #[test]
    fn json_payloads_lose_every_personal_field_at_any_depth() {
        let mut purchase = Purchase::example();
        purchase.customer_email = "alice@example.com".into();
        purchase.shipping_address = "1 Privet Drive, Little Whinging".into();
        let command = Command::place(purchase.clone());
        let mut payload = serde_json::to_value(&command).unwrap();
        payload["notes"] = serde_json::json!([
            { "customerEmail": "bob@example.org", "phone": 5550100 },
            "write to carol@example.net",
            { "billing-address": { "street": "2 Elm St" }, "full_name": "Carol Q" },
        ]);
        let (redacted, removed) = redact_payload(&serde_json::to_vec(&payload).unwrap());
        let text = String::from_utf8(redacted.clone()).unwrap();
        for secret in [
            "alice@", "Privet", "bob@", "5550100", "carol@", "Elm St", "Carol Q",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(
                removed.iter().any(|r| r.contains(secret)),
                "{secret} not reported"
            );
        }
        let value: Value = serde_json::from_slice(&redacted).unwrap();
        assert_eq!(value["purchase"]["customer_email"], REDACTED);
        assert_eq!(value["purchase"]["shipping_address"], REDACTED);
        assert_eq!(value["notes"][2]["billing-address"], REDACTED);
        // What is not personal stays, for whoever investigates.
        assert_eq!(value["purchase"]["product"], purchase.product.as_str());
        assert_eq!(value["order_id"], command.order_id().to_string());
        assert_eq!(value["type"], "place");
    }

    #[test]
    fn other_payloads_become_a_marker() {
        for payload in [
            &b"alice@example.com ordered 3"[..],
            b"\"alice@example.com\"",
            &[0xff, 0x00, 0x13],
            b"{\"customer_email\":\"alice@example.com\"", // cut short
        ] {
            let (redacted, _) = redact_payload(payload);
            let expected = format!("{{\"bytes\":{},\"redacted\":true}}", payload.len());
            assert_eq!(String::from_utf8(redacted).unwrap(), expected);
        }
    }

    #[test]
    fn reasons_lose_quoted_values_and_addresses() {
        let values =
            personal_values(br#"{"customer_email":"alice@example.com","phone":"5550100"}"#);
        assert_eq!(
            scrub("invalid type: string \"5550100\", expected u32", &values),
            "invalid type: string \"[redacted]\", expected u32"
        );
        assert_eq!(
            scrub("unknown variant `dave@example.com`, expected `place`", &[]),
            "unknown variant `[redacted]`, expected `place`"
        );
        let plain = "missing field `event_id` at line 1 column 42";
        assert_eq!(scrub(plain, &values), plain);
        assert_eq!(scrub("a @ b and x@y", &[]), "a @ b and x@y");
    }

    #[test]
    fn the_order_id_of_a_payload() {
        let command = Command::apply(OrderId::random(), "ship");
        let payload = serde_json::to_vec(&command).unwrap();
        assert_eq!(order_id_in(&payload), Some(command.order_id()));
        assert_eq!(order_id_in(br#"{"order_id":"nope"}"#), None);
        assert_eq!(order_id_in(b"garbage"), None);
    }
}
