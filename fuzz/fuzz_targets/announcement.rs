//! `Announcement::decode_verified`: the gossip message a node sends when it provides new
//! content. The input is the time of the check (8 bytes, little-endian), then the message.
//!
//! Asserts: no panic; an announcement that verifies re-encodes to exactly its bytes; and
//! one whose provider record is signed here decodes back equal exactly when the record's
//! shape is within the limits, from its canonical encoding only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{signing_key, split_now, wire_body, with_fields_as_written};
use streamgate_protocol::{
    Announcement, ContentHash, NodeRecord,
    limits::{MAX_NODE_ADDRS, MAX_RELAY_URL_BYTES},
};

/// An announcement's fields up to the provider record's signature, as they are encoded.
#[derive(serde::Deserialize)]
struct Unsigned {
    hash: ContentHash,
    size: u64,
    provider: NodeRecord,
}

fuzz_target!(|data: &[u8]| {
    let Some((now, bytes)) = split_now(data) else {
        return;
    };
    if let Ok(announcement) = Announcement::decode_verified(bytes, now) {
        assert_eq!(
            announcement.encode(),
            bytes,
            "a verified announcement has a second encoding"
        );
    }

    // The same bytes as the fields of an announcement, its provider record signed here.
    let body = wire_body(bytes);
    let Ok((mut unsigned, rest)) = postcard::take_from_bytes::<Unsigned>(body) else {
        return;
    };
    let fields = &body[..body.len() - rest.len()];
    let provider = &mut unsigned.provider;
    let key_as_written = provider.node_key == signing_key().verifying_key().to_bytes();
    provider.node_key = signing_key().verifying_key().to_bytes();
    let within_limits = provider.direct_addrs.len() <= MAX_NODE_ADDRS
        && provider
            .relay_url
            .as_ref()
            .is_none_or(|url| url.len() <= MAX_RELAY_URL_BYTES);
    let announcement = Announcement {
        hash: unsigned.hash,
        size: unsigned.size,
        provider: unsigned.provider.sign(signing_key()),
    };
    let at = announcement.provider.record.issued_at;
    let encoded = announcement.encode();
    let decoded = Announcement::decode_verified(&encoded, at);
    if within_limits {
        assert_eq!(decoded, Ok(announcement));
    } else {
        assert!(decoded.is_err());
    }
    if key_as_written {
        let as_written = with_fields_as_written(&encoded, fields);
        if Announcement::decode_verified(&as_written, at).is_ok() {
            assert_eq!(
                as_written, encoded,
                "a second encoding of an announcement verifies"
            );
        }
    }
});
