//! The data plane: an iroh endpoint serving and fetching BLAKE3-verified blobs from the
//! iroh-blobs filesystem store.
//!
//! ```text
//!   other nodes ──QUIC (iroh, ALPN iroh-blobs)──▶ Router ──▶ BlobProvider ──▶ FsStore
//!                                                   │  (upload cap, byte counter,
//!                                                   │   fault injection for tests)
//!   fetch service ──ConnectionPool (dial by node id)┘
//!               ▲
//!               └── AddressBook (MemoryLookup), fed with verified node records
//! ```
//!
//! No public relay or discovery service is contacted: the only addresses the endpoint
//! knows are those it learns from signed node records found through the swarm, and the one
//! relay it uses: the configuration's, or the one a bootstrap node advertises
//! ([`DataPlane::use_relay`], called by `services::relays`).

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::StreamExt;
use iroh::{
    Endpoint, EndpointAddr, EndpointId, RelayConfig, RelayMode, RelayUrl, TransportAddr, Watcher,
    address_lookup::memory::MemoryLookup,
    endpoint::{Connection, PathEvent, QuicTransportConfig, VarInt, presets},
    protocol::{AcceptError, ProtocolHandler, Router},
};
use iroh_blobs::{
    api::Store,
    provider::{StreamPair, events::EventSender},
    store::fs::FsStore,
    util::connection_pool::{ConnectionPool, ConnectionRef, Options as PoolOptions},
};
use streamgate_api::v1::{PathKind, PeerPath, ReachMode};
use streamgate_protocol::{NodeRecord, SignedNodeRecord, bounded::BoundedMap};
use tokio::sync::Mutex;

use streamgate_swarm::identity::Identity;

use crate::config::DataPlaneConfig;

/// Counters of what this node served.
#[derive(Debug, Default)]
pub struct ServeStats {
    pub bytes_served: AtomicU64,
    pub streams_served: AtomicU64,
}

/// Why the data plane could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataPlaneError {
    #[error("cannot open the blob store at {path}: {message}")]
    Store { path: String, message: String },
    #[error(
        "cannot bind the data-plane endpoint to {addr} (config key data_plane.bind): {message}"
    )]
    Bind { addr: String, message: String },
}

/// The running data plane.
#[derive(Debug, Clone)]
pub struct DataPlane {
    endpoint: Endpoint,
    router: Router,
    store: FsStore,
    pool: ConnectionPool,
    address_book: MemoryLookup,
    /// The relay this node can be reached through, and names in its record.
    relay_url: Arc<RwLock<Option<RelayUrl>>>,
    stats: Arc<ServeStats>,
    paths: PeerPaths,
}

/// How long [`DataPlane::use_relay`] waits for the endpoint to reach a new relay before
/// the node's record names it anyway (the endpoint keeps trying).
const RELAY_ONLINE_WAIT: Duration = Duration::from_secs(10);

impl DataPlane {
    /// Opens the store under `blobs_dir` and binds the endpoint.
    /// `bootstrap_keys`: the keys of the configured bootstrap nodes, whose relays' address
    /// discovery certificates are trusted by key ([`super::relay_tls`]).
    pub async fn start(
        config: &DataPlaneConfig,
        identity: &Identity,
        blobs_dir: &Path,
        bootstrap_keys: Vec<[u8; 32]>,
        corrupt_served_byte_at: Option<u64>,
    ) -> Result<Self, DataPlaneError> {
        remove_import_leftovers(blobs_dir);
        let store = FsStore::load(blobs_dir)
            .await
            .map_err(|e| DataPlaneError::Store {
                path: blobs_dir.display().to_string(),
                message: e.to_string(),
            })?;
        let bind_err = |message: String| DataPlaneError::Bind {
            addr: config.bind.to_string(),
            message,
        };
        let idle = Duration::from_secs(config.idle_timeout_secs);
        // A peer that dies without closing is noticed after the idle timeout; keep-alives at
        // a third of it stop healthy idle connections from timing out.
        let transport = QuicTransportConfig::builder()
            .max_idle_timeout(Some(
                idle.try_into()
                    .map_err(|_| bind_err("idle timeout out of range".into()))?,
            ))
            .keep_alive_interval(idle / 3)
            .default_path_max_idle_timeout(idle)
            .default_path_keep_alive_interval(idle / 3)
            .build();
        let relay_url: Option<RelayUrl> = if config.relay_url.is_empty() {
            None
        } else {
            Some(
                config
                    .relay_url
                    .parse()
                    .map_err(|e| bind_err(format!("data_plane.relay_url: {e}")))?,
            )
        };
        let relay_mode = match &relay_url {
            Some(url) => RelayMode::custom([url.clone()]),
            // An empty map, not Disabled: a relay learned later can only be added to an
            // endpoint that has a relay transport.
            None if config.bootstrap_relay => RelayMode::Custom(iroh::RelayMap::empty()),
            None => RelayMode::Disabled,
        };
        let portmapper = if config.portmapper {
            iroh::endpoint::PortmapperConfig::default()
        } else {
            iroh::endpoint::PortmapperConfig::Disabled
        };
        let address_book = MemoryLookup::with_provenance("streamgate-node-record");
        let endpoint = Endpoint::builder(presets::Minimal)
            .secret_key(iroh_secret_key(identity))
            .relay_mode(relay_mode)
            .ca_tls_config(super::relay_tls::ca_tls_config(bootstrap_keys))
            .portmapper_config(portmapper)
            .address_lookup(address_book.clone())
            .transport_config(transport)
            .clear_ip_transports()
            .bind_addr(config.bind)
            .map_err(|e| bind_err(e.to_string()))?
            .bind()
            .await
            .map_err(|e| bind_err(e.to_string()))?;
        let stats = Arc::new(ServeStats::default());
        let paths = PeerPaths::default();
        let limiter = (config.max_upload_bytes_per_sec > 0)
            .then(|| Arc::new(RateLimiter::new(config.max_upload_bytes_per_sec)));
        let provider = BlobProvider {
            store: Store::clone(&store),
            limiter,
            corrupt_at: corrupt_served_byte_at,
            stats: stats.clone(),
            paths: paths.clone(),
        };
        let router = Router::builder(endpoint.clone())
            .accept(iroh_blobs::ALPN, provider)
            .spawn();
        let mut pool_options = PoolOptions::default();
        pool_options.idle_timeout = Duration::from_secs(30);
        pool_options.connect_timeout = Duration::from_secs(3);
        // Bounded: a fetch uses a few providers; a node talks to at most this many at once.
        pool_options.max_connections = 256;
        let pool = ConnectionPool::new(endpoint.clone(), iroh_blobs::ALPN, pool_options);
        Ok(Self {
            endpoint,
            router,
            store,
            pool,
            address_book,
            relay_url: Arc::new(RwLock::new(relay_url)),
            stats,
            paths,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Blob bytes served to other nodes since start.
    pub fn bytes_served(&self) -> u64 {
        self.stats.bytes_served.load(Ordering::Relaxed)
    }

    pub fn node_id(&self) -> EndpointId {
        self.endpoint.id()
    }

    /// This endpoint's current address.
    pub fn addr(&self) -> EndpointAddr {
        self.endpoint.addr()
    }

    /// A watcher of this endpoint's addresses: it is updated when a relay is reached, a
    /// public address discovered, an interface added.
    pub fn address_watcher(&self) -> impl Watcher<Value = EndpointAddr> + use<> {
        self.endpoint.watch_addr()
    }

    /// A record of this node's data-plane addresses, to be signed and published.
    pub fn node_record(&self, issued_at: u64) -> NodeRecord {
        let addr = self.addr();
        let direct_addrs = addr
            .addrs
            .iter()
            .filter_map(|a| match a {
                TransportAddr::Ip(sock) => Some(*sock),
                _ => None,
            })
            .take(streamgate_protocol::limits::MAX_NODE_ADDRS)
            .collect();
        NodeRecord {
            node_key: *self.node_id().as_bytes(),
            direct_addrs,
            relay_url: self.relay_url().map(|u| u.to_string()),
            issued_at,
        }
    }

    /// The relay this node is reachable through, if it has one.
    pub fn relay_url(&self) -> Option<RelayUrl> {
        match self.relay_url.read() {
            Ok(url) => url.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Makes `url` this endpoint's relay (replacing none: it is called only when the node
    /// has none). The node's record and status name it once the endpoint has reached it
    /// (or after [`RELAY_ONLINE_WAIT`]), so that a peer reading the record finds a relay
    /// that already forwards to this node.
    pub async fn use_relay(&self, url: RelayUrl) {
        self.endpoint
            .insert_relay(url.clone(), Arc::new(RelayConfig::from(url.clone())))
            .await;
        if tokio::time::timeout(RELAY_ONLINE_WAIT, self.endpoint.online())
            .await
            .is_err()
        {
            tracing::warn!(%url, "relay not reached yet; the endpoint keeps trying");
        }
        if let Ok(mut current) = self.relay_url.write() {
            *current = Some(url);
        }
    }

    /// How peers reach this node (mode, public address, why), from the newest report of
    /// the relay's QUIC address discovery.
    pub fn own_reachability(&self) -> (ReachMode, Option<std::net::SocketAddr>, String) {
        let report = self.endpoint.net_report().get();
        let public = report.as_ref().and_then(|r| {
            r.global_v4
                .map(std::net::SocketAddr::V4)
                .or(r.global_v6.map(std::net::SocketAddr::V6))
        });
        let mapping_varies = report.as_ref().and_then(|r| match public {
            Some(std::net::SocketAddr::V6(_)) => r.mapping_varies_by_dest_ipv6,
            _ => r.mapping_varies_by_dest_ipv4,
        });
        let (mode, why) = classify_reachability(
            public,
            public.is_some_and(|p| is_own_ip(p.ip())),
            mapping_varies,
            self.relay_url().as_ref(),
        );
        (mode, public, why)
    }

    /// Teaches the endpoint where a node can be reached, from a verified record.
    pub fn learn(&self, record: &SignedNodeRecord) {
        let Ok(id) = EndpointId::from_bytes(&record.record.node_key) else {
            return;
        };
        let mut addr = EndpointAddr::new(id);
        for sock in &record.record.direct_addrs {
            addr = addr.with_ip_addr(*sock);
        }
        if let Some(url) = record
            .record
            .relay_url
            .as_ref()
            .and_then(|u| u.parse().ok())
        {
            addr = addr.with_relay_url(url);
        }
        // Replace, not merge: the newest signed record is the truth about a node's addresses.
        self.address_book.set_endpoint_info(addr);
    }

    /// Explains a failed connection from what the newest record of `node` taught the
    /// address book.
    fn why_unreachable(&self, node: EndpointId, error: &str) -> String {
        let Some(known) = self.address_book.get_endpoint_info(node) else {
            return format!("cannot connect (no record of its addresses): {error}");
        };
        let addrs = known
            .ip_addrs()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match known.relay_urls().next() {
            Some(relay) => {
                format!("cannot connect, directly ({addrs}) or through its relay {relay}: {error}")
            }
            None if !known.ip_addrs().any(|a| is_public(a.ip())) => format!(
                "provider unreachable (behind NAT, no relay): its record lists only private addresses ({addrs}) and no relay; {error}"
            ),
            None => format!("cannot connect to {addrs} (it names no relay): {error}"),
        }
    }

    /// A pooled connection to a node whose record was learned.
    /// On failure, says why in terms of what the peer's record offered (no relay and only
    /// private addresses: it is behind NAT), not only iroh's error.
    pub async fn connect(&self, node: EndpointId) -> Result<ConnectionRef, String> {
        let conn = match self.pool.get_or_connect(node).await {
            Ok(conn) => conn,
            Err(e) => return Err(self.why_unreachable(node, &e.to_string())),
        };
        self.paths.track(&conn, true);
        Ok(conn)
    }

    /// The newest connection's path to each peer.
    pub fn peer_paths(&self) -> Vec<PeerPath> {
        self.paths.snapshot()
    }

    /// Drops a pooled connection, e.g. after the peer misbehaved.
    pub async fn disconnect(&self, node: EndpointId) {
        self.pool.close(node).await.ok();
    }

    /// Stops serving, closes connections and makes the store durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.router.shutdown().await {
            tracing::warn!("data plane router shutdown: {e}");
        }
        if let Err(e) = self.store.sync_db().await {
            tracing::warn!("blob store sync: {e}");
        }
        if let Err(e) = self.store.shutdown().await {
            tracing::warn!("blob store shutdown: {e}");
        }
    }
}

/// The node key as iroh's secret key: the same Ed25519 key as the libp2p identity.
pub fn iroh_secret_key(identity: &Identity) -> iroh::SecretKey {
    iroh::SecretKey::from_bytes(&identity.secret_bytes())
}

/// Peers whose paths are remembered; beyond it the oldest are forgotten.
const MAX_PEER_PATHS: usize = 256;

/// The path of the newest connection with each peer, followed as iroh changes it (a
/// connection that starts through the relay and later selects a direct path was
/// hole-punched). The entries outlive their connections: `status` shows how each peer was
/// last reached.
#[derive(Debug, Clone)]
struct PeerPaths(Arc<std::sync::Mutex<BoundedMap<EndpointId, TrackedPath>>>);

#[derive(Debug, Clone)]
struct TrackedPath {
    connection: usize,
    started_relayed: bool,
    path: PeerPath,
}

impl Default for PeerPaths {
    fn default() -> Self {
        Self(Arc::new(std::sync::Mutex::new(BoundedMap::new(
            MAX_PEER_PATHS,
        ))))
    }
}

impl PeerPaths {
    /// Starts following `conn`'s paths, unless it is already followed (the pool hands out
    /// one connection many times).
    fn track(&self, conn: &Connection, outgoing: bool) {
        let peer = conn.remote_id();
        let connection = conn.stable_id();
        let Some((started_relayed, remote_addr)) = conn
            .paths()
            .iter()
            .find(|p| p.is_selected())
            .map(|p| (p.is_relay(), p.remote_addr().clone()))
        else {
            return;
        };
        {
            let Ok(mut paths) = self.0.lock() else {
                return;
            };
            if paths.get(&peer).is_some_and(|t| t.connection == connection) {
                return;
            }
            paths.insert(
                peer,
                TrackedPath {
                    connection,
                    started_relayed,
                    path: PeerPath {
                        node_id: hex::encode(peer.as_bytes()),
                        path: path_kind(started_relayed, &remote_addr),
                        remote_addr: transport_addr_text(&remote_addr),
                        outgoing,
                    },
                },
            );
        }
        let mut events = conn.path_events();
        let paths = self.clone();
        // Ends when the connection closes.
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let PathEvent::Selected { remote_addr, .. } = event {
                    paths.selected(peer, connection, &remote_addr);
                }
            }
        });
    }

    fn selected(&self, peer: EndpointId, connection: usize, remote_addr: &TransportAddr) {
        let Ok(mut paths) = self.0.lock() else {
            return;
        };
        if let Some(tracked) = paths.get_mut(&peer)
            && tracked.connection == connection
        {
            tracked.path.path = path_kind(tracked.started_relayed, remote_addr);
            tracked.path.remote_addr = transport_addr_text(remote_addr);
        }
    }

    fn snapshot(&self) -> Vec<PeerPath> {
        let Ok(paths) = self.0.lock() else {
            return Vec::new();
        };
        let mut out: Vec<PeerPath> = paths.values().map(|t| t.path.clone()).collect();
        out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        out
    }
}

/// Whether other networks can route to `ip`: not private (RFC 1918, ULA), shared
/// (carrier-grade NAT, 100.64.0.0/10), loopback, link-local or unspecified.
fn is_public(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            let shared = a == 100 && (64..128).contains(&b);
            !(v4.is_private()
                || shared
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified())
        }
        std::net::IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            let unique_local = first & 0xfe00 == 0xfc00;
            let link_local = first & 0xffc0 == 0xfe80;
            !(unique_local || link_local || v6.is_loopback() || v6.is_unspecified())
        }
    }
}

/// Whether `ip` is an address of this host: only then can a socket be bound to it.
fn is_own_ip(ip: std::net::IpAddr) -> bool {
    std::net::UdpSocket::bind(std::net::SocketAddr::new(ip, 0)).is_ok()
}

/// The reachability mode and its reason, from what address discovery saw (`public`),
/// whether that is this host's own address, and whether the NAT's mapping differs per
/// destination (known only with two or more relays).
fn classify_reachability(
    public: Option<std::net::SocketAddr>,
    public_is_own: bool,
    mapping_varies: Option<bool>,
    relay: Option<&RelayUrl>,
) -> (ReachMode, String) {
    let fallback = match relay {
        Some(relay) => format!("relay {relay} carries what no direct path can"),
        None => "no relay: only peers this node dials first can reach it".to_string(),
    };
    match (public, relay) {
        (None, Some(relay)) => (
            ReachMode::Unknown,
            format!(
                "no QUIC address discovery answer from relay {relay} (yet, or it runs none); peers try this node's listed addresses, then the relay"
            ),
        ),
        (None, None) => (
            ReachMode::Unknown,
            "no relay, so no address discovery: peers can reach this node only at its listed addresses".to_string(),
        ),
        (Some(public), _) if public_is_own => (
            ReachMode::Public,
            format!("address discovery sees this node at {public}, an address of this host: peers dial it directly"),
        ),
        (Some(public), _) if mapping_varies == Some(true) => (
            ReachMode::BehindNat,
            format!(
                "behind a NAT that maps each destination to another port (seen as {public} by one relay, differently by another): hole punching seldom works; {fallback}"
            ),
        ),
        (Some(public), _) => (
            ReachMode::BehindNat,
            format!(
                "behind NAT: address discovery sees this node at {public}, not an address of this host; peers hole-punch to it, and {fallback}"
            ),
        ),
    }
}

fn path_kind(started_relayed: bool, selected: &TransportAddr) -> PathKind {
    match (selected, started_relayed) {
        (TransportAddr::Relay(_), _) => PathKind::Relayed,
        (_, true) => PathKind::HolePunched,
        (_, false) => PathKind::Direct,
    }
}

fn transport_addr_text(addr: &TransportAddr) -> String {
    match addr {
        TransportAddr::Ip(sock) => sock.to_string(),
        TransportAddr::Relay(url) => url.to_string(),
        other => format!("{other:?}"),
    }
}

/// Crash leftovers of interrupted imports (`blobs/temp/`) are never cleaned by iroh-blobs'
/// store itself, neither on reopen nor by garbage collection. They are only ever partial
/// copies, never referenced by the database, so removing them before the store opens
/// loses nothing.
fn remove_import_leftovers(blobs_dir: &Path) {
    let temp = blobs_dir.join("temp");
    let Ok(entries) = std::fs::read_dir(&temp) else {
        return;
    };
    for entry in entries.flatten() {
        if let Err(e) = std::fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), "cannot remove import leftover: {e}");
        }
    }
}

/// Serves the iroh-blobs protocol from the store, through [`ServedStream`].
#[derive(Debug, Clone)]
struct BlobProvider {
    store: Store,
    limiter: Option<Arc<RateLimiter>>,
    corrupt_at: Option<u64>,
    stats: Arc<ServeStats>,
    paths: PeerPaths,
}

impl ProtocolHandler for BlobProvider {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        self.paths.track(&conn, false);
        let connection_id = conn.stable_id() as u64;
        // QUIC's stream limit bounds how many of these run at once per connection.
        while let Ok((send, recv)) = conn.accept_bi().await {
            let writer = ServedStream {
                inner: send,
                written: 0,
                limiter: self.limiter.clone(),
                corrupt_at: self.corrupt_at,
                stats: self.stats.clone(),
            };
            self.stats.streams_served.fetch_add(1, Ordering::Relaxed);
            let pair = StreamPair::new(connection_id, recv, writer, EventSender::DEFAULT);
            tokio::spawn(iroh_blobs::provider::handle_stream(
                pair,
                self.store.clone(),
            ));
        }
        Ok(())
    }
}

/// The send half of a served stream: counts bytes, applies the upload cap, and (in fault
/// tests only) corrupts one byte.
struct ServedStream {
    inner: iroh::endpoint::SendStream,
    written: u64,
    limiter: Option<Arc<RateLimiter>>,
    corrupt_at: Option<u64>,
    stats: Arc<ServeStats>,
}

impl ServedStream {
    async fn account(&mut self, len: usize) {
        if let Some(limiter) = &self.limiter {
            limiter.acquire(len as u64).await;
        }
        self.stats
            .bytes_served
            .fetch_add(len as u64, Ordering::Relaxed);
    }

    /// Returns the bytes to send: unchanged, or with the fault-injection bit flipped.
    fn maybe_corrupt<'a>(&self, buf: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self.corrupt_at {
            Some(at) if (self.written..self.written + buf.len() as u64).contains(&at) => {
                let mut owned = buf.to_vec();
                owned[(at - self.written) as usize] ^= 0x01;
                std::borrow::Cow::Owned(owned)
            }
            _ => std::borrow::Cow::Borrowed(buf),
        }
    }
}

impl iroh_blobs::util::SendStream for ServedStream {
    async fn send_bytes(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.account(bytes.len()).await;
        let out = match self.maybe_corrupt(&bytes) {
            std::borrow::Cow::Borrowed(_) => bytes.clone(),
            std::borrow::Cow::Owned(v) => Bytes::from(v),
        };
        self.written += bytes.len() as u64;
        iroh_blobs::util::SendStream::send_bytes(&mut self.inner, out).await
    }

    async fn send(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.account(buf.len()).await;
        let result = match self.maybe_corrupt(buf) {
            // The common case: forward the caller's slice without copying it.
            std::borrow::Cow::Borrowed(b) => {
                iroh_blobs::util::SendStream::send(&mut self.inner, b).await
            }
            std::borrow::Cow::Owned(v) => {
                iroh_blobs::util::SendStream::send(&mut self.inner, &v).await
            }
        };
        self.written += buf.len() as u64;
        result
    }

    async fn sync(&mut self) -> std::io::Result<()> {
        iroh_blobs::util::SendStream::sync(&mut self.inner).await
    }

    fn reset(&mut self, code: VarInt) -> std::io::Result<()> {
        iroh_blobs::util::SendStream::reset(&mut self.inner, code)
    }

    async fn stopped(&mut self) -> std::io::Result<Option<VarInt>> {
        iroh_blobs::util::SendStream::stopped(&mut self.inner).await
    }

    fn id(&self) -> u64 {
        iroh_blobs::util::SendStream::id(&self.inner)
    }
}

/// A token bucket shared by every stream a node serves: the operator's upload cap.
#[derive(Debug)]
struct RateLimiter {
    bytes_per_sec: u64,
    /// Tokens available (negative: debt to wait off) and when they were last refilled.
    state: Mutex<(f64, tokio::time::Instant)>,
}

impl RateLimiter {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec,
            state: Mutex::new((0.0, tokio::time::Instant::now())),
        }
    }

    /// Takes `n` tokens, waiting while the bucket is in debt. Streams queue on the mutex, so
    /// they share the cap roughly in turn.
    async fn acquire(&self, n: u64) {
        let rate = self.bytes_per_sec as f64;
        // At most a tenth of a second of burst.
        let burst = (rate / 10.0).max(16.0 * 1024.0);
        let mut state = self.state.lock().await;
        let now = tokio::time::Instant::now();
        let (tokens, last) = &mut *state;
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        *tokens -= n as f64;
        if *tokens < 0.0 {
            let wait = Duration::from_secs_f64(-*tokens / rate);
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iroh_node_id_is_the_libp2p_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = Identity::create(dir.path()).expect("create");
        assert_eq!(
            *iroh_secret_key(&identity).public().as_bytes(),
            identity.public_key()
        );
    }

    #[test]
    fn addresses_behind_nat_are_not_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.2",
            "100.64.1.2",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in ["198.18.0.3", "100.128.0.1", "8.8.8.8", "2001:db8::1"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn reachability_is_told_from_what_address_discovery_saw() {
        let relay: RelayUrl = "https://198.18.0.1:3340".parse().expect("url");
        let seen: std::net::SocketAddr = "198.18.0.3:40001".parse().expect("addr");
        let (mode, why) = classify_reachability(Some(seen), false, None, Some(&relay));
        assert_eq!(mode, ReachMode::BehindNat);
        assert!(
            why.contains("198.18.0.3:40001") && why.contains("hole-punch"),
            "{why}"
        );
        let (mode, why) = classify_reachability(Some(seen), false, Some(true), Some(&relay));
        assert_eq!(mode, ReachMode::BehindNat);
        assert!(why.contains("seldom"), "{why}");
        let (mode, _) = classify_reachability(Some(seen), true, None, Some(&relay));
        assert_eq!(mode, ReachMode::Public);
        let (mode, why) = classify_reachability(None, false, None, None);
        assert_eq!(mode, ReachMode::Unknown);
        assert!(why.contains("no relay"), "{why}");
        // Loopback is always this host's; a documentation address never is.
        assert!(is_own_ip("127.0.0.1".parse().expect("ip")));
        assert!(!is_own_ip("192.0.2.77".parse().expect("ip")));
    }
}
