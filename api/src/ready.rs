//! Ready files: `DATA_DIR/run/<name>.json`, written atomically by a daemon once it serves,
//! and removed when it stops cleanly. A reader sees either no file or the whole file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// `DATA_DIR/run/node.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReady {
    pub peer_id: String,
    /// Hex of the Ed25519 public key (the iroh node id).
    pub node_id: String,
    pub pid: u32,
    /// libp2p listen addresses, each ending in `/p2p/<peer id>`.
    pub listen_addrs: Vec<String>,
    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:7700`.
    pub api_url: String,
    pub data_plane: DataPlaneReady,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPlaneReady {
    pub node_id: String,
    pub addrs: Vec<String>,
    pub relay_url: Option<String>,
}

/// `DATA_DIR/run/bootstrap.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootstrapReady {
    pub peer_id: String,
    pub pid: u32,
    pub listen_addrs: Vec<String>,
    /// URL of the iroh relay it runs for the data plane, when it runs one.
    pub iroh_relay_url: Option<String>,
}

/// A ready file's contents and its name under `DATA_DIR/run/`.
pub trait ReadyInfo: Serialize + DeserializeOwned {
    const NAME: &'static str;

    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("run").join(format!("{}.json", Self::NAME))
    }

    /// The ready file in `data_dir`, if the daemon is ready (a half-written file never
    /// exists: daemons rename it into place).
    fn read(data_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(Self::path(data_dir)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl ReadyInfo for NodeReady {
    const NAME: &'static str = "node";
}

impl ReadyInfo for BootstrapReady {
    const NAME: &'static str = "bootstrap";
}

/// The operator credential: `DATA_DIR/api.token`, mode 0600, made by the node at its first
/// start. Every request that writes or spends (uploads, blob adds, publish, pin, job control)
/// carries it as `Authorization: Bearer`; the local CLI reads it from the data folder, as
/// bitcoind's cookie file works.
pub const OPERATOR_TOKEN_FILE: &str = "api.token";

/// Path of the operator token in `data_dir`.
pub fn operator_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(OPERATOR_TOKEN_FILE)
}

/// The operator token stored at `path` (surrounding whitespace ignored).
pub fn read_operator_token(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold an operator token", path.display()),
        ));
    }
    Ok(token.to_string())
}
