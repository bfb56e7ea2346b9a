//! Resumable uploads: a file grows by appends at its current length until it has the length
//! announced at creation. The tus 1.0 protocol on top is `http::uploads`.
//!
//! Bytes go to `DATA_DIR/uploads/<id>.part`; the offset is that file's length, so an
//! interrupted append keeps every byte that arrived, and a client resumes from there.
//!
//! Disk is budgeted: uploads not yet published reserve their whole length against
//! `uploads.max_unfinished_bytes`, and one untouched for `uploads.expiry_secs` is removed
//! (unless a publishing job is reading it).

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use streamgate_swarm::daemon::unix_now;
use tokio::io::AsyncWriteExt;

use crate::{
    actors::db::{DbError, NodeDb, UploadEntry},
    config::UploadsConfig,
};

/// Why an upload operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UploadError {
    #[error("no upload {0:?}")]
    NotFound(String),
    #[error(
        "{length} bytes is more than this node accepts ({limit}; config key api.max_upload_bytes)"
    )]
    TooLarge { length: u64, limit: u64 },
    #[error(
        "unfinished uploads already reserve {reserved} bytes; {length} more would pass this node's quota of {limit} (config key uploads.max_unfinished_bytes): finish, publish or delete one first"
    )]
    OverQuota {
        length: u64,
        reserved: u64,
        limit: u64,
    },
    #[error("another append to this upload is in progress")]
    Busy,
    #[error("the append starts at {claimed} but the node has {offset} bytes; resume from {offset}")]
    OffsetMismatch { claimed: u64, offset: u64 },
    #[error(
        "the body goes past the upload's length ({length} bytes); the bytes up to it were kept"
    )]
    PastEnd { length: u64, offset: u64 },
    #[error("the body was interrupted at {offset} bytes (kept): {reason}")]
    Interrupted { offset: u64, reason: String },
    #[error("the upload has {offset} of {length} bytes; finish it first")]
    Incomplete { offset: u64, length: u64 },
    #[error("upload storage: {0}")]
    Store(String),
}

impl From<DbError> for UploadError {
    fn from(e: DbError) -> Self {
        Self::Store(e.to_string())
    }
}

impl From<std::io::Error> for UploadError {
    fn from(e: std::io::Error) -> Self {
        Self::Store(e.to_string())
    }
}

/// An upload's announced length and metadata, and how many bytes the node has.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub entry: UploadEntry,
    pub offset: u64,
}

#[derive(Debug)]
pub struct Uploads {
    dir: PathBuf,
    db: Arc<NodeDb>,
    max_bytes: u64,
    budget: UploadsConfig,
    /// Uploads with an append in progress: one writer per upload at a time.
    writing: Mutex<HashSet<String>>,
    /// Held while checking the quota and recording a new upload, so two creations cannot
    /// both fit in the same room.
    creating: Mutex<()>,
    expired: AtomicU64,
}

/// Unfinished uploads against their quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reserved {
    pub uploads: usize,
    pub bytes: u64,
}

/// Upload ids: 32 lowercase hex digits (128 random bits).
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Uploads {
    pub fn new(dir: PathBuf, db: Arc<NodeDb>, max_bytes: u64, budget: UploadsConfig) -> Self {
        Self {
            dir,
            db,
            max_bytes,
            budget,
            writing: Mutex::new(HashSet::new()),
            creating: Mutex::new(()),
            expired: AtomicU64::new(0),
        }
    }

    pub fn budget(&self) -> &UploadsConfig {
        &self.budget
    }

    /// Uploads removed for having expired since the node started.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// What the uploads held here reserve.
    pub fn reserved(&self) -> Result<Reserved, UploadError> {
        let uploads = self.db.uploads()?;
        Ok(Reserved {
            uploads: uploads.len(),
            bytes: uploads.iter().map(|(_, u)| u.length).sum(),
        })
    }

    /// When `entry` expires (unix seconds).
    pub fn expires_at(&self, entry: &UploadEntry) -> u64 {
        entry.touched_at().saturating_add(self.budget.expiry_secs)
    }

    /// Removes every upload untouched past its expiry, except those in `in_use`, and any
    /// `.part` file the database does not know; returns how many uploads went.
    pub async fn remove_expired(&self, in_use: &HashSet<String>, now: u64) -> usize {
        let Ok(uploads) = self.db.uploads() else {
            return 0;
        };
        let mut removed = 0;
        for (id, entry) in &uploads {
            if now < self.expires_at(entry) || in_use.contains(id) {
                continue;
            }
            // Never under an append in progress.
            let Ok(_writer) = self.lock_writer(id) else {
                continue;
            };
            if self.db.remove_upload(id).is_ok() {
                let _ = tokio::fs::remove_file(self.path(id)).await;
                tracing::info!(upload = %id, "unfinished upload expired; removed");
                removed += 1;
            }
        }
        self.expired.fetch_add(removed as u64, Ordering::Relaxed);
        let known: HashSet<String> = uploads
            .into_iter()
            .map(|(id, _)| format!("{id}.part"))
            .collect();
        if let Ok(mut dir) = tokio::fs::read_dir(&self.dir).await {
            while let Ok(Some(file)) = dir.next_entry().await {
                let name = file.file_name().to_string_lossy().into_owned();
                // Created just now: its row may be on its way.
                let fresh = file
                    .metadata()
                    .await
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .and_then(|t| t.elapsed().ok())
                    .is_none_or(|age| age.as_secs() < 60);
                if name.ends_with(".part") && !known.contains(&name) && !fresh {
                    let _ = tokio::fs::remove_file(file.path()).await;
                }
            }
        }
        removed
    }

    /// Largest upload accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The file an upload's bytes are in.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.part"))
    }

    /// A new, empty upload of `length` bytes; returns its id.
    pub async fn create(
        &self,
        length: u64,
        metadata: Vec<(String, String)>,
    ) -> Result<String, UploadError> {
        if length > self.max_bytes {
            return Err(UploadError::TooLarge {
                length,
                limit: self.max_bytes,
            });
        }
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let id = hex::encode(raw);
        tokio::fs::create_dir_all(&self.dir).await?;
        {
            let _creating = self
                .creating
                .lock()
                .map_err(|_| UploadError::Store("upload table poisoned".into()))?;
            let reserved = self.reserved()?.bytes;
            if reserved.saturating_add(length) > self.budget.max_unfinished_bytes {
                return Err(UploadError::OverQuota {
                    length,
                    reserved,
                    limit: self.budget.max_unfinished_bytes,
                });
            }
            self.db.put_upload(
                &id,
                &UploadEntry {
                    length,
                    metadata,
                    created_at: unix_now(),
                    last_write_at: 0,
                },
            )?;
        }
        if let Err(e) = tokio::fs::File::create(self.path(&id)).await {
            let _ = self.db.remove_upload(&id);
            return Err(e.into());
        }
        Ok(id)
    }

    /// The upload `id` and how many bytes of it the node holds.
    pub async fn state(&self, id: &str) -> Result<UploadState, UploadError> {
        if !is_valid_id(id) {
            return Err(UploadError::NotFound(id.to_string()));
        }
        let entry = self
            .db
            .upload(id)?
            .ok_or_else(|| UploadError::NotFound(id.to_string()))?;
        let offset = match tokio::fs::metadata(self.path(id)).await {
            Ok(m) => m.len(),
            Err(_) => 0,
        };
        Ok(UploadState { entry, offset })
    }

    /// The path of a complete upload and its state.
    pub async fn complete(&self, id: &str) -> Result<(PathBuf, UploadState), UploadError> {
        let state = self.state(id).await?;
        if state.offset != state.entry.length {
            return Err(UploadError::Incomplete {
                offset: state.offset,
                length: state.entry.length,
            });
        }
        Ok((self.path(id), state))
    }

    /// Appends `body` at `claimed` (which must be the current offset), keeping every byte
    /// that arrives, even when the body is cut off; returns the new offset.
    pub async fn append(
        &self,
        id: &str,
        claimed: u64,
        body: impl Stream<Item = Result<Bytes, impl std::fmt::Display>>,
    ) -> Result<u64, UploadError> {
        let _writer = self.lock_writer(id)?;
        let state = self.state(id).await?;
        if claimed != state.offset {
            return Err(UploadError::OffsetMismatch {
                claimed,
                offset: state.offset,
            });
        }
        let length = state.entry.length;
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(self.path(id))
            .await?;
        let mut written = state.offset;
        let mut end = Ok(());
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    let take = (bytes.len() as u64).min(length - written) as usize;
                    file.write_all(&bytes[..take]).await?;
                    written += take as u64;
                    if take < bytes.len() {
                        end = Err(UploadError::PastEnd {
                            length,
                            offset: written,
                        });
                        break;
                    }
                }
                Err(e) => {
                    // The client went away: keep what arrived (a resume starts from it).
                    end = Err(UploadError::Interrupted {
                        offset: written,
                        reason: e.to_string(),
                    });
                    break;
                }
            }
        }
        file.flush().await?;
        file.sync_all().await?;
        if written > state.offset {
            let mut entry = state.entry;
            entry.last_write_at = unix_now();
            self.db.put_upload(id, &entry)?;
        }
        end.map(|()| written)
    }

    /// Removes an upload and its bytes.
    pub async fn remove(&self, id: &str) -> Result<(), UploadError> {
        self.state(id).await?;
        let _ = tokio::fs::remove_file(self.path(id)).await;
        self.db.remove_upload(id)?;
        Ok(())
    }

    fn lock_writer(&self, id: &str) -> Result<WriterGuard<'_>, UploadError> {
        let mut writing = self
            .writing
            .lock()
            .map_err(|_| UploadError::Store("writer table poisoned".into()))?;
        if !writing.insert(id.to_string()) {
            return Err(UploadError::Busy);
        }
        Ok(WriterGuard {
            writing: &self.writing,
            id: id.to_string(),
        })
    }
}

/// Releases the one-writer lock when an append ends, however it ends.
struct WriterGuard<'a> {
    writing: &'a Mutex<HashSet<String>>,
    id: String,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.writing.lock() {
            set.remove(&self.id);
        }
    }
}
