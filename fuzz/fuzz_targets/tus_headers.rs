//! The tus upload headers (`streamgate_protocol::tus`): `Upload-Metadata`,
//! `Upload-Length` and `Upload-Offset` of every upload request.
//!
//! Asserts: no panic; parsed metadata, encoded again as a tus client would, parses back to
//! the same pairs; a parsed length or offset is the decimal number written.
#![no_main]

use base64::Engine;
use libfuzzer_sys::fuzz_target;
use streamgate_protocol::tus::{parse_metadata, parse_upload_length, parse_upload_offset};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = parse_metadata(text) {
        let encoded = pairs
            .iter()
            .map(|(key, value)| {
                let value = base64::engine::general_purpose::STANDARD.encode(value);
                format!("{key} {value}")
            })
            .collect::<Vec<_>>()
            .join(",");
        // Empty values encode as "key " rather than "key": both mean the same.
        if encoded.len() <= streamgate_protocol::tus::MAX_METADATA_BYTES {
            assert_eq!(parse_metadata(&encoded), Ok(pairs));
        }
    }
    let digits = match text.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    for parse in [parse_upload_length, parse_upload_offset] {
        if let Ok(number) = parse(text) {
            assert_eq!(number.to_string(), digits, "{text:?}");
        }
    }
});
