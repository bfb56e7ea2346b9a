//! Node state beyond blob bytes, in redb (`DATA_DIR/node.redb`): which blobs this node
//! keeps and why, manifests, uploads, publishing jobs, and the standing of providers it
//! has fetched from.
//!
//! Blob bytes live in the iroh-blobs store beside it. A blob is entered here only after the
//! store has made it durable, so every entry names bytes that are complete and verified.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
pub use streamgate_api::v1::{JobState, Origin};
use streamgate_protocol::{
    ContentHash,
    reputation::{ProviderKey, Standing},
};

/// Every table maps a text key (hex for hashes and node keys) to a JSON value.
type Table = TableDefinition<'static, &'static str, &'static [u8]>;

const BLOBS: Table = TableDefinition::new("blobs");
const PROVIDERS: Table = TableDefinition::new("providers");
/// Standings of workers this node has given jobs to (same form as providers').
const WORKERS: Table = TableDefinition::new("workers");
const MANIFESTS: Table = TableDefinition::new("manifests");
const UPLOADS: Table = TableDefinition::new("uploads");
const JOBS: Table = TableDefinition::new("jobs");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// Bumped when the tables change incompatibly; a node refuses a newer database.
const SCHEMA_VERSION: &str = "1";

/// A video manifest this node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub title: String,
    pub duration_ms: u64,
    pub created_at: u64,
    pub origin: Origin,
    /// Every blob the manifest names is stored here (so the node provides the manifest).
    pub complete: bool,
}

/// A resumable (tus) upload in progress. Its bytes are in `DATA_DIR/uploads/<id>.part`;
/// the offset is that file's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEntry {
    pub length: u64,
    /// `Upload-Metadata` pairs, decoded.
    pub metadata: Vec<(String, String)>,
    pub created_at: u64,
    /// When bytes last arrived (0: none since creation). Expiry counts from here.
    #[serde(default)]
    pub last_write_at: u64,
}

impl UploadEntry {
    /// When the upload was last touched, for its expiry.
    pub fn touched_at(&self) -> u64 {
        self.last_write_at.max(self.created_at)
    }
}

/// A publishing job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The chunks workers made, and who made each (videos published through workers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chunks: Vec<streamgate_api::v1::ChunkProgress>,
    pub upload_id: String,
    pub title: String,
    pub ladder: String,
    pub state: JobState,
    pub created_at: u64,
    /// BLAKE3 of the uploaded file, once the job has read it.
    #[serde(default)]
    pub source_hash: Option<String>,
    /// Access gate, for gated videos.
    #[serde(default)]
    pub gate: Option<String>,
    /// Other nodes that may release the key of a gated video.
    #[serde(default)]
    pub key_servers: Vec<String>,
    /// The account whose registry entry for the video is honoured.
    #[serde(default)]
    pub registrant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobEntry {
    pub size: u64,
    pub origin: Origin,
    /// Seconds since the Unix epoch.
    pub stored_at: u64,
}

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    #[error("node database: {0}")]
    Redb(#[from] redb::Error),
    #[error("node database entry for {what} is corrupt: {reason}")]
    Corrupt { what: String, reason: String },
    #[error(
        "node database has schema version {found}; this node understands {SCHEMA_VERSION}. Use a matching streamgate-node version"
    )]
    Version { found: String },
}

fn redb_err(e: impl Into<redb::Error>) -> DbError {
    DbError::Redb(e.into())
}

/// The node database. Cheap to share behind an `Arc`; redb serialises writers itself.
#[derive(Debug)]
pub struct NodeDb {
    db: Database,
}

impl NodeDb {
    pub fn open(path: &Path) -> Result<Self, DbError> {
        let db = Database::create(path).map_err(redb_err)?;
        let tx = db.begin_write().map_err(redb_err)?;
        {
            let mut meta = tx.open_table(META).map_err(redb_err)?;
            let found = meta
                .get("schema_version")
                .map_err(redb_err)?
                .map(|v| v.value().to_string());
            match found {
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)
                        .map_err(redb_err)?;
                }
                Some(v) if v == SCHEMA_VERSION => {}
                Some(found) => return Err(DbError::Version { found }),
            }
            for table in [BLOBS, PROVIDERS, WORKERS, MANIFESTS, UPLOADS, JOBS] {
                tx.open_table(table).map_err(redb_err)?;
            }
        }
        tx.commit().map_err(redb_err)?;
        Ok(Self { db })
    }

    pub fn put_blob(&self, hash: &ContentHash, entry: &BlobEntry) -> Result<(), DbError> {
        self.put_many(BLOBS, &[(hash.to_hex(), entry)])
    }

    /// Records many blobs in one transaction (one fsync).
    pub fn put_blobs(&self, entries: &[(ContentHash, BlobEntry)]) -> Result<(), DbError> {
        let rows: Vec<(String, &BlobEntry)> =
            entries.iter().map(|(h, e)| (h.to_hex(), e)).collect();
        self.put_many(BLOBS, &rows)
    }

    pub fn blob(&self, hash: &ContentHash) -> Result<Option<BlobEntry>, DbError> {
        self.get(BLOBS, &hash.to_hex())
    }

    pub fn remove_blob(&self, hash: &ContentHash) -> Result<(), DbError> {
        self.remove(BLOBS, &hash.to_hex())
    }

    /// Every stored blob, in hash order.
    pub fn blobs(&self) -> Result<Vec<(ContentHash, BlobEntry)>, DbError> {
        self.all(BLOBS)?
            .into_iter()
            .map(|(key, entry)| {
                key.parse()
                    .map(|hash| (hash, entry))
                    .map_err(|e| DbError::Corrupt {
                        what: key,
                        reason: format!("{e}"),
                    })
            })
            .collect()
    }

    /// Number of blobs and their total size.
    pub fn blob_totals(&self) -> Result<(u64, u64), DbError> {
        let blobs: Vec<(String, BlobEntry)> = self.all(BLOBS)?;
        Ok((blobs.len() as u64, blobs.iter().map(|(_, e)| e.size).sum()))
    }

    pub fn put_provider(&self, key: &ProviderKey, standing: &Standing) -> Result<(), DbError> {
        self.put_many(PROVIDERS, &[(hex::encode(key), standing)])
    }

    pub fn put_worker(&self, key: &ProviderKey, standing: &Standing) -> Result<(), DbError> {
        self.put_many(WORKERS, &[(hex::encode(key), standing)])
    }

    pub fn providers(&self) -> Result<Vec<(ProviderKey, Standing)>, DbError> {
        self.standings(PROVIDERS)
    }

    pub fn workers(&self) -> Result<Vec<(ProviderKey, Standing)>, DbError> {
        self.standings(WORKERS)
    }

    fn standings(&self, table: Table) -> Result<Vec<(ProviderKey, Standing)>, DbError> {
        let mut out = Vec::new();
        for (key, standing) in self.all::<Standing>(table)? {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&key, &mut bytes).map_err(|e| DbError::Corrupt {
                what: key.clone(),
                reason: e.to_string(),
            })?;
            out.push((bytes, standing));
        }
        Ok(out)
    }

    pub fn put_manifest(&self, id: &ContentHash, entry: &ManifestEntry) -> Result<(), DbError> {
        self.put_many(MANIFESTS, &[(id.to_hex(), entry)])
    }

    pub fn manifest(&self, id: &ContentHash) -> Result<Option<ManifestEntry>, DbError> {
        self.get(MANIFESTS, &id.to_hex())
    }

    pub fn manifests(&self) -> Result<Vec<(String, ManifestEntry)>, DbError> {
        self.all(MANIFESTS)
    }

    pub fn put_upload(&self, id: &str, entry: &UploadEntry) -> Result<(), DbError> {
        self.put_many(UPLOADS, &[(id.to_string(), entry)])
    }

    pub fn upload(&self, id: &str) -> Result<Option<UploadEntry>, DbError> {
        self.get(UPLOADS, id)
    }

    pub fn remove_upload(&self, id: &str) -> Result<(), DbError> {
        self.remove(UPLOADS, id)
    }

    pub fn uploads(&self) -> Result<Vec<(String, UploadEntry)>, DbError> {
        self.all(UPLOADS)
    }

    pub fn remove_job(&self, id: &str) -> Result<(), DbError> {
        self.remove(JOBS, id)
    }

    pub fn put_job(&self, id: &str, entry: &JobEntry) -> Result<(), DbError> {
        self.put_many(JOBS, &[(id.to_string(), entry)])
    }

    pub fn job(&self, id: &str) -> Result<Option<JobEntry>, DbError> {
        self.get(JOBS, id)
    }

    pub fn jobs(&self) -> Result<Vec<(String, JobEntry)>, DbError> {
        self.all(JOBS)
    }

    fn put_many<T: Serialize>(&self, table: Table, rows: &[(String, T)]) -> Result<(), DbError> {
        let tx = self.db.begin_write().map_err(redb_err)?;
        {
            let mut t = tx.open_table(table).map_err(redb_err)?;
            for (key, value) in rows {
                let bytes = serde_json::to_vec(value).map_err(|e| DbError::Corrupt {
                    what: key.clone(),
                    reason: e.to_string(),
                })?;
                t.insert(key.as_str(), bytes.as_slice()).map_err(redb_err)?;
            }
        }
        tx.commit().map_err(redb_err)?;
        Ok(())
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<T>, DbError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let t = tx.open_table(table).map_err(redb_err)?;
        let value = t.get(key).map_err(redb_err)?;
        value.map(|v| decode(key, v.value())).transpose()
    }

    fn all<T: for<'de> Deserialize<'de>>(&self, table: Table) -> Result<Vec<(String, T)>, DbError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let t = tx.open_table(table).map_err(redb_err)?;
        let mut out = Vec::with_capacity(t.len().map_err(redb_err)? as usize);
        for item in t.iter().map_err(redb_err)? {
            let (key, value) = item.map_err(redb_err)?;
            let key = key.value().to_string();
            let value = decode(&key, value.value())?;
            out.push((key, value));
        }
        Ok(out)
    }

    fn remove(&self, table: Table, key: &str) -> Result<(), DbError> {
        let tx = self.db.begin_write().map_err(redb_err)?;
        tx.open_table(table)
            .map_err(redb_err)?
            .remove(key)
            .map_err(redb_err)?;
        tx.commit().map_err(redb_err)?;
        Ok(())
    }
}

fn decode<T: for<'de> Deserialize<'de>>(what: &str, bytes: &[u8]) -> Result<T, DbError> {
    serde_json::from_slice(bytes).map_err(|e| DbError::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.redb");
        let hash = ContentHash::of(b"x");
        let entry = BlobEntry {
            size: 1,
            origin: Origin::Added,
            stored_at: 5,
        };
        {
            let db = NodeDb::open(&path).expect("open");
            db.put_blob(&hash, &entry).expect("put");
        }
        let db = NodeDb::open(&path).expect("reopen");
        assert_eq!(db.blob(&hash).expect("get"), Some(entry.clone()));
        assert_eq!(db.blobs().expect("list"), vec![(hash, entry)]);
        assert_eq!(db.blob_totals().expect("totals"), (1, 1));
    }
}
