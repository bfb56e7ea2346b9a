//! `range::resolve`: the `Range` header of every blob, segment and playlist request,
//! against the body's size. The input is the size (8 bytes, little-endian), then the header.
//!
//! Asserts: no panic; a partial answer is a non-empty range inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_fuzz::split_now;
use streamgate_protocol::range::{RangeReply, resolve};

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes are a size here, not a time.
    let Some((size, header)) = split_now(data) else {
        return;
    };
    // The gateway reads header values as str (`HeaderValue::to_str`).
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let Ok(RangeReply::Partial(range)) = resolve(Some(header), size) {
        assert!(
            range.start < range.end && range.end <= size,
            "{header:?} against {size} bytes gave {range:?}"
        );
    }
});
