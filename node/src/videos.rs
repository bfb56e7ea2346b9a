//! The node's video library: manifests it holds or fetches, whether it holds every segment
//! of one (then, and only then, it announces itself as a provider of the manifest), and the
//! last step of publishing.

use std::{collections::HashSet, sync::Arc};

use streamgate_protocol::{
    Announcement, ContentHash, SignedManifest,
    manifest::{MAX_MANIFEST_BYTES, SegmentRef},
};

use crate::{
    db::{BlobEntry, ManifestEntry, Origin},
    fetch::FetchError,
    node::{AddError, Node, iroh_hash},
    runfile::unix_now,
};

/// Why a manifest could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestLoadError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{id} is not a valid manifest: {reason}")]
    Invalid { id: ContentHash, reason: String },
    #[error("local blob store: {0}")]
    Store(String),
}

impl Node {
    /// The verified manifest `id`, from memory, the local store, or the swarm.
    pub async fn manifest(
        &self,
        id: ContentHash,
    ) -> Result<Arc<SignedManifest>, ManifestLoadError> {
        if let Some(cached) = self
            .manifest_cache
            .lock()
            .ok()
            .and_then(|c| c.get(&id).cloned())
        {
            return Ok(cached);
        }
        let size = self.ensure(id, id, false).await?;
        let invalid = |reason: String| ManifestLoadError::Invalid { id, reason };
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(invalid(format!(
                "{size} bytes, more than a manifest may be"
            )));
        }
        let bytes = self
            .data_plane
            .store()
            .blobs()
            .get_bytes(iroh_hash(&id))
            .await
            .map_err(|e| ManifestLoadError::Store(e.to_string()))?;
        let signed = SignedManifest::decode_verified(&bytes).map_err(|e| invalid(e.to_string()))?;
        let signed = Arc::new(signed);
        let entry = match self
            .db
            .manifest(&id)
            .map_err(|e| ManifestLoadError::Store(e.to_string()))?
        {
            Some(entry) => entry,
            None => {
                let entry = ManifestEntry {
                    title: signed.manifest.title.clone(),
                    duration_ms: signed.manifest.duration_ms,
                    created_at: signed.manifest.created_at,
                    origin: Origin::Fetched,
                    complete: false,
                };
                self.db
                    .put_manifest(&id, &entry)
                    .map_err(|e| ManifestLoadError::Store(e.to_string()))?;
                entry
            }
        };
        if !entry.complete {
            let missing: HashSet<ContentHash> = signed
                .manifest
                .blobs()
                .map(|b| b.hash)
                .filter(|h| self.db.blob(h).ok().flatten().is_none())
                .collect();
            if missing.is_empty() {
                self.mark_complete(id).await;
            } else if let Ok(mut watch) = self.missing.lock() {
                watch.insert(id, missing);
            }
        }
        if let Ok(mut cache) = self.manifest_cache.lock() {
            cache.insert(id, signed.clone());
        }
        Ok(signed)
    }

    /// Makes sure a segment (or init segment) of manifest `id` is stored here; returns its size.
    pub async fn ensure_segment(
        &self,
        id: ContentHash,
        segment: &SegmentRef,
    ) -> Result<u64, FetchError> {
        let size = self.ensure(segment.hash, id, false).await?;
        let now_complete = match self.missing.lock() {
            Ok(mut watch) => match watch.get_mut(&id) {
                Some(missing) => {
                    missing.remove(&segment.hash);
                    missing.is_empty()
                }
                None => false,
            },
            Err(_) => false,
        };
        if now_complete {
            self.mark_complete(id).await;
        }
        Ok(size)
    }

    /// Fetches every blob of manifest `id` in the background (at most four at a time), so
    /// this node holds all of it and provides it to others. Returns how many blobs it names.
    pub async fn pin(self: &Arc<Self>, id: ContentHash) -> Result<usize, ManifestLoadError> {
        let signed = self.manifest(id).await?;
        let blobs: Vec<SegmentRef> = signed.manifest.blobs().copied().collect();
        let count = blobs.len();
        let node = self.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let failures = futures::stream::iter(blobs)
                .map(|blob| {
                    let node = node.clone();
                    async move { node.ensure_segment(id, &blob).await.err() }
                })
                .buffer_unordered(4)
                .filter_map(|e| async move { e })
                .count()
                .await;
            if failures > 0 {
                tracing::warn!(manifest = %id, failures, "pinning left blobs missing");
            }
        });
        Ok(count)
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
    pub(crate) async fn register_published(
        &self,
        signed: &SignedManifest,
        blobs: Vec<(ContentHash, BlobEntry)>,
    ) -> Result<ContentHash, AddError> {
        let store = self.data_plane.store();
        let bytes = signed.encode();
        let size = bytes.len() as u64;
        // The manifest id is the hash of exactly these bytes.
        let id = ContentHash::of(&bytes);
        let stored = store
            .blobs()
            .add_bytes(bytes)
            .with_named_tag(format!("sg/manifest/{id}"))
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        if stored.hash.as_bytes() != id.as_bytes() {
            return Err(AddError::Store(
                "the blob store hashed the manifest differently".into(),
            ));
        }
        // Durable before anything says it exists.
        store
            .sync_db()
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        let mut rows = blobs;
        rows.push((
            id,
            BlobEntry {
                size,
                origin: Origin::Published,
                stored_at: unix_now(),
            },
        ));
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.put_blobs(&rows))
            .await
            .map_err(|e| AddError::Store(e.to_string()))??;
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
        let announcement = Announcement {
            hash: id,
            size,
            provider: self.own_record(),
        };
        if let Err(e) = self.swarm.announce(announcement).await {
            tracing::warn!("cannot announce manifest {}: {e}", id.short());
        }
        Ok(id)
    }
}
