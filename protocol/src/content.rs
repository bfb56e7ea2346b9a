//! Content ids: the BLAKE3 hash of a blob's bytes, the same hash iroh-blobs verifies.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

/// The BLAKE3 hash of a blob's bytes; every blob, segment and manifest is named by one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

/// Why a string is not a content hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseHashError {
    #[error("a content hash is 64 hexadecimal characters; got {0} characters")]
    WrongLength(usize),
    #[error("a content hash is hexadecimal; found a character that is not 0-9 or a-f")]
    NotHex,
}

impl ContentHash {
    /// Length of the hex form.
    pub const HEX_LEN: usize = 64;

    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 10 hex characters, for logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..5])
    }
}

impl FromStr for ContentHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != Self::HEX_LEN {
            return Err(ParseHashError::WrongLength(s.chars().count()));
        }
        let mut bytes = [0u8; 32];
        // Uppercase hex is accepted: people paste hashes from many tools.
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseHashError::NotHex)?;
        Ok(Self(bytes))
    }
}

/// Hex in human-readable formats (JSON), 32 raw bytes in binary ones (the wire encoding).
impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            text.parse().map_err(D::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Self)
        }
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hash_matches_blake3_reference() {
        // BLAKE3 of the empty input, from the BLAKE3 test vectors.
        assert_eq!(
            ContentHash::of(b"").to_hex(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn rejects_bad_strings_with_reasons() {
        assert_eq!(
            "abc".parse::<ContentHash>(),
            Err(ParseHashError::WrongLength(3))
        );
        let not_hex = "z".repeat(64);
        assert_eq!(not_hex.parse::<ContentHash>(), Err(ParseHashError::NotHex));
        // Multi-byte characters must not be sliced mid-character or accepted.
        let wide = "é".repeat(32);
        assert!(wide.parse::<ContentHash>().is_err());
    }

    #[test]
    fn json_uses_hex() {
        let hash = ContentHash::of(b"x");
        let json = serde_json::to_string(&hash).expect("serialise");
        assert_eq!(json, format!("\"{hash}\""));
        assert_eq!(
            serde_json::from_str::<ContentHash>(&json).expect("parse"),
            hash
        );
        assert!(serde_json::from_str::<ContentHash>("\"zz\"").is_err());
    }

    proptest! {
        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            let hash = ContentHash::from_bytes(bytes);
            prop_assert_eq!(hash.to_hex().parse::<ContentHash>(), Ok(hash));
            prop_assert_eq!(hash.to_hex().to_uppercase().parse::<ContentHash>(), Ok(hash));
        }

        #[test]
        fn parsing_never_panics(s in ".{0,80}") {
            let _ = s.parse::<ContentHash>();
        }
    }
}

/// serde for 32-byte keys: hex in human-readable formats (JSON), the plain array in the
/// wire encoding.
pub(crate) mod hex_key {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(key: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(key))
        } else {
            key.serialize(s)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            let mut key = [0u8; 32];
            hex::decode_to_slice(&text, &mut key).map_err(D::Error::custom)?;
            Ok(key)
        } else {
            <[u8; 32]>::deserialize(d)
        }
    }
}
