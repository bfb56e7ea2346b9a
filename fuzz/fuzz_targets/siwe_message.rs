//! `SiweMessage::parse`: EIP-4361 sign-in messages, from any web page, and
//! `siwe::parse_time`, the RFC 3339 times inside them.
//!
//! Asserts: no panic (parse and check); a parsed message's text form parses back to the
//! same message; a parsed time formats to text that parses back to the same time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_protocol::siwe::{Expectations, SiweMessage, format_time, parse_time};

fuzz_target!(|data: &[u8]| {
    // Sign-in requests are JSON, so the message is always a string.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(message) = SiweMessage::parse(text) {
        assert_eq!(SiweMessage::parse(&message.to_text()), Ok(message.clone()));
        let expect = Expectations {
            domain: &message.domain,
            origin: "http://127.0.0.1:7700",
            chain_ids: &[message.chain_id],
        };
        for now in [message.issued_at, message.expiration_time.unwrap_or(0)] {
            let _ = message.check(&expect, now);
        }
    }
    if let Ok(time) = parse_time(text) {
        assert_eq!(parse_time(&format_time(time)), Ok(time), "{text:?}");
    }
});
