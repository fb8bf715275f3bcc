//! How commands and transition records are turned into message payloads and back, and the
//! header that names the format of each message.

use std::str::FromStr;

use order_fsm::{Command, Error, StateRecord, TransitionRecord};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

/// Header naming the encoding of a command, transition record or state record's payload: `json` or
/// `proto` ([`WireFormat::header_value`]), and for several transition records in one
/// message ([`crate::KafkaConfig::with_packed_transitions`]) `json-pack` (a JSON array) or
/// `proto-pack` (`order_fsm.v1.TransitionPack`). Every producer of this crate sets it; a
/// reader decodes each message by its header, so formats can share a topic while producers
/// switch, and a message without the header is read as one record in the reader's
/// configured format (what older producers and other clients write).
pub const HEADER_FORMAT: &str = "ofsm-format";

/// The suffix of [`HEADER_FORMAT`] values of packs.
const PACK_SUFFIX: &str = "-pack";

/// The encoding of commands, transition records and state records on the wire
/// ([`crate::KafkaConfig::with_wire_format`]).
///
/// Switching a deployment to [`WireFormat::Protobuf`]: upgrade every reader (workers,
/// followers, other consumers of the transitions topic) first, since readers of this
/// version read both formats; then switch the producers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// JSON, [`Command`]'s and [`TransitionRecord`]'s serde form (the default).
    #[default]
    Json,
    /// Protobuf, the messages `order_fsm.v1.CommandRecord`, `TransitionRecord` and
    /// `StateRecord` of `order-fsm-proto` (which reuse the gRPC service's `Purchase` and
    /// `Transition`).
    Protobuf,
}

impl WireFormat {
    /// The value of [`HEADER_FORMAT`] for this format: `json` or `proto`.
    pub const fn header_value(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "proto",
        }
    }

    /// The format named by a message's [`HEADER_FORMAT`] header, and whether the message is
    /// a pack; `None` without the header.
    ///
    /// # Errors
    /// [`Error::Decode`] naming a header value this version does not know.
    pub(crate) fn named_by(message: &BorrowedMessage<'_>) -> Result<Option<(Self, bool)>, Error> {
        let named = message.headers().and_then(|headers| {
            headers
                .iter()
                .find(|h| h.key == HEADER_FORMAT)
                .and_then(|h| h.value)
        });
        let Some(value) = named else {
            return Ok(None);
        };
        let parse = |text: &str| match text.strip_suffix(PACK_SUFFIX) {
            Some(format) => format.parse().ok().map(|f| (f, true)),
            None => text.parse().ok().map(|f| (f, false)),
        };
        std::str::from_utf8(value)
            .ok()
            .and_then(parse)
            .map(Some)
            .ok_or_else(|| Error::Decode {
                reason: format!(
                    "unknown wire format `{}` in header `{HEADER_FORMAT}`",
                    String::from_utf8_lossy(&value[..value.len().min(64)])
                ),
            })
    }

    /// Headers holding [`HEADER_FORMAT`] for a pack in this format, with room for `more`.
    pub(crate) fn pack_headers(self, more: usize) -> OwnedHeaders {
        format_headers(&format!("{}{PACK_SUFFIX}", self.header_value()), more)
    }

    /// The payload of a pack of `records` in this format.
    pub(crate) fn encode_pack(self, records: &[&TransitionRecord]) -> Result<Vec<u8>, Error> {
        match self {
            Self::Json => serde_json::to_vec(records).map_err(json_error),
            Self::Protobuf => Ok(order_fsm_proto::encode_transition_pack(
                records.iter().copied(),
            )),
        }
    }

    /// The transition records in a pack of this format.
    fn decode_pack(self, payload: &[u8]) -> Result<Vec<TransitionRecord>, Error> {
        match self {
            Self::Json => serde_json::from_slice(payload).map_err(json_error),
            Self::Protobuf => order_fsm_proto::decode_transition_pack(payload),
        }
    }

    /// Headers holding [`HEADER_FORMAT`] for this format, with room for `more`.
    pub(crate) fn headers(self, more: usize) -> OwnedHeaders {
        format_headers(self.header_value(), more)
    }

    /// The payload of `record` in this format.
    pub(crate) fn encode_transition(self, record: &TransitionRecord) -> Result<Vec<u8>, Error> {
        match self {
            Self::Json => serde_json::to_vec(record).map_err(json_error),
            Self::Protobuf => Ok(order_fsm_proto::encode_transition(record)),
        }
    }

    /// The transition record in a payload of this format.
    pub(crate) fn decode_transition(self, payload: &[u8]) -> Result<TransitionRecord, Error> {
        match self {
            Self::Json => serde_json::from_slice(payload).map_err(json_error),
            Self::Protobuf => order_fsm_proto::decode_transition(payload),
        }
    }

    /// The payload of a state record (the state topic, ADR 4) in this format.
    pub(crate) fn encode_state(self, record: &StateRecord) -> Result<Vec<u8>, Error> {
        match self {
            Self::Json => serde_json::to_vec(record).map_err(json_error),
            Self::Protobuf => Ok(order_fsm_proto::encode_state(record)),
        }
    }

    /// The state record in a payload of this format.
    pub(crate) fn decode_state(self, payload: &[u8]) -> Result<StateRecord, Error> {
        match self {
            Self::Json => serde_json::from_slice(payload).map_err(json_error),
            Self::Protobuf => order_fsm_proto::decode_state(payload),
        }
    }

    /// The built-in codec of this format, to keep.
    pub(crate) fn shared_codec(self) -> std::sync::Arc<dyn CommandCodec> {
        match self {
            Self::Json => std::sync::Arc::new(JsonCodec),
            Self::Protobuf => std::sync::Arc::new(ProtoCodec),
        }
    }

    /// The built-in codec of this format.
    pub(crate) fn codec(self) -> &'static dyn CommandCodec {
        match self {
            Self::Json => &JsonCodec,
            Self::Protobuf => &ProtoCodec,
        }
    }
}

/// Headers holding [`HEADER_FORMAT`] = `value`, with room for `more`.
fn format_headers(value: &str, more: usize) -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(1 + more).insert(Header {
        key: HEADER_FORMAT,
        value: Some(value),
    })
}

/// A JSON (de)serialization failure, as the decode error sources dead-letter with.
fn json_error(e: serde_json::Error) -> Error {
    Error::Decode {
        reason: e.to_string(),
    }
}

impl FromStr for WireFormat {
    type Err = Error;

    /// `json`, or `proto` / `protobuf`, in any case.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "proto" | "protobuf" => Ok(Self::Protobuf),
            _ => Err(Error::invalid_field(
                "wire_format",
                format!("{s:?} is neither `json` nor `proto`"),
            )),
        }
    }
}

impl std::fmt::Display for WireFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.header_value())
    }
}

/// Encodes and decodes commands as message payloads.
///
/// # Contract
/// `decode(encode(c)) == c` for every command. `decode` fails with [`Error::Decode`] on
/// input it cannot read; the source then sends the message to the dead-letter topic. Both
/// run on the source's polling thread and must not block. [`CommandCodec::format`] names
/// the format in each message's [`HEADER_FORMAT`] header; a message whose header names
/// another built-in format is decoded by that format's codec instead.
pub trait CommandCodec: Send + Sync + 'static {
    /// The payload of `command`.
    ///
    /// # Errors
    /// [`Error::InvalidField`] or [`Error::Decode`] when the command cannot be represented.
    fn encode(&self, command: &Command) -> Result<Vec<u8>, Error>;

    /// The command in `payload`.
    ///
    /// # Errors
    /// [`Error::Decode`] with a reason for the dead-letter header.
    fn decode(&self, payload: &[u8]) -> Result<Command, Error>;

    /// The built-in format this codec writes, named in the [`HEADER_FORMAT`] header; `None`
    /// (the default) for a format of its own: messages then carry no format header.
    fn format(&self) -> Option<WireFormat> {
        None
    }
}

/// JSON, the format of [`Command`]'s serde representation (`{"type":"place",...}`).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl CommandCodec for JsonCodec {
    fn encode(&self, command: &Command) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(command).map_err(json_error)
    }

    fn decode(&self, payload: &[u8]) -> Result<Command, Error> {
        serde_json::from_slice(payload).map_err(json_error)
    }

    fn format(&self) -> Option<WireFormat> {
        Some(WireFormat::Json)
    }
}

/// Protobuf, the message `order_fsm.v1.CommandRecord` of `order-fsm-proto`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProtoCodec;

impl CommandCodec for ProtoCodec {
    fn encode(&self, command: &Command) -> Result<Vec<u8>, Error> {
        order_fsm_proto::encode_command(command)
    }

    fn decode(&self, payload: &[u8]) -> Result<Command, Error> {
        order_fsm_proto::decode_command(payload)
    }

    fn format(&self) -> Option<WireFormat> {
        Some(WireFormat::Protobuf)
    }
}

/// The command in `message`: by `codec`, unless the message's [`HEADER_FORMAT`] header
/// names another built-in format.
pub(crate) fn decode_command(
    codec: &dyn CommandCodec,
    message: &BorrowedMessage<'_>,
    payload: &[u8],
) -> Result<Command, Error> {
    match WireFormat::named_by(message)? {
        Some((named, true)) => Err(Error::Decode {
            reason: format!(
                "a pack of transition records (`{}{PACK_SUFFIX}`) is not a command",
                named.header_value()
            ),
        }),
        Some((named, false)) if codec.format() != Some(named) => named.codec().decode(payload),
        _ => codec.decode(payload),
    }
}

/// The transition records in `message` (one, or a pack's), in the format its header names
/// (one record in `default` without the header).
pub(crate) fn decode_transitions(
    message: &BorrowedMessage<'_>,
    default: WireFormat,
    payload: &[u8],
) -> Result<Vec<TransitionRecord>, Error> {
    match WireFormat::named_by(message)?.unwrap_or((default, false)) {
        (format, true) => format.decode_pack(payload),
        (format, false) => Ok(vec![format.decode_transition(payload)?]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::Purchase;

    #[test]
    fn both_codecs_round_trip_and_reject_the_other_format() {
        let command = Command::place(Purchase::example());
        let json = JsonCodec.encode(&command).unwrap();
        let proto = ProtoCodec.encode(&command).unwrap();
        assert_eq!(JsonCodec.decode(&json).unwrap(), command);
        assert_eq!(ProtoCodec.decode(&proto).unwrap(), command);
        assert!(matches!(
            JsonCodec.decode(&proto),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            ProtoCodec.decode(&json),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            JsonCodec.decode(b"{\"type\":\"launch\"}"),
            Err(Error::Decode { .. })
        ));
        assert!(JsonCodec.decode(&[0xff, 0x00, 0x13]).is_err());
    }

    #[test]
    fn formats_parse_from_their_names_and_nothing_else() {
        for format in [WireFormat::Json, WireFormat::Protobuf] {
            assert_eq!(format.header_value().parse::<WireFormat>().unwrap(), format);
            assert_eq!(format.to_string().parse::<WireFormat>().unwrap(), format);
        }
        assert_eq!(
            "Protobuf".parse::<WireFormat>().unwrap(),
            WireFormat::Protobuf
        );
        match "avro".parse::<WireFormat>() {
            Err(Error::InvalidField { field, reason }) => {
                assert_eq!(field, "wire_format");
                assert!(reason.contains("avro"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn transition_records_round_trip_in_both_formats() {
        let engine = order_fsm::Engine::new(order_fsm::Lifecycle::ecommerce());
        let order = engine.place(
            order_fsm::OrderId::from_u128(3),
            Purchase::example().into(),
            order_fsm::Timestamp::from_micros(42),
        );
        let record = TransitionRecord::placed(engine.lifecycle(), &order);
        for format in [WireFormat::Json, WireFormat::Protobuf] {
            let bytes = format.encode_transition(&record).unwrap();
            assert_eq!(format.decode_transition(&bytes).unwrap(), record);
            let records = vec![record.clone(), record.clone()];
            let pack = format
                .encode_pack(&records.iter().collect::<Vec<_>>())
                .unwrap();
            assert_eq!(format.decode_pack(&pack).unwrap(), records);
            assert!(
                format.decode_transition(&pack).is_err(),
                "a pack is not one record"
            );
        }
    }
}
