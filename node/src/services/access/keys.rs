//! Content keys: made at publish, sealed to key-server nodes, used to encrypt segments.
//!
//! A node's X25519 key pair is derived from its Ed25519 node key (the standard birational
//! map), so a key can be sealed to any node whose node id is known, and only that node can
//! open it. The plaintext key exists only in memory: while publishing, and while answering
//! an entitled `GET /keys/{id}`.

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use crypto_box::{PublicKey, SecretKey, aead::OsRng};
use ed25519_dalek::{SigningKey, VerifyingKey};
use streamgate_protocol::{
    Manifest,
    access::{Encryption, WrappedKey},
};

/// An AES-128 content key.
pub type ContentKey = [u8; 16];

pub fn new_content_key() -> ContentKey {
    let mut key = [0u8; 16];
    rand::fill(&mut key);
    key
}

/// What a wrap seals: the manifest's key binding, then the content key. Binding and key
/// are opened together, so nobody can pair a copied wrap with another manifest.
const SEALED_PLAINTEXT_BYTES: usize = 32 + 16;

/// Why this node's wrap of a content key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WrapError {
    #[error("the key wrapped for this node does not open")]
    DoesNotOpen,
    #[error(
        "the key wrapped for this node carries no binding to its manifest (sealed by an older version); publish the video again"
    )]
    Unbound,
    #[error(
        "the key wrapped for this node was sealed for another manifest (another creator, access policy or content): its key wraps were copied"
    )]
    WrongManifest,
}

/// Seals `key`, bound to the manifest whose [`Manifest::key_binding`] is `binding`, to the
/// node whose Ed25519 public key is `node_key`.
pub fn seal(
    key: &ContentKey,
    binding: &[u8; 32],
    node_key: &[u8; 32],
    url: Option<String>,
) -> Result<WrappedKey, String> {
    let ed =
        VerifyingKey::from_bytes(node_key).map_err(|_| "not an Ed25519 node key".to_string())?;
    let public = PublicKey::from(ed.to_montgomery().to_bytes());
    let mut plaintext = [0u8; SEALED_PLAINTEXT_BYTES];
    plaintext[..32].copy_from_slice(binding);
    plaintext[32..].copy_from_slice(key);
    let sealed = public
        .seal(&mut OsRng, &plaintext)
        .map_err(|e| format!("cannot seal the key: {e}"))?;
    Ok(WrappedKey {
        node_key: *node_key,
        url,
        sealed,
    })
}

/// Opens the wrap addressed to this node in `manifest`, if there is one, and checks that it
/// was sealed for this very manifest.
pub fn open(manifest: &Manifest, identity: &SigningKey) -> Option<Result<ContentKey, WrapError>> {
    let encryption = manifest.encryption.as_ref()?;
    let mine = identity.verifying_key().to_bytes();
    let wrap = encryption.key_wraps.iter().find(|w| w.node_key == mine)?;
    let secret = SecretKey::from(identity.to_scalar_bytes());
    let Ok(plaintext) = secret.unseal(&wrap.sealed) else {
        return Some(Err(WrapError::DoesNotOpen));
    };
    let Ok(plaintext) = <[u8; SEALED_PLAINTEXT_BYTES]>::try_from(plaintext.as_slice()) else {
        return Some(Err(WrapError::Unbound));
    };
    let (binding, key) = plaintext.split_at(32);
    if binding != manifest.key_binding() {
        return Some(Err(WrapError::WrongManifest));
    }
    let mut content_key = ContentKey::default();
    content_key.copy_from_slice(key);
    Some(Ok(content_key))
}

/// Refuses a manifest whose wrap for this node was not sealed for it. Manifests without a
/// wrap for this node pass: only the addressed key server can tell, and only it releases.
pub fn check_wraps(manifest: &Manifest, identity: &SigningKey) -> Result<(), WrapError> {
    match open(manifest, identity) {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// HLS AES-128: the whole segment, AES-128-CBC with PKCS#7 padding, the IV of (track, index).
pub fn encrypt_segment(key: &ContentKey, track: usize, index: usize, plaintext: &[u8]) -> Vec<u8> {
    cbc::Encryptor::<aes::Aes128>::new(key.into(), &Encryption::iv(track, index).into())
        .encrypt_padded_vec_mut::<Pkcs7>(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockDecryptMut;
    use streamgate_protocol::access::EncryptionMethod;

    /// A gated manifest by `creator` with wraps of `key` for `servers`, sealed as publish does.
    fn gated(creator: &SigningKey, key: &ContentKey, servers: &[&SigningKey]) -> Manifest {
        let mut manifest = sample_manifest(creator);
        manifest.access = Some(
            "erc721:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse()
                .expect("gate"),
        );
        manifest.encryption = Some(Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps: servers
                .iter()
                .map(|s| WrappedKey {
                    node_key: s.verifying_key().to_bytes(),
                    url: None,
                    sealed: Vec::new(),
                })
                .collect(),
        });
        let binding = manifest.key_binding();
        if let Some(e) = &mut manifest.encryption {
            for wrap in &mut e.key_wraps {
                *wrap = seal(key, &binding, &wrap.node_key, None).expect("seal");
            }
        }
        manifest
    }

    fn sample_manifest(creator: &SigningKey) -> Manifest {
        let seg = streamgate_protocol::manifest::SegmentRef {
            hash: streamgate_protocol::ContentHash::of(b"segment"),
            size: 100,
            duration: 90_000,
        };
        Manifest {
            title: "clip".into(),
            created_at: 1_800_000_000,
            duration_ms: 1000,
            creator: creator.verifying_key().to_bytes(),
            tracks: vec![streamgate_protocol::manifest::Track {
                id: "360p".into(),
                kind: streamgate_protocol::manifest::TrackKind::Video,
                codec: "avc1.64001e".into(),
                bandwidth: 1,
                average_bandwidth: 1,
                video: Some(streamgate_protocol::manifest::VideoParams {
                    width: 640,
                    height: 360,
                    frame_rate_num: 30,
                    frame_rate_den: 1,
                }),
                audio: None,
                timescale: 90_000,
                init: seg,
                segments: vec![seg],
            }],
            access: None,
            encryption: None,
            work: Vec::new(),
        }
    }

    #[test]
    fn only_the_addressed_node_opens_the_key_and_only_for_its_manifest() {
        let creator = SigningKey::from_bytes(&[2; 32]);
        let node = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let key = new_content_key();
        let manifest = gated(&creator, &key, &[&node]);
        assert_eq!(open(&manifest, &node), Some(Ok(key)));
        assert_eq!(check_wraps(&manifest, &node), Ok(()));
        assert_eq!(open(&manifest, &other), None, "no wrap for this node");
        assert_eq!(check_wraps(&manifest, &other), Ok(()));

        let mut tampered = manifest.clone();
        if let Some(e) = &mut tampered.encryption {
            e.key_wraps[0].sealed[5] ^= 1;
        }
        assert_eq!(open(&tampered, &node), Some(Err(WrapError::DoesNotOpen)));

        // The attack: another creator's manifest, with its own policy, reusing the wraps.
        let attacker = SigningKey::from_bytes(&[5; 32]);
        let mut stolen = sample_manifest(&attacker);
        stolen.access = Some(
            "erc721:31337:0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
                .parse()
                .expect("gate"),
        );
        stolen.encryption = manifest.encryption.clone();
        assert_eq!(open(&stolen, &node), Some(Err(WrapError::WrongManifest)));
        assert_eq!(check_wraps(&stolen, &node), Err(WrapError::WrongManifest));
        // The same creator's manifest with a relaxed policy is refused too.
        let mut relaxed = manifest.clone();
        if let Some(a) = &mut relaxed.access {
            a.registrant = Some(alloy::primitives::Address::repeat_byte(9));
        }
        assert_eq!(open(&relaxed, &node), Some(Err(WrapError::WrongManifest)));

        // A wrap of the bare key, as versions before the binding sealed it.
        let mut unbound = manifest.clone();
        let ed = VerifyingKey::from_bytes(&node.verifying_key().to_bytes()).expect("key");
        let sealed = PublicKey::from(ed.to_montgomery().to_bytes())
            .seal(&mut OsRng, &key)
            .expect("seal");
        if let Some(e) = &mut unbound.encryption {
            e.key_wraps[0].sealed = sealed;
        }
        assert_eq!(open(&unbound, &node), Some(Err(WrapError::Unbound)));
    }

    #[test]
    fn segments_decrypt_with_the_hls_iv() {
        let key = [7u8; 16];
        let data = b"an fMP4 media segment, any length".to_vec();
        let sealed = encrypt_segment(&key, 2, 3, &data);
        assert_eq!(sealed.len() % 16, 0);
        let opened =
            cbc::Decryptor::<aes::Aes128>::new((&key).into(), &Encryption::iv(2, 3).into())
                .decrypt_padded_vec_mut::<Pkcs7>(&sealed)
                .expect("decrypts");
        assert_eq!(opened, data);
    }
}
