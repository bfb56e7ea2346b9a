//! `SignedNodeRecord::decode_verified`: node records arrive in DHT answers and in gossip.
//! The input is the time of the check (8 bytes, little-endian), then the record.
//!
//! Asserts: no panic; a record that verifies re-encodes to exactly its bytes and is for
//! its own key; and a record signed here decodes back equal exactly when its shape is
//! within the limits, from its canonical encoding only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{signing_key, split_now, wire_body, with_fields_as_written};
use streamgate_protocol::{
    NodeRecord, SignedNodeRecord,
    limits::{MAX_NODE_ADDRS, MAX_RELAY_URL_BYTES},
};

fuzz_target!(|data: &[u8]| {
    let Some((now, bytes)) = split_now(data) else {
        return;
    };
    if let Ok(signed) = SignedNodeRecord::decode_verified(bytes, now) {
        assert_eq!(
            signed.encode(),
            bytes,
            "a verified record has a second encoding"
        );
        assert_eq!(signed.verify_for(&signed.record.node_key, now), Ok(()));
    }

    // The same bytes as the fields of a record, signed here (the fuzzer cannot forge).
    let body = wire_body(bytes);
    let Ok((mut record, rest)) = postcard::take_from_bytes::<NodeRecord>(body) else {
        return;
    };
    let fields = &body[..body.len() - rest.len()];
    let key_as_written = record.node_key == signing_key().verifying_key().to_bytes();
    record.node_key = signing_key().verifying_key().to_bytes();
    let within_limits = record.direct_addrs.len() <= MAX_NODE_ADDRS
        && record
            .relay_url
            .as_ref()
            .is_none_or(|url| url.len() <= MAX_RELAY_URL_BYTES);
    let signed = record.sign(signing_key());
    let at = signed.record.issued_at;
    let encoded = signed.encode();
    let decoded = SignedNodeRecord::decode_verified(&encoded, at);
    if within_limits {
        assert_eq!(decoded, Ok(signed));
    } else {
        assert!(decoded.is_err());
    }
    if key_as_written {
        let as_written = with_fields_as_written(&encoded, fields);
        if SignedNodeRecord::decode_verified(&as_written, at).is_ok() {
            assert_eq!(
                as_written, encoded,
                "a second encoding of a record verifies"
            );
        }
    }
});
