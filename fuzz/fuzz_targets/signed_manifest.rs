//! `SignedManifest::decode_verified`: manifests arrive from other nodes, fetched by id.
//!
//! Asserts: no panic; a manifest that verifies re-encodes to exactly the bytes it came in
//! (its id is the hash of those bytes, so a second encoding would be a second id for the
//! same signed manifest); and any manifest that validates, once signed, decodes back equal
//! and survives JSON (the API's `ManifestView`) unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::{assert_no_second_encoding, signing_key, wire_body};
use streamgate_protocol::{ContentHash, Manifest, SignedManifest};

fuzz_target!(|data: &[u8]| {
    if let Ok(signed) = SignedManifest::decode_verified(data) {
        assert_eq!(
            signed.encode(),
            data,
            "a verified manifest has a second encoding"
        );
        assert_eq!(signed.id(), ContentHash::of(data));
        let _ = signed.manifest.key_binding();
    }

    // The same bytes as the fields of a manifest, signed here: the fuzzer cannot forge
    // signatures, so this is how it reaches the checks behind them.
    let body = wire_body(data);
    let Ok((mut manifest, rest)) = postcard::take_from_bytes::<Manifest>(body) else {
        return;
    };
    let fields = &body[..body.len() - rest.len()];
    let creator_as_written = manifest.creator == signing_key().verifying_key().to_bytes();
    manifest.creator = signing_key().verifying_key().to_bytes();
    let valid = manifest.validate();
    let signed = manifest.sign(signing_key());
    let encoded = signed.encode();
    let decoded = SignedManifest::decode_verified(&encoded);
    match valid {
        Ok(()) => {
            assert_eq!(decoded.as_ref(), Ok(&signed));
            let json = serde_json::to_vec(&signed.manifest).expect("a manifest serialises");
            let back: Manifest = serde_json::from_slice(&json).expect("its JSON parses back");
            assert_eq!(back, signed.manifest);
        }
        Err(invalid) => assert_eq!(decoded, Err(invalid)),
    }
    assert_no_second_encoding(
        "a manifest",
        &encoded,
        creator_as_written.then_some(fields),
        |bytes| SignedManifest::decode_verified(bytes).is_ok(),
    );
});
