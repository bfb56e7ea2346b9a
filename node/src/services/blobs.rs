//! The local store of verified blobs: bytes in the iroh-blobs store, one redb row per blob
//! saying it is complete, durable and why it is kept.
//!
//! A blob is recorded only after the store has made it durable (`sync_db`), so every row
//! names bytes that are complete and verified; imports are atomic, so a kill leaves a blob
//! either absent or whole.

use std::{io, ops::Range, path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::Stream;
use iroh_blobs::{
    Hash, HashAndFormat,
    api::{Store, blobs::BlobStatus},
};
use streamgate_api::v1::Added;
use streamgate_protocol::{ContentHash, SignedManifest, manifest::MAX_MANIFEST_BYTES};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};
use tokio::{
    io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt},
    sync::{Semaphore, SemaphorePermit},
};

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

/// Largest piece read from the store at once.
pub const READ_PIECE: u64 = 256 * 1024;
/// iroh-blobs queues at most 10 commands per blob and refuses more ("Entity actor inbox is
/// full"); this node's own reads, status checks and fetch bookkeeping stay well below.
const OPS_PER_ENTITY: usize = 4;
const ENTITY_TURN_SHARDS: usize = 256;
/// Tries of one store read before a reader is told it failed.
const READ_ATTEMPTS: u32 = 5;

#[derive(Debug)]
pub struct Blobs {
    store: Store,
    /// Where uploads are spooled before import (`DATA_DIR/spool`).
    spool_dir: PathBuf,
    entity_turns: Vec<Semaphore>,
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
    /// The blob service; spool files a crash left in `spool_dir` are removed.
    pub fn new(
        store: Store,
        spool_dir: PathBuf,
        db: Arc<NodeDb>,
        swarm: SwarmHandle,
        presence: Arc<Presence>,
        identity: Identity,
    ) -> Self {
        let _ = std::fs::remove_dir_all(&spool_dir);
        Self {
            store,
            spool_dir,
            entity_turns: (0..ENTITY_TURN_SHARDS)
                .map(|_| Semaphore::new(OPS_PER_ENTITY))
                .collect(),
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

    /// A new, empty spool file for bytes on their way into the store.
    pub async fn spool(&self) -> Result<Spool, AddError> {
        Spool::create(&self.spool_dir).await
    }

    /// Stores the bytes of a finished spool file as a blob, durably, then provides and
    /// announces it. The spool file is removed whatever happens.
    pub async fn add(&self, mut spool: Spool) -> Result<Added, AddError> {
        spool.finish().await?;
        let temp_tag = self
            .store
            .blobs()
            .add_path(&spool.path)
            .temp_tag()
            .await
            .map_err(|e| AddError::Store(e.to_string()))?;
        drop(spool);
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
        let _turn = self.entity_turn(hash).await;
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
        let turn = self.entity_turn(hash).await;
        let bitfield = self
            .store
            .blobs()
            .observe(iroh_hash(hash))
            .await
            .map_err(|e| format!("local store: {e}"))?;
        drop(turn);
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
        let _turn = self.entity_turn(hash).await;
        self.store
            .blobs()
            .get_bytes(iroh_hash(hash))
            .await
            .map_err(|e| e.to_string())
    }

    /// Up to [`READ_PIECE`] verified bytes of `hash` at `pos` (before `end`), taking a
    /// turn at the blob's store entity; with `retry`, a failed read is tried again a few
    /// times (the store refuses work for a blob whose queue is full).
    pub async fn read_piece(
        &self,
        hash: &ContentHash,
        pos: u64,
        end: u64,
        retry: bool,
    ) -> io::Result<Bytes> {
        let len = end.saturating_sub(pos).min(READ_PIECE) as usize;
        let mut backoff = Duration::from_millis(5);
        let mut attempt = 1;
        loop {
            let read = async {
                let _turn = self.entity_turn(hash).await;
                let mut reader = self.store.blobs().reader(iroh_hash(hash));
                reader.seek(io::SeekFrom::Start(pos)).await?;
                let mut buf = vec![0u8; len];
                reader.read_exact(&mut buf).await?;
                Ok::<_, io::Error>(Bytes::from(buf))
            };
            match read.await {
                Ok(bytes) => return Ok(bytes),
                Err(e) if !retry || attempt == READ_ATTEMPTS => return Err(e),
                Err(e) => {
                    tracing::debug!(blob = %hash.short(), pos, attempt, "store read failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff *= 4;
                    attempt += 1;
                }
            }
        }
    }

    /// The bytes `range` of a blob complete here, piece by piece.
    pub fn read_stream(
        self: &Arc<Self>,
        hash: ContentHash,
        range: Range<u64>,
    ) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        futures::stream::try_unfold(
            (self.clone(), range.start),
            move |(blobs, pos)| async move {
                if pos >= range.end {
                    return Ok(None);
                }
                let piece = blobs.read_piece(&hash, pos, range.end, true).await?;
                let next = pos + piece.len() as u64;
                Ok(Some((piece, (blobs, next))))
            },
        )
    }

    /// A turn at `hash`'s store entity: at most [`OPS_PER_ENTITY`] of this node's
    /// operations on one blob at once (hashes share a turn table by their first byte).
    async fn entity_turn(&self, hash: &ContentHash) -> Option<SemaphorePermit<'_>> {
        let shard = usize::from(hash.as_bytes()[0]) % self.entity_turns.len();
        self.entity_turns[shard].acquire().await.ok()
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

/// Bytes of an upload on their way into the store: a file in `DATA_DIR/spool`, removed
/// when dropped, so an aborted upload leaves nothing behind. (iroh-blobs' own stream import
/// leaves its temp file behind when the stream fails.)
#[derive(Debug)]
pub struct Spool {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    len: u64,
}

impl Spool {
    async fn create(dir: &std::path::Path) -> Result<Self, AddError> {
        let store_err = |e: std::io::Error| AddError::Store(format!("spool file: {e}"));
        tokio::fs::create_dir_all(dir).await.map_err(store_err)?;
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let path = dir.join(format!("{}.part", hex::encode(raw)));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(store_err)?;
        Ok(Self {
            path,
            file: Some(file),
            len: 0,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), AddError> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| AddError::Store("spool file already finished".into()))?;
        file.write_all(bytes)
            .await
            .map_err(|e| AddError::Store(format!("spool file: {e}")))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Writes out what tokio still buffers and closes the file.
    async fn finish(&mut self) -> Result<(), AddError> {
        if let Some(mut file) = self.file.take() {
            file.flush()
                .await
                .map_err(|e| AddError::Store(format!("spool file: {e}")))?;
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        drop(self.file.take());
        let _ = std::fs::remove_file(&self.path);
    }
}
