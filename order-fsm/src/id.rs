//! Identifiers: of an order and of one event occurrence.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Identifier of an order: a UUID, printed in its hyphenated form.
///
/// Sources, sinks and the runner shard and key by it, so every message about one order lands on
/// the same partition and worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh random id (UUID v4).
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// An id built from 128 bits, for deterministic tests and data sets.
    pub const fn from_u128(value: u128) -> Self {
        Self(Uuid::from_u128(value))
    }

    /// The id as 128 bits.
    pub const fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// A stable 64-bit hash of the id, used to pick a shard or partition.
    pub fn shard_key(&self) -> u64 {
        let v = self.0.as_u128();
        // Fold and mix (splitmix64 finaliser) so sequential ids spread evenly.
        let mut x = (v as u64) ^ ((v >> 64) as u64);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for OrderId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ParseIdError { field: "order_id" })
    }
}

/// Identifier of one event occurrence, used to detect a redelivered event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// An id built from 128 bits.
    pub const fn from_u128(value: u128) -> Self {
        Self(Uuid::from_u128(value))
    }

    /// The id as 128 bits.
    pub const fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// The deterministic id of the automatic advance of `order` out of `version`.
    ///
    /// Two runners that schedule the same advance produce the same id, so the second one is
    /// detected as a duplicate instead of becoming a second transition.
    pub fn auto_advance(order: OrderId, version: u64) -> Self {
        let mixed = order.as_u128() ^ (u128::from(version) << 64 | 0xa5a5_u128);
        Self(Uuid::from_u128(mixed.rotate_left(17)))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for EventId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| ParseIdError { field: "event_id" })
    }
}

/// A text that is not an id (not a UUID). Converts into [`Error::InvalidField`](crate::Error)
/// naming the field, so `?` in a function returning [`Error`](crate::Error) keeps working.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseIdError {
    field: &'static str,
}

impl ParseIdError {
    /// The field the text was meant for (`order_id` or `event_id`).
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a UUID", self.field)
    }
}

impl std::error::Error for ParseIdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_parse_and_shard_evenly() {
        let id = OrderId::from_u128(42);
        assert_eq!(id.to_string().parse::<OrderId>().unwrap(), id);
        let err = "nope".parse::<OrderId>().unwrap_err();
        assert_eq!(err.field(), "order_id");
        assert!(matches!(
            crate::Error::from(err),
            crate::Error::InvalidField {
                field: "order_id",
                ..
            }
        ));
        let mut buckets = [0u32; 4];
        for i in 0..4_000u128 {
            buckets[(OrderId::from_u128(i).shard_key() % 4) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
    }
}
