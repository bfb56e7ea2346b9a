//! `SignedWorkerAdvert::decode_verified`: the gossip message of a volunteered worker. The
//! input is the time of the check (8 bytes, little-endian), then the advert.
//!
//! Asserts: no panic; an advert that verifies re-encodes to exactly its bytes and is valid
//! at that time; and an advert signed here decodes back equal exactly when its shape is
//! within the limits, from its canonical encoding only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{
    advert_within_limits, assert_no_second_encoding, claim_for_signing, signing_key, split_now,
    wire_body,
};
use streamgate_protocol::worker::{SignedWorkerAdvert, WorkerAdvert};

fuzz_target!(|data: &[u8]| {
    let Some((now, bytes)) = split_now(data) else {
        return;
    };
    if let Ok(signed) = SignedWorkerAdvert::decode_verified(bytes, now) {
        assert_eq!(
            signed.encode(),
            bytes,
            "a verified advert has a second encoding"
        );
        assert!(
            signed.advert.expires_at() >= now,
            "an expired advert verified"
        );
    }

    // The same bytes as the fields of an advert, signed here (the fuzzer cannot forge).
    let body = wire_body(bytes);
    let Ok((mut advert, rest)) = postcard::take_from_bytes::<WorkerAdvert>(body) else {
        return;
    };
    let fields = &body[..body.len() - rest.len()];
    let key_as_written = claim_for_signing(&mut advert.node_key);
    let within_limits = advert_within_limits(&advert);
    let signed = advert.sign(signing_key());
    let at = signed.advert.issued_at;
    let encoded = signed.encode();
    let decoded = SignedWorkerAdvert::decode_verified(&encoded, at);
    if within_limits && encoded.len() <= streamgate_protocol::limits::MAX_WORKER_ADVERT_BYTES {
        assert_eq!(decoded, Ok(signed));
    } else {
        assert!(decoded.is_err());
    }
    assert_no_second_encoding(
        "an advert",
        &encoded,
        key_as_written.then_some(fields),
        |bytes| SignedWorkerAdvert::decode_verified(bytes, at).is_ok(),
    );
});
