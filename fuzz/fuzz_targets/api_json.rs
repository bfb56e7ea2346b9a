//! The JSON request bodies of the node's HTTP API (streamgate-api `v1`), as the node's
//! routes decode them with serde_json: `PublishRequest` and `SignInRequest`; and
//! `ManifestView`, which the CLI reads from a node.
//!
//! Asserts: no panic; whatever parses, serialised again, parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::{Serialize, de::DeserializeOwned};
use streamgate_api::v1::{ManifestView, PublishRequest, SignInRequest};

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let json = serde_json::to_vec(&value).expect("a parsed body serialises");
        assert_eq!(serde_json::from_slice::<T>(&json).ok(), Some(value));
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<PublishRequest>(data);
    round_trips::<SignInRequest>(data);
    round_trips::<ManifestView>(data);
});
