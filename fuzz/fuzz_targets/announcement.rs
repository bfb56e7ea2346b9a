//! `Announcement::decode_verified`: the gossip message a node sends when it provides new
//! content. The input is the time of the check (8 bytes, little-endian), then the message.
//!
//! Asserts: no panic; an announcement that verifies re-encodes to exactly its bytes; and
//! one whose provider record is signed here decodes back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{signing_key, split_now, wire_body};
use streamgate_protocol::{
    Announcement, NodeRecord,
    limits::{MAX_NODE_ADDRS, MAX_RELAY_URL_BYTES},
};

/// An announcement's fields, the provider's record not yet signed.
#[derive(serde::Deserialize)]
struct Unsigned {
    hash: streamgate_protocol::ContentHash,
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

    let Ok((mut unsigned, _)) = postcard::take_from_bytes::<Unsigned>(wire_body(bytes)) else {
        return;
    };
    unsigned.provider.node_key = signing_key().verifying_key().to_bytes();
    let within_limits = unsigned.provider.direct_addrs.len() <= MAX_NODE_ADDRS
        && unsigned
            .provider
            .relay_url
            .as_ref()
            .is_none_or(|url| url.len() <= MAX_RELAY_URL_BYTES);
    let announcement = Announcement {
        hash: unsigned.hash,
        size: unsigned.size,
        provider: unsigned.provider.sign(signing_key()),
    };
    let decoded = Announcement::decode_verified(
        &announcement.encode(),
        announcement.provider.record.issued_at,
    );
    if within_limits {
        assert_eq!(decoded, Ok(announcement));
    } else {
        assert!(decoded.is_err());
    }
});
