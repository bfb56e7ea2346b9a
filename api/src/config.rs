//! The node's configuration file, `DATA_DIR/config.toml`, as types.
//!
//! Every key has a default, so an empty file is a valid configuration. The node checks the
//! values when it loads them (`streamgate_node::config`); tools that write a configuration
//! (the testnet, the tests) build a [`NodeConfig`] and write [`NodeConfig::to_toml`], so a
//! renamed key is a compile error rather than a node that refuses to start.

use std::{net::SocketAddr, time::Duration};

use multiaddr::Multiaddr;
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
# "auto" becomes a server once AutoNAT confirms a direct address (never on a relayed one).
# Unless it is "server", a node AutoNAT finds unreachable reserves a slot on a bootstrap
# node's circuit relay.
dht_mode = "auto"
# Multicast DNS discovery of peers on the local network. Off: it sends multicast traffic.
mdns = false

[data_plane]
# UDP address of the iroh endpoint that moves blob bytes.
bind = "0.0.0.0:0"
# An iroh relay to be reachable through, e.g. the one a bootstrap node runs ("http://host:port").
# Empty: the relay a bootstrap node advertises (see bootstrap_relay), else none.
# Public n0 relays are never used unless named here.
relay_url = ""
# With relay_url empty, use the relay that the first bootstrap node to answer advertises
# in its signed record: how a node behind NAT becomes reachable with no configuration.
bootstrap_relay = true
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
# Connections held at once (capped at half the descriptor limit). When full, the connection
# idle longest is closed for a new one; with none idle, a new one gets 503.
max_connections = 8192
# Requests handled at once across every route; more get 503 with Retry-After.
max_requests_in_flight = 2048
# A new connection must send a whole request head within this many seconds.
header_timeout_secs = 10
# A kept-alive connection is closed after this many seconds without a request.
keep_alive_secs = 30
# A client that takes no response bytes for this many seconds is dropped.
send_timeout_secs = 30
# A request body that sends nothing for this many seconds ends with an error.
body_timeout_secs = 30
# Requests on one connection before the node asks the client to reconnect.
max_requests_per_connection = 10000

[fetch]
# How long a fetch may look for providers before answering "not found".
find_timeout_secs = 10
# A provider that sends nothing for this long is abandoned for another.
stall_timeout_secs = 5
# Most providers used at once for one blob.
max_parallel_providers = 4
# Size of the byte ranges a blob is split into across providers.
range_bytes = 4194304
# Provider lookups (for content this node does not hold) at once, node-wide and per client
# address (IPv6: per /64). Content held here never waits for a lookup.
max_lookups = 64
max_lookups_per_client = 16
# Requests that may wait for a lookup slot; more get 503 with Retry-After.
max_lookups_waiting = 1024
# A blob no node provided is answered "not found" from memory for this many seconds.
not_found_ttl_secs = 15

[uploads]
# Unfinished resumable uploads may reserve this many bytes in all (their Upload-Length).
max_unfinished_bytes = 34359738368
# An unfinished upload is removed this many seconds after its last byte arrived.
expiry_secs = 86400

[transcode]
# Rungs encoded when a publish does not name a ladder.
ladder = "1080p,720p,480p,360p"
# x264 preset: faster presets use less CPU per minute of video and give bigger files.
preset = "veryfast"
# "auto": use hardware codecs that the start-up probe found working (see
# `streamgate-node capabilities`); "off": CPU only.
hardware = "auto"
# Ended publishing jobs (done, failed, cancelled) remembered for `streamgate status`.
keep_ended_jobs = 100
# Hand the video of public uploads to volunteered workers, in chunks, when any are known
# (gated videos are always transcoded here: workers would see them in the clear). Their
# output is verified before it counts; what no worker does well is done here.
use_workers = true
# Most wei per 10^9 output pixels this node offers a worker.
max_worker_price_per_gigapixel = 1000000000000000
# Segments (of 2 s) in one worker's chunk.
chunk_segments = 5
# A worker that has not answered a job after this many seconds loses it.
worker_job_timeout_secs = 600

[access]
# The origin viewers and wallets reach this node's API at (scheme://host:port). Sign-in
# messages must name it. Empty: the address the API listens on.
public_origin = ""
# How long a sign-in session lasts, in seconds.
session_ttl_secs = 3600
# How long an ownership check is cached, in seconds. Transfers seen on chain drop cached
# results within seconds regardless.
cache_ttl_secs = 300

[worker]
# Volunteer this node to transcode for others (also: streamgate-node run --worker). It
# then gossips a signed advert of what its hardware probe opened and what it asks.
enabled = false
# Wei asked per 10^9 output pixels (a 60 s 1080p30 rung is about 3.7). 0: for free.
price_per_gigapixel = 0
# Jobs taken at once.
max_jobs = 1
# Where payments go ("0x" and 40 hex digits). Empty: none named yet.
payment_address = ""
# How long each advert stays valid, in seconds (30 to 600); re-sent every third of it.
advert_ttl_secs = 300
# Largest chunk fetched for one job, in MiB (1 to 4096): a publisher cannot make this node
# download more per job. Ten seconds of 4K at 100 Mbit/s is about 120 MiB.
max_chunk_mib = 1024

# Chains this node checks NFT ownership on, one [[chains]] table each, for example:
# [[chains]]
# chain_id = 31337
# rpc_urls = ["http://127.0.0.1:8545"]           # tried in order: failover
# registry = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # optional ContentRegistry
"#;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    pub swarm: SwarmConfig,
    pub data_plane: DataPlaneConfig,
    pub api: ApiConfig,
    pub fetch: FetchConfig,
    pub uploads: UploadsConfig,
    pub transcode: TranscodeSettings,
    pub access: AccessConfig,
    pub chains: Vec<ChainConfig>,
    pub worker: WorkerConfig,
    pub testing: TestingConfig,
}

/// `[worker]`: volunteering this node to transcode for others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    pub enabled: bool,
    /// Wei asked per 10^9 output pixels (0: volunteered for free).
    pub price_per_gigapixel: u64,
    /// Jobs taken at once.
    pub max_jobs: u16,
    /// `0x` and 40 hex digits: where payments go; empty: none named yet.
    pub payment_address: String,
    /// How long each advert stays valid; re-sent every third of it.
    pub advert_ttl_secs: u32,
    /// Largest chunk fetched for a job, in MiB: a publisher cannot make this node download
    /// more than this per job.
    pub max_chunk_mib: u32,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            price_per_gigapixel: 0,
            max_jobs: 1,
            payment_address: String::new(),
            advert_ttl_secs: 300,
            max_chunk_mib: 1024,
        }
    }
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
    pub keep_ended_jobs: usize,
    pub use_workers: bool,
    pub max_worker_price_per_gigapixel: u64,
    pub chunk_segments: u32,
    pub worker_job_timeout_secs: u64,
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
            keep_ended_jobs: 100,
            use_workers: true,
            max_worker_price_per_gigapixel: 1_000_000_000_000_000,
            chunk_segments: 5,
            worker_job_timeout_secs: 600,
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
    pub bootstrap_relay: bool,
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
    pub max_connections: usize,
    pub max_requests_in_flight: usize,
    pub header_timeout_secs: u64,
    pub keep_alive_secs: u64,
    pub send_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_requests_per_connection: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    pub find_timeout_secs: u64,
    pub stall_timeout_secs: u64,
    pub max_parallel_providers: usize,
    pub range_bytes: u64,
    pub max_lookups: usize,
    pub max_lookups_per_client: usize,
    pub max_lookups_waiting: usize,
    pub not_found_ttl_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UploadsConfig {
    pub max_unfinished_bytes: u64,
    pub expiry_secs: u64,
}

/// Fault injection for the project's own failure tests. Not in the default file; never set
/// it on a real node.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// Flip one bit of the byte at this offset of every blob stream this node serves, so
    /// that fetchers see bytes that fail verification (a malicious or broken provider).
    pub corrupt_served_byte_at: Option<u64>,
    /// Wait this long between the chain's answer granting access and caching it, so that a
    /// test can land a transfer exactly in between.
    pub ownership_check_delay_ms: Option<u64>,
    /// A dishonest worker, for the tests that must catch one: `other_video`, `drop_frame`,
    /// `low_resolution`, `silent` (never answers) or `wrong_receipt` (names bytes it never
    /// stored).
    pub worker_cheat: Option<String>,
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
            bootstrap_relay: true,
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
            max_connections: 8192,
            max_requests_in_flight: 2048,
            header_timeout_secs: 10,
            keep_alive_secs: 30,
            send_timeout_secs: 30,
            body_timeout_secs: 30,
            max_requests_per_connection: 10_000,
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
            max_lookups: 64,
            max_lookups_per_client: 16,
            max_lookups_waiting: 1024,
            not_found_ttl_secs: 15,
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        Self {
            max_unfinished_bytes: 32 << 30,
            expiry_secs: 24 * 3600,
        }
    }
}

impl FetchConfig {
    pub fn find_timeout(&self) -> Duration {
        Duration::from_secs(self.find_timeout_secs)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs)
    }
}

impl NodeConfig {
    /// Parses TOML; unknown keys and wrong types are errors. Values are not checked here.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// The configuration as a TOML file, every key written out.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, table or array of tables: serialisation cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_is_the_default_config() {
        let parsed = NodeConfig::from_toml(DEFAULT_CONFIG_TOML).expect("default parses");
        assert_eq!(parsed, NodeConfig::default());
        assert_eq!(
            NodeConfig::from_toml("").expect("empty parses"),
            NodeConfig::default()
        );
    }

    #[test]
    fn written_configs_read_back_equal() {
        let mut config = NodeConfig::default();
        config.swarm.bootstrap = vec!["/ip4/127.0.0.1/tcp/4001".parse().expect("multiaddr")];
        config.chains.push(ChainConfig {
            chain_id: 31337,
            rpc_urls: vec!["http://127.0.0.1:8545".into()],
            registry: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
        });
        config.testing.corrupt_served_byte_at = Some(7);
        let text = config.to_toml();
        assert_eq!(
            NodeConfig::from_toml(&text).expect("parses"),
            config,
            "{text}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = NodeConfig::from_toml("[swarm]\ntypo = 1\n").expect_err("unknown key");
        assert!(err.to_string().contains("typo"), "{err}");
    }
}
