//! The operator credential: `DATA_DIR/api.token`, 32 random bytes in hex, mode 0600, made at
//! the node's first start and kept across restarts (delete it and restart to change it).

use std::{
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use streamgate_api::ready::{operator_token_path, read_operator_token};

pub struct OperatorToken(String);

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

impl OperatorToken {
    /// The token of `data_dir`, made if there is none. A token file others may read is made
    /// private before the node uses it.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = operator_token_path(data_dir);
        if !path.exists() {
            let mut raw = [0u8; 32];
            rand::fill(&mut raw);
            let token = hex::encode(raw);
            let temp = path.with_extension("token.tmp");
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(token.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, &path)?;
            return Ok(Self(token));
        }
        let mode = std::fs::metadata(&path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} was readable by others (mode {:o}); made it private (0600)",
                path.display(),
                mode & 0o777
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(Self(read_operator_token(&path)?))
    }

    /// Whether `presented` is the token. Compares every byte, so timing tells nothing.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (presented.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_private_kept_across_starts_and_compared_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = operator_token_path(dir.path());
        let token = OperatorToken::load_or_create(dir.path()).expect("made");
        let text = std::fs::read_to_string(&path).expect("file");
        assert_eq!(text.len(), 64);
        assert!(token.matches(&text));
        let mode = |p: &Path| std::fs::metadata(p).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let again = OperatorToken::load_or_create(dir.path()).expect("kept");
        assert!(again.matches(&text));
        assert_eq!(mode(&path), 0o600, "made private again");
        assert!(!again.matches(&text[..63]));
        assert!(!again.matches(&format!("{text}0")));
        assert!(!again.matches(""));
        let mut flipped = text.into_bytes();
        flipped[10] = if flipped[10] == b'a' { b'b' } else { b'a' };
        assert!(!again.matches(std::str::from_utf8(&flipped).expect("ascii")));
    }
}
