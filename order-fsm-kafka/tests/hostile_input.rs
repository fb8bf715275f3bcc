//! The command codecs (JSON and protobuf) against hostile bytes (proptest, a bounded number of cases in the
//! normal test run): whatever a producer puts on the commands topic, decoding never panics
//! and every refusal is a typed `Error::Decode` (which the source dead-letters with its
//! reason); what does decode is a command that encodes again.

use order_fsm::{Command, Error, Purchase};
use order_fsm_kafka::{CommandCodec, JsonCodec, ProtoCodec};
use proptest::prelude::*;

/// The codecs under test, by index.
const CODECS: [&dyn CommandCodec; 2] = [&JsonCodec, &ProtoCodec];

/// Valid JSON encodings of a few commands, to mutate.
fn valid_payloads() -> Vec<Vec<u8>> {
    valid_payloads_in(&JsonCodec)
}

/// Valid encodings of a few commands by `codec`, to mutate.
fn valid_payloads_in(codec: &dyn CommandCodec) -> Vec<Vec<u8>> {
    let placed = Command::place(Purchase::example());
    let id = placed.order_id();
    [
        placed,
        Command::apply(id, "prepare"),
        Command::apply(id, "cancel"),
    ]
    .iter()
    .map(|c| codec.encode(c).unwrap())
    .collect()
}

/// Decodes `payload` with the JSON codec (see [`decode_is_total_in`]).
fn decode_is_total(payload: &[u8]) -> Result<(), TestCaseError> {
    decode_is_total_in(&JsonCodec, payload)
}

/// Decodes `payload`: a command that round-trips, or a typed refusal.
fn decode_is_total_in(codec: &dyn CommandCodec, payload: &[u8]) -> Result<(), TestCaseError> {
    match codec.decode(payload) {
        Ok(command) => {
            let again = codec.encode(&command).expect("a decoded command encodes");
            prop_assert_eq!(codec.decode(&again).expect("and decodes again"), command);
        }
        Err(Error::Decode { reason }) => prop_assert!(!reason.is_empty()),
        Err(other) => prop_assert!(false, "untyped refusal {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_decode_or_are_refused(payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        for codec in CODECS {
            decode_is_total_in(codec, &payload)?;
        }
    }

    #[test]
    fn mutated_commands_decode_or_are_refused(
        codec in 0usize..2,
        which in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let codec = CODECS[codec];
        let mut payload = valid_payloads_in(codec).swap_remove(which);
        for (at, byte) in edits {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        if truncate {
            payload.truncate(cut.index(payload.len()));
        }
        decode_is_total_in(codec, &payload)?;
    }

    #[test]
    fn json_with_hostile_values_decodes_or_is_refused(
        text in "\\PC{0,64}",
        number in any::<f64>(),
        big in any::<i64>(),
    ) {
        // Every field of a placement replaced in turn by a string, a float and an integer.
        let valid: serde_json::Value =
            serde_json::from_slice(&valid_payloads()[0]).unwrap();
        let fields: Vec<String> = valid["purchase"].as_object().unwrap().keys().cloned().collect();
        for field in fields {
            for value in [
                serde_json::json!(text),
                serde_json::json!(number),
                serde_json::json!(big),
                serde_json::Value::Null,
            ] {
                let mut hostile = valid.clone();
                hostile["purchase"][&field] = value;
                decode_is_total(&serde_json::to_vec(&hostile).unwrap())?;
            }
        }
    }
}
