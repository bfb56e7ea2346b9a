//! The node: identity, configuration, database, data plane and swarm handle, and the
//! operations the HTTP API offers on top of them.

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use bytes::Bytes;
use futures::Stream;
use iroh_blobs::{Hash, api::blobs::BlobStatus};
use serde::Serialize;
use streamgate_protocol::{
    Announcement, ContentHash, SignedManifest, SignedNodeRecord,
    reputation::{Failure, ProviderBook, ProviderKey},
};

use crate::{
    bounded::BoundedMap,
    config::Config,
    data_plane::DataPlane,
    db::{BlobEntry, NodeDb, Origin},
    fetch::{self, FetchError},
    identity::Identity,
    runfile::unix_now,
    swarm::{SwarmHandle, SwarmStatus},
};

/// Providers whose standing is remembered (in memory and in the database).
const PROVIDER_BOOK_CAPACITY: usize = 4096;
/// How often the node re-signs and republishes its node record.
pub const RECORD_REFRESH: Duration = Duration::from_secs(600);

/// Everything a running node is made of. Shared behind an `Arc`.
#[derive(Debug)]
pub struct Node {
    pub identity: Identity,
    pub config: Config,
    pub data_dir: PathBuf,
    pub db: Arc<NodeDb>,
    pub data_plane: DataPlane,
    pub swarm: SwarmHandle,
    book: Mutex<ProviderBook>,
    own_record: RwLock<SignedNodeRecord>,
    /// One fetch per hash at a time; concurrent requests for the same blob wait for it.
    fetches: tokio::sync::Mutex<HashMap<ContentHash, Arc<tokio::sync::Mutex<()>>>>,
    /// Verified manifests recently served.
    pub(crate) manifest_cache: Mutex<BoundedMap<ContentHash, Arc<SignedManifest>>>,
    /// For manifests this node holds only in part: the blobs it still lacks.
    pub(crate) missing: Mutex<BoundedMap<ContentHash, HashSet<ContentHash>>>,
    /// Bounds background prefetches of segments ahead of players.
    pub(crate) prefetch: Arc<tokio::sync::Semaphore>,
    /// Publishing jobs and their live progress.
    pub(crate) jobs: crate::publish::Jobs,
    /// Uploads with a write in progress.
    pub(crate) uploads: crate::uploads::Busy,
    /// What the hardware probe at start-up found (None when `transcode.hardware = "off"`).
    pub capabilities: Option<streamgate_media::hw::Capabilities>,
    /// Recently served segments, in memory.
    pub(crate) hot: crate::hot::HotCache,
    /// Sign-in sessions, chains and ownership checks.
    pub access: crate::access::Access,
}

/// Manifests kept verified in memory, and partly held manifests watched for completion.
const MANIFEST_CACHE: usize = 256;
/// Segment prefetches running at once, across all players.
const MAX_PREFETCHES: usize = 8;

/// Why adding a blob failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    #[error("upload interrupted: {0}")]
    Upload(String),
    #[error("blob store: {0}")]
    Store(String),
    #[error("node database: {0}")]
    Db(#[from] crate::db::DbError),
}

#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub hash: ContentHash,
    pub size: u64,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub version: &'static str,
    pub peer_id: String,
    pub node_id: String,
    pub blobs: u64,
    pub bytes_stored: u64,
    pub bytes_served: u64,
    /// Segment bytes held in memory for serving.
    pub segment_cache_bytes: u64,
    /// HTTP body bytes sent with `sendfile`, without a copy.
    pub bytes_sent_zero_copy: u64,
    pub swarm: SwarmStatus,
    pub data_plane_addrs: Vec<String>,
    pub providers: Vec<ProviderStanding>,
}

/// One provider's standing, as the status page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderStanding {
    pub peer_id: String,
    pub score: i32,
    pub successes: u64,
    pub failures: u64,
    pub corrupt: u64,
    pub banned: bool,
    pub banned_until: u64,
}

/// What a node is assembled from, once each part has started.
#[derive(Debug)]
pub struct NodeParts {
    pub identity: Identity,
    pub config: Config,
    pub data_dir: PathBuf,
    pub db: Arc<NodeDb>,
    pub data_plane: DataPlane,
    pub swarm: SwarmHandle,
    pub capabilities: Option<streamgate_media::hw::Capabilities>,
    pub access: crate::access::Access,
}

impl Node {
    pub fn new(parts: NodeParts) -> Result<Self, crate::db::DbError> {
        let NodeParts {
            identity,
            config,
            data_dir,
            db,
            data_plane,
            swarm,
            capabilities,
            access,
        } = parts;
        let mut book = ProviderBook::new(PROVIDER_BOOK_CAPACITY);
        for (key, standing) in db.providers()? {
            book.restore(key, standing);
        }
        let own_record = data_plane
            .node_record(unix_now())
            .sign(&identity.signing_key());
        let hot = crate::hot::HotCache::new(config.api.segment_cache_bytes, data_dir.clone());
        Ok(Self {
            identity,
            config,
            data_dir,
            db,
            data_plane,
            swarm,
            book: Mutex::new(book),
            own_record: RwLock::new(own_record),
            fetches: tokio::sync::Mutex::new(HashMap::new()),
            manifest_cache: Mutex::new(BoundedMap::new(MANIFEST_CACHE)),
            missing: Mutex::new(BoundedMap::new(MANIFEST_CACHE)),
            prefetch: Arc::new(tokio::sync::Semaphore::new(MAX_PREFETCHES)),
            jobs: crate::publish::Jobs::default(),
            uploads: crate::uploads::Busy::default(),
            hot,
            capabilities,
            access,
        })
    }

    /// Signs a fresh node record and publishes it. Called at start and every
    /// [`RECORD_REFRESH`].
    pub async fn publish_node_record(&self) {
        let record = self
            .data_plane
            .node_record(unix_now())
            .sign(&self.identity.signing_key());
        if let Ok(mut own) = self.own_record.write() {
            *own = record.clone();
        }
        if let Err(e) = self.swarm.publish_node_record(record).await {
            tracing::warn!("cannot publish node record: {e}");
        }
    }

    /// Re-announces every stored blob (after a restart).
    pub async fn provide_stored(&self) -> Result<usize, crate::db::DbError> {
        let blobs = self.db.blobs()?;
        for (hash, _) in &blobs {
            if self.swarm.provide(*hash).await.is_err() {
                break;
            }
        }
        Ok(blobs.len())
    }

    /// Stores the bytes of `data` as a blob, durably, then announces it.
    pub async fn add(
        &self,
        data: impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Result<Added, AddError> {
        let store = self.data_plane.store();
        let temp_tag = store
            .blobs()
            .add_stream(data)
            .await
            .temp_tag()
            .await
            .map_err(|e| AddError::Upload(e.to_string()))?;
        let hash = ContentHash::from_bytes(*temp_tag.hash().as_bytes());
        store
            .tags()
            .set(blob_tag(&hash), temp_tag.hash_and_format())
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        drop(temp_tag);
        let size = self.finish_storing(hash, Origin::Added, true).await?;
        let announcement = Announcement {
            hash,
            size,
            provider: self.own_record(),
        };
        if let Err(e) = self.swarm.announce(announcement).await {
            tracing::warn!("cannot announce {}: {e}", hash.short());
        }
        Ok(Added { hash, size })
    }

    /// Makes a blob that is complete in the store durable and records it; with `provide`,
    /// announces it in the DHT (raw blobs; segments are announced through their manifest).
    pub(crate) async fn finish_storing(
        &self,
        hash: ContentHash,
        origin: Origin,
        provide: bool,
    ) -> Result<u64, AddError> {
        let store = self.data_plane.store();
        // The store batches commits for up to 500 ms: sync before saying "stored".
        store
            .sync_db()
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        let size = match store.blobs().status(iroh_hash(&hash)).await {
            Ok(BlobStatus::Complete { size }) => size,
            Ok(other) => {
                return Err(AddError::Store(format!(
                    "blob not complete after import: {other:?}"
                )));
            }
            Err(e) => return Err(AddError::Store(e.to_string())),
        };
        if self.db.blob(&hash)?.is_none() {
            let db = self.db.clone();
            let entry = BlobEntry {
                size,
                origin,
                stored_at: unix_now(),
            };
            tokio::task::spawn_blocking(move || db.put_blob(&hash, &entry))
                .await
                .map_err(|e| AddError::Store(e.to_string()))??;
        }
        if provide && let Err(e) = self.swarm.provide(hash).await {
            tracing::warn!("cannot provide {}: {e}", hash.short());
        }
        Ok(size)
    }

    /// Makes sure blob `hash` is complete locally, fetching it from the swarm (from providers
    /// of the blob itself) if needed, and provides it. Returns its size.
    pub async fn ensure_local(&self, hash: ContentHash) -> Result<u64, FetchError> {
        self.ensure(hash, hash, true).await
    }

    /// Like [`Self::ensure_local`] for a blob that is part of a manifest: fetched from the
    /// manifest's providers and not announced on its own.
    pub(crate) async fn ensure(
        &self,
        hash: ContentHash,
        providers_of: ContentHash,
        provide: bool,
    ) -> Result<u64, FetchError> {
        if self.db.blob(&hash).ok().flatten().is_some()
            && let Ok(BlobStatus::Complete { size }) = self
                .data_plane
                .store()
                .blobs()
                .status(iroh_hash(&hash))
                .await
        {
            return Ok(size);
        }
        let lock = {
            let mut fetches = self.fetches.lock().await;
            fetches.entry(hash).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            self.fetch_and_store(hash, providers_of, provide).await
        };
        let mut fetches = self.fetches.lock().await;
        if Arc::strong_count(&lock) <= 2 {
            fetches.remove(&hash);
        }
        result
    }

    async fn fetch_and_store(
        &self,
        hash: ContentHash,
        providers_of: ContentHash,
        provide: bool,
    ) -> Result<u64, FetchError> {
        let store = self.data_plane.store();
        // Hold a temp tag while downloading so a future garbage collector cannot take the
        // partial blob; the permanent tag is set once it is complete.
        let batch = store
            .blobs()
            .batch()
            .await
            .map_err(|e| FetchError::Store(e.to_string()))?;
        let _pin = batch
            .temp_tag(iroh_blobs::HashAndFormat::raw(iroh_hash(&hash)))
            .await
            .map_err(|e| FetchError::Store(e.to_string()))?;
        fetch::fetch(self, hash, providers_of).await?;
        store
            .tags()
            .set(
                blob_tag(&hash),
                iroh_blobs::HashAndFormat::raw(iroh_hash(&hash)),
            )
            .await
            .map_err(|e| FetchError::Store(e.to_string()))?;
        self.finish_storing(hash, Origin::Fetched, provide)
            .await
            .map_err(|e| FetchError::Store(e.to_string()))
    }

    pub fn own_record(&self) -> SignedNodeRecord {
        match self.own_record.read() {
            Ok(record) => record.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn rank_providers(
        &self,
        candidates: impl IntoIterator<Item = ProviderKey>,
    ) -> Vec<ProviderKey> {
        match self.book.lock() {
            Ok(book) => book.rank(candidates, unix_now()),
            Err(_) => candidates.into_iter().collect(),
        }
    }

    pub fn penalise(&self, key: ProviderKey, failure: Failure, detail: &str) {
        tracing::info!(provider = %hex::encode(&key[..5]), ?failure, "provider penalised: {detail}");
        self.update_standing(key, |book, now| {
            book.record_failure(key, failure, now).clone()
        });
    }

    pub fn reward(&self, key: ProviderKey) {
        self.update_standing(key, |book, now| book.record_success(key, now).clone());
    }

    fn update_standing(
        &self,
        key: ProviderKey,
        update: impl FnOnce(&mut ProviderBook, u64) -> streamgate_protocol::reputation::Standing,
    ) {
        let standing = match self.book.lock() {
            Ok(mut book) => update(&mut book, unix_now()),
            Err(_) => return,
        };
        // Standings are small and change rarely (once per provider per fetch); persisting
        // each change keeps bans across restarts.
        if let Err(e) = self.db.put_provider(&key, &standing) {
            tracing::warn!("cannot persist provider standing: {e}");
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, String> {
        let swarm = self.swarm.status().await.map_err(|e| e.to_string())?;
        let (blobs, bytes_stored) = self.db.blob_totals().map_err(|e| e.to_string())?;
        let now = unix_now();
        let providers = match self.book.lock() {
            Ok(book) => book
                .iter()
                .map(|(key, s)| ProviderStanding {
                    peer_id: crate::identity::peer_id_of(key)
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| hex::encode(key)),
                    score: s.score,
                    successes: s.successes,
                    failures: s.failures,
                    corrupt: s.corrupt,
                    banned: s.banned_until > now,
                    banned_until: s.banned_until,
                })
                .collect(),
            Err(_) => Vec::new(),
        };
        Ok(NodeStatus {
            version: env!("CARGO_PKG_VERSION"),
            peer_id: self.identity.peer_id().to_string(),
            node_id: hex::encode(self.identity.public_key()),
            blobs,
            bytes_stored,
            bytes_served: self
                .data_plane
                .stats()
                .bytes_served
                .load(std::sync::atomic::Ordering::Relaxed),
            segment_cache_bytes: self.hot.used(),
            bytes_sent_zero_copy: crate::zerocopy::bytes_sent_zero_copy(),
            swarm,
            data_plane_addrs: self
                .own_record()
                .record
                .direct_addrs
                .iter()
                .map(|a| a.to_string())
                .collect(),
            providers,
        })
    }
}

pub fn iroh_hash(hash: &ContentHash) -> Hash {
    Hash::from_bytes(*hash.as_bytes())
}

fn blob_tag(hash: &ContentHash) -> String {
    format!("sg/blob/{hash}")
}
