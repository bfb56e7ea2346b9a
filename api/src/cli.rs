//! What `streamgate --json` prints, for commands whose output is more than one API body.

use serde::{Deserialize, Serialize};

/// `streamgate --json publish FILE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    pub manifest_id: String,
    pub hls_url: String,
    pub dash_url: String,
    /// Bytes in the file.
    pub upload_length: u64,
    /// Where the upload resumed (0 for a fresh one).
    pub resumed_from: u64,
    /// Bytes sent by this run of the command.
    pub bytes_sent: u64,
    /// BLAKE3 of the file as the node received it.
    pub source_hash: String,
}

/// `streamgate --json get HASH -o PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetched {
    pub hash: String,
    pub size: u64,
    pub path: String,
}
