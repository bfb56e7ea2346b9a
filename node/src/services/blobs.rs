//! The local store of verified blobs: bytes in the iroh-blobs store, one redb row per blob
//! saying it is complete, durable and why it is kept.
//!
//! A blob is recorded only after the store has made it durable (`sync_db`), so every row
//! names bytes that are complete and verified; imports are atomic, so a kill leaves a blob
//! either absent or whole.

use std::{ops::Range, sync::Arc};

use bytes::Bytes;
use futures::Stream;
use iroh_blobs::{
    Hash, HashAndFormat,
    api::{Store, blobs::BlobReader, blobs::BlobStatus},
};
use streamgate_api::v1::Added;
use streamgate_protocol::{ContentHash, SignedManifest, manifest::MAX_MANIFEST_BYTES};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};

use super::{access::keys, presence::Presence};
use crate::actors::db::{BlobEntry, DbError, NodeDb, Origin};

/// Why storing a blob failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddError {
    #[error("upload interrupted: {0}")]
    Upload(String),
    #[error("blob store: {0}")]
    Store(String),
    #[error("node database: {0}")]
    Db(#[from] DbError),
    #[error("refused: {0}")]
    Refused(String),
}

#[derive(Debug)]
pub struct Blobs {
    store: Store,
    db: Arc<NodeDb>,
    swarm: SwarmHandle,
    presence: Arc<Presence>,
    /// Opens this node's key wraps, to refuse manifests carrying copied ones.
    identity: Identity,
}

pub fn iroh_hash(hash: &ContentHash) -> Hash {
    Hash::from_bytes(*hash.as_bytes())
}

/// The tag that keeps a blob from garbage collection.
pub fn blob_tag(hash: &ContentHash) -> String {
    format!("sg/blob/{hash}")
}

impl Blobs {
    pub fn new(
        store: Store,
        db: Arc<NodeDb>,
        swarm: SwarmHandle,
        presence: Arc<Presence>,
        identity: Identity,
    ) -> Self {
        Self {
            store,
            db,
            swarm,
            presence,
            identity,
        }
    }

    /// The iroh-blobs store, for the fetcher's imports.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores the bytes of `data` as a blob, durably, then provides and announces it.
    pub async fn add(
        &self,
        data: impl Stream<Item = std::io::Result<Bytes>> + Send + Sync + 'static,
    ) -> Result<Added, AddError> {
        let temp_tag = self
            .store
            .blobs()
            .add_stream(data)
            .await
            .temp_tag()
            .await
            .map_err(|e| AddError::Upload(e.to_string()))?;
        let hash = ContentHash::from_bytes(*temp_tag.hash().as_bytes());
        // Refused before it is tagged: the temp tag's drop leaves the bytes unreferenced.
        self.refuse_hostile_manifest(&hash).await?;
        self.store
            .tags()
            .set(blob_tag(&hash), temp_tag.hash_and_format())
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        drop(temp_tag);
        let size = self.finish_storing(hash, Origin::Added, true).await?;
        self.presence.announce(hash, size).await;
        Ok(Added { hash, size })
    }

    /// A manifest whose key wrap for this node was sealed for another manifest is refused
    /// here too, so it is never provided, whatever route stored it.
    async fn refuse_hostile_manifest(&self, hash: &ContentHash) -> Result<(), AddError> {
        let Ok(BlobStatus::Complete { size }) = self.store.blobs().status(iroh_hash(hash)).await
        else {
            return Ok(());
        };
        if size > MAX_MANIFEST_BYTES as u64 {
            return Ok(());
        }
        let bytes = self.get_bytes(hash).await.map_err(AddError::Store)?;
        let Ok(signed) = SignedManifest::decode_verified(&bytes) else {
            return Ok(());
        };
        keys::check_wraps(&signed.manifest, &self.identity.signing_key()).map_err(|e| {
            tracing::warn!(blob = %hash, "manifest refused: {e}");
            AddError::Refused(format!("manifest {hash}: {e}"))
        })
    }

    /// Tags a blob that is complete in the store, makes it durable and records it; with
    /// `provide`, announces it in the DHT (raw blobs; segments are provided through their
    /// manifest). Returns its size.
    pub async fn finish_storing(
        &self,
        hash: ContentHash,
        origin: Origin,
        provide: bool,
    ) -> Result<u64, AddError> {
        let store_err = |e: &dyn std::fmt::Display| AddError::Store(e.to_string());
        self.store
            .tags()
            .set(blob_tag(&hash), HashAndFormat::raw(iroh_hash(&hash)))
            .await
            .map_err(|e| store_err(&e))?;
        // The store batches commits for up to 500 ms: sync before saying "stored".
        self.store.sync_db().await.map_err(|e| store_err(&e))?;
        let size = match self.store.blobs().status(iroh_hash(&hash)).await {
            Ok(BlobStatus::Complete { size }) => size,
            Ok(other) => {
                return Err(AddError::Store(format!(
                    "blob not complete after import: {other:?}"
                )));
            }
            Err(e) => return Err(store_err(&e)),
        };
        if self.db.blob(&hash)?.is_none() {
            let entry = BlobEntry {
                size,
                origin,
                stored_at: unix_now(),
            };
            self.record(vec![(hash, entry)]).await?;
        }
        if provide && let Err(e) = self.swarm.provide(hash).await {
            tracing::warn!("cannot provide {}: {e}", hash.short());
        }
        Ok(size)
    }

    /// Stores bytes whose hash the caller computed, under `tag`; the store must agree.
    pub async fn store_bytes(
        &self,
        hash: ContentHash,
        bytes: impl Into<Bytes>,
        tag: String,
    ) -> Result<(), AddError> {
        let stored = self
            .store
            .blobs()
            .add_bytes(bytes)
            .with_named_tag(tag)
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        if stored.hash.as_bytes() != hash.as_bytes() {
            return Err(AddError::Store(format!(
                "the blob store hashed {} differently",
                hash.short()
            )));
        }
        Ok(())
    }

    /// Makes every store write so far durable.
    pub async fn sync(&self) -> Result<(), AddError> {
        self.store
            .sync_db()
            .await
            .map_err(|e| AddError::Store(e.to_string()))
    }

    /// Records blobs that are complete and durable in the store, in one transaction.
    pub async fn record(&self, rows: Vec<(ContentHash, BlobEntry)>) -> Result<(), AddError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.put_blobs(&rows))
            .await
            .map_err(|e| AddError::Store(e.to_string()))??;
        Ok(())
    }

    /// The size of `hash` if it is recorded here and complete in the store.
    pub async fn local_size(&self, hash: &ContentHash) -> Option<u64> {
        self.db.blob(hash).ok().flatten()?;
        match self.store.blobs().status(iroh_hash(hash)).await {
            Ok(BlobStatus::Complete { size }) => Some(size),
            _ => None,
        }
    }

    /// Whether `hash` is recorded here (cheap: one database read).
    pub fn is_recorded(&self, hash: &ContentHash) -> bool {
        self.db.blob(hash).ok().flatten().is_some()
    }

    /// What the store holds of `hash`: verified byte ranges, and the size when proven.
    pub async fn present(&self, hash: &ContentHash) -> Result<Present, String> {
        let bitfield = self
            .store
            .blobs()
            .observe(iroh_hash(hash))
            .await
            .map_err(|e| format!("local store: {e}"))?;
        // Boundaries alternate start, end, ...; an odd count leaves the last range open.
        let bytes: Vec<u64> = bitfield
            .ranges
            .boundaries()
            .iter()
            .map(|chunk| chunk.0.saturating_mul(1024))
            .collect();
        let ranges = bytes
            .chunks(2)
            .map(|pair| pair[0]..pair.get(1).copied().unwrap_or(u64::MAX))
            .collect();
        Ok(Present {
            proven_size: bitfield.is_validated().then(|| bitfield.size()),
            ranges,
        })
    }

    pub async fn get_bytes(&self, hash: &ContentHash) -> Result<Bytes, String> {
        self.store
            .blobs()
            .get_bytes(iroh_hash(hash))
            .await
            .map_err(|e| e.to_string())
    }

    /// A reader of verified bytes (`AsyncRead + AsyncSeek`).
    pub fn reader(&self, hash: &ContentHash) -> BlobReader {
        self.store.blobs().reader(iroh_hash(hash))
    }

    /// Re-provides every recorded blob (after a restart).
    pub async fn provide_stored(&self) -> Result<usize, DbError> {
        let blobs = self.db.blobs()?;
        for (hash, _) in &blobs {
            if self.swarm.provide(*hash).await.is_err() {
                break;
            }
        }
        Ok(blobs.len())
    }

    /// Number of recorded blobs and their total size.
    pub fn totals(&self) -> Result<(u64, u64), DbError> {
        self.db.blob_totals()
    }
}

/// What the local store holds of a blob.
#[derive(Debug, Clone, Default)]
pub struct Present {
    /// Verified byte ranges (the last one may run past the end of the blob).
    pub ranges: Vec<Range<u64>>,
    /// The size, once the last chunk is verified.
    pub proven_size: Option<u64>,
}
