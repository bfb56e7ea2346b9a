//! `SignedNodeRecord::decode_verified`: node records arrive in DHT answers and in gossip.
//! The input is the time of the check (8 bytes, little-endian), then the record.
//!
//! Asserts: no panic; a record that verifies re-encodes to exactly its bytes and is for
//! its own key; and a record signed here decodes back equal exactly when its shape is
//! within the limits, from its canonical encoding only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{
    assert_no_second_encoding, claim_for_signing, record_within_limits, signing_key, split_now,
    wire_body,
};
use streamgate_protocol::{NodeRecord, SignedNodeRecord};

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
    let key_as_written = claim_for_signing(&mut record.node_key);
    let within_limits = record_within_limits(&record);
    let signed = record.sign(signing_key());
    let at = signed.record.issued_at;
    let encoded = signed.encode();
    let decoded = SignedNodeRecord::decode_verified(&encoded, at);
    if within_limits {
        assert_eq!(decoded, Ok(signed));
    } else {
        assert!(decoded.is_err());
    }
    assert_no_second_encoding(
        "a record",
        &encoded,
        key_as_written.then_some(fields),
        |bytes| SignedNodeRecord::decode_verified(bytes, at).is_ok(),
    );
});
