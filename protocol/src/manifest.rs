//! The manifest: everything a node needs to serve a published video, signed by its creator.
//!
//! A manifest lists the tracks (one per video rung, plus audio), and for each track its
//! codec, bandwidth and the BLAKE3 hash, size and duration of its init segment and of every
//! media segment. Playlists (HLS, DASH) are rendered from it on any node, so the manifest is
//! the only thing that must be agreed on.
//!
//! The manifest id is the BLAKE3 hash of the signed manifest's canonical encoding, which is
//! also the hash of the blob the manifest is stored in: fetching a manifest by id verifies it.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    ContentHash,
    access::{AccessPolicy, Encryption},
    wire::{self, DecodeError},
};

/// 2: the manifest records which worker made which segments ([`WorkRecord`]).
const VERSION: u8 = 2;
const SIGNING_DOMAIN: &[u8] = b"streamgate/manifest/v1\0";
const KEY_BINDING_CONTEXT: &str = "streamgate 2026-12-01 manifest key binding v1";

/// Largest encoded manifest. With the segment limit below, a manifest of the longest video
/// fits with room to spare (about 45 bytes per segment).
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;
/// Tracks in one manifest: a ladder of up to 8 rungs plus audio tracks.
pub const MAX_TRACKS: usize = 16;
/// Segments per track: 100 000 segments of 2 s is 55 hours.
pub const MAX_SEGMENTS: usize = 100_000;
/// Largest media segment (a 2 s segment at 200 Mbit/s is 50 MB).
pub const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest init segment.
pub const MAX_INIT_BYTES: u64 = 1024 * 1024;
pub const MAX_TITLE_BYTES: usize = 256;
const MAX_TRACK_ID_BYTES: usize = 32;
const MAX_CODEC_BYTES: usize = 64;

/// A published video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub title: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// Duration of the longest track, in milliseconds.
    pub duration_ms: u64,
    /// The creator's Ed25519 public key, which signs the manifest.
    #[serde(with = "crate::content::hex_key")]
    pub creator: [u8; 32],
    pub tracks: Vec<Track>,
    /// Who may watch; `None` for public content.
    pub access: Option<AccessPolicy>,
    /// How media segments are encrypted; present exactly when `access` is.
    pub encryption: Option<Encryption>,
    /// Which volunteered worker made which video segments, in segment order; segments no
    /// record covers were made by the publishing node itself.
    pub work: Vec<WorkRecord>,
}

/// A run of video segments (of every video rung) made by a worker, and the worker's signed
/// receipt for them, kept as a blob so a problem found later can be traced to its maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkRecord {
    pub first_segment: u32,
    pub segments: u32,
    /// The worker's Ed25519 node key, which signed the receipt.
    #[serde(with = "crate::content::hex_key")]
    pub worker: [u8; 32],
    /// The blob holding the worker's [`SignedReceipt`](crate::job::SignedReceipt); its
    /// duration is 0.
    pub receipt: SegmentRef,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
}

/// One rendition: a video rung or an audio encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Short name used in URLs, e.g. `720p` or `audio_aac`: `[a-z0-9_]`, 1 to 32 characters.
    pub id: String,
    pub kind: TrackKind,
    /// RFC 6381 codec string, e.g. `avc1.64001f`, `mp4a.40.2`, `opus`.
    pub codec: String,
    /// Peak bits per second, as HLS `BANDWIDTH` wants it.
    pub bandwidth: u64,
    /// Average bits per second.
    pub average_bandwidth: u64,
    pub video: Option<VideoParams>,
    pub audio: Option<AudioParams>,
    /// Units per second of segment durations.
    pub timescale: u32,
    pub init: SegmentRef,
    pub segments: Vec<SegmentRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoParams {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction.
    pub frame_rate_num: u32,
    pub frame_rate_den: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioParams {
    pub sample_rate: u32,
    pub channels: u32,
}

/// A segment: its content hash, size, and duration in the track's timescale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub hash: ContentHash,
    pub size: u64,
    pub duration: u64,
}

/// A manifest with its creator's signature: what is stored and moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    pub manifest: Manifest,
    #[serde(with = "crate::node_record::signature_bytes")]
    pub signature: [u8; 64],
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("manifest signature does not verify against its creator key")]
    BadSignature,
    #[error("manifest creator is not a valid Ed25519 public key")]
    BadCreatorKey,
    #[error("manifest is invalid: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Checks every field; the message names the first problem found.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |msg: String| Err(ManifestError::Invalid(msg));
        if self.title.len() > MAX_TITLE_BYTES {
            return invalid(format!(
                "title is {} bytes; at most {MAX_TITLE_BYTES}",
                self.title.len()
            ));
        }
        if self.title.chars().any(char::is_control) {
            return invalid("title contains control characters".into());
        }
        if self.tracks.is_empty() || self.tracks.len() > MAX_TRACKS {
            return invalid(format!(
                "{} tracks; between 1 and {MAX_TRACKS} are allowed",
                self.tracks.len()
            ));
        }
        for (i, track) in self.tracks.iter().enumerate() {
            if self.tracks[..i].iter().any(|t| t.id == track.id) {
                return invalid(format!("track id {:?} appears twice", track.id));
            }
            track.validate()?;
        }
        self.validate_work()?;
        match (&self.access, &self.encryption) {
            (None, None) => {}
            (Some(access), Some(encryption)) => {
                access.validate().map_err(ManifestError::Invalid)?;
                encryption.validate().map_err(ManifestError::Invalid)?;
            }
            _ => {
                return invalid(
                    "gated content must be encrypted, and only gated content is".into(),
                );
            }
        }
        Ok(())
    }

    /// Signs the manifest; the key must be the creator key.
    pub fn sign(self, key: &SigningKey) -> SignedManifest {
        debug_assert_eq!(key.verifying_key().to_bytes(), self.creator);
        let signature = key.sign(&signing_input(&self)).to_bytes();
        SignedManifest {
            manifest: self,
            signature,
        }
    }

    /// What a content key is sealed together with: a digest of the whole manifest except
    /// the sealed bytes themselves, so of its creator, access policy and registrant, title,
    /// tracks and segment hashes, and every key server's node key and URL. A key server
    /// releases a key only for a manifest whose binding matches the one sealed with it:
    /// wraps copied into another manifest (another creator, policy or content) are refused.
    pub fn key_binding(&self) -> [u8; 32] {
        let mut unsealed = self.clone();
        if let Some(encryption) = &mut unsealed.encryption {
            for wrap in &mut encryption.key_wraps {
                wrap.sealed.clear();
            }
        }
        blake3::Hasher::new_derive_key(KEY_BINDING_CONTEXT)
            .update(&wire::encode(VERSION, &unsealed))
            .finalize()
            .into()
    }

    pub fn track(&self, id: &str) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Every blob the manifest refers to: init and media segments of every track, and the
    /// workers' receipts.
    pub fn blobs(&self) -> impl Iterator<Item = &SegmentRef> {
        self.tracks
            .iter()
            .flat_map(|t| std::iter::once(&t.init).chain(t.segments.iter()))
            .chain(self.work.iter().map(|w| &w.receipt))
    }

    /// The work record covering video segment `index`, if a worker made it.
    pub fn made_by(&self, index: u32) -> Option<&WorkRecord> {
        self.work.iter().find(|w| {
            (w.first_segment..w.first_segment.saturating_add(w.segments)).contains(&index)
        })
    }

    /// Segments every video rung has (rungs of one video have the same number).
    pub fn video_segments(&self) -> usize {
        self.tracks
            .iter()
            .filter(|t| t.kind == TrackKind::Video)
            .map(|t| t.segments.len())
            .min()
            .unwrap_or(0)
    }

    /// Records are in segment order, do not overlap, and cover segments every video rung has.
    fn validate_work(&self) -> Result<(), ManifestError> {
        let invalid = |msg: String| Err(ManifestError::Invalid(format!("work records: {msg}")));
        let video_segments = self.video_segments() as u64;
        let mut next = 0u64;
        for (i, record) in self.work.iter().enumerate() {
            let first = u64::from(record.first_segment);
            let end = first + u64::from(record.segments);
            if record.segments == 0 {
                return invalid(format!("record {i} covers no segment"));
            }
            if first < next {
                return invalid(format!("record {i} overlaps or precedes the one before"));
            }
            if end > video_segments {
                return invalid(format!(
                    "record {i} runs to segment {end}; the video rungs have {video_segments}"
                ));
            }
            let size = record.receipt.size;
            if size == 0 || size > crate::limits::MAX_JOB_MESSAGE_BYTES as u64 {
                return invalid(format!("record {i}: a receipt of {size} bytes"));
            }
            next = end;
        }
        Ok(())
    }
}

impl Track {
    fn validate(&self) -> Result<(), ManifestError> {
        let invalid = |msg: String| {
            Err(ManifestError::Invalid(format!(
                "track {:?}: {msg}",
                self.id
            )))
        };
        let id_ok = !self.id.is_empty()
            && self.id.len() <= MAX_TRACK_ID_BYTES
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !id_ok {
            return invalid("id must be 1 to 32 characters of a-z, 0-9 and _".into());
        }
        // The codec string is written into playlists: only RFC 6381 characters may appear.
        let codec_ok = !self.codec.is_empty()
            && self.codec.len() <= MAX_CODEC_BYTES
            && self
                .codec
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !codec_ok {
            return invalid(format!(
                "codec {:?} is not an RFC 6381 codec string",
                self.codec
            ));
        }
        match (self.kind, &self.video, &self.audio) {
            (TrackKind::Video, Some(v), None) => {
                if v.width == 0 || v.height == 0 || v.width > 16384 || v.height > 16384 {
                    return invalid(format!("dimensions {}x{} out of range", v.width, v.height));
                }
                if v.frame_rate_num == 0 || v.frame_rate_den == 0 {
                    return invalid("frame rate must be positive".into());
                }
            }
            (TrackKind::Audio, None, Some(a)) => {
                if a.sample_rate == 0 || a.channels == 0 || a.channels > 64 {
                    return invalid("audio parameters out of range".into());
                }
            }
            _ => return invalid("kind does not match its parameters".into()),
        }
        if self.timescale == 0 {
            return invalid("timescale must be positive".into());
        }
        if self.bandwidth == 0 {
            return invalid("bandwidth must be positive".into());
        }
        if self.init.size == 0 || self.init.size > MAX_INIT_BYTES {
            return invalid(format!("init segment size {} out of range", self.init.size));
        }
        if self.segments.is_empty() || self.segments.len() > MAX_SEGMENTS {
            return invalid(format!(
                "{} segments; between 1 and {MAX_SEGMENTS} are allowed",
                self.segments.len()
            ));
        }
        for (i, seg) in self.segments.iter().enumerate() {
            if seg.size == 0 || seg.size > MAX_SEGMENT_BYTES {
                return invalid(format!("segment {i} size {} out of range", seg.size));
            }
            if seg.duration == 0 {
                return invalid(format!("segment {i} has no duration"));
            }
        }
        Ok(())
    }

    /// Total duration in seconds.
    /// The manifest's `duration_ms` for these tracks: the longest one's.
    pub fn longest_ms(tracks: &[Track]) -> u64 {
        tracks
            .iter()
            .map(|t| (t.duration_secs() * 1000.0).round() as u64)
            .max()
            .unwrap_or(0)
    }

    pub fn duration_secs(&self) -> f64 {
        let ticks: u64 = self.segments.iter().map(|s| s.duration).sum();
        ticks as f64 / f64::from(self.timescale)
    }

    /// Longest segment, in seconds.
    pub fn max_segment_secs(&self) -> f64 {
        self.segments.iter().map(|s| s.duration).max().unwrap_or(0) as f64
            / f64::from(self.timescale)
    }
}

impl SignedManifest {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// The manifest id: the hash of the encoding.
    pub fn id(&self) -> ContentHash {
        ContentHash::of(&self.encode())
    }

    /// Decodes, validates every field, and checks the signature.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, ManifestError> {
        let signed: Self = wire::decode("manifest", VERSION, MAX_MANIFEST_BYTES, bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    pub fn verify(&self) -> Result<(), ManifestError> {
        self.manifest.validate()?;
        let key = VerifyingKey::from_bytes(&self.manifest.creator)
            .map_err(|_| ManifestError::BadCreatorKey)?;
        key.verify_strict(
            &signing_input(&self.manifest),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ManifestError::BadSignature)
    }
}

fn signing_input(manifest: &Manifest) -> Vec<u8> {
    let mut input = SIGNING_DOMAIN.to_vec();
    input.extend_from_slice(&wire::encode(VERSION, manifest));
    input
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample(key: &SigningKey) -> Manifest {
        let seg = |n: u8| SegmentRef {
            hash: ContentHash::of(&[n]),
            size: 1000 + u64::from(n),
            duration: 180_000,
        };
        Manifest {
            title: "Test clip".into(),
            created_at: 1_800_000_000,
            duration_ms: 4000,
            creator: key.verifying_key().to_bytes(),
            tracks: vec![
                Track {
                    id: "720p".into(),
                    kind: TrackKind::Video,
                    codec: "avc1.64001f".into(),
                    bandwidth: 3_000_000,
                    average_bandwidth: 2_800_000,
                    video: Some(VideoParams {
                        width: 1280,
                        height: 720,
                        frame_rate_num: 30,
                        frame_rate_den: 1,
                    }),
                    audio: None,
                    timescale: 90_000,
                    init: seg(0),
                    segments: vec![seg(1), seg(2)],
                },
                Track {
                    id: "audio_aac".into(),
                    kind: TrackKind::Audio,
                    codec: "mp4a.40.2".into(),
                    bandwidth: 130_000,
                    average_bandwidth: 128_000,
                    video: None,
                    audio: Some(AudioParams {
                        sample_rate: 48_000,
                        channels: 2,
                    }),
                    timescale: 48_000,
                    init: seg(3),
                    segments: vec![seg(4), seg(5)],
                },
            ],
            access: None,
            encryption: None,
            work: Vec::new(),
        }
    }

    #[test]
    fn signed_manifest_round_trips_and_id_is_hash_of_encoding() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let signed = sample(&key).sign(&key);
        let bytes = signed.encode();
        let back = SignedManifest::decode_verified(&bytes).expect("valid");
        assert_eq!(back, signed);
        assert_eq!(back.id(), ContentHash::of(&bytes));
        assert_eq!(signed.manifest.blobs().count(), 6);
    }

    #[test]
    fn tampering_is_refused_with_a_reason() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut signed = sample(&key).sign(&key);
        signed.manifest.tracks[0].segments[1].hash = ContentHash::of(b"other");
        assert_eq!(signed.verify(), Err(ManifestError::BadSignature));
        let mut bad = sample(&key);
        bad.tracks[0].codec = "avc1\",evil".into();
        assert!(
            matches!(bad.sign(&key).verify(), Err(ManifestError::Invalid(m)) if m.contains("codec"))
        );
        let mut bad = sample(&key);
        bad.tracks[1].id = "720p".into();
        assert!(
            matches!(bad.sign(&key).verify(), Err(ManifestError::Invalid(m)) if m.contains("twice"))
        );
        let mut bad = sample(&key);
        bad.tracks[0].segments.clear();
        assert!(matches!(
            bad.sign(&key).verify(),
            Err(ManifestError::Invalid(_))
        ));
        let mut bad = sample(&key);
        bad.tracks[0].id = "../x".into();
        assert!(matches!(
            bad.sign(&key).verify(),
            Err(ManifestError::Invalid(_))
        ));
    }

    #[test]
    fn work_records_must_be_in_order_disjoint_and_within_the_video() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let record = |first_segment, segments| WorkRecord {
            first_segment,
            segments,
            worker: [5; 32],
            receipt: SegmentRef {
                hash: ContentHash::of(b"receipt"),
                size: 900,
                duration: 0,
            },
        };
        let mut traced = sample(&key);
        traced.work = vec![record(0, 1), record(1, 1)];
        let signed = traced.clone().sign(&key);
        let back = SignedManifest::decode_verified(&signed.encode()).expect("valid");
        assert_eq!(
            back.manifest.blobs().count(),
            8,
            "receipts are blobs of the manifest"
        );
        assert_eq!(traced.made_by(1).map(|w| w.first_segment), Some(1));
        assert_eq!(traced.made_by(2), None);
        let empty_receipt = WorkRecord {
            receipt: SegmentRef {
                size: 0,
                ..record(0, 1).receipt
            },
            ..record(0, 1)
        };
        for bad in [
            vec![record(0, 0)],
            vec![record(1, 1), record(0, 1)],
            vec![record(0, 2), record(1, 1)],
            vec![record(1, 2)],
            vec![empty_receipt],
        ] {
            let mut m = sample(&key);
            m.work = bad;
            assert!(
                matches!(m.sign(&key).verify(), Err(ManifestError::Invalid(msg)) if msg.contains("work records"))
            );
        }
    }

    #[test]
    fn the_key_binding_covers_everything_but_the_sealed_bytes() {
        use crate::access::{Encryption, EncryptionMethod, WrappedKey};
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut gated = sample(&key);
        gated.access = Some(
            "erc721:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse()
                .expect("gate"),
        );
        gated.encryption = Some(Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps: vec![WrappedKey {
                node_key: [9; 32],
                url: Some("http://127.0.0.1:7700".into()),
                sealed: vec![1; 48],
            }],
        });
        let binding = gated.key_binding();
        let mut resealed = gated.clone();
        if let Some(e) = &mut resealed.encryption {
            e.key_wraps[0].sealed = vec![2; 80];
        }
        assert_eq!(
            resealed.key_binding(),
            binding,
            "sealed bytes are not bound"
        );
        let changes: [fn(&mut Manifest); 6] = [
            |m| m.creator = [7; 32],
            |m| m.title.push('!'),
            |m| m.tracks[0].segments[0].hash = ContentHash::of(b"other"),
            |m| {
                if let Some(a) = &mut m.access {
                    a.registrant = Some(alloy_primitives::Address::repeat_byte(1));
                }
            },
            |m| {
                if let Some(a) = &mut m.access {
                    a.contract = alloy_primitives::Address::repeat_byte(2);
                }
            },
            |m| {
                if let Some(e) = &mut m.encryption {
                    e.key_wraps[0].url = Some("http://elsewhere:1".into());
                }
            },
        ];
        for change in changes {
            let mut other = gated.clone();
            change(&mut other);
            assert_ne!(other.key_binding(), binding);
        }
    }

    /// Found by the `signed_manifest` fuzz target: a signed manifest with one varint padded
    /// (`89 00` for the title's length 9) verified, under a second id.
    #[test]
    fn a_second_encoding_of_a_signed_manifest_is_refused() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let canonical = sample(&key).sign(&key).encode();
        assert_eq!(canonical[1], 9, "the title's length");
        let padded = [&canonical[..1], &[0x89, 0x00], &canonical[2..]].concat();
        assert_eq!(
            SignedManifest::decode_verified(&padded),
            Err(ManifestError::Decode(DecodeError::NonCanonical {
                what: "manifest"
            }))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000)) {
            let _ = SignedManifest::decode_verified(&bytes);
        }

        #[test]
        fn any_bit_flip_is_refused(index in 0usize..2000, bit in 0u8..8) {
            let key = SigningKey::from_bytes(&[2; 32]);
            let mut bytes = sample(&key).sign(&key).encode();
            let i = index % bytes.len();
            bytes[i] ^= 1 << bit;
            prop_assert!(SignedManifest::decode_verified(&bytes).is_err());
        }
    }
}
