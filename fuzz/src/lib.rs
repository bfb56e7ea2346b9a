//! What the fuzz targets share: how a target's input carries the clock, and the key that
//! signs what a target builds from its input.

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;

/// The clock of the seed corpus: every seed record was issued at this time.
pub const SEED_NOW: u64 = 1_800_000_000;

/// Splits an input into the time a decoder is called at (the first 8 bytes, little-endian)
/// and the bytes it decodes, so the fuzzer explores the validity window too.
pub fn split_now(data: &[u8]) -> Option<(u64, &[u8])> {
    let (now, rest) = data.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*now), rest))
}

/// The inverse of [`split_now`], for writing seeds.
pub fn with_now(now: u64, bytes: &[u8]) -> Vec<u8> {
    [&now.to_le_bytes()[..], bytes].concat()
}

/// Signs every record and manifest a target makes from its input, so that the checks
/// behind the signature are reached (the fuzzer cannot forge signatures).
pub fn signing_key() -> &'static SigningKey {
    static KEY: LazyLock<SigningKey> = LazyLock::new(|| SigningKey::from_bytes(&[7; 32]));
    &KEY
}

/// The postcard body of a versioned wire message: everything after its version byte.
pub fn wire_body(data: &[u8]) -> &[u8] {
    data.get(1..).unwrap_or_default()
}

/// How the signature ends every signed message: its length as a varint (64), then its bytes.
pub const SIGNATURE_ENCODING_LEN: usize = 1 + 64;

/// `encoded` (a signed message's canonical encoding) with its fields as the input wrote
/// them: the version byte, `fields`, then the signature. The signature covers the fields'
/// canonical encoding, so this verifies exactly when the decoder takes `fields` for their
/// canonical encoding, which a target asserts must be `fields` itself.
pub fn with_fields_as_written(encoded: &[u8], fields: &[u8]) -> Vec<u8> {
    let signature = &encoded[encoded.len() - SIGNATURE_ENCODING_LEN..];
    [&encoded[..1], fields, signature].concat()
}
