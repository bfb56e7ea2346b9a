//! What this network keeps in the Kademlia DHT, and the checks a node applies before it
//! stores or believes a record.
//!
//! Two namespaces exist:
//! - `/sg/node/<peer id bytes>`: a [`SignedNodeRecord`] of that peer's data-plane addresses;
//! - `/sg/blob/<32 hash bytes>`: provider records for one blob (no value, only providers).
//!
//! Kademlia runs with inbound filtering on, so nothing reaches a node's record store
//! without passing [`validate_put`]: a peer cannot fill the store with junk or replace a
//! node's record with a forged one.

use libp2p::{PeerId, kad::RecordKey};
use streamgate_protocol::{ContentHash, RecordError, SignedNodeRecord};

use crate::identity::node_key_of;

const NODE_PREFIX: &[u8] = b"/sg/node/";

/// How often a daemon re-signs and republishes its node record: well inside the record's
/// lifetime (`NODE_RECORD_TTL_SECS`), so a record found in the DHT is seldom stale.
pub const RECORD_REFRESH: std::time::Duration = std::time::Duration::from_secs(600);
const BLOB_PREFIX: &[u8] = b"/sg/blob/";

pub fn node_record_key(peer: &PeerId) -> RecordKey {
    RecordKey::new(&[NODE_PREFIX, &peer.to_bytes()].concat())
}

pub fn blob_provider_key(hash: &ContentHash) -> RecordKey {
    RecordKey::new(&[BLOB_PREFIX, hash.as_bytes()].concat())
}

/// Why an inbound DHT record was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRecord {
    #[error("DHT key is not in a StreamGate namespace")]
    UnknownNamespace,
    #[error("DHT key names a peer id that is not an Ed25519 identity")]
    BadPeerId,
    #[error("DHT record value: {0}")]
    Record(#[from] RecordError),
    #[error("DHT record for a blob key carries a value; blob keys hold provider records only")]
    ValueUnderBlobKey,
}

/// The peer a node-record key is about.
pub fn peer_of_node_key(key: &RecordKey) -> Option<PeerId> {
    let rest = key.as_ref().strip_prefix(NODE_PREFIX)?;
    PeerId::from_bytes(rest).ok()
}

/// The blob a provider key is about.
pub fn hash_of_provider_key(key: &RecordKey) -> Option<ContentHash> {
    let rest = key.as_ref().strip_prefix(BLOB_PREFIX)?;
    Some(ContentHash::from_bytes(rest.try_into().ok()?))
}

/// Checks a record a peer asks us to store, or one a query returned, at time `now`.
pub fn validate_put(
    key: &RecordKey,
    value: &[u8],
    now: u64,
) -> Result<SignedNodeRecord, InvalidRecord> {
    if hash_of_provider_key(key).is_some() {
        return Err(InvalidRecord::ValueUnderBlobKey);
    }
    let peer = peer_of_node_key(key).ok_or(InvalidRecord::UnknownNamespace)?;
    let expected = node_key_of(&peer).ok_or(InvalidRecord::BadPeerId)?;
    let record = SignedNodeRecord::decode_verified(value, now)?;
    record.verify_for(&expected, now)?;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use streamgate_protocol::NodeRecord;

    #[test]
    fn only_self_signed_node_records_are_accepted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let alice = Identity::create(&dir.path().join("a")).expect("key");
        let mallory = Identity::create(&dir.path().join("m")).expect("key");
        let record = |id: &Identity| {
            NodeRecord {
                node_key: id.public_key(),
                direct_addrs: vec![],
                relay_url: None,
                issued_at: 10,
            }
            .sign(&id.signing_key())
            .encode()
        };
        let key = node_record_key(&alice.peer_id());
        assert!(validate_put(&key, &record(&alice), 10).is_ok());
        // Mallory's valid record cannot be stored under Alice's key.
        assert!(matches!(
            validate_put(&key, &record(&mallory), 10),
            Err(InvalidRecord::Record(RecordError::WrongKey { .. }))
        ));
        assert!(matches!(
            validate_put(&key, b"garbage", 10),
            Err(InvalidRecord::Record(_))
        ));
        assert!(matches!(
            validate_put(&RecordKey::new(b"/other/x"), &record(&alice), 10),
            Err(InvalidRecord::UnknownNamespace)
        ));
        let blob = blob_provider_key(&ContentHash::of(b"x"));
        assert!(matches!(
            validate_put(&blob, b"v", 10),
            Err(InvalidRecord::ValueUnderBlobKey)
        ));
        assert_eq!(hash_of_provider_key(&blob), Some(ContentHash::of(b"x")));
    }
}
