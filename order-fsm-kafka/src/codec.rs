//! How commands are turned into message payloads and back.

use order_fsm::{Command, Error};

/// Encodes and decodes commands as message payloads.
///
/// # Contract
/// `decode(encode(c)) == c` for every command. `decode` fails with [`Error::Decode`] on
/// input it cannot read; the source then sends the message to the dead-letter topic. Both
/// run on the source's polling thread and must not block.
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
}

/// JSON, the format of [`Command`]'s serde representation (`{"type":"place",...}`).
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl CommandCodec for JsonCodec {
    fn encode(&self, command: &Command) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(command).map_err(|e| Error::Decode {
            reason: e.to_string(),
        })
    }

    fn decode(&self, payload: &[u8]) -> Result<Command, Error> {
        serde_json::from_slice(payload).map_err(|e| Error::Decode {
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use order_fsm::Purchase;

    #[test]
    fn json_round_trip_and_rejection() {
        let command = Command::place(Purchase::example());
        let bytes = JsonCodec.encode(&command).unwrap();
        assert_eq!(JsonCodec.decode(&bytes).unwrap(), command);
        assert!(matches!(
            JsonCodec.decode(b"{\"type\":\"launch\"}"),
            Err(Error::Decode { .. })
        ));
        assert!(JsonCodec.decode(&[0xff, 0x00, 0x13]).is_err());
    }
}
