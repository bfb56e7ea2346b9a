//! The access gate of a publish request (`AccessPolicy::from_str`, e.g.
//! `erc721:CHAIN_ID:0xCONTRACT`) and the key server URLs it names
//! (`access::check_key_server_url`).
//!
//! Asserts: no panic; a parsed policy is one manifests accept (a chain, a contract, a
//! minimum balance of at least 1, a token id for ERC-1155) and survives JSON unchanged; an
//! accepted URL holds only the characters a playlist can carry safely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_protocol::access::{AccessPolicy, TokenStandard, check_key_server_url};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(policy) = text.parse::<AccessPolicy>() {
        assert!(policy.chain_id > 0 && !policy.contract.is_zero() && policy.min_balance >= 1);
        assert!(policy.standard == TokenStandard::Erc721 || policy.token_id.is_some());
        let json = serde_json::to_vec(&policy).expect("a policy serialises");
        let back: AccessPolicy = serde_json::from_slice(&json).expect("its JSON parses back");
        assert_eq!(back, policy);
    }
    if check_key_server_url(text).is_ok() {
        assert!(text.starts_with("http://") || text.starts_with("https://"));
        let host = text.split_once("://").map_or("", |(_, host)| host);
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)),
            "{text:?}"
        );
    }
});
