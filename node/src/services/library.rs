//! The node's video library: manifests it holds or fetches, the segments they name, whether
//! it holds every segment of one (then, and only then, it provides the manifest), and the
//! last step of publishing.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use streamgate_api::v1::ManifestSummary;
use streamgate_protocol::{
    ContentHash, SignedManifest,
    bounded::BoundedMap,
    job::SignedReceipt,
    manifest::{MAX_MANIFEST_BYTES, SegmentRef, Track, TrackKind, WorkRecord},
};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};
use tokio::sync::Semaphore;

use super::access::keys;
use super::{
    blobs::{AddError, Blobs},
    fetch::{FetchError, FetchRequest, Fetcher, Source},
    presence::Presence,
};
use crate::actors::db::{BlobEntry, DbError, ManifestEntry, NodeDb, Origin};

/// Manifests kept verified in memory, and partly held manifests watched for completion.
const MANIFEST_CACHE: usize = 256;
/// Segment prefetches running at once, across all players.
const MAX_PREFETCHES: usize = 8;
/// Segments fetched ahead of the one a player asked for.
const PREFETCH_AHEAD: usize = 3;
/// Blobs of one manifest fetched at once while pinning.
const PIN_PARALLEL: usize = 4;

/// Why a manifest could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestLoadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{id} is not a valid manifest: {reason}")]
    Invalid { id: ContentHash, reason: String },
    #[error("local store: {0}")]
    Store(String),
}

impl From<DbError> for ManifestLoadError {
    fn from(e: DbError) -> Self {
        Self::Store(e.to_string())
    }
}

#[derive(Debug)]
pub struct Library {
    db: Arc<NodeDb>,
    blobs: Arc<Blobs>,
    fetcher: Fetcher,
    swarm: SwarmHandle,
    presence: Arc<Presence>,
    /// Opens this node's key wraps, to refuse manifests carrying copied ones.
    identity: Identity,
    /// Verified manifests recently served.
    cache: Mutex<BoundedMap<ContentHash, Arc<SignedManifest>>>,
    /// For manifests this node holds only in part: the blobs it still lacks.
    missing: Mutex<BoundedMap<ContentHash, HashSet<ContentHash>>>,
    prefetches: Arc<Semaphore>,
}

impl Library {
    pub fn new(
        db: Arc<NodeDb>,
        blobs: Arc<Blobs>,
        fetcher: Fetcher,
        swarm: SwarmHandle,
        presence: Arc<Presence>,
        identity: Identity,
    ) -> Self {
        Self {
            db,
            blobs,
            fetcher,
            swarm,
            presence,
            identity,
            cache: Mutex::new(BoundedMap::new(MANIFEST_CACHE)),
            missing: Mutex::new(BoundedMap::new(MANIFEST_CACHE)),
            prefetches: Arc::new(Semaphore::new(MAX_PREFETCHES)),
        }
    }

    /// The verified manifest `id`, from memory, the local store, or the swarm.
    pub async fn manifest(
        &self,
        id: ContentHash,
    ) -> Result<Arc<SignedManifest>, ManifestLoadError> {
        if let Some(cached) = self.cache.lock().ok().and_then(|c| c.get(&id).cloned()) {
            return Ok(cached);
        }
        let size = self
            .fetcher
            .ensure(FetchRequest {
                provide: false,
                ..FetchRequest::blob(id)
            })
            .await?;
        let invalid = |reason: String| ManifestLoadError::Invalid { id, reason };
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(invalid(format!(
                "{size} bytes, more than a manifest may be"
            )));
        }
        let bytes = self
            .blobs
            .get_bytes(&id)
            .await
            .map_err(ManifestLoadError::Store)?;
        let signed = SignedManifest::decode_verified(&bytes).map_err(|e| invalid(e.to_string()))?;
        if let Err(e) = keys::check_wraps(&signed.manifest, &self.identity.signing_key()) {
            // Hostile: never listed, cached or provided. A copy fetched from the swarm is
            // forgotten, so it is not provided again after a restart either.
            tracing::warn!(manifest = %id, "manifest refused: {e}");
            if self
                .db
                .blob(&id)?
                .is_some_and(|b| b.origin == Origin::Fetched)
            {
                self.db.remove_blob(&id)?;
            }
            return Err(invalid(e.to_string()));
        }
        let signed = Arc::new(signed);
        let entry = match self.db.manifest(&id)? {
            Some(entry) => entry,
            None => {
                let entry = ManifestEntry {
                    title: signed.manifest.title.clone(),
                    duration_ms: signed.manifest.duration_ms,
                    created_at: signed.manifest.created_at,
                    origin: Origin::Fetched,
                    complete: false,
                };
                self.db.put_manifest(&id, &entry)?;
                entry
            }
        };
        if !entry.complete {
            let missing: HashSet<ContentHash> = signed
                .manifest
                .blobs()
                .map(|b| b.hash)
                .filter(|h| !self.blobs.is_recorded(h))
                .collect();
            if missing.is_empty() {
                self.mark_complete(id).await;
            } else if let Ok(mut watch) = self.missing.lock() {
                watch.insert(id, missing);
            }
        }
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(id, signed.clone());
        }
        Ok(signed)
    }

    fn segment_request(id: ContentHash, segment: &SegmentRef, first_wanted: u64) -> FetchRequest {
        FetchRequest {
            hash: segment.hash,
            providers_of: id,
            claimed_size: Some(segment.size),
            provide: false,
            first_wanted,
            known_provider: None,
        }
    }

    /// Where to read a segment (or init segment) of manifest `id` from: the store, or the
    /// fetch that brings it, from `first_wanted` on first.
    pub async fn open_segment(
        self: &Arc<Self>,
        id: ContentHash,
        segment: &SegmentRef,
        first_wanted: u64,
    ) -> Result<Source, FetchError> {
        let source = self
            .fetcher
            .open(Self::segment_request(id, segment, first_wanted))
            .await?;
        match &source {
            Source::Local { .. } => self.segment_stored(id, segment.hash).await,
            Source::Live { blob, .. } => {
                let (library, blob, hash) = (self.clone(), blob.clone(), segment.hash);
                tokio::spawn(async move {
                    if blob.finished().await.is_ok() {
                        library.segment_stored(id, hash).await;
                    }
                });
            }
        }
        Ok(source)
    }

    /// Makes sure a segment (or init segment) of manifest `id` is stored here.
    pub async fn ensure_segment(
        &self,
        id: ContentHash,
        segment: &SegmentRef,
    ) -> Result<u64, FetchError> {
        let size = self
            .fetcher
            .ensure(Self::segment_request(id, segment, 0))
            .await?;
        self.segment_stored(id, segment.hash).await;
        Ok(size)
    }

    /// Who made video segment `index` of manifest `id`: `None` when the publishing node did;
    /// otherwise its work record, proven by the receipt the worker signed (fetched if
    /// needed), which must list that run's bytes in every video rung.
    pub async fn made_by(
        &self,
        id: ContentHash,
        index: u32,
    ) -> Result<Option<WorkRecord>, ManifestLoadError> {
        let signed = self.manifest(id).await?;
        let manifest = &signed.manifest;
        let Some(record) = manifest.made_by(index).copied() else {
            return Ok(None);
        };
        let invalid = |reason: String| ManifestLoadError::Invalid { id, reason };
        self.ensure_segment(id, &record.receipt).await?;
        let bytes = self
            .blobs
            .get_bytes(&record.receipt.hash)
            .await
            .map_err(|e| ManifestLoadError::Store(e.to_string()))?;
        let receipt = SignedReceipt::decode_signed(&bytes)
            .map_err(|e| invalid(format!("the receipt for segment {index}: {e}")))?;
        if receipt.receipt.worker != record.worker {
            return Err(invalid(format!(
                "the receipt for segment {index} is signed by another worker than its record names"
            )));
        }
        let first = record.first_segment as usize;
        let run = first..first.saturating_add(record.segments as usize);
        for track in manifest
            .tracks
            .iter()
            .filter(|t| t.kind == TrackKind::Video)
        {
            let listed = receipt
                .receipt
                .rungs
                .iter()
                .find(|r| r.id == track.id)
                .map(|r| r.segments.iter().map(|s| s.hash).collect::<Vec<_>>());
            let published: Option<Vec<ContentHash>> = track
                .segments
                .get(run.clone())
                .map(|s| s.iter().map(|s| s.hash).collect());
            if listed.is_none() || listed != published {
                return Err(invalid(format!(
                    "the receipt for segment {index} does not list rung {}'s bytes",
                    track.id
                )));
            }
        }
        Ok(Some(record))
    }

    /// Starts fetching the segments after `next - 1` in the background, within the node-wide
    /// prefetch limit; segments already held are skipped.
    pub fn prefetch(self: &Arc<Self>, id: ContentHash, track: &Track, next: usize) {
        for segment in track.segments.iter().skip(next).take(PREFETCH_AHEAD) {
            if self.blobs.is_recorded(&segment.hash) {
                continue;
            }
            let Ok(permit) = self.prefetches.clone().try_acquire_owned() else {
                return;
            };
            let (library, segment) = (self.clone(), *segment);
            tokio::spawn(async move {
                if let Err(e) = library.ensure_segment(id, &segment).await {
                    tracing::debug!("prefetch of {} failed: {e}", segment.hash.short());
                }
                drop(permit);
            });
        }
    }

    /// Fetches every blob of manifest `id` in the background, so this node holds all of it
    /// and provides it to others. Returns how many blobs it names.
    pub async fn pin(self: &Arc<Self>, id: ContentHash) -> Result<usize, ManifestLoadError> {
        let signed = self.manifest(id).await?;
        let blobs: Vec<SegmentRef> = signed.manifest.blobs().copied().collect();
        let count = blobs.len();
        let library = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let failures = futures::stream::iter(blobs)
                .map(|blob| {
                    let library = library.clone();
                    async move { library.ensure_segment(id, &blob).await.err() }
                })
                .buffer_unordered(PIN_PARALLEL)
                .filter_map(|e| async move { e })
                .count()
                .await;
            if failures > 0 {
                tracing::warn!(manifest = %id, failures, "pinning left blobs missing");
            }
        });
        Ok(count)
    }

    /// A blob of manifest `id` is stored; the manifest may now be complete.
    async fn segment_stored(&self, id: ContentHash, hash: ContentHash) {
        let now_complete = match self.missing.lock() {
            Ok(mut watch) => match watch.get_mut(&id) {
                Some(missing) => missing.remove(&hash) && missing.is_empty(),
                None => false,
            },
            Err(_) => false,
        };
        if now_complete {
            self.mark_complete(id).await;
        }
    }

    /// Every blob of manifest `id` is here: say so in the database and the DHT.
    async fn mark_complete(&self, id: ContentHash) {
        if let Ok(mut watch) = self.missing.lock() {
            watch.remove(&id);
        }
        if let Ok(Some(mut entry)) = self.db.manifest(&id) {
            entry.complete = true;
            if let Err(e) = self.db.put_manifest(&id, &entry) {
                tracing::warn!("cannot record manifest {}: {e}", id.short());
            }
        }
        tracing::info!(manifest = %id, "holding every segment; providing the manifest");
        if let Err(e) = self.swarm.provide(id).await {
            tracing::warn!("cannot provide manifest {}: {e}", id.short());
        }
    }

    /// Stores a manifest this node just published (all its blobs are already stored and
    /// listed in `blobs`), records everything in one transaction, and announces it.
    pub async fn register_published(
        &self,
        signed: &SignedManifest,
        blobs: Vec<(ContentHash, BlobEntry)>,
    ) -> Result<ContentHash, AddError> {
        let bytes = signed.encode();
        let size = bytes.len() as u64;
        // The manifest id is the hash of exactly these bytes.
        let id = ContentHash::of(&bytes);
        self.blobs
            .store_bytes(id, bytes, format!("sg/manifest/{id}"))
            .await?;
        // Durable before anything says it exists.
        self.blobs.sync().await?;
        let mut rows = blobs;
        rows.push((
            id,
            BlobEntry {
                size,
                origin: Origin::Published,
                stored_at: unix_now(),
            },
        ));
        self.blobs.record(rows).await?;
        self.db.put_manifest(
            &id,
            &ManifestEntry {
                title: signed.manifest.title.clone(),
                duration_ms: signed.manifest.duration_ms,
                created_at: signed.manifest.created_at,
                origin: Origin::Published,
                complete: true,
            },
        )?;
        if let Err(e) = self.swarm.provide(id).await {
            tracing::warn!("cannot provide manifest {}: {e}", id.short());
        }
        self.presence.announce(id, size).await;
        Ok(id)
    }

    /// Every manifest this node holds (in part or whole).
    pub fn list(&self) -> Result<Vec<ManifestSummary>, DbError> {
        Ok(self
            .db
            .manifests()?
            .into_iter()
            .filter_map(|(id, e)| {
                Some(ManifestSummary {
                    id: id.parse().ok()?,
                    title: e.title,
                    duration_ms: e.duration_ms,
                    created_at: e.created_at,
                    origin: e.origin,
                    complete: e.complete,
                })
            })
            .collect())
    }
}
