//! Node state beyond blob bytes, in redb (`DATA_DIR/node.redb`): which blobs this node
//! keeps and why, and the standing of providers it has fetched from.
//!
//! Blob bytes live in the iroh-blobs store beside it. A blob is entered here only after the
//! store has made it durable, so every entry names bytes that are complete and verified.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use streamgate_protocol::{
    ContentHash,
    reputation::{ProviderKey, Standing},
};

const BLOBS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("blobs");
const PROVIDERS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("providers");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// Bumped when the tables change incompatibly; a node refuses a newer database.
const SCHEMA_VERSION: &str = "1";

/// How a blob came to be stored here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Added through the API on this node.
    Added,
    /// Fetched from other nodes.
    Fetched,
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
            tx.open_table(BLOBS).map_err(redb_err)?;
            tx.open_table(PROVIDERS).map_err(redb_err)?;
        }
        tx.commit().map_err(redb_err)?;
        Ok(Self { db })
    }

    pub fn put_blob(&self, hash: &ContentHash, entry: &BlobEntry) -> Result<(), DbError> {
        self.put(BLOBS, hash.as_bytes(), entry)
    }

    pub fn blob(&self, hash: &ContentHash) -> Result<Option<BlobEntry>, DbError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let table = tx.open_table(BLOBS).map_err(redb_err)?;
        let value = table.get(hash.as_bytes()).map_err(redb_err)?;
        value.map(|v| decode(&hash.to_hex(), v.value())).transpose()
    }

    /// Every stored blob, in hash order.
    pub fn blobs(&self) -> Result<Vec<(ContentHash, BlobEntry)>, DbError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let table = tx.open_table(BLOBS).map_err(redb_err)?;
        let mut out = Vec::with_capacity(table.len().map_err(redb_err)? as usize);
        for item in table.iter().map_err(redb_err)? {
            let (key, value) = item.map_err(redb_err)?;
            let hash = ContentHash::from_bytes(*key.value());
            out.push((hash, decode(&hash.to_hex(), value.value())?));
        }
        Ok(out)
    }

    /// Number of blobs and their total size.
    pub fn blob_totals(&self) -> Result<(u64, u64), DbError> {
        let blobs = self.blobs()?;
        Ok((blobs.len() as u64, blobs.iter().map(|(_, e)| e.size).sum()))
    }

    pub fn put_provider(&self, key: &ProviderKey, standing: &Standing) -> Result<(), DbError> {
        self.put(PROVIDERS, key, standing)
    }

    pub fn providers(&self) -> Result<Vec<(ProviderKey, Standing)>, DbError> {
        let tx = self.db.begin_read().map_err(redb_err)?;
        let table = tx.open_table(PROVIDERS).map_err(redb_err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(redb_err)? {
            let (key, value) = item.map_err(redb_err)?;
            let key = *key.value();
            out.push((key, decode(&hex::encode(key), value.value())?));
        }
        Ok(out)
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&[u8; 32], &[u8]>,
        key: &[u8; 32],
        value: &T,
    ) -> Result<(), DbError> {
        let bytes = serde_json::to_vec(value).map_err(|e| DbError::Corrupt {
            what: hex::encode(key),
            reason: e.to_string(),
        })?;
        let tx = self.db.begin_write().map_err(redb_err)?;
        tx.open_table(table)
            .map_err(redb_err)?
            .insert(key, bytes.as_slice())
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
