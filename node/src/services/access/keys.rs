//! Content keys: made at publish, sealed to key-server nodes, used to encrypt segments.
//!
//! A node's X25519 key pair is derived from its Ed25519 node key (the standard birational
//! map), so a key can be sealed to any node whose node id is known, and only that node can
//! open it. The plaintext key exists only in memory: while publishing, and while answering
//! an entitled `GET /keys/{id}`.

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use crypto_box::{PublicKey, SecretKey, aead::OsRng};
use ed25519_dalek::{SigningKey, VerifyingKey};
use streamgate_protocol::access::{Encryption, WrappedKey};

/// An AES-128 content key.
pub type ContentKey = [u8; 16];

pub fn new_content_key() -> ContentKey {
    let mut key = [0u8; 16];
    rand::fill(&mut key);
    key
}

/// Seals `key` to the node whose Ed25519 public key is `node_key`.
pub fn seal(
    key: &ContentKey,
    node_key: &[u8; 32],
    url: Option<String>,
) -> Result<WrappedKey, String> {
    let ed =
        VerifyingKey::from_bytes(node_key).map_err(|_| "not an Ed25519 node key".to_string())?;
    let public = PublicKey::from(ed.to_montgomery().to_bytes());
    let sealed = public
        .seal(&mut OsRng, key)
        .map_err(|e| format!("cannot seal the key: {e}"))?;
    Ok(WrappedKey {
        node_key: *node_key,
        url,
        sealed,
    })
}

/// Opens the wrap addressed to this node, if there is one.
pub fn unseal(
    encryption: &Encryption,
    identity: &SigningKey,
) -> Option<Result<ContentKey, String>> {
    let mine = identity.verifying_key().to_bytes();
    let wrap = encryption.key_wraps.iter().find(|w| w.node_key == mine)?;
    let secret = SecretKey::from(identity.to_scalar_bytes());
    Some(
        secret
            .unseal(&wrap.sealed)
            .map_err(|_| "the wrapped key for this node does not open".to_string())
            .and_then(|bytes| {
                <ContentKey>::try_from(bytes.as_slice())
                    .map_err(|_| "the wrapped key is not 16 bytes".to_string())
            }),
    )
}

/// HLS AES-128: the whole segment, AES-128-CBC with PKCS#7 padding, IV = segment index.
pub fn encrypt_segment(key: &ContentKey, index: usize, plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<aes::Aes128>::new(key.into(), &Encryption::iv(index).into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecryptMut;
    use streamgate_protocol::access::EncryptionMethod;

    #[test]
    fn only_the_addressed_node_opens_the_key() {
        let node = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let key = new_content_key();
        let wrap = seal(&key, &node.verifying_key().to_bytes(), None).expect("seal");
        let encryption = Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps: vec![wrap],
        };
        assert_eq!(unseal(&encryption, &node), Some(Ok(key)));
        assert_eq!(unseal(&encryption, &other), None, "no wrap for this node");
        let mut tampered = encryption.clone();
        tampered.key_wraps[0].sealed[5] ^= 1;
        assert!(matches!(unseal(&tampered, &node), Some(Err(_))));
    }

    #[test]
    fn segments_decrypt_with_the_hls_iv() {
        let key = [7u8; 16];
        let data = b"an fMP4 media segment, any length".to_vec();
        let sealed = encrypt_segment(&key, 3, &data);
        assert_eq!(sealed.len() % 16, 0);
        let opened = cbc::Decryptor::<aes::Aes128>::new((&key).into(), &Encryption::iv(3).into())
            .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
            .expect("decrypts");
        assert_eq!(opened, data);
    }
}
