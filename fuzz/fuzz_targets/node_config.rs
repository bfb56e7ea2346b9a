//! `NodeConfig::from_toml` of streamgate-api: the node's `config.toml` (`toml::from_str`).
//! The node's own value checks (node/src/config.rs) are not reached from here.
//!
//! Asserts: no panic; a configuration that parses is written by `to_toml` as a file that
//! parses back to the same configuration (tools write configurations that way).
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamgate_api::config::NodeConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = NodeConfig::from_toml(text) {
        let written = config.to_toml();
        assert_eq!(
            NodeConfig::from_toml(&written).as_ref(),
            Ok(&config),
            "written as:\n{written}"
        );
    }
});
