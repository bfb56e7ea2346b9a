//! Transcoding jobs between a publisher and a worker: a signed offer, and a reply that is
//! a refusal, a failure, or a signed receipt listing the outputs.
//!
//! ```text
//!  publisher ── SignedJobOffer (chunk hash, grid offset, rungs, price, deadline) ──▶ worker
//!            ◀─ JobReply::Done(SignedReceipt: output hashes per rung) ─────────────
//!            ◀─ JobReply::Refused(reason) | JobReply::Failed(reason) ──────────────
//! ```
//!
//! One request-response exchange per job, over libp2p (`/streamgate/jobs/1`); the bytes
//! move over iroh-blobs: the worker fetches the chunk from the publisher, the publisher
//! fetches the outputs from the worker. Both messages are signed by their sender's node key,
//! so a receipt kept in the publisher's records proves which worker made which segment.
//! Nothing a worker says counts before the publisher has verified the bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{
    ContentHash, SignedNodeRecord,
    limits::{MAX_CLOCK_SKEW_SECS, MAX_JOB_MESSAGE_BYTES},
    manifest::{MAX_INIT_BYTES, MAX_SEGMENT_BYTES, SegmentRef},
    node_record::signature_bytes,
    wire::{self, DecodeError},
};

const VERSION: u8 = 1;
const OFFER_DOMAIN: &[u8] = b"streamgate job offer v1\0";
const RECEIPT_DOMAIN: &[u8] = b"streamgate job receipt v1\0";

/// The libp2p protocol name of the exchange.
pub const JOB_PROTOCOL: &str = "/streamgate/jobs/1";
/// Rungs in one job (a ladder has at most 8).
pub const MAX_JOB_RUNGS: usize = 8;
/// Segments of each rung in one job.
pub const MAX_JOB_SEGMENTS: u64 = 64;
/// Frames per segment, at most (a 2 s segment at 240 fps is 480).
pub const MAX_GOP_FRAMES: u32 = 1024;
/// Largest rung dimension.
pub const MAX_DIMENSION: u32 = 8192;
/// Longest a job may be given, in seconds after its offer.
pub const MAX_JOB_SECS: u64 = 3600;
/// Longest refusal or failure reason.
pub const MAX_REASON_BYTES: usize = 256;
/// x264 presets a job may ask for, and a node's `transcode.preset` may name (`placebo` is
/// left out: it costs many times `veryslow` for no visible gain).
pub const PRESETS: [&str; 9] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
];

/// One rung to encode, exactly: every chunk of a rung is made with the same settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRung {
    /// Track id, e.g. `720p`: `[a-z0-9_]`, 1 to 32 characters.
    pub id: String,
    pub width: u32,
    pub height: u32,
    /// Target video bits per second.
    pub bitrate: u64,
}

/// "Transcode these frames of this chunk into these rungs, for this much, by then."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOffer {
    pub job_id: [u8; 16],
    /// The publisher's Ed25519 node key, which signs the offer.
    pub publisher: [u8; 32],
    /// Seconds since the Unix epoch.
    pub issued_at: u64,
    /// The receipt must arrive by then.
    pub deadline: u64,
    /// The remuxed source chunk (NUT), to fetch from the publisher over iroh-blobs.
    pub chunk: ContentHash,
    pub chunk_size: u64,
    /// FFmpeg codec name of the chunk's video, e.g. `h264`.
    pub source_codec: String,
    /// Output frame rate.
    pub fps_num: u32,
    pub fps_den: u32,
    /// Degrees clockwise to rotate the decoded frames: 0, 90, 180 or 270.
    pub rotation: u16,
    /// The video's first output frame in the chunk's timestamps, in 1/fps units.
    pub origin: i64,
    /// The job's frames, counted from the video's first.
    pub first_frame: u64,
    pub frames: u64,
    /// Frames per segment (and GOP).
    pub gop: u32,
    /// x264 preset, one of [`PRESETS`].
    pub preset: String,
    pub rungs: Vec<JobRung>,
    /// Wei per 10^9 output pixels; what the job pays is [`JobOffer::price`].
    pub price_per_gigapixel: u128,
    /// How to reach the publisher's data plane for the chunk.
    pub publisher_record: Option<SignedNodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedJobOffer {
    pub offer: JobOffer,
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// One rung of a job's output, as the worker stored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RungOutput {
    pub id: String,
    pub init: SegmentRef,
    pub segments: Vec<SegmentRef>,
}

/// "I made these outputs for that job." Signed by the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub job_id: [u8; 16],
    pub worker: [u8; 32],
    pub publisher: [u8; 32],
    pub chunk: ContentHash,
    pub issued_at: u64,
    pub rungs: Vec<RungOutput>,
    /// How to reach the worker's data plane for the outputs.
    pub worker_record: Option<SignedNodeRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    pub receipt: Receipt,
    #[serde(with = "signature_bytes")]
    pub signature: [u8; 64],
}

/// The worker's answer to an offer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobReply {
    Done(Box<SignedReceipt>),
    /// Not taken (busy, codec, price, deadline): the publisher asks another worker.
    Refused(String),
    /// Taken, and failed.
    Failed(String),
}

/// Why a job message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("job message key is not a valid Ed25519 key")]
    BadKey,
    #[error("job message signature does not verify against its key")]
    BadSignature,
    #[error("job offer: {0}")]
    BadOffer(String),
    #[error("job receipt: {0}")]
    BadReceipt(String),
}

fn bad_offer(reason: impl Into<String>) -> JobError {
    JobError::BadOffer(reason.into())
}

fn bad_receipt(reason: impl Into<String>) -> JobError {
    JobError::BadReceipt(reason.into())
}

fn signing_input<T: Serialize>(domain: &[u8], body: &T) -> Vec<u8> {
    let mut input = domain.to_vec();
    input.extend_from_slice(&wire::encode(VERSION, body));
    input
}

fn verify_signed<T: Serialize>(
    domain: &[u8],
    body: &T,
    key: &[u8; 32],
    signature: &[u8; 64],
) -> Result<(), JobError> {
    let key = VerifyingKey::from_bytes(key).map_err(|_| JobError::BadKey)?;
    key.verify_strict(
        &signing_input(domain, body),
        &Signature::from_bytes(signature),
    )
    .map_err(|_| JobError::BadSignature)
}

/// Track ids as manifests allow them.
fn valid_track_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl JobOffer {
    pub fn sign(self, key: &SigningKey) -> SignedJobOffer {
        debug_assert_eq!(key.verifying_key().to_bytes(), self.publisher);
        let signature = key.sign(&signing_input(OFFER_DOMAIN, &self)).to_bytes();
        SignedJobOffer {
            offer: self,
            signature,
        }
    }

    /// Segments of each rung the job makes.
    pub fn segments(&self) -> u64 {
        self.frames.div_ceil(u64::from(self.gop.max(1)))
    }

    /// Output pixels of the job: every rung's frames.
    pub fn pixels(&self) -> u128 {
        self.rungs
            .iter()
            .map(|r| u128::from(r.width) * u128::from(r.height) * u128::from(self.frames))
            .sum()
    }

    /// What the job pays, in wei.
    pub fn price(&self) -> u128 {
        self.pixels().saturating_mul(self.price_per_gigapixel) / 1_000_000_000
    }

    fn check_shape(&self) -> Result<(), JobError> {
        if self.rungs.is_empty() || self.rungs.len() > MAX_JOB_RUNGS {
            return Err(bad_offer(format!(
                "{} rungs; 1 to {MAX_JOB_RUNGS} allowed",
                self.rungs.len()
            )));
        }
        for rung in &self.rungs {
            if !valid_track_id(&rung.id) {
                return Err(bad_offer("a rung id is not 1-32 of [a-z0-9_]"));
            }
            let dimension = |d: u32| (2..=MAX_DIMENSION).contains(&d) && d.is_multiple_of(2);
            if !dimension(rung.width) || !dimension(rung.height) {
                return Err(bad_offer(format!(
                    "rung {} is {}x{}: dimensions are even, 2 to {MAX_DIMENSION}",
                    rung.id, rung.width, rung.height
                )));
            }
            if rung.bitrate == 0 || rung.bitrate > 1_000_000_000 {
                return Err(bad_offer("a rung's bitrate is outside 1 bit/s to 1 Gbit/s"));
            }
        }
        if self.gop == 0 || self.gop > MAX_GOP_FRAMES {
            return Err(bad_offer(format!(
                "{} frames per segment; 1 to {MAX_GOP_FRAMES}",
                self.gop
            )));
        }
        if self.frames == 0 || self.segments() > MAX_JOB_SEGMENTS {
            return Err(bad_offer(format!(
                "{} frames; 1 to {MAX_JOB_SEGMENTS} segments' worth",
                self.frames
            )));
        }
        if !self.first_frame.is_multiple_of(u64::from(self.gop)) {
            return Err(bad_offer("the job does not start at a segment boundary"));
        }
        let fps = f64::from(self.fps_num) / f64::from(self.fps_den.max(1));
        if self.fps_den == 0 || !(1.0..=240.0).contains(&fps) {
            return Err(bad_offer("the frame rate is outside 1 to 240 fps"));
        }
        if !matches!(self.rotation, 0 | 90 | 180 | 270) {
            return Err(bad_offer("rotation is not 0, 90, 180 or 270"));
        }
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(bad_offer("unknown x264 preset"));
        }
        let codec_ok = (1..=32).contains(&self.source_codec.len())
            && self
                .source_codec
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !codec_ok {
            return Err(bad_offer(
                "the source codec name is not 1-32 of [A-Za-z0-9_]",
            ));
        }
        if self.deadline <= self.issued_at || self.deadline - self.issued_at > MAX_JOB_SECS {
            return Err(bad_offer(format!(
                "the deadline is not within {MAX_JOB_SECS} s after the offer"
            )));
        }
        if self.chunk_size == 0 || self.chunk_size > 4 * 1024 * 1024 * 1024 {
            return Err(bad_offer("the chunk is empty or over 4 GiB"));
        }
        Ok(())
    }
}

impl SignedJobOffer {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes and verifies an offer received at `now` (seconds since the Unix epoch).
    pub fn decode_verified(bytes: &[u8], now: u64) -> Result<Self, JobError> {
        let offer: Self = wire::decode("job offer", VERSION, MAX_JOB_MESSAGE_BYTES, bytes)?;
        offer.verify(now)?;
        Ok(offer)
    }

    pub fn verify(&self, now: u64) -> Result<(), JobError> {
        let offer = &self.offer;
        offer.check_shape()?;
        verify_signed(OFFER_DOMAIN, offer, &offer.publisher, &self.signature)?;
        if offer.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(bad_offer("issued in the future"));
        }
        if offer.deadline <= now {
            return Err(bad_offer("its deadline has passed"));
        }
        if let Some(record) = &offer.publisher_record {
            record
                .verify_for(&offer.publisher, now)
                .map_err(|e| bad_offer(format!("publisher record: {e}")))?;
        }
        Ok(())
    }
}

impl Receipt {
    pub fn sign(self, key: &SigningKey) -> SignedReceipt {
        debug_assert_eq!(key.verifying_key().to_bytes(), self.worker);
        let signature = key.sign(&signing_input(RECEIPT_DOMAIN, &self)).to_bytes();
        SignedReceipt {
            receipt: self,
            signature,
        }
    }
}

impl SignedReceipt {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes a receipt kept after its job (a manifest's work record names it) and checks
    /// it is signed by the worker it names.
    pub fn decode_signed(bytes: &[u8]) -> Result<Self, JobError> {
        let signed: Self = wire::decode("receipt", VERSION, MAX_JOB_MESSAGE_BYTES, bytes)?;
        verify_signed(
            RECEIPT_DOMAIN,
            &signed.receipt,
            &signed.receipt.worker,
            &signed.signature,
        )?;
        Ok(signed)
    }

    /// Checks the receipt answers `offer`, from `worker`, and is signed by it: the rungs
    /// asked for, in order, each with the job's number of segments, within size limits.
    pub fn verify_for(
        &self,
        offer: &JobOffer,
        worker: &[u8; 32],
        now: u64,
    ) -> Result<(), JobError> {
        let receipt = &self.receipt;
        if receipt.worker != *worker {
            return Err(bad_receipt("signed by another key than the worker's"));
        }
        if receipt.job_id != offer.job_id
            || receipt.publisher != offer.publisher
            || receipt.chunk != offer.chunk
        {
            return Err(bad_receipt("it answers another job"));
        }
        if receipt.rungs.len() != offer.rungs.len() {
            return Err(bad_receipt(format!(
                "{} rungs, not the {} asked for",
                receipt.rungs.len(),
                offer.rungs.len()
            )));
        }
        for (output, asked) in receipt.rungs.iter().zip(&offer.rungs) {
            if output.id != asked.id {
                return Err(bad_receipt(format!(
                    "rung {:?} where {:?} was asked for",
                    output.id, asked.id
                )));
            }
            if output.segments.len() as u64 != offer.segments() {
                return Err(bad_receipt(format!(
                    "rung {}: {} segments, not {}",
                    asked.id,
                    output.segments.len(),
                    offer.segments()
                )));
            }
            if output.init.size == 0 || output.init.size > MAX_INIT_BYTES {
                return Err(bad_receipt(format!("rung {}: init size", asked.id)));
            }
            if output
                .segments
                .iter()
                .any(|s| s.size == 0 || s.size > MAX_SEGMENT_BYTES)
            {
                return Err(bad_receipt(format!("rung {}: a segment's size", asked.id)));
            }
        }
        if receipt.issued_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(bad_receipt("issued in the future"));
        }
        if let Some(record) = &receipt.worker_record {
            record
                .verify_for(worker, now)
                .map_err(|e| bad_receipt(format!("worker record: {e}")))?;
        }
        verify_signed(RECEIPT_DOMAIN, receipt, worker, &self.signature)
    }
}

impl JobReply {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(VERSION, self)
    }

    /// Decodes a reply; a receipt in it is checked against its offer with
    /// [`SignedReceipt::verify_for`].
    pub fn decode(bytes: &[u8]) -> Result<Self, JobError> {
        let reply: Self = wire::decode("job reply", VERSION, MAX_JOB_MESSAGE_BYTES, bytes)?;
        if let Self::Refused(reason) | Self::Failed(reason) = &reply
            && !Self::is_valid_reason(reason)
        {
            return Err(bad_receipt(format!(
                "a reason is over {MAX_REASON_BYTES} bytes or not printable ASCII"
            )));
        }
        Ok(reply)
    }

    /// Whether `text` may travel as a reason: at most [`MAX_REASON_BYTES`] of printable
    /// ASCII (it ends up in logs and terminals).
    pub fn is_valid_reason(text: &str) -> bool {
        text.len() <= MAX_REASON_BYTES && text.bytes().all(|b| (0x20..0x7f).contains(&b))
    }

    /// A reason made safe to send: printable ASCII, cut to [`MAX_REASON_BYTES`].
    pub fn reason(text: &str) -> String {
        text.chars()
            .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
            .take(MAX_REASON_BYTES)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn offer() -> JobOffer {
        JobOffer {
            job_id: [7; 16],
            publisher: key(1).verifying_key().to_bytes(),
            issued_at: 1_000,
            deadline: 1_600,
            chunk: ContentHash::of(b"chunk"),
            chunk_size: 5,
            source_codec: "h264".into(),
            fps_num: 30,
            fps_den: 1,
            rotation: 0,
            origin: 0,
            first_frame: 180,
            frames: 180,
            gop: 60,
            preset: "veryfast".into(),
            rungs: vec![JobRung {
                id: "720p".into(),
                width: 1280,
                height: 720,
                bitrate: 2_800_000,
            }],
            price_per_gigapixel: 1_000_000_000,
            publisher_record: None,
        }
    }

    fn receipt(offer: &JobOffer) -> Receipt {
        let seg = |n: u8| SegmentRef {
            hash: ContentHash::of(&[n]),
            size: 100,
            duration: 0,
        };
        Receipt {
            job_id: offer.job_id,
            worker: key(2).verifying_key().to_bytes(),
            publisher: offer.publisher,
            chunk: offer.chunk,
            issued_at: 1_100,
            rungs: vec![RungOutput {
                id: "720p".into(),
                init: seg(0),
                segments: vec![seg(1), seg(2), seg(3)],
            }],
            worker_record: None,
        }
    }

    #[test]
    fn offers_and_receipts_round_trip_and_verify() {
        let signed = offer().sign(&key(1));
        let decoded = SignedJobOffer::decode_verified(&signed.encode(), 1_001).expect("valid");
        assert_eq!(decoded, signed);
        assert_eq!(decoded.offer.price(), 1280 * 720 * 180);
        let worker = key(2).verifying_key().to_bytes();
        let reply = JobReply::Done(Box::new(receipt(&signed.offer).sign(&key(2))));
        let JobReply::Done(back) = JobReply::decode(&reply.encode()).expect("reply") else {
            panic!("not a receipt");
        };
        back.verify_for(&signed.offer, &worker, 1_200)
            .expect("receipt");
        // Kept after the job, a receipt still proves who signed it, and nothing else does.
        let kept = SignedReceipt::decode_signed(&back.encode()).expect("kept receipt");
        assert_eq!(kept, *back);
        let mut forged = *back;
        forged.receipt.rungs[0].segments[0].hash = ContentHash::of(b"other");
        assert_eq!(
            SignedReceipt::decode_signed(&forged.encode()),
            Err(JobError::BadSignature)
        );
    }

    #[test]
    fn forged_odd_or_late_messages_are_refused() {
        let mut forged = offer().sign(&key(1));
        forged.offer.price_per_gigapixel += 1;
        assert_eq!(forged.verify(1_001), Err(JobError::BadSignature));
        assert!(
            offer().sign(&key(1)).verify(1_600).is_err(),
            "deadline passed"
        );
        let cases: [fn(&mut JobOffer); 10] = [
            |o| o.rungs.clear(),
            |o| o.rungs[0].width = 1281,
            |o| o.rungs[0].id = "../x".into(),
            |o| o.gop = 0,
            |o| o.frames = 60 * 65,
            |o| o.first_frame = 7,
            |o| o.rotation = 45,
            |o| o.preset = "--bad".into(),
            |o| o.deadline = o.issued_at + MAX_JOB_SECS + 1,
            |o| o.fps_den = 0,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut o = offer();
            change(&mut o);
            assert!(
                matches!(o.sign(&key(1)).verify(1_001), Err(JobError::BadOffer(_))),
                "case {i}"
            );
        }
        let signed = offer().sign(&key(1));
        let worker = key(2).verifying_key().to_bytes();
        let receipt_cases: [fn(&mut Receipt); 5] = [
            |r| r.rungs[0].segments.pop().map(|_| ()).unwrap_or(()),
            |r| r.rungs[0].id = "480p".into(),
            |r| r.job_id = [0; 16],
            |r| r.rungs[0].segments[0].size = MAX_SEGMENT_BYTES + 1,
            |r| r.issued_at = 1_000_000,
        ];
        for (i, change) in receipt_cases.iter().enumerate() {
            let mut r = receipt(&signed.offer);
            change(&mut r);
            assert!(
                r.sign(&key(2))
                    .verify_for(&signed.offer, &worker, 1_200)
                    .is_err(),
                "receipt case {i}"
            );
        }
        // Signed by someone else than the worker the offer went to.
        let mut other = receipt(&signed.offer);
        other.worker = key(3).verifying_key().to_bytes();
        assert!(
            other
                .sign(&key(3))
                .verify_for(&signed.offer, &worker, 1_200)
                .is_err()
        );
        assert!(JobReply::decode(&JobReply::Refused("\u{1b}[2J".into()).encode()).is_err());
        assert_eq!(JobReply::reason("a\u{1b}b"), "a?b");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = SignedJobOffer::decode_verified(&bytes, 1_001);
            let _ = JobReply::decode(&bytes);
            let _ = SignedReceipt::decode_signed(&bytes);
        }
    }
}
