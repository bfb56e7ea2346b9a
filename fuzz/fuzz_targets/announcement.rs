//! `Announcement::decode_verified`: the gossip message a node sends when it provides new
//! content. The input is the time of the check (8 bytes, little-endian), then the message.
//!
//! Asserts: no panic; an announcement that verifies re-encodes to exactly its bytes; and
//! one whose provider record is signed here decodes back equal exactly when the record's
//! shape is within the limits, from its canonical encoding only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{
    assert_no_second_encoding, claim_for_signing, record_within_limits, signing_key, split_now,
    wire_body,
};
use streamgate_protocol::{Announcement, ContentHash, NodeRecord};

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
    let key_as_written = claim_for_signing(&mut unsigned.provider.node_key);
    let within_limits = record_within_limits(&unsigned.provider);
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
    assert_no_second_encoding(
        "an announcement",
        &encoded,
        key_as_written.then_some(fields),
        |bytes| Announcement::decode_verified(bytes, at).is_ok(),
    );
});
