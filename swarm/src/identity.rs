//! The node's one Ed25519 key: its libp2p PeerId and its iroh NodeId.
//!
//! The key lives in `DATA_DIR/node.key` (mode 0600) as one line of hex after a header
//! line, so an operator can tell what the file is. It is created once by `init` and never
//! overwritten.

use std::{
    fs::{self, OpenOptions},
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use ed25519_dalek::SigningKey;
use libp2p::PeerId;

const KEY_FILE: &str = "node.key";
const HEADER: &str = "streamgate ed25519 secret key v1";

/// The node key, usable by both stacks.
#[derive(Clone)]
pub struct Identity {
    secret: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Identity")
            .field("peer_id", &self.peer_id())
            .finish()
    }
}

/// Why the key could not be created or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    #[error(
        "{path} already exists; refusing to overwrite a node key (remove it yourself to start a new identity)"
    )]
    Exists { path: PathBuf },
    #[error("no node key at {path}; run `streamgate-node init --data-dir {dir}` first")]
    Missing { path: PathBuf, dir: String },
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a StreamGate node key: {reason}")]
    Malformed { path: PathBuf, reason: &'static str },
    #[error("{path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    TooOpen { path: PathBuf, mode: u32 },
}

impl Identity {
    pub fn key_path(data_dir: &Path) -> PathBuf {
        data_dir.join(KEY_FILE)
    }

    /// Creates a new random key file; fails if one exists.
    pub fn create(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = Self::key_path(data_dir);
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(data_dir).map_err(io)?;
        let mut secret = [0u8; 32];
        rand::fill(&mut secret);
        // create_new makes "refuse to overwrite" atomic, and the mode applies from the start,
        // so the key is never readable by others, not even for a moment.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => IdentityError::Exists { path: path.clone() },
                _ => io(source),
            })?;
        writeln!(file, "{HEADER}\n{}", hex::encode(secret)).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self { secret })
    }

    /// Loads the key file.
    pub fn load(data_dir: &Path) -> Result<Self, IdentityError> {
        let path = Self::key_path(data_dir);
        let text = fs::read_to_string(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => IdentityError::Missing {
                path: path.clone(),
                dir: data_dir.display().to_string(),
            },
            _ => IdentityError::Io {
                path: path.clone(),
                source,
            },
        })?;
        let mode = fs::metadata(&path)
            .map_err(|source| IdentityError::Io {
                path: path.clone(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::TooOpen { path, mode });
        }
        let malformed = |reason| IdentityError::Malformed {
            path: path.clone(),
            reason,
        };
        let mut lines = text.lines();
        if lines.next() != Some(HEADER) {
            return Err(malformed("the first line is not the StreamGate key header"));
        }
        let hex_key = lines
            .next()
            .ok_or_else(|| malformed("the key line is missing"))?;
        let mut secret = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut secret)
            .map_err(|_| malformed("the key line is not 64 hex characters"))?;
        Ok(Self { secret })
    }

    pub fn signing_key(&self) -> SigningKey {
        SigningKey::from_bytes(&self.secret)
    }

    /// The public key: the bytes behind both the PeerId and the NodeId.
    pub fn public_key(&self) -> [u8; 32] {
        self.signing_key().verifying_key().to_bytes()
    }

    pub fn libp2p_keypair(&self) -> libp2p::identity::Keypair {
        let mut bytes = self.secret;
        // ed25519_from_bytes only fails for a slice that is not 32 bytes.
        libp2p::identity::Keypair::ed25519_from_bytes(&mut bytes)
            .expect("a 32-byte array is a valid ed25519 secret")
    }

    /// The secret key bytes, for the data plane's endpoint (iroh takes the same Ed25519 key).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret
    }

    pub fn peer_id(&self) -> PeerId {
        self.libp2p_keypair().public().to_peer_id()
    }

    /// The key in PKCS#8 DER, for TLS certificates made with it.
    pub fn pkcs8(&self) -> Vec<u8> {
        ed25519_pkcs8(&self.secret)
    }
}

/// An Ed25519 private key in PKCS#8 v1 (RFC 8410): a fixed 16-byte header, then the seed.
pub fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const HEADER: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    [&HEADER[..], seed].concat()
}

/// The PeerId that belongs to an Ed25519 public key.
pub fn peer_id_of(node_key: &[u8; 32]) -> Option<PeerId> {
    let key = libp2p::identity::ed25519::PublicKey::try_from_bytes(node_key).ok()?;
    Some(libp2p::identity::PublicKey::from(key).to_peer_id())
}

/// How a node key is shown to people: its PeerId, or its hex when it is no Ed25519 key.
pub fn peer_label(node_key: &[u8; 32]) -> String {
    peer_id_of(node_key)
        .map(|p| p.to_string())
        .unwrap_or_else(|| hex::encode(node_key))
}

/// The Ed25519 public key inside a PeerId, when it is an Ed25519 identity.
pub fn node_key_of(peer_id: &PeerId) -> Option<[u8; 32]> {
    // Ed25519 PeerIds inline the public key (identity multihash), so it can be read back.
    let key = libp2p::identity::PublicKey::try_decode_protobuf(peer_id.as_ref().digest()).ok()?;
    Some(key.try_into_ed25519().ok()?.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_for_both_stacks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Identity::create(dir.path()).expect("create");
        let libp2p_key = id
            .libp2p_keypair()
            .public()
            .try_into_ed25519()
            .expect("ed25519")
            .to_bytes();
        assert_eq!(libp2p_key, id.public_key());
        assert_eq!(node_key_of(&id.peer_id()), Some(id.public_key()));
        assert_eq!(peer_id_of(&id.public_key()), Some(id.peer_id()));
    }

    #[test]
    fn key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = Identity::create(dir.path()).expect("create");
        let mode = fs::metadata(Identity::key_path(dir.path()))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(
            Identity::create(dir.path()),
            Err(IdentityError::Exists { .. })
        ));
        assert_eq!(
            Identity::load(dir.path()).expect("load").peer_id(),
            id.peer_id()
        );
    }

    #[test]
    fn bad_key_files_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Missing { .. })
        ));
        let path = Identity::key_path(dir.path());
        fs::write(&path, "hello\n").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
        fs::write(&path, format!("{HEADER}\nzz\n")).expect("write");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::Malformed { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(
            Identity::load(dir.path()),
            Err(IdentityError::TooOpen { .. })
        ));
    }
}
