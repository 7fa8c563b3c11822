//! [`ClOrdId`]: a ClOrdID held inline, not on the heap.
//!
//! Every order keeps its ClOrdIDs, every request its own, and the ClOrdID table a copy of each
//! as its key. Held as `String`s, that was four allocations per order on the FIX thread, and as
//! many frees, on cold memory, when the order left the retired window. The bound on their
//! length ([`CL_ORD_ID_LEN_MAX`]) lets them live inside whatever holds them instead.
//!
//! ```text
//!   0     1                                                     65
//!   +-----+-----------------------------------------------------+
//!   | len | bytes[0..len] (UTF-8), then zeros up to 64           |
//!   +-----+-----------------------------------------------------+
//! ```
//!
//! It hashes, compares and serializes as the text it holds, so a table keyed by it is probed
//! with borrowed text, and stored snapshots and requests read the same as before.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::CL_ORD_ID_LEN_MAX;

/// A ClOrdID (11) or OrigClOrdID (41) of at most [`CL_ORD_ID_LEN_MAX`] bytes.
#[derive(Clone)]
pub struct ClOrdId {
    len: u8,
    bytes: [u8; CL_ORD_ID_LEN_MAX],
}

/// The text given is longer than [`CL_ORD_ID_LEN_MAX`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a ClOrdID of {0} bytes, over {CL_ORD_ID_LEN_MAX}")]
pub struct ClOrdIdTooLong(pub usize);

impl ClOrdId {
    pub fn new(text: &str) -> Result<ClOrdId, ClOrdIdTooLong> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|&len| usize::from(len) <= CL_ORD_ID_LEN_MAX)
            .ok_or(ClOrdIdTooLong(text.len()))?;
        let mut bytes = [0; CL_ORD_ID_LEN_MAX];
        bytes[..text.len()].copy_from_slice(text.as_bytes());
        Ok(ClOrdId { len, bytes })
    }

    pub fn as_str(&self) -> &str {
        // The bytes are a whole `&str`'s, copied in `new` and never changed.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("a ClOrdId holds the UTF-8 text it was made from")
    }
}

impl std::ops::Deref for ClOrdId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for ClOrdId {
    fn eq(&self, other: &ClOrdId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for ClOrdId {}

impl PartialEq<str> for ClOrdId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ClOrdId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// As the text: a key made of `ClOrdId`s hashes like one made of `str`s.
impl Hash for ClOrdId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ClOrdId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl crate::message::FieldValue for ClOrdId {
    fn write_value(&self, out: &mut String) {
        out.push_str(self.as_str());
    }
}

impl Serialize for ClOrdId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A stored ClOrdID longer than the bound is refused: none was ever accepted.
impl<'de> Deserialize<'de> for ClOrdId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ClOrdId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ClOrdId::new(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn holds_text_up_to_the_bound_and_refuses_longer() {
        let longest = "é".repeat(CL_ORD_ID_LEN_MAX / 2);
        assert_eq!(ClOrdId::new(&longest).unwrap().as_str(), longest);
        assert_eq!(ClOrdId::new("").unwrap().as_str(), "");
        let over = "x".repeat(CL_ORD_ID_LEN_MAX + 1);
        assert_eq!(ClOrdId::new(&over).unwrap_err(), ClOrdIdTooLong(CL_ORD_ID_LEN_MAX + 1));
        assert!(ClOrdId::new(&"x".repeat(300)).is_err(), "a length past u8 is refused too");
    }

    #[test]
    fn hashes_compares_and_serializes_as_its_text() {
        let id = ClOrdId::new("order-17").unwrap();
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(hasher.hash_one(&id), hasher.hash_one("order-17"));
        assert_eq!(id, *"order-17");
        assert_ne!(id, ClOrdId::new("order-1").unwrap());
        assert_eq!(serde_json::to_string(&id).unwrap(), r#""order-17""#);
        let back: ClOrdId = serde_json::from_str(r#""order-17""#).unwrap();
        assert_eq!(back, id);
        let escaped: ClOrdId = serde_json::from_str(r#""a\"b""#).unwrap();
        assert_eq!(escaped.as_str(), "a\"b");
        let long = format!("\"{}\"", "x".repeat(CL_ORD_ID_LEN_MAX + 1));
        assert!(serde_json::from_str::<ClOrdId>(&long).is_err());
    }
}
