//! Turning transcoder outputs into a manifest.

use streamgate_protocol::{
    ContentHash,
    manifest::{AudioParams, Manifest, SegmentRef, Track, TrackKind, VideoParams},
};

use crate::{
    MediaError,
    transcode::{Output, TrackDone, TrackPlan},
};

/// Collects the hash, size and duration of every init and media segment as the
/// transcoder produces them, then builds the manifest.
#[derive(Debug, Default)]
pub struct ManifestBuilder {
    inits: Vec<Option<SegmentRef>>,
    segments: Vec<Vec<SegmentRef>>,
    done: Vec<Option<TrackDone>>,
}

/// More tracks than any transcoder makes; bounds what a bad track index can allocate.
const MAX_TRACKS: usize = streamgate_protocol::manifest::MAX_TRACKS;

impl ManifestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn grow(&mut self, track: usize) -> Result<(), MediaError> {
        if track >= MAX_TRACKS {
            return Err(MediaError::Package(format!(
                "output for unknown track {track}"
            )));
        }
        if self.inits.len() <= track {
            self.inits.resize(track + 1, None);
            self.segments.resize(track + 1, Vec::new());
            self.done.resize(track + 1, None);
        }
        Ok(())
    }

    /// Records one output; returns the hash of the bytes it carries, if any.
    pub fn record(&mut self, output: &Output) -> Result<Option<ContentHash>, MediaError> {
        let unknown = |t: usize| MediaError::Package(format!("output for unknown track {t}"));
        let track = match output {
            Output::Init { track, .. } | Output::Segment { track, .. } => *track,
            Output::Done(done) => done.track,
        };
        self.grow(track)?;
        match output {
            Output::Init { track, bytes } => {
                let hash = ContentHash::of(bytes);
                *self.inits.get_mut(*track).ok_or_else(|| unknown(*track))? = Some(SegmentRef {
                    hash,
                    size: bytes.len() as u64,
                    duration: 0,
                });
                Ok(Some(hash))
            }
            Output::Segment {
                track,
                index,
                bytes,
                duration,
            } => {
                let list = self
                    .segments
                    .get_mut(*track)
                    .ok_or_else(|| unknown(*track))?;
                if *index != list.len() {
                    return Err(MediaError::Package(format!(
                        "track {track}: segment {index} arrived after {} segments",
                        list.len()
                    )));
                }
                let hash = ContentHash::of(bytes);
                list.push(SegmentRef {
                    hash,
                    size: bytes.len() as u64,
                    duration: *duration,
                });
                Ok(Some(hash))
            }
            Output::Done(done) => {
                *self
                    .done
                    .get_mut(done.track)
                    .ok_or_else(|| unknown(done.track))? = Some(done.clone());
                Ok(None)
            }
        }
    }

    /// The manifest (unsigned) for the tracks `plans` describes. Fails if any track is
    /// incomplete.
    pub fn finish(
        self,
        plans: &[TrackPlan],
        title: &str,
        created_at: u64,
        creator: [u8; 32],
    ) -> Result<Manifest, MediaError> {
        let mut tracks = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let incomplete = || MediaError::Package(format!("track {} did not finish", plan.id));
            let done = self.done.get(i).cloned().flatten().ok_or_else(incomplete)?;
            let init = self
                .inits
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(incomplete)?;
            tracks.push(Track {
                id: plan.id.clone(),
                kind: plan.kind,
                codec: done.codec,
                bandwidth: done.bandwidth,
                average_bandwidth: done.average_bandwidth,
                video: (plan.kind == TrackKind::Video).then_some(VideoParams {
                    width: plan.width,
                    height: plan.height,
                    frame_rate_num: plan.frame_rate.0,
                    frame_rate_den: plan.frame_rate.1,
                }),
                audio: (plan.kind == TrackKind::Audio).then_some(AudioParams {
                    sample_rate: plan.sample_rate,
                    channels: plan.channels,
                }),
                timescale: done.timescale,
                init,
                segments: self.segments.get(i).cloned().unwrap_or_default(),
            });
        }
        let duration_ms = streamgate_protocol::manifest::Track::longest_ms(&tracks);
        let manifest = Manifest {
            title: title.to_string(),
            created_at,
            duration_ms,
            creator,
            tracks,
            access: None,
            encryption: None,
            work: Vec::new(),
        };
        manifest
            .validate()
            .map_err(|e| MediaError::Package(e.to_string()))?;
        Ok(manifest)
    }
}
