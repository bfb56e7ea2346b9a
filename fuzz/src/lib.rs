//! What the fuzz targets share: how a target's input carries the clock, and the key that
//! signs what a target builds from its input.

use std::sync::LazyLock;

use ed25519_dalek::SigningKey;
use streamgate_protocol::{
    NodeRecord,
    limits::{MAX_NODE_ADDRS, MAX_RELAY_URL_BYTES},
    worker::{MAX_ADVERT_TTL_SECS, MAX_CODECS, MAX_GPUS, MAX_NAME_BYTES, WorkerAdvert},
};

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

/// Makes the message holding `node_key` one this target signs: puts in [`signing_key`]'s
/// public key and says whether the input had already written that key (only then are the
/// input's bytes the fields of what gets signed).
pub fn claim_for_signing(node_key: &mut [u8; 32]) -> bool {
    let ours = signing_key().verifying_key().to_bytes();
    let as_written = *node_key == ours;
    *node_key = ours;
    as_written
}

/// Whether a record's shape is within the protocol's limits, written out here rather than
/// asked of the decoder under test.
pub fn record_within_limits(record: &NodeRecord) -> bool {
    record.direct_addrs.len() <= MAX_NODE_ADDRS
        && record
            .relay_url
            .as_ref()
            .is_none_or(|url| url.len() <= MAX_RELAY_URL_BYTES)
}

/// Whether a worker advert's shape is within the protocol's limits, written out here rather
/// than asked of the decoder under test.
pub fn advert_within_limits(advert: &WorkerAdvert) -> bool {
    let name_ok = |name: &String| {
        (1..=MAX_NAME_BYTES).contains(&name.len())
            && name.bytes().all(|b| (0x20..0x7f).contains(&b))
    };
    advert.decoders.len() <= MAX_CODECS
        && advert.encoders.len() <= MAX_CODECS
        && advert.decoders.iter().chain(&advert.encoders).all(name_ok)
        && advert.gpus.len() <= MAX_GPUS
        && advert.gpus.iter().all(|g| name_ok(&g.name))
        && advert.ttl_secs <= MAX_ADVERT_TTL_SECS
        && advert.active_jobs <= advert.max_jobs
}

/// For a message signed here from the input's `fields` and `encoded` canonically: the
/// fields as the input wrote them (`Some` only when the input's key was ours, so that the
/// signature covers them) must not verify unless they are that canonical encoding.
/// `what` names the message in the failure.
pub fn assert_no_second_encoding(
    what: &str,
    encoded: &[u8],
    fields: Option<&[u8]>,
    verifies: impl Fn(&[u8]) -> bool,
) {
    let Some(fields) = fields else {
        return;
    };
    let as_written = with_fields_as_written(encoded, fields);
    if verifies(&as_written) {
        assert_eq!(as_written, encoded, "a second encoding of {what} verifies");
    }
}
