//! The gossip message a node sends when it starts providing new content.
//!
//! It carries the provider's signed node record so that a receiver can fetch without a
//! DHT lookup. Receivers treat it as a hint: the bytes are verified against the hash when
//! fetched, and the record is verified like one found in the DHT.

use serde::{Deserialize, Serialize};

use crate::{
    ContentHash,
    limits::MAX_ANNOUNCEMENT_BYTES,
    node_record::{RecordError, SignedNodeRecord},
    wire,
};

const VERSION: u8 = 1;

/// The gossipsub topic announcements are published on.
pub const ANNOUNCE_TOPIC: &str = "streamgate/announce/1";

/// "I now provide this content."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    pub hash: ContentHash,
    /// Size in bytes as the provider claims it; the fetcher verifies it.
    pub size: u64,
    pub provider: SignedNodeRecord,
}

impl Announcement {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes an announcement and verifies its provider record at time `now`.
    pub fn decode_verified(bytes: &[u8], now: u64) -> Result<Self, RecordError> {
        let announcement: Self =
            wire::decode("announcement", VERSION, MAX_ANNOUNCEMENT_BYTES, bytes)?;
        announcement.provider.verify(now)?;
        Ok(announcement)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NodeRecord;
    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;

    /// A 7-byte segment announced by a provider whose record was issued at time 100.
    fn announcement() -> Announcement {
        let key = SigningKey::from_bytes(&[7; 32]);
        let provider = NodeRecord {
            node_key: key.verifying_key().to_bytes(),
            direct_addrs: vec![],
            relay_url: None,
            issued_at: 100,
        }
        .sign(&key);
        Announcement {
            hash: ContentHash::of(b"segment"),
            size: 7,
            provider,
        }
    }

    #[test]
    fn round_trips_and_rejects_bad_provider() {
        let a = announcement();
        assert_eq!(
            Announcement::decode_verified(&a.encode(), 100),
            Ok(a.clone())
        );
        let mut forged = a;
        forged.provider.record.issued_at = 101;
        assert_eq!(
            Announcement::decode_verified(&forged.encode(), 101),
            Err(RecordError::BadSignature)
        );
    }

    /// Found by the `announcement` fuzz target: an announcement with a padded varint
    /// verified, so one announcement had two encodings.
    #[test]
    fn a_second_encoding_is_refused() {
        let canonical = announcement().encode();
        // Version, hash, then the size: 7 written as `87 00`.
        let at = 1 + 32;
        assert_eq!(canonical[at], 7);
        let padded = [&canonical[..at], &[0x87, 0x00], &canonical[at + 1..]].concat();
        assert_eq!(
            Announcement::decode_verified(&padded, 100),
            Err(RecordError::Decode(crate::DecodeError::NonCanonical {
                what: "announcement"
            }))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = Announcement::decode_verified(&bytes, 0);
        }
    }
}
