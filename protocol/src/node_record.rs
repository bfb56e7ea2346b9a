//! The signed record a node publishes about where its data plane can be reached.
//!
//! A node's one Ed25519 key is both its libp2p PeerId and its iroh NodeId, so the record
//! is signed with that key and names it. A fetcher that finds a provider's PeerId in the
//! DHT looks the record up, checks the signature and the validity window, and dials the
//! listed addresses expecting that exact key: iroh's TLS handshake authenticates it, so a
//! forged or stale record can at worst waste a dial, never redirect to an impostor.

use std::net::SocketAddr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    limits::{
        MAX_CLOCK_SKEW_SECS, MAX_NODE_ADDRS, MAX_NODE_RECORD_BYTES, MAX_RELAY_URL_BYTES,
        NODE_RECORD_TTL_SECS,
    },
    wire::{self, DecodeError},
};

const VERSION: u8 = 1;
/// Domain separation: a signature over a node record can never be replayed as a signature
/// over any other StreamGate message, or the other way round.
const SIGNING_DOMAIN: &[u8] = b"streamgate/node-record/v1\0";

/// Where a node's data plane (iroh) listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's Ed25519 public key (its PeerId and its iroh NodeId).
    pub node_key: [u8; 32],
    /// Direct UDP addresses of the iroh endpoint.
    pub direct_addrs: Vec<SocketAddr>,
    /// The iroh relay the node is reachable through, if it uses one.
    pub relay_url: Option<String>,
    /// Seconds since the Unix epoch when the node signed this record.
    pub issued_at: u64,
}

/// A [`NodeRecord`] with its signature, as it travels in DHT records and gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedNodeRecord {
    pub record: NodeRecord,
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// Why a node record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("node record lists {0} addresses; at most {MAX_NODE_ADDRS} are allowed")]
    TooManyAddrs(usize),
    #[error("node record relay URL is {0} bytes; at most {MAX_RELAY_URL_BYTES} are allowed")]
    RelayUrlTooLong(usize),
    #[error("node record key is not a valid Ed25519 public key")]
    BadKey,
    #[error("node record signature does not verify against its key")]
    BadSignature,
    #[error(
        "node record was issued {0} s in the future; clocks may differ by at most {MAX_CLOCK_SKEW_SECS} s"
    )]
    FromTheFuture(u64),
    #[error("node record expired {0} s ago")]
    Expired(u64),
    #[error("node record is for key {found}, not for the expected {expected}")]
    WrongKey { expected: String, found: String },
}

impl NodeRecord {
    /// Signs the record with `key`, which must be the key the record names.
    pub fn sign(self, key: &SigningKey) -> SignedNodeRecord {
        debug_assert_eq!(key.verifying_key().to_bytes(), self.node_key);
        let signature = key.sign(&signing_input(&self)).to_bytes();
        SignedNodeRecord {
            record: self,
            signature,
        }
    }

    fn check_shape(&self) -> Result<(), RecordError> {
        if self.direct_addrs.len() > MAX_NODE_ADDRS {
            return Err(RecordError::TooManyAddrs(self.direct_addrs.len()));
        }
        if let Some(url) = &self.relay_url
            && url.len() > MAX_RELAY_URL_BYTES
        {
            return Err(RecordError::RelayUrlTooLong(url.len()));
        }
        Ok(())
    }
}

impl SignedNodeRecord {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes and fully verifies a record received from the network at time `now`
    /// (seconds since the Unix epoch).
    pub fn decode_verified(bytes: &[u8], now: u64) -> Result<Self, RecordError> {
        let signed: Self = wire::decode("node record", VERSION, MAX_NODE_RECORD_BYTES, bytes)?;
        signed.verify(now)?;
        Ok(signed)
    }

    /// Checks shape, signature and validity window at time `now`.
    pub fn verify(&self, now: u64) -> Result<(), RecordError> {
        self.record.check_shape()?;
        let key =
            VerifyingKey::from_bytes(&self.record.node_key).map_err(|_| RecordError::BadKey)?;
        key.verify_strict(
            &signing_input(&self.record),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| RecordError::BadSignature)?;
        let issued = self.record.issued_at;
        if issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(RecordError::FromTheFuture(issued - now));
        }
        let expires = issued.saturating_add(NODE_RECORD_TTL_SECS);
        if now > expires {
            return Err(RecordError::Expired(now - expires));
        }
        Ok(())
    }

    /// Like [`Self::verify`], and also requires the record to be for `expected_key`.
    pub fn verify_for(&self, expected_key: &[u8; 32], now: u64) -> Result<(), RecordError> {
        if &self.record.node_key != expected_key {
            return Err(RecordError::WrongKey {
                expected: hex::encode(expected_key),
                found: hex::encode(self.record.node_key),
            });
        }
        self.verify(now)
    }
}

fn signing_input(record: &NodeRecord) -> Vec<u8> {
    let mut input = SIGNING_DOMAIN.to_vec();
    input.extend_from_slice(&wire::encode(VERSION, record));
    input
}

/// serde has no impls for `[u8; 64]`; encode it as a byte string.
pub(crate) mod signature_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(bytes: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let bytes: &[u8] = Deserialize::deserialize(d)?;
        bytes
            .try_into()
            .map_err(|_| D::Error::invalid_length(bytes.len(), &"64 signature bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn record(key: &SigningKey) -> NodeRecord {
        NodeRecord {
            node_key: key.verifying_key().to_bytes(),
            direct_addrs: vec!["127.0.0.1:4433".parse().expect("valid addr")],
            relay_url: Some("http://127.0.0.1:3340/".into()),
            issued_at: NOW,
        }
    }

    #[test]
    fn signed_record_round_trips_and_verifies() {
        let k = key(1);
        let signed = record(&k).sign(&k);
        let bytes = signed.encode();
        assert!(bytes.len() < MAX_NODE_RECORD_BYTES);
        let back = SignedNodeRecord::decode_verified(&bytes, NOW + 10).expect("valid record");
        assert_eq!(back, signed);
        back.verify_for(&k.verifying_key().to_bytes(), NOW)
            .expect("right key");
    }

    #[test]
    fn tampering_is_caught() {
        let k = key(1);
        let mut signed = record(&k).sign(&k);
        signed.record.direct_addrs = vec!["10.0.0.1:1".parse().expect("valid addr")];
        assert_eq!(signed.verify(NOW), Err(RecordError::BadSignature));
    }

    #[test]
    fn record_signed_by_another_key_is_refused() {
        let (k1, k2) = (key(1), key(2));
        // Claims k1's identity but carries k2's signature.
        let forged = SignedNodeRecord {
            record: record(&k1),
            signature: k2.sign(&signing_input(&record(&k1))).to_bytes(),
        };
        assert_eq!(forged.verify(NOW), Err(RecordError::BadSignature));
        let honest = record(&k2).sign(&k2);
        assert!(matches!(
            honest.verify_for(&k1.verifying_key().to_bytes(), NOW),
            Err(RecordError::WrongKey { .. })
        ));
    }

    #[test]
    fn validity_window_is_enforced() {
        let k = key(3);
        let signed = record(&k).sign(&k);
        assert!(matches!(
            signed.verify(NOW - MAX_CLOCK_SKEW_SECS - 5),
            Err(RecordError::FromTheFuture(_))
        ));
        assert!(matches!(
            signed.verify(NOW + NODE_RECORD_TTL_SECS + 1),
            Err(RecordError::Expired(1))
        ));
    }

    #[test]
    fn shape_limits_are_enforced() {
        let k = key(4);
        let mut r = record(&k);
        r.direct_addrs = vec!["127.0.0.1:1".parse().expect("valid addr"); MAX_NODE_ADDRS + 1];
        assert_eq!(
            r.clone().sign(&k).verify(NOW),
            Err(RecordError::TooManyAddrs(MAX_NODE_ADDRS + 1))
        );
    }

    #[test]
    fn oversized_and_versioned_input_is_refused() {
        let big = vec![VERSION; MAX_NODE_RECORD_BYTES + 1];
        assert!(matches!(
            SignedNodeRecord::decode_verified(&big, NOW),
            Err(RecordError::Decode(DecodeError::TooLarge { .. }))
        ));
        let k = key(5);
        let mut bytes = record(&k).sign(&k).encode();
        bytes[0] = 9;
        assert!(matches!(
            SignedNodeRecord::decode_verified(&bytes, NOW),
            Err(RecordError::Decode(DecodeError::UnsupportedVersion {
                found: 9,
                ..
            }))
        ));
        let mut trailing = record(&k).sign(&k).encode();
        trailing.push(0);
        assert!(matches!(
            SignedNodeRecord::decode_verified(&trailing, NOW),
            Err(RecordError::Decode(DecodeError::TrailingBytes { .. }))
        ));
    }

    /// Found by the `node_record` fuzz target: a signed record with its issue time 0 written
    /// as the padded varint `80 00` verified, so one record had two encodings.
    #[test]
    fn a_second_encoding_of_a_signed_record_is_refused() {
        let k = key(7);
        let mut r = record(&k);
        r.direct_addrs.clear();
        r.relay_url = None;
        r.issued_at = 0;
        let canonical = r.sign(&k).encode();
        // Version, key, no addresses, no relay, then the issue time.
        assert_eq!(canonical[1 + 32..1 + 32 + 3], [0, 0, 0]);
        let at = 1 + 32 + 2;
        let padded = [&canonical[..at], &[0x80, 0x00], &canonical[at + 1..]].concat();
        assert_eq!(
            SignedNodeRecord::decode_verified(&padded, 0),
            Err(RecordError::Decode(DecodeError::NonCanonical {
                what: "node record"
            }))
        );
        assert!(SignedNodeRecord::decode_verified(&canonical, 0).is_ok());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let _ = SignedNodeRecord::decode_verified(&bytes, NOW);
        }

        #[test]
        fn flipping_any_byte_invalidates(index in 0usize..200, bit in 0u8..8) {
            let k = key(6);
            let mut bytes = record(&k).sign(&k).encode();
            let i = index % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(SignedNodeRecord::decode_verified(&bytes, NOW).is_err());
        }
    }
}
