//! The publishing pipeline: a blocking thread drives the transcoder and hands each segment,
//! encrypted when gated and hashed, over a bounded channel to an async task that stores
//! it. The channel is the only bridge between the two worlds: when the store is slow the
//! encoder waits, so memory holds at most a few segments whatever the input's length.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use streamgate_media::{
    ManifestBuilder, MediaError, MediaInfo, Output, TrackPlan, TranscodeConfig,
    transcode::ProgressFn, transcode_file,
};
use streamgate_protocol::ContentHash;
use streamgate_swarm::daemon::unix_now;
use tokio::sync::mpsc;

use super::PublishError;
use crate::{
    actors::db::{BlobEntry, Origin},
    services::{
        access::keys::{ContentKey, encrypt_segment},
        blobs::{Blobs, blob_tag},
    },
};

/// Segments in flight between the encoder and the store (a 1080p segment is about 1.3 MB).
const SEGMENT_QUEUE: usize = 8;

/// What a job transcodes, and how.
pub(super) struct Job {
    pub path: PathBuf,
    pub config: TranscodeConfig,
    /// Gated videos: media segments are encrypted before they are hashed, so the swarm
    /// moves and verifies ciphertext like any other blob. Init segments stay clear.
    pub content_key: Option<ContentKey>,
    pub progress: ProgressFn,
    pub cancel: Arc<AtomicBool>,
}

/// A probed source.
pub(super) struct Probed {
    pub info: MediaInfo,
    /// BLAKE3 of the file as received.
    pub source_hash: ContentHash,
}

/// Hashes and probes the source, off the async workers.
pub(super) async fn probe(path: PathBuf) -> Result<Probed, PublishError> {
    tokio::task::spawn_blocking(move || {
        let mut hasher = blake3::Hasher::new();
        std::fs::File::open(&path)
            .and_then(|file| hasher.update_reader(file).map(|_| ()))
            .map_err(|e| PublishError::Store(format!("cannot read the upload: {e}")))?;
        let source_hash = ContentHash::from_bytes(*hasher.finalize().as_bytes());
        let info =
            streamgate_media::probe(&path).map_err(|e| PublishError::Media(e.to_string()))?;
        Ok(Probed { info, source_hash })
    })
    .await
    .map_err(|e| PublishError::Store(e.to_string()))?
}

/// What the pipeline produced: everything the manifest is built from, and the rows for
/// the blobs it stored.
pub(super) struct Transcoded {
    pub builder: ManifestBuilder,
    pub tracks: Vec<TrackPlan>,
    pub blobs: Vec<(ContentHash, BlobEntry)>,
}

/// One segment on its way to the store.
struct Segment {
    hash: ContentHash,
    bytes: Vec<u8>,
}

/// Transcodes `job.path` and stores every segment as a blob.
pub(super) async fn transcode_and_store(
    blobs: &Blobs,
    job: Job,
) -> Result<Transcoded, PublishError> {
    let (tx, mut rx) = mpsc::channel::<Segment>(SEGMENT_QUEUE);
    let encoder = tokio::task::spawn_blocking(move || encode(job, tx));
    let mut stored = Vec::new();
    let mut store_error = None;
    while let Some(segment) = rx.recv().await {
        let size = segment.bytes.len() as u64;
        let hash = segment.hash;
        if let Err(e) = blobs
            .store_bytes(hash, segment.bytes, blob_tag(&hash))
            .await
        {
            // Closing the channel stops the encoder at its next segment.
            store_error = Some(PublishError::Store(e.to_string()));
            break;
        }
        stored.push((
            hash,
            BlobEntry {
                size,
                origin: Origin::Published,
                stored_at: unix_now(),
            },
        ));
    }
    drop(rx);
    let encoded = encoder
        .await
        .map_err(|e| PublishError::Store(format!("the encoder thread failed: {e}")))?;
    if let Some(e) = store_error {
        return Err(e);
    }
    let (builder, tracks) = encoded?;
    Ok(Transcoded {
        builder,
        tracks,
        blobs: stored,
    })
}

/// The blocking half: transcodes, encrypts, hashes, and sends each segment on.
fn encode(
    job: Job,
    tx: mpsc::Sender<Segment>,
) -> Result<(ManifestBuilder, Vec<TrackPlan>), PublishError> {
    let Job {
        path,
        config,
        content_key,
        progress,
        cancel,
    } = job;
    let mut builder = ManifestBuilder::new();
    let result = transcode_file(&path, &config, progress, &cancel, |mut output| {
        if let (
            Some(key),
            Output::Segment {
                track,
                index,
                bytes,
                ..
            },
        ) = (&content_key, &mut output)
        {
            *bytes = encrypt_segment(key, *track, *index, bytes.as_slice());
        }
        let Some(hash) = builder.record(&output)? else {
            return Ok(());
        };
        let bytes = match output {
            Output::Init { bytes, .. } | Output::Segment { bytes, .. } => bytes,
            Output::Done(_) => return Ok(()),
        };
        // Waits while the store is behind; fails when the store side gave up.
        tx.blocking_send(Segment { hash, bytes })
            .map_err(|_| MediaError::Cancelled)
    });
    match result {
        Ok(done) => Ok((builder, done.tracks)),
        Err(MediaError::Cancelled) if cancel.load(Ordering::Relaxed) => {
            Err(PublishError::Cancelled)
        }
        // The store side stopped first; its error is the one to report.
        Err(MediaError::Cancelled) => Err(PublishError::Store("the store stopped".into())),
        Err(e) => Err(PublishError::Media(e.to_string())),
    }
}
