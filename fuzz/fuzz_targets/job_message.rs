//! `SignedJobOffer::decode_verified`, `JobReply::decode` and `SignedReceipt::decode_signed`:
//! the messages of the job exchange between publishers and workers, and the receipts
//! manifests keep. The input is the time of the check (8 bytes, little-endian), then one
//! message, tried as each.
//!
//! Asserts: no panic; a message that decodes re-encodes to exactly its bytes; a verified
//! offer is within its deadline and its price does not overflow; a kept receipt that decodes
//! is signed by the worker it names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::split_now;
use streamgate_protocol::job::{JobReply, SignedJobOffer, SignedReceipt};

fuzz_target!(|data: &[u8]| {
    let Some((now, bytes)) = split_now(data) else {
        return;
    };
    if let Ok(signed) = SignedJobOffer::decode_verified(bytes, now) {
        assert_eq!(signed.encode(), bytes, "a verified offer has a second encoding");
        assert!(signed.offer.deadline > now, "an offer past its deadline verified");
        let _ = signed.offer.price();
    }
    if let Ok(reply) = JobReply::decode(bytes) {
        assert_eq!(reply.encode(), bytes, "a reply has a second encoding");
    }
    if let Ok(receipt) = SignedReceipt::decode_signed(bytes) {
        assert_eq!(receipt.encode(), bytes, "a receipt has a second encoding");
    }
});
