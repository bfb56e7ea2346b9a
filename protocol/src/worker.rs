//! The gossip message a node sends while it volunteers as a transcoding worker.
//!
//! A worker re-sends its advert well within its time-to-live; a receiver keeps the newest
//! verified advert of each worker until it expires. The advert states what the worker's
//! hardware probe really opened, what it measured of itself and what it charges. A
//! publisher treats all of it as a claim: what a worker returns is verified before it
//! counts, and the chain is read for payment state.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    limits::{MAX_CLOCK_SKEW_SECS, MAX_WORKER_ADVERT_BYTES},
    node_record::signature_bytes,
    wire::{self, DecodeError},
};

const VERSION: u8 = 1;
const SIGNING_DOMAIN: &[u8] = b"streamgate worker advert v1\0";

/// The gossipsub topic worker adverts are published on.
pub const WORKER_TOPIC: &str = "streamgate/workers/1";

/// Longest time-to-live an advert may claim, in seconds: a worker that went away is
/// forgotten within this.
pub const MAX_ADVERT_TTL_SECS: u32 = 600;
/// Most codec names in each list, and GPUs, in one advert.
pub const MAX_CODECS: usize = 16;
pub const MAX_GPUS: usize = 8;
/// Longest codec or GPU name.
pub const MAX_NAME_BYTES: usize = 64;

/// How a worker transcodes, from its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WorkMode {
    /// Hardware decode and encode.
    Gpu,
    /// Hardware decode, CPU encode: datacenter GPUs (H100, H200) have NVDEC but no NVENC.
    GpuDecodeCpuEncode,
    Cpu,
}

/// One GPU and the encode sessions it allows at once (consumer NVENC cards cap them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    pub name: String,
    /// 0: the GPU does not encode; `None`: not measured.
    pub encode_sessions: Option<u16>,
}

/// "I transcode for others, like this, at this price."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerAdvert {
    /// The worker's Ed25519 node key (its PeerId and iroh NodeId).
    pub node_key: [u8; 32],
    /// Seconds since the Unix epoch when the worker signed it.
    pub issued_at: u64,
    /// Seconds after `issued_at` the advert stays valid; at most [`MAX_ADVERT_TTL_SECS`].
    pub ttl_secs: u32,
    pub mode: WorkMode,
    /// Decoders and encoders the probe opened (FFmpeg names: `h264_cuvid`, `libx264`).
    pub decoders: Vec<String>,
    pub encoders: Vec<String>,
    pub gpus: Vec<Gpu>,
    /// Frames per second (times 1000) of the worker's own start-up measurement: 1080p
    /// decoded and encoded to the default ladder's 720p rung. `None`: not measured.
    pub speed_millifps: Option<u32>,
    /// Wei per 10^9 output pixels (a 60 s 1080p30 rung is about 3.7 of them).
    pub price_per_gigapixel: u128,
    pub max_jobs: u16,
    pub active_jobs: u16,
    /// The Ethereum address it is paid at; `None`: it has named none.
    pub payment_address: Option<[u8; 20]>,
}

/// A [`WorkerAdvert`] with its signature, as it travels in gossip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedWorkerAdvert {
    pub advert: WorkerAdvert,
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// Why an advert is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("worker advert lists {0} {1}; at most {2} are allowed")]
    TooMany(usize, &'static str, usize),
    #[error("worker advert has a {what} name of {len} bytes or one that is not printable ASCII")]
    BadName { what: &'static str, len: usize },
    #[error("worker advert claims {0} s to live; at most {MAX_ADVERT_TTL_SECS} s are allowed")]
    TtlTooLong(u32),
    #[error("worker advert claims {active} jobs in progress of at most {max}")]
    BadLoad { active: u16, max: u16 },
    #[error("worker advert key is not a valid Ed25519 public key")]
    BadKey,
    #[error("worker advert signature does not verify against its key")]
    BadSignature,
    #[error(
        "worker advert was issued {0} s in the future; clocks may differ by at most {MAX_CLOCK_SKEW_SECS} s"
    )]
    FromTheFuture(u64),
    #[error("worker advert expired {0} s ago")]
    Expired(u64),
}

impl WorkerAdvert {
    /// Signs the advert with `key`, which must be the key the advert names.
    pub fn sign(self, key: &SigningKey) -> SignedWorkerAdvert {
        debug_assert_eq!(key.verifying_key().to_bytes(), self.node_key);
        let signature = key.sign(&signing_input(&self)).to_bytes();
        SignedWorkerAdvert {
            advert: self,
            signature,
        }
    }

    /// When it stops being valid, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.issued_at.saturating_add(u64::from(self.ttl_secs))
    }

    fn check_shape(&self) -> Result<(), AdvertError> {
        for (list, what) in [(&self.decoders, "decoders"), (&self.encoders, "encoders")] {
            if list.len() > MAX_CODECS {
                return Err(AdvertError::TooMany(list.len(), what, MAX_CODECS));
            }
            for name in list {
                check_name(name, "codec")?;
            }
        }
        if self.gpus.len() > MAX_GPUS {
            return Err(AdvertError::TooMany(self.gpus.len(), "GPUs", MAX_GPUS));
        }
        for gpu in &self.gpus {
            check_name(&gpu.name, "GPU")?;
        }
        if self.ttl_secs > MAX_ADVERT_TTL_SECS {
            return Err(AdvertError::TtlTooLong(self.ttl_secs));
        }
        if self.active_jobs > self.max_jobs {
            return Err(AdvertError::BadLoad {
                active: self.active_jobs,
                max: self.max_jobs,
            });
        }
        Ok(())
    }
}

/// Names are shown to operators and matched against codec names: printable ASCII only, so
/// no advert can smuggle terminal escapes into `streamgate workers`.
fn check_name(name: &str, what: &'static str) -> Result<(), AdvertError> {
    let printable = name.bytes().all(|b| (0x20..0x7f).contains(&b));
    if name.is_empty() || name.len() > MAX_NAME_BYTES || !printable {
        return Err(AdvertError::BadName {
            what,
            len: name.len(),
        });
    }
    Ok(())
}

impl SignedWorkerAdvert {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes and fully verifies an advert received at time `now` (seconds since the Unix
    /// epoch).
    pub fn decode_verified(bytes: &[u8], now: u64) -> Result<Self, AdvertError> {
        let signed: Self = wire::decode("worker advert", VERSION, MAX_WORKER_ADVERT_BYTES, bytes)?;
        signed.verify(now)?;
        Ok(signed)
    }

    /// Checks shape, signature and validity window at time `now`.
    pub fn verify(&self, now: u64) -> Result<(), AdvertError> {
        self.advert.check_shape()?;
        let key =
            VerifyingKey::from_bytes(&self.advert.node_key).map_err(|_| AdvertError::BadKey)?;
        key.verify_strict(
            &signing_input(&self.advert),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| AdvertError::BadSignature)?;
        let issued = self.advert.issued_at;
        if issued > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(AdvertError::FromTheFuture(issued - now));
        }
        let expires = self.advert.expires_at();
        if now > expires {
            return Err(AdvertError::Expired(now - expires));
        }
        Ok(())
    }
}

fn signing_input(advert: &WorkerAdvert) -> Vec<u8> {
    let mut input = SIGNING_DOMAIN.to_vec();
    input.extend_from_slice(&wire::encode(VERSION, advert));
    input
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[9; 32])
    }

    /// An H200-like hybrid worker's advert, issued at time 1000 for 300 s.
    fn advert() -> WorkerAdvert {
        WorkerAdvert {
            node_key: key().verifying_key().to_bytes(),
            issued_at: 1000,
            ttl_secs: 300,
            mode: WorkMode::GpuDecodeCpuEncode,
            decoders: vec!["h264".into(), "h264_cuvid".into()],
            encoders: vec!["libx264".into()],
            gpus: vec![Gpu {
                name: "NVIDIA H200".into(),
                encode_sessions: Some(0),
            }],
            speed_millifps: Some(95_500),
            price_per_gigapixel: 2_000_000_000_000,
            max_jobs: 4,
            active_jobs: 1,
            payment_address: Some([0x11; 20]),
        }
    }

    #[test]
    fn round_trips_within_its_lifetime_only() {
        let signed = advert().sign(&key());
        let bytes = signed.encode();
        assert!(
            bytes.len() < MAX_WORKER_ADVERT_BYTES / 4,
            "{} bytes",
            bytes.len()
        );
        assert_eq!(
            SignedWorkerAdvert::decode_verified(&bytes, 1000),
            Ok(signed.clone())
        );
        assert_eq!(
            SignedWorkerAdvert::decode_verified(&bytes, 1300),
            Ok(signed)
        );
        assert_eq!(
            SignedWorkerAdvert::decode_verified(&bytes, 1301),
            Err(AdvertError::Expired(1))
        );
        assert_eq!(
            SignedWorkerAdvert::decode_verified(&bytes, 1000 - MAX_CLOCK_SKEW_SECS - 1),
            Err(AdvertError::FromTheFuture(MAX_CLOCK_SKEW_SECS + 1))
        );
    }

    #[test]
    fn a_changed_claim_breaks_the_signature() {
        let mut signed = advert().sign(&key());
        signed.advert.price_per_gigapixel = 1;
        assert_eq!(signed.verify(1000), Err(AdvertError::BadSignature));
        // Signed by another key than the one it names.
        let mallory = SigningKey::from_bytes(&[3; 32]);
        let forged = SignedWorkerAdvert {
            advert: advert(),
            signature: mallory.sign(&signing_input(&advert())).to_bytes(),
        };
        assert_eq!(forged.verify(1000), Err(AdvertError::BadSignature));
    }

    #[test]
    fn oversized_or_odd_claims_are_refused_even_when_signed() {
        let refused = |change: fn(&mut WorkerAdvert)| {
            let mut a = advert();
            change(&mut a);
            a.sign(&key()).verify(1000).expect_err("must be refused")
        };
        assert!(matches!(
            refused(|a| a.decoders = vec!["h264".into(); MAX_CODECS + 1]),
            AdvertError::TooMany(_, "decoders", _)
        ));
        assert!(matches!(
            refused(|a| a.encoders = vec!["x\u{1b}[2J".into()]),
            AdvertError::BadName { what: "codec", .. }
        ));
        assert!(matches!(
            refused(|a| a.gpus[0].name = "g".repeat(MAX_NAME_BYTES + 1)),
            AdvertError::BadName { what: "GPU", .. }
        ));
        assert!(matches!(
            refused(|a| a.ttl_secs = MAX_ADVERT_TTL_SECS + 1),
            AdvertError::TtlTooLong(_)
        ));
        assert!(matches!(
            refused(|a| a.active_jobs = a.max_jobs + 1),
            AdvertError::BadLoad { .. }
        ));
        // The largest advert the limits allow still fits the size limit.
        let mut largest = advert();
        largest.decoders = vec!["d".repeat(MAX_NAME_BYTES); MAX_CODECS];
        largest.encoders = largest.decoders.clone();
        largest.gpus = vec![
            Gpu {
                name: "g".repeat(MAX_NAME_BYTES),
                encode_sessions: Some(u16::MAX),
            };
            MAX_GPUS
        ];
        largest.price_per_gigapixel = u128::MAX;
        largest.speed_millifps = Some(u32::MAX);
        let bytes = largest.sign(&key()).encode();
        assert!(
            bytes.len() <= MAX_WORKER_ADVERT_BYTES,
            "{} bytes",
            bytes.len()
        );
        assert!(SignedWorkerAdvert::decode_verified(&bytes, 1000).is_ok());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = SignedWorkerAdvert::decode_verified(&bytes, 1000);
        }
    }
}
