//! JSON bodies of the node's HTTP API. Each type names its route.
//!
//! Errors are always [`ErrorBody`] with a 4xx/5xx status.

use serde::{Deserialize, Serialize};
use streamgate_protocol::{ContentHash, Manifest};

/// Every error answer: a stable machine-readable code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}

/// `POST /api/v1/blobs`: the stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    pub hash: ContentHash,
    pub size: u64,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub version: String,
    pub peer_id: String,
    pub node_id: String,
    pub blobs: u64,
    pub bytes_stored: u64,
    /// Blob bytes sent to other nodes over the data plane.
    pub bytes_served: u64,
    /// Segment bytes held in memory for serving.
    pub segment_cache_bytes: u64,
    /// HTTP body bytes sent with `sendfile`, without a copy.
    pub bytes_sent_zero_copy: u64,
    pub swarm: SwarmStatus,
    pub data_plane_addrs: Vec<String>,
    pub reachability: Reachability,
    pub fetch: FetchStatus,
    pub providers: Vec<ProviderStanding>,
    pub http: HttpStatus,
    pub uploads: UploadsStatus,
}

/// The HTTP server part of [`NodeStatus`]: what it holds now, what it has done, its limits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpStatus {
    pub open_connections: usize,
    pub requests_in_flight: usize,
    pub connections_accepted: u64,
    /// New connections answered 503: every connection had a request in flight.
    pub connections_refused: u64,
    /// Idle connections closed to make room for a new one.
    pub idle_evicted: u64,
    /// Connections closed by the header or keep-alive timeout.
    pub idle_timed_out: u64,
    /// Connections dropped because the client took no bytes for the send timeout.
    pub send_timed_out: u64,
    pub requests: u64,
    /// Requests answered 503: as many were in flight as allowed.
    pub requests_refused: u64,
    /// Response body bytes sent over HTTP (sendfile or written).
    pub body_bytes_sent: u64,
    pub limits: HttpLimits,
}

/// The HTTP server's limits in force (`[api]`, with connections capped by descriptors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_requests_in_flight: usize,
    pub header_timeout_secs: u64,
    pub keep_alive_secs: u64,
    pub send_timeout_secs: u64,
    pub body_timeout_secs: u64,
    pub max_requests_per_connection: u64,
}

/// Provider lookups for content this node does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LookupStatus {
    /// Fetches holding a lookup slot now, and fetches waiting for one.
    pub in_flight: usize,
    pub waiting: usize,
    /// Fetches that took a slot.
    pub started: u64,
    /// Requests that joined a fetch of the same blob already in flight.
    pub joined: u64,
    /// Requests answered "not found" from memory.
    pub not_found_remembered: u64,
    /// Requests answered 503: too many waiting.
    pub refused: u64,
    pub max_lookups: usize,
    pub max_lookups_per_client: usize,
    pub max_lookups_waiting: usize,
    pub not_found_ttl_secs: u64,
}

/// Unfinished resumable uploads against their quota.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UploadsStatus {
    pub unfinished: usize,
    /// The sum of their declared lengths.
    pub reserved_bytes: u64,
    pub max_unfinished_bytes: u64,
    pub expiry_secs: u64,
    /// Unfinished uploads removed for having expired.
    pub expired: u64,
    /// Ended publishing jobs remembered, and the most that are.
    pub ended_jobs: usize,
    pub keep_ended_jobs: usize,
}

/// The swarm part of [`NodeStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmStatus {
    pub peer_id: String,
    pub connected_peers: usize,
    pub listen_addrs: Vec<String>,
    pub dht_mode: String,
    pub routing_table_peers: usize,
    pub provided_keys: usize,
    pub node_records_cached: usize,
    /// Content ids whose providers are cached (from DHT answers and announcements).
    pub provider_hints: usize,
    pub rejected_messages: u64,
    pub accepted_announcements: u64,
    /// Addresses peers can dial directly: confirmed by AutoNAT dial-backs (on a bootstrap
    /// node, its listen addresses).
    #[serde(default)]
    pub public_addrs: Vec<String>,
    /// `/p2p-circuit` addresses through a bootstrap's relay, held while no direct address
    /// is confirmed (the node is behind NAT).
    #[serde(default)]
    pub relayed_addrs: Vec<String>,
    #[serde(default)]
    pub autonat: AutonatStatus,
}

/// `GET /api/v1/workers`: one volunteered worker, from its newest verified advert. Every
/// field is the worker's own claim; what it returns is verified before it counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub peer_id: String,
    pub node_id: String,
    /// `gpu`, `gpu-decode-cpu-encode` or `cpu`.
    pub mode: String,
    pub decoders: Vec<String>,
    pub encoders: Vec<String>,
    pub gpus: Vec<WorkerGpu>,
    /// Its start-up measurement (1080p to 720p); `None`: not measured.
    pub speed_fps: Option<f64>,
    /// Wei per 10^9 output pixels, in decimal (it may exceed what JSON numbers hold).
    pub price_per_gigapixel: String,
    pub max_jobs: u16,
    pub active_jobs: u16,
    pub payment_address: Option<String>,
    pub issued_at: u64,
    pub expires_at: u64,
    /// How its jobs for this node went (verified or not); `None`: it had none yet.
    #[serde(default)]
    pub standing: Option<ProviderStanding>,
}

/// A worker's GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerGpu {
    pub name: String,
    /// Encode sessions at once; 0: it does not encode; `None`: not measured.
    pub encode_sessions: Option<u16>,
}

/// AutoNAT dial-back probes this node asked its peers for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AutonatStatus {
    pub probes_ok: u64,
    pub probes_failed: u64,
    pub last_error: Option<String>,
}

/// How other nodes reach this one's data plane, and by which path it last talked to each
/// peer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Reachability {
    /// The relay this node is reachable through (configured, or advertised by a bootstrap
    /// node); `None`: only its direct addresses.
    pub relay_url: Option<String>,
    /// How peers reach this node's data plane, from the relay's QUIC address discovery.
    #[serde(default)]
    pub mode: ReachMode,
    /// This node's address as the QUIC address discovery saw it (its NAT's, behind one).
    #[serde(default)]
    pub public_addr: Option<String>,
    /// Why `mode` is what it is, for a person.
    #[serde(default)]
    pub why: String,
    /// The newest connection to each peer (at most 256 peers, the oldest forgotten first).
    pub peers: Vec<PeerPath>,
}

/// How peers reach a node's data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReachMode {
    /// Its public address is its own: peers dial it directly.
    Public,
    /// Behind NAT: peers hole-punch to its public address, or go through its relay.
    BehindNat,
    /// No address discovery answered (no relay, or it runs none).
    #[default]
    Unknown,
}

impl ReachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::BehindNat => "behind NAT",
            Self::Unknown => "unknown",
        }
    }
}

/// The path a data-plane connection to one peer took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPath {
    /// The peer's data-plane id (hex Ed25519 key).
    pub node_id: String,
    pub path: PathKind,
    /// The peer's address on that path: `IP:port`, or the relay's URL.
    pub remote_addr: String,
    /// Whether this node opened the connection (else the peer did).
    pub outgoing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// Straight to an address of the peer, from the first packet.
    Direct,
    /// Began through a relay; both sides then punched through their NATs to a direct path.
    HolePunched,
    /// Through a relay, which forwards every byte.
    Relayed,
}

impl PathKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::HolePunched => "hole-punched",
            PathKind::Relayed => "relayed",
        }
    }
}

/// What the fetcher has done since the node started.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FetchStatus {
    /// Fetches running now.
    pub in_flight: usize,
    pub completed: u64,
    pub failed: u64,
    /// Provider lookups answered from the cache (gossip or an earlier lookup) / from the DHT.
    pub lookups_cached: u64,
    pub lookups_dht: u64,
    pub lookups: LookupStatus,
}

/// One provider's standing, as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderStanding {
    pub peer_id: String,
    pub score: i32,
    pub successes: u64,
    pub failures: u64,
    pub corrupt: u64,
    pub banned: bool,
    pub banned_until: u64,
}

/// `POST /api/v1/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PublishRequest {
    pub upload_id: String,
    pub title: Option<String>,
    /// e.g. `1080p,720p`; the node's `transcode.ladder` when absent.
    pub ladder: Option<String>,
    /// `erc721:CHAIN_ID:0xCONTRACT[:TOKEN_ID]` or `erc1155:CHAIN_ID:0xCONTRACT:TOKEN_ID[:MIN]`.
    pub gate: Option<String>,
    /// Other nodes (by public origin) that may release the key of a gated video.
    #[serde(default)]
    pub key_servers: Vec<String>,
    /// The Ethereum account whose ContentRegistry entry for this video nodes will honour.
    pub registrant: Option<String>,
}

/// `202` answer to `POST /api/v1/publish`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAccepted {
    pub job_id: String,
}

/// Where a publishing job is. Stored in the node database in this form too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Failed { error: String },
    Cancelled,
    Done { manifest_id: String },
}

impl JobState {
    /// Whether the job will change no more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Self::Failed { .. } | Self::Cancelled | Self::Done { .. }
        )
    }
}

/// `GET /api/v1/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: String,
    pub title: String,
    pub ladder: String,
    pub created_at: u64,
    pub source_hash: Option<String>,
    #[serde(flatten)]
    pub state: JobState,
    /// Live progress while the job runs.
    pub progress: Option<JobProgress>,
    /// For a video published through workers: its chunks and who made each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkProgress>,
}

/// How far a running job has got.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct JobProgress {
    /// Seconds of media the source holds.
    pub duration_secs: f64,
    /// Seconds encoded so far, per track (tracks encoded on this node).
    pub tracks: Vec<TrackProgress>,
    /// The video's chunks and who transcodes each, when workers do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<ChunkProgress>,
}

/// One chunk of a video transcoded by workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkProgress {
    pub index: u32,
    /// Its first segment in every rung.
    pub first_segment: u64,
    pub segments: u32,
    /// Peer id of the worker doing it, `local` for this node, none before it is given out.
    pub worker: Option<String>,
    /// `waiting`, `running`, `verified`, or `reassigned (why)`.
    pub state: String,
    /// CPU time this node spent verifying the accepted output, in milliseconds.
    #[serde(default)]
    pub verify_cpu_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackProgress {
    pub id: String,
    pub seconds: f64,
}

/// How a blob or manifest came to be stored on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Added through the API on this node.
    Added,
    /// Fetched from other nodes.
    Fetched,
    /// Made by a publishing job on this node.
    Published,
}

/// One entry of `GET /api/v1/manifests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSummary {
    pub id: ContentHash,
    pub title: String,
    pub duration_ms: u64,
    pub created_at: u64,
    pub origin: Origin,
    /// The node holds every blob the manifest names (so it provides the manifest).
    pub complete: bool,
}

/// `GET /api/v1/manifests/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestView {
    pub id: ContentHash,
    pub manifest: Manifest,
    /// Hex of the creator's Ed25519 signature.
    pub signature: String,
}

/// `202` answer to `POST /api/v1/manifests/{id}/pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinAccepted {
    pub id: ContentHash,
    /// Blobs the manifest names, which the node now fetches in the background.
    pub blobs: usize,
}

/// `POST /api/v1/manifests/{id}/segments/{index}/report`: a problem found in a video
/// segment a worker made (bad picture, wrong frames), which lowers that worker's standing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentReport {
    /// What is wrong, in at most 256 printable ASCII characters.
    pub reason: String,
}

/// The answer to a [`SegmentReport`]: who made the segment, proven by its signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentReported {
    /// The worker's libp2p peer id.
    pub worker: String,
    /// The run of segments its receipt covers (every video rung of them).
    pub first_segment: u32,
    pub segments: u32,
    /// The receipt blob, which lists the hash of every segment it made.
    pub receipt: ContentHash,
    /// The worker's standing on this node after the report.
    pub standing: Option<ProviderStanding>,
}

/// `GET /api/v1/auth/nonce`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceResponse {
    pub nonce: String,
    /// What an EIP-4361 message must name as its domain and URI.
    pub domain: String,
    pub origin: String,
    pub chain_ids: Vec<u64>,
}

/// `POST /api/v1/auth/siwe`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInRequest {
    pub message: String,
    /// 0x-prefixed hex.
    pub signature: String,
}

/// The answer to a successful sign-in (also set as the `sg_session` cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    pub token: String,
    /// EIP-55 checksummed address.
    pub address: String,
    pub expires_at: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_state_is_flattened_into_the_job() {
        let view = JobView {
            id: "j".into(),
            title: "t".into(),
            ladder: "720p".into(),
            created_at: 1,
            source_hash: None,
            state: JobState::Failed {
                error: "bad file".into(),
            },
            progress: None,
            chunks: Vec::new(),
        };
        let json = serde_json::to_value(&view).expect("serialise");
        assert_eq!(json["state"], "failed");
        assert_eq!(json["error"], "bad file");
        let back: JobView = serde_json::from_value(json).expect("parse back");
        assert_eq!(back, view);
    }
}
