//! `records::validate_put` of streamgate-swarm: every record a peer asks this node to store
//! in the DHT, and every one a lookup returns. The input is the time of the check
//! (8 bytes, little-endian), the key's length (1 byte), the key, then the value.
//!
//! Asserts: no panic; an accepted record is the node record of exactly the peer its key
//! names, and re-encodes to exactly the stored value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use libp2p::kad::RecordKey;
use streamgate_fuzz::split_now;
use streamgate_swarm::{
    identity::peer_id_of,
    records::{hash_of_provider_key, peer_of_node_key, validate_put},
};

fuzz_target!(|data: &[u8]| {
    let Some((now, rest)) = split_now(data) else {
        return;
    };
    let Some((&key_len, rest)) = rest.split_first() else {
        return;
    };
    let Some((key, value)) = rest.split_at_checked(usize::from(key_len)) else {
        return;
    };
    let key = RecordKey::new(&key);
    let _ = hash_of_provider_key(&key);
    if let Ok(record) = validate_put(&key, value, now) {
        assert_eq!(
            record.encode(),
            value,
            "an accepted record has a second encoding"
        );
        let peer = peer_of_node_key(&key).expect("an accepted record's key names a peer");
        assert_eq!(peer_id_of(&record.record.node_key), Some(peer));
    }
});
