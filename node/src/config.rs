//! Typed node configuration: `DATA_DIR/config.toml`, overridden by command-line flags.
//!
//! Every key has a default, so an empty file is a valid configuration. Values are checked
//! at load; each error names the key to change.

use std::{net::SocketAddr, path::Path, time::Duration};

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// The file `init` writes: every key with its default, commented.
pub const DEFAULT_CONFIG_TOML: &str = r#"# StreamGate node configuration. Every key is optional; the values shown are the defaults.
# Command-line flags (--listen, --bootstrap, --api-listen) override the keys they name.

[swarm]
# libp2p listen addresses (TCP and QUIC). Port 0 picks a free port.
listen = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"]
# Entry nodes to join through, as multiaddrs ending in /p2p/<peer id>.
bootstrap = []
# Kademlia mode: "server" answers DHT queries for others, "client" only asks,
# "auto" becomes a server once AutoNAT confirms the node is reachable.
dht_mode = "auto"
# Multicast DNS discovery of peers on the local network. Off: it sends multicast traffic.
mdns = false

[data_plane]
# UDP address of the iroh endpoint that moves blob bytes.
bind = "0.0.0.0:0"
# An iroh relay to be reachable through, e.g. the one a bootstrap node runs ("http://host:port").
# Empty: no relay, direct addresses only. Public n0 relays are never used unless named here.
relay_url = ""
# Ask the home router for a port mapping (UPnP, NAT-PMP, PCP). Off: it probes the gateway.
portmapper = false
# Cap on upload bandwidth for serving blobs to other nodes, in bytes per second. 0: no cap.
max_upload_bytes_per_sec = 0
# A peer that stops answering is given up after this many seconds.
idle_timeout_secs = 5

[api]
# The HTTP API and gateway.
listen = "127.0.0.1:7700"
# Largest blob accepted by POST /api/v1/blobs and by uploads, in bytes.
max_upload_bytes = 8589934592
# Memory for the most recently served segments, answered without reading the blob store.
# Segments of 64 KiB or more are kept in unnamed files in the data directory (page cache,
# sent with sendfile).
segment_cache_bytes = 268435456

[fetch]
# How long a fetch may look for providers before answering "not found".
find_timeout_secs = 10
# A provider that sends nothing for this long is abandoned for another.
stall_timeout_secs = 5
# Most providers used at once for one blob.
max_parallel_providers = 4
# Size of the byte ranges a blob is split into across providers.
range_bytes = 4194304

[transcode]
# Rungs encoded when a publish does not name a ladder.
ladder = "1080p,720p,480p,360p"
# x264 preset: faster presets use less CPU per minute of video and give bigger files.
preset = "veryfast"
# "auto": use hardware codecs that the start-up probe found working (see
# `streamgate-node capabilities`); "off": CPU only.
hardware = "auto"

[access]
# The origin viewers and wallets reach this node's API at (scheme://host:port). Sign-in
# messages must name it. Empty: the address the API listens on.
public_origin = ""
# How long a sign-in session lasts, in seconds.
session_ttl_secs = 3600
# How long an ownership check is cached, in seconds. Transfers seen on chain drop cached
# results within seconds regardless.
cache_ttl_secs = 300

# Chains this node checks NFT ownership on, one [[chains]] table each, for example:
# [[chains]]
# chain_id = 31337
# rpc_urls = ["http://127.0.0.1:8545"]           # tried in order: failover
# registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # optional ContentRegistry
"#;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub swarm: SwarmConfig,
    pub data_plane: DataPlaneConfig,
    pub api: ApiConfig,
    pub fetch: FetchConfig,
    pub transcode: TranscodeSettings,
    pub access: AccessConfig,
    pub chains: Vec<ChainConfig>,
    pub testing: TestingConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    pub public_origin: String,
    pub session_ttl_secs: u64,
    pub cache_ttl_secs: u64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        Self {
            public_origin: String::new(),
            session_ttl_secs: 3600,
            cache_ttl_secs: 300,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub chain_id: u64,
    pub rpc_urls: Vec<String>,
    #[serde(default)]
    pub registry: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeSettings {
    pub ladder: String,
    pub preset: String,
    pub hardware: HardwareUse,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HardwareUse {
    Auto,
    Off,
}

impl Default for TranscodeSettings {
    fn default() -> Self {
        Self {
            ladder: "1080p,720p,480p,360p".into(),
            preset: "veryfast".into(),
            hardware: HardwareUse::Auto,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SwarmConfig {
    pub listen: Vec<Multiaddr>,
    pub bootstrap: Vec<Multiaddr>,
    pub dht_mode: DhtMode,
    pub mdns: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DhtMode {
    Server,
    Client,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataPlaneConfig {
    pub bind: SocketAddr,
    pub relay_url: String,
    pub portmapper: bool,
    pub max_upload_bytes_per_sec: u64,
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_upload_bytes: u64,
    pub segment_cache_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    pub find_timeout_secs: u64,
    pub stall_timeout_secs: u64,
    pub max_parallel_providers: usize,
    pub range_bytes: u64,
}

/// Fault injection for the project's own failure tests. Not in the default file; never set
/// it on a real node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Flip one bit of the byte at this offset of every blob stream this node serves, so
    /// that fetchers see bytes that fail verification (a malicious or broken provider).
    pub corrupt_served_byte_at: Option<u64>,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/0.0.0.0/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            dht_mode: DhtMode::Auto,
            mdns: false,
        }
    }
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            relay_url: String::new(),
            portmapper: false,
            max_upload_bytes_per_sec: 0,
            idle_timeout_secs: 5,
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_upload_bytes: 8 << 30,
            segment_cache_bytes: 256 << 20,
        }
    }
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            find_timeout_secs: 10,
            stall_timeout_secs: 5,
            max_parallel_providers: 4,
            range_bytes: 4 << 20,
        }
    }
}

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

impl Config {
    /// Reads `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
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
        Self::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn validate(&self, path: &str) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| ConfigError::Invalid {
            path: path.to_string(),
            key,
            problem: problem.to_string(),
        };
        if self.swarm.listen.is_empty() {
            return Err(invalid("swarm.listen", "needs at least one address"));
        }
        for addr in &self.swarm.bootstrap {
            if !addr
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
            {
                return Err(invalid(
                    "swarm.bootstrap",
                    &format!("entry {addr} must end in /p2p/<peer id>"),
                ));
            }
        }
        if !self.data_plane.relay_url.is_empty()
            && self.data_plane.relay_url.parse::<iroh::RelayUrl>().is_err()
        {
            return Err(invalid("data_plane.relay_url", "is not a valid URL"));
        }
        if !(1..=600).contains(&self.data_plane.idle_timeout_secs) {
            return Err(invalid(
                "data_plane.idle_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if self.api.max_upload_bytes == 0 {
            return Err(invalid("api.max_upload_bytes", "must be more than 0"));
        }
        if !(1..=3600).contains(&self.fetch.find_timeout_secs) {
            return Err(invalid(
                "fetch.find_timeout_secs",
                "must be between 1 and 3600",
            ));
        }
        if !(1..=600).contains(&self.fetch.stall_timeout_secs) {
            return Err(invalid(
                "fetch.stall_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        if !(1..=32).contains(&self.fetch.max_parallel_providers) {
            return Err(invalid(
                "fetch.max_parallel_providers",
                "must be between 1 and 32",
            ));
        }
        if self.fetch.range_bytes < CHUNK_GROUP_BYTES
            || !self.fetch.range_bytes.is_multiple_of(CHUNK_GROUP_BYTES)
        {
            return Err(invalid(
                "fetch.range_bytes",
                "must be a positive multiple of 16384 (the verification group size)",
            ));
        }
        let origin = &self.access.public_origin;
        if !(origin.is_empty() || origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err(invalid(
                "access.public_origin",
                "must start with http:// or https://",
            ));
        }
        if !(60..=7 * 86400).contains(&self.access.session_ttl_secs) {
            return Err(invalid(
                "access.session_ttl_secs",
                "must be between 60 and 604800",
            ));
        }
        if self.access.cache_ttl_secs > 86400 {
            return Err(invalid("access.cache_ttl_secs", "must be at most 86400"));
        }
        for (i, chain) in self.chains.iter().enumerate() {
            if self.chains[..i]
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
        if let Err(e) = streamgate_media::ladder::parse_ladder(&self.transcode.ladder) {
            return Err(invalid("transcode.ladder", &e.to_string()));
        }
        const PRESETS: [&str; 9] = [
            "ultrafast",
            "superfast",
            "veryfast",
            "faster",
            "fast",
            "medium",
            "slow",
            "slower",
            "veryslow",
        ];
        if !PRESETS.contains(&self.transcode.preset.as_str()) {
            return Err(invalid(
                "transcode.preset",
                "must be an x264 preset such as veryfast",
            ));
        }
        Ok(())
    }

    pub fn find_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch.find_timeout_secs)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.fetch.stall_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        let parsed = Config::parse(DEFAULT_CONFIG_TOML, "default").expect("default parses");
        assert_eq!(parsed, Config::default());
        assert_eq!(
            Config::parse("", "empty").expect("empty parses"),
            Config::default()
        );
    }

    #[test]
    fn errors_name_the_key() {
        let err = Config::parse("[fetch]\nrange_bytes = 1000\n", "c.toml").expect_err("invalid");
        assert!(err.to_string().contains("fetch.range_bytes"), "{err}");
        let err = Config::parse("[swarm]\nbootstrap = [\"/ip4/1.2.3.4/tcp/1\"]\n", "c.toml")
            .expect_err("invalid");
        assert!(err.to_string().contains("swarm.bootstrap"), "{err}");
        let err = Config::parse("[api]\nlisten = \"nope\"\n", "c.toml").expect_err("invalid");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = Config::parse(
            "[[chains]]\nchain_id = 1\nrpc_urls = [\"ftp://x\"]\n",
            "c.toml",
        )
        .expect_err("invalid");
        assert!(err.to_string().contains("chains.rpc_urls"), "{err}");
        let err = Config::parse("[swarm]\ntypo = 1\n", "c.toml").expect_err("unknown key");
        assert!(err.to_string().contains("typo"), "{err}");
    }
}
