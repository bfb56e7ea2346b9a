//! `ContentHash::from_str`: content ids in every URL path (`/blob/{hash}`, `/hls/{id}/...`)
//! and in JSON bodies.
//!
//! Asserts: no panic; a parsed hash is the 64 hex digits given (in either case), and its
//! JSON form parses back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_protocol::ContentHash;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ContentHash>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(hash) = text.parse::<ContentHash>() {
        assert_eq!(hash.to_hex(), text.to_ascii_lowercase());
        let json = serde_json::to_string(&hash).expect("a hash serialises");
        assert_eq!(serde_json::from_str::<ContentHash>(&json).ok(), Some(hash));
    }
});
