//! Loading and checking the node's configuration (`DATA_DIR/config.toml`); the types
//! themselves are the shared contract in [`streamgate_api::config`].
//!
//! Every key has a default, so an empty file is a valid configuration. Values are checked
//! at load; each error names the key to change.

use std::path::Path;

pub use streamgate_api::config::*;

/// The node's configuration.
pub type Config = NodeConfig;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: `{key}` {problem}")]
    Invalid {
        path: String,
        key: &'static str,
        problem: String,
    },
}

/// Smallest range split: iroh-blobs verifies in 16 KiB chunk groups.
const CHUNK_GROUP_BYTES: u64 = 16 * 1024;

/// An Ethereum address written as `0x` and 40 hex digits (either case).
pub fn payment_address(text: &str) -> Option<[u8; 20]> {
    let digits = text.strip_prefix("0x")?;
    let mut address = [0; 20];
    hex::decode_to_slice(digits, &mut address).ok()?;
    Some(address)
}

/// Reads `path`; a missing file means all defaults.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: shown,
                source,
            });
        }
    };
    parse(&text, &shown)
}

/// Parses and checks a configuration file's text; `path` names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
    let config = Config::from_toml(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    validate(&config, path)?;
    Ok(config)
}

/// Checks every value; the error names the key to change.
pub fn validate(config: &Config, path: &str) -> Result<(), ConfigError> {
    let invalid = |key, problem: &str| ConfigError::Invalid {
        path: path.to_string(),
        key,
        problem: problem.to_string(),
    };
    if config.swarm.listen.is_empty() {
        return Err(invalid("swarm.listen", "needs at least one address"));
    }
    for addr in &config.swarm.bootstrap {
        if !addr
            .iter()
            .any(|p| matches!(p, multiaddr::Protocol::P2p(_)))
        {
            return Err(invalid(
                "swarm.bootstrap",
                &format!("entry {addr} must end in /p2p/<peer id>"),
            ));
        }
    }
    if !config.data_plane.relay_url.is_empty()
        && config
            .data_plane
            .relay_url
            .parse::<iroh::RelayUrl>()
            .is_err()
    {
        return Err(invalid("data_plane.relay_url", "is not a valid URL"));
    }
    let transcode = &config.transcode;
    if !(1..=streamgate_protocol::job::MAX_JOB_SEGMENTS)
        .contains(&u64::from(transcode.chunk_segments))
    {
        return Err(invalid(
            "transcode.chunk_segments",
            "must be between 1 and 64",
        ));
    }
    if !(10..=streamgate_protocol::job::MAX_JOB_SECS).contains(&transcode.worker_job_timeout_secs) {
        return Err(invalid(
            "transcode.worker_job_timeout_secs",
            "must be between 10 and 3600",
        ));
    }
    const CHEATS: [&str; 5] = [
        "other_video",
        "drop_frame",
        "low_resolution",
        "silent",
        "wrong_receipt",
    ];
    if let Some(cheat) = &config.testing.worker_cheat
        && !CHEATS.contains(&cheat.as_str())
    {
        return Err(invalid(
            "testing.worker_cheat",
            &format!("must be one of {CHEATS:?}"),
        ));
    }
    let worker = &config.worker;
    if !(1..=64).contains(&worker.max_jobs) {
        return Err(invalid("worker.max_jobs", "must be between 1 and 64"));
    }
    if !(1..=4096).contains(&worker.max_chunk_mib) {
        return Err(invalid(
            "worker.max_chunk_mib",
            "must be between 1 and 4096",
        ));
    }
    if !(30..=streamgate_protocol::worker::MAX_ADVERT_TTL_SECS).contains(&worker.advert_ttl_secs) {
        return Err(invalid(
            "worker.advert_ttl_secs",
            "must be between 30 and 600",
        ));
    }
    if !worker.payment_address.is_empty() && payment_address(&worker.payment_address).is_none() {
        return Err(invalid(
            "worker.payment_address",
            "must be 0x followed by 40 hex digits",
        ));
    }
    if !(1..=600).contains(&config.data_plane.idle_timeout_secs) {
        return Err(invalid(
            "data_plane.idle_timeout_secs",
            "must be between 1 and 600",
        ));
    }
    if config.api.max_upload_bytes == 0 {
        return Err(invalid("api.max_upload_bytes", "must be more than 0"));
    }
    if !(1..=3600).contains(&config.fetch.find_timeout_secs) {
        return Err(invalid(
            "fetch.find_timeout_secs",
            "must be between 1 and 3600",
        ));
    }
    if !(1..=600).contains(&config.fetch.stall_timeout_secs) {
        return Err(invalid(
            "fetch.stall_timeout_secs",
            "must be between 1 and 600",
        ));
    }
    if !(1..=32).contains(&config.fetch.max_parallel_providers) {
        return Err(invalid(
            "fetch.max_parallel_providers",
            "must be between 1 and 32",
        ));
    }
    if config.fetch.range_bytes < CHUNK_GROUP_BYTES
        || !config.fetch.range_bytes.is_multiple_of(CHUNK_GROUP_BYTES)
    {
        return Err(invalid(
            "fetch.range_bytes",
            "must be a positive multiple of 16384 (the verification group size)",
        ));
    }
    let origin = config.access.public_origin.trim_end_matches('/');
    if !origin.is_empty() && streamgate_protocol::access::check_key_server_url(origin).is_err() {
        return Err(invalid(
            "access.public_origin",
            "must be an origin, http(s)://host[:port], with no path",
        ));
    }
    // Sign-in messages name the origin: two nodes reached through their listen addresses
    // would otherwise accept each other's sign-ins whenever those addresses coincide
    // (0.0.0.0:7700 on two hosts).
    if origin.is_empty() && !config.api.listen.ip().is_loopback() {
        return Err(invalid(
            "access.public_origin",
            &format!(
                "must be set when the API listens on {}, which is not a loopback address: the origin viewers reach this node at (e.g. https://node.example.org)",
                config.api.listen
            ),
        ));
    }
    if !(60..=7 * 86400).contains(&config.access.session_ttl_secs) {
        return Err(invalid(
            "access.session_ttl_secs",
            "must be between 60 and 604800",
        ));
    }
    if config.access.cache_ttl_secs > 86400 {
        return Err(invalid("access.cache_ttl_secs", "must be at most 86400"));
    }
    for (i, chain) in config.chains.iter().enumerate() {
        if config.chains[..i]
            .iter()
            .any(|c| c.chain_id == chain.chain_id)
        {
            return Err(invalid(
                "chains.chain_id",
                &format!("chain {} is listed twice", chain.chain_id),
            ));
        }
        if chain.rpc_urls.is_empty() {
            return Err(invalid(
                "chains.rpc_urls",
                &format!("chain {} needs at least one URL", chain.chain_id),
            ));
        }
        for url in &chain.rpc_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "chains.rpc_urls",
                    &format!("{url:?} must be an http(s) URL"),
                ));
            }
        }
        if let Some(registry) = &chain.registry
            && registry.parse::<alloy_primitives::Address>().is_err()
        {
            return Err(invalid(
                "chains.registry",
                &format!("{registry:?} is not a 0x address"),
            ));
        }
    }
    if let Err(e) = streamgate_media::ladder::parse_ladder(&config.transcode.ladder) {
        return Err(invalid("transcode.ladder", &e.to_string()));
    }
    if !streamgate_protocol::job::PRESETS.contains(&config.transcode.preset.as_str()) {
        return Err(invalid(
            "transcode.preset",
            "must be an x264 preset such as veryfast",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_passes_the_checks() {
        assert_eq!(
            parse(DEFAULT_CONFIG_TOML, "default").expect("default parses"),
            Config::default()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse("[fetch]\nrange_bytes = 1000\n", "c.toml").expect_err("invalid");
        assert!(err.to_string().contains("fetch.range_bytes"), "{err}");
        let err = parse("[swarm]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n", "c.toml")
            .expect_err("invalid");
        assert!(err.to_string().contains("swarm.bootstrap"), "{err}");
        let err = parse("[api]\nlisten = \"nope\"\n", "c.toml").expect_err("invalid");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = parse(
            "[[chains]]\nchain_id = 1\nrpc_urls = [\"ftp://x\"]\n",
            "c.toml",
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("chains.rpc_urls"), "{err}");
        for (worker, key) in [
            ("payment_address = \"0x12\"", "worker.payment_address"),
            (
                "payment_address = \"12345678901234567890123456789012345678901\"",
                "worker.payment_address",
            ),
            ("max_jobs = 0", "worker.max_jobs"),
            ("advert_ttl_secs = 601", "worker.advert_ttl_secs"),
            ("max_chunk_mib = 0", "worker.max_chunk_mib"),
        ] {
            let err = parse(&format!("[worker]\n{worker}\n"), "c.toml").expect_err(worker);
            assert!(err.to_string().contains(key), "{err}");
        }
        let ok = parse(
            "[worker]\nenabled = true\npayment_address = \"0x70997970C51812dc3A010C7d01b50e0d17dc79C8\"\n",
            "c.toml",
        )
        .expect("a checksummed address");
        assert_eq!(
            payment_address(&ok.worker.payment_address).map(|a| a[0]),
            Some(0x70)
        );
        let err = parse("[swarm]\ntypo = 1\n", "c.toml").expect_err("unknown key");
        assert!(err.to_string().contains("typo"), "{err}");
    }

    #[test]
    fn a_node_reachable_from_elsewhere_needs_its_public_origin() {
        let err = parse("[api]\nlisten = \"0.0.0.0:7700\"\n", "c.toml").expect_err("no origin");
        assert!(err.to_string().contains("access.public_origin"), "{err}");
        parse(
            "[api]\nlisten = \"0.0.0.0:7700\"\n[access]\npublic_origin = \"https://node.example.org\"\n",
            "c.toml",
        )
        .expect("origin given");
        parse("[api]\nlisten = \"[::1]:7700\"\n", "c.toml").expect("loopback");
        let err = parse(
            "[access]\npublic_origin = \"https://node.example.org/watch\"\n",
            "c.toml",
        )
        .expect_err("a path");
        assert!(err.to_string().contains("no path"), "{err}");
    }
}
