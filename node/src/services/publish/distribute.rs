//! Publishing through volunteered workers: the source's video is split into chunks that
//! workers transcode in parallel; nothing they return counts until it is verified.
//!
//! ```text
//!  scan keyframes ─▶ plan jobs on the 2 s grid ─▶ split (remux to NUT) ─▶ chunk blobs
//!        │                                                                  │
//!        │   audio: transcoded here (cheap; AAC priming stays whole)        ▼
//!        │                schedule: good standing first, then speed, then price; a slot each
//!        │                                  │ offer (libp2p) ─▶ worker ─▶ signed receipt
//!        │                                  ▼
//!        │                fetch outputs from the worker (iroh) ─▶ verify: receipt, structure
//!        │                against the rung's reference init, sampled frames' SSIM
//!        │                   pass: reward, keep   fail: penalise, reassign (another worker,
//!        ▼                                        or this node when none is left)
//!   manifest: video rungs from the accepted chunks + audio tracks
//! ```

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use streamgate_api::v1::ChunkProgress;
use streamgate_media::{
    MediaInfo, Rational, TranscodeConfig,
    chunk::{self, ChunkPlan, RungBytes, SourceScan},
    ladder::{self, PlannedRung},
    transcode::{ChunkJob, gop_frames, output_fps, rung_init},
    verify::{self, VerifyError},
};
use streamgate_protocol::{
    ContentHash,
    job::{JobOffer, JobReply, JobRung, SignedReceipt},
    manifest::{SegmentRef, Track, TrackKind, VideoParams, WorkRecord},
    reputation::{Failure, ProviderKey},
    worker::WorkerAdvert,
};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};
use tokio::task::JoinSet;

use super::PublishError;
use crate::{
    actors::db::{BlobEntry, Origin},
    config::TranscodeSettings,
    services::{
        blobs::{Blobs, blob_tag},
        fetch::{FetchRequest, Fetcher},
        presence::Presence,
        reputation::Reputation,
    },
};

/// Frames sampled from every job for the quality check, all in one segment drawn at
/// random (so the source is decoded once, up to that segment).
const SAMPLES_PER_JOB: usize = 2;
/// Jobs given to one worker at once, whatever slots it advertises.
const MAX_JOBS_PER_WORKER: usize = 4;

/// What distributing needs from the rest of the node.
#[derive(Debug)]
pub struct WorkParts {
    pub swarm: SwarmHandle,
    pub fetcher: Fetcher,
    pub presence: Arc<Presence>,
    /// Standing of every worker this node gave jobs to.
    pub standing: Arc<Reputation>,
    pub data_plane: crate::actors::data_plane::DataPlane,
    /// Where chunks are written.
    pub work_dir: PathBuf,
}

/// A worker that may be offered a job.
#[derive(Debug, Clone)]
struct Candidate {
    key: ProviderKey,
    slots: usize,
}

/// The video rungs made by workers (or here), ready for the manifest.
pub(super) struct VideoRungs {
    pub tracks: Vec<Track>,
    pub blobs: Vec<(ContentHash, BlobEntry)>,
    /// Jobs the video was split into.
    pub chunks: usize,
    /// The jobs workers did, with their receipts (stored among `blobs`).
    pub work: Vec<WorkRecord>,
}

/// One job, as planned.
#[derive(Debug, Clone)]
struct Planned {
    plan: ChunkPlan,
    job: ChunkJob,
    chunk: ContentHash,
    chunk_size: u64,
    chunk_path: PathBuf,
}

impl Planned {
    /// Segments of every rung the job makes.
    fn segments(&self, gop: u32) -> u32 {
        self.plan.frames.div_ceil(u64::from(gop.max(1))) as u32
    }
}

/// What a job came back with.
enum Outcome {
    Accepted {
        rungs: Vec<(SegmentRef, Vec<SegmentRef>)>,
        summaries: Vec<verify::RungSummary>,
        receipt: Option<Box<SignedReceipt>>,
        /// CPU time the verification took here.
        verify_cpu: Duration,
    },
    /// Not the worker's fault (busy, price): ask another.
    Refused(String),
    /// The worker's fault: penalised with this failure.
    Failed(Failure, String),
}

/// The workers this node would offer jobs for a source in `codec` now, best first: those
/// that never let this node down before those that did (banned ones left out), then the
/// fastest by their own start-up measurement (unmeasured ones last), then the cheapest.
async fn candidates(
    parts: &WorkParts,
    settings: &TranscodeSettings,
    me: ProviderKey,
    codec: &str,
) -> Vec<Candidate> {
    let Ok(adverts) = parts.swarm.workers().await else {
        return Vec::new();
    };
    let usable: HashMap<ProviderKey, &WorkerAdvert> = adverts
        .iter()
        .map(|s| &s.advert)
        .filter(|a| a.node_key != me)
        .filter(|a| a.price_per_gigapixel <= u128::from(settings.max_worker_price_per_gigapixel))
        .filter(|a| a.decoders.iter().any(|d| d == codec))
        .map(|a| (a.node_key, a))
        .collect();
    let mut ranked: Vec<(bool, u32, u128, ProviderKey)> = parts
        .standing
        .rank(usable.keys().copied())
        .into_iter()
        .filter_map(|key| {
            let advert = usable.get(&key)?;
            Some((
                parts.standing.score(&key) < 0,
                advert.speed_millifps.unwrap_or(0),
                advert.price_per_gigapixel,
                key,
            ))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    ranked
        .into_iter()
        .filter_map(|(_, _, _, key)| {
            // Slots as advertised; what is in use is counted here (an advert's load is up
            // to a third of its lifetime old, and includes this node's own jobs). A worker
            // busy with others' jobs refuses, and the chunk goes to someone else.
            let slots = usize::from(usable.get(&key)?.max_jobs).clamp(1, MAX_JOBS_PER_WORKER);
            Some(Candidate { key, slots })
        })
        .collect()
}

/// Whether a publish of this source would go to workers now.
pub(super) async fn workers_available(
    parts: &WorkParts,
    settings: &TranscodeSettings,
    me: ProviderKey,
    info: &MediaInfo,
) -> bool {
    match &info.video {
        Some(video) => !candidates(parts, settings, me, &video.codec)
            .await
            .is_empty(),
        None => false,
    }
}

/// Everything one distributed publish works with.
pub(super) struct Distribution<'a> {
    pub info: &'a MediaInfo,
    pub parts: Arc<WorkParts>,
    pub blobs: Arc<Blobs>,
    pub identity: Identity,
    pub settings: TranscodeSettings,
    pub config: TranscodeConfig,
    pub path: PathBuf,
    pub job_id: String,
    pub cancel: Arc<AtomicBool>,
    /// Called whenever a chunk changes hands or state.
    pub report: Arc<dyn Fn(Vec<ChunkProgress>) + Send + Sync>,
}

impl Distribution<'_> {
    /// Transcodes the video rungs through workers (this node takes what none does well).
    pub(super) async fn run(self) -> Result<VideoRungs, PublishError> {
        let video = self
            .info
            .video
            .as_ref()
            .ok_or_else(|| PublishError::Media("the source has no video".into()))?;
        let fps = output_fps(video, &self.config);
        let gop = gop_frames(fps, self.config.segment_secs);
        let (w, h) = video.display_size();
        let rungs = ladder::plan(w, h, &self.config.ladder);
        let dir = self.parts.work_dir.join(format!("publish-{}", self.job_id));
        let planned = self.split(fps, gop, &rungs, video.rotation, &dir).await?;
        let result = self
            .schedule(&planned, &video.codec, fps, gop, &rungs)
            .await;
        let _ = tokio::fs::remove_dir_all(&dir).await;
        let (outcomes, receipts) = result?;
        let mut tracks = Vec::new();
        let mut blobs = Vec::new();
        for (r, rung) in rungs.iter().enumerate() {
            let mut segments = Vec::new();
            let mut init = None;
            let mut codec = String::new();
            let mut timescale = 0;
            for (rung_outputs, summaries) in &outcomes {
                let (rung_init, rung_segments) = &rung_outputs[r];
                init.get_or_insert(*rung_init);
                codec.clone_from(&summaries[r].codec);
                timescale = summaries[r].timescale;
                for (segment, duration) in rung_segments.iter().zip(&summaries[r].durations) {
                    segments.push(SegmentRef {
                        duration: *duration,
                        ..*segment
                    });
                }
            }
            let init = init.ok_or_else(|| PublishError::Media("no chunk was made".into()))?;
            for s in std::iter::once(&init).chain(&segments) {
                blobs.push((
                    s.hash,
                    BlobEntry {
                        size: s.size,
                        origin: Origin::Published,
                        stored_at: unix_now(),
                    },
                ));
            }
            let (bandwidth, average_bandwidth) = bandwidths(&segments, timescale);
            tracks.push(Track {
                id: rung.id.clone(),
                kind: TrackKind::Video,
                codec,
                bandwidth,
                average_bandwidth,
                video: Some(VideoParams {
                    width: rung.width,
                    height: rung.height,
                    frame_rate_num: fps.numerator() as u32,
                    frame_rate_den: fps.denominator() as u32,
                }),
                audio: None,
                timescale,
                init,
                segments,
            });
        }
        // Each worker's signed receipt is kept as a blob the manifest names, so every
        // segment can be traced to its maker.
        let mut work = Vec::new();
        for (planned, receipt) in planned.iter().zip(&receipts) {
            let Some(receipt) = receipt else { continue };
            let bytes = receipt.encode();
            let hash = ContentHash::of(&bytes);
            let size = bytes.len() as u64;
            self.blobs
                .store_bytes(hash, bytes, blob_tag(&hash))
                .await
                .map_err(|e| PublishError::Store(format!("a receipt: {e}")))?;
            blobs.push((
                hash,
                BlobEntry {
                    size,
                    origin: Origin::Published,
                    stored_at: unix_now(),
                },
            ));
            work.push(WorkRecord {
                first_segment: planned.plan.first_segment as u32,
                segments: planned.segments(gop),
                worker: receipt.receipt.worker,
                receipt: SegmentRef {
                    hash,
                    size,
                    duration: 0,
                },
            });
        }
        Ok(VideoRungs {
            tracks,
            blobs,
            chunks: receipts.len(),
            work,
        })
    }

    /// Scans, plans and splits the source, and stores each chunk as a blob.
    async fn split(
        &self,
        fps: Rational,
        gop: u32,
        rungs: &[PlannedRung],
        rotation: i32,
        dir: &Path,
    ) -> Result<Vec<Planned>, PublishError> {
        let media = |e: streamgate_media::MediaError| PublishError::Media(e.to_string());
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| PublishError::Store(format!("work folder: {e}")))?;
        let (path, dir_owned, segments) = (
            self.path.clone(),
            dir.to_path_buf(),
            u64::from(self.settings.chunk_segments),
        );
        let (scan, plans): (SourceScan, Vec<ChunkPlan>) = tokio::task::spawn_blocking(move || {
            let scan = chunk::scan(&path)?;
            let plans = scan.plan(fps, u64::from(gop), segments);
            let name = |i: usize| dir_owned.join(format!("chunk-{i}.nut"));
            chunk::split(&path, &scan, &plans, name, |_| Ok(()))?;
            Ok::<_, streamgate_media::MediaError>((scan, plans))
        })
        .await
        .map_err(|e| PublishError::Store(e.to_string()))?
        .map_err(media)?;
        let origin = scan.origin(fps);
        let mut planned = Vec::new();
        for (i, plan) in plans.into_iter().enumerate() {
            let chunk_path = dir.join(format!("chunk-{i}.nut"));
            let bytes = tokio::fs::read(&chunk_path)
                .await
                .map_err(|e| PublishError::Store(format!("chunk {i}: {e}")))?;
            let hash = ContentHash::of(&bytes);
            let size = bytes.len() as u64;
            self.blobs
                .store_bytes(hash, bytes, blob_tag(&hash))
                .await
                .map_err(|e| PublishError::Store(e.to_string()))?;
            planned.push(Planned {
                job: ChunkJob {
                    rungs: rungs.to_vec(),
                    fps: (fps.numerator() as u32, fps.denominator() as u32),
                    rotation: rotation.rem_euclid(360),
                    origin,
                    first_frame: plan.first_frame,
                    frames: plan.frames,
                    gop: u64::from(gop),
                },
                plan,
                chunk: hash,
                chunk_size: size,
                chunk_path,
            });
        }
        self.blobs
            .sync()
            .await
            .map_err(|e| PublishError::Store(e.to_string()))?;
        Ok(planned)
    }

    /// Gives every chunk to a worker (or does it here) until all are accepted.
    #[allow(clippy::type_complexity)]
    async fn schedule(
        &self,
        planned: &[Planned],
        codec: &str,
        fps: Rational,
        gop: u32,
        rungs: &[PlannedRung],
    ) -> Result<
        (
            Vec<(Vec<(SegmentRef, Vec<SegmentRef>)>, Vec<verify::RungSummary>)>,
            Vec<Option<SignedReceipt>>,
        ),
        PublishError,
    > {
        let me = self.identity.public_key();
        let references: Arc<Vec<Vec<u8>>> = {
            let (rungs, config) = (rungs.to_vec(), self.config.clone());
            Arc::new(
                tokio::task::spawn_blocking(move || {
                    rungs
                        .iter()
                        .map(|r| rung_init(r, fps, gop, &config))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|e| PublishError::Store(e.to_string()))?
                .map_err(|e| PublishError::Media(e.to_string()))?,
            )
        };
        let mut progress: Vec<ChunkProgress> = planned
            .iter()
            .enumerate()
            .map(|(i, p)| ChunkProgress {
                index: i as u32,
                first_segment: p.plan.first_segment,
                segments: p.segments(gop),
                worker: None,
                state: "waiting".into(),
                verify_cpu_ms: 0,
            })
            .collect();
        (self.report)(progress.clone());
        let mut pending: VecDeque<usize> = (0..planned.len()).collect();
        let mut done: Vec<Option<Outcome>> = (0..planned.len()).map(|_| None).collect();
        // Workers that let this publish down once get no more of its chunks.
        let mut excluded: HashSet<ProviderKey> = HashSet::new();
        let mut busy: HashMap<ProviderKey, usize> = HashMap::new();
        let mut running = JoinSet::new();
        let mut local_running = false;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(PublishError::Cancelled);
            }
            let workers: Vec<Candidate> = candidates(&self.parts, &self.settings, me, codec)
                .await
                .into_iter()
                .filter(|c| !excluded.contains(&c.key))
                .collect();
            while let Some(&index) = pending.front() {
                let free = workers
                    .iter()
                    .find(|c| busy.get(&c.key).copied().unwrap_or(0) < c.slots);
                let worker = match free {
                    Some(c) => Some(c.key),
                    // Nobody left to ask: this node does it, one chunk at a time.
                    None if workers.is_empty() && !local_running && running.is_empty() => None,
                    None => break,
                };
                pending.pop_front();
                let job = JobRun {
                    parts: self.parts.clone(),
                    blobs: self.blobs.clone(),
                    identity: self.identity.clone(),
                    timeout_secs: self.settings.worker_job_timeout_secs,
                    max_price: self.settings.max_worker_price_per_gigapixel,
                    config: self.config.clone(),
                    references: references.clone(),
                    codec: codec.to_string(),
                };
                let planned_job = planned[index].clone();
                progress[index].worker = Some(match worker {
                    Some(key) => streamgate_swarm::identity::peer_label(&key),
                    None => "local".into(),
                });
                progress[index].state = "running".into();
                match worker {
                    Some(key) => *busy.entry(key).or_default() += 1,
                    None => local_running = true,
                }
                running.spawn(async move { (index, worker, job.run(planned_job, worker).await) });
            }
            (self.report)(progress.clone());
            if running.is_empty() {
                if pending.is_empty() {
                    break;
                }
                continue;
            }
            let Some(joined) = running.join_next().await else {
                continue;
            };
            let (index, worker, outcome) =
                joined.map_err(|e| PublishError::Store(format!("a job task failed: {e}")))?;
            match worker {
                Some(key) => {
                    if let Some(n) = busy.get_mut(&key) {
                        *n = n.saturating_sub(1);
                    }
                }
                None => local_running = false,
            }
            match outcome {
                Outcome::Accepted { verify_cpu, .. } => {
                    if let Some(key) = worker {
                        self.parts.standing.reward(key);
                    }
                    progress[index].state = "verified".into();
                    progress[index].verify_cpu_ms = verify_cpu.as_millis() as u64;
                    done[index] = Some(outcome);
                }
                Outcome::Refused(reason) => {
                    tracing::info!(chunk = index, "job refused: {reason}");
                    if let Some(key) = worker {
                        excluded.insert(key);
                    }
                    progress[index].state = format!("reassigned (refused: {reason})");
                    pending.push_front(index);
                }
                Outcome::Failed(failure, reason) => {
                    match worker {
                        Some(key) => {
                            tracing::warn!(chunk = index, worker = %hex::encode(&key[..5]), "job failed: {reason}");
                            self.parts.standing.penalise(key, failure, &reason);
                            excluded.insert(key);
                        }
                        // This node's own encode failing is the publish failing.
                        None => return Err(PublishError::Media(reason)),
                    }
                    progress[index].state = format!("reassigned ({reason})");
                    pending.push_front(index);
                }
            }
        }
        (self.report)(progress);
        let mut outputs = Vec::new();
        let mut receipts = Vec::new();
        for outcome in done {
            match outcome {
                Some(Outcome::Accepted {
                    rungs,
                    summaries,
                    receipt,
                    ..
                }) => {
                    outputs.push((rungs, summaries));
                    receipts.push(receipt.map(|r| *r));
                }
                _ => return Err(PublishError::Media("a chunk was never made".into())),
            }
        }
        Ok((outputs, receipts))
    }
}

/// Peak and average bits per second of `segments`.
fn bandwidths(segments: &[SegmentRef], timescale: u32) -> (u64, u64) {
    let per_sec = |bytes: u64, ticks: u64| {
        (bytes as f64 * 8.0 * f64::from(timescale) / ticks.max(1) as f64).round() as u64
    };
    let peak = segments
        .iter()
        .map(|s| per_sec(s.size, s.duration))
        .max()
        .unwrap_or(0);
    let bytes: u64 = segments.iter().map(|s| s.size).sum();
    let ticks: u64 = segments.iter().map(|s| s.duration).sum();
    (peak, per_sec(bytes, ticks))
}

/// One job on its way: offered to a worker (or run here), and verified.
struct JobRun {
    parts: Arc<WorkParts>,
    blobs: Arc<Blobs>,
    identity: Identity,
    timeout_secs: u64,
    max_price: u64,
    config: TranscodeConfig,
    /// Each rung's init segment, as every chunk of it must have.
    references: Arc<Vec<Vec<u8>>>,
    codec: String,
}

impl JobRun {
    async fn run(self, planned: Planned, worker: Option<ProviderKey>) -> Outcome {
        match worker {
            Some(key) => self.remote(&planned, key).await,
            None => self.local(&planned).await,
        }
    }

    /// This node does the job itself; its output is checked like anyone's (cheaply: it is
    /// the same code, so a failure here is a bug, not a cheat).
    async fn local(&self, planned: &Planned) -> Outcome {
        let config = TranscodeConfig {
            chunk: Some(planned.job.clone()),
            ..self.config.clone()
        };
        let path = planned.chunk_path.clone();
        let made = tokio::task::spawn_blocking(move || {
            chunk::transcode_chunk(&path, &config, &AtomicBool::new(false))
        })
        .await;
        let rungs = match made {
            Ok(Ok(rungs)) => rungs,
            Ok(Err(e)) => return Outcome::Failed(Failure::Stalled, e.to_string()),
            Err(e) => return Outcome::Failed(Failure::Stalled, e.to_string()),
        };
        let job = planned.job.clone();
        let references = self.references.clone();
        let checked = tokio::task::spawn_blocking(move || {
            check_all(&job, &references, &rungs).map(|summaries| (summaries, rungs))
        })
        .await;
        let (summaries, rungs) = match checked {
            Ok(Ok(checked)) => checked,
            Ok(Err(e)) => return Outcome::Failed(Failure::Stalled, e.to_string()),
            Err(e) => return Outcome::Failed(Failure::Stalled, e.to_string()),
        };
        let mut refs = Vec::new();
        for rung in rungs {
            let store = |bytes: Vec<u8>| {
                let hash = ContentHash::of(&bytes);
                let size = bytes.len() as u64;
                let blobs = self.blobs.clone();
                async move {
                    blobs
                        .store_bytes(hash, bytes, blob_tag(&hash))
                        .await
                        .map(|()| SegmentRef {
                            hash,
                            size,
                            duration: 0,
                        })
                }
            };
            let init = match store(rung.init).await {
                Ok(r) => r,
                Err(e) => return Outcome::Failed(Failure::Stalled, e.to_string()),
            };
            let mut segments = Vec::new();
            for bytes in rung.segments {
                match store(bytes).await {
                    Ok(r) => segments.push(r),
                    Err(e) => return Outcome::Failed(Failure::Stalled, e.to_string()),
                }
            }
            refs.push((init, segments));
        }
        Outcome::Accepted {
            rungs: refs,
            summaries,
            receipt: None,
            verify_cpu: Duration::ZERO,
        }
    }

    async fn remote(&self, planned: &Planned, key: ProviderKey) -> Outcome {
        let Some(peer) = streamgate_swarm::identity::peer_id_of(&key) else {
            return Outcome::Refused("the advert's key is no peer id".into());
        };
        let now = unix_now();
        let mut job_id = [0u8; 16];
        rand::fill(&mut job_id);
        let job = &planned.job;
        let offer = JobOffer {
            job_id,
            publisher: self.identity.public_key(),
            issued_at: now,
            deadline: now + self.timeout_secs,
            chunk: planned.chunk,
            chunk_size: planned.chunk_size,
            source_codec: self.codec.clone(),
            fps_num: job.fps.0,
            fps_den: job.fps.1,
            rotation: job.rotation.rem_euclid(360) as u16,
            origin: job.origin,
            first_frame: job.first_frame,
            frames: job.frames,
            gop: job.gop as u32,
            preset: self.config.x264_preset.clone(),
            rungs: job
                .rungs
                .iter()
                .map(|r| JobRung {
                    id: r.id.clone(),
                    width: r.width,
                    height: r.height,
                    bitrate: r.video_bitrate,
                })
                .collect(),
            price_per_gigapixel: u128::from(self.max_price),
            publisher_record: Some(self.parts.presence.own_record()),
        };
        let signed = offer.clone().sign(&self.identity.signing_key());
        let wait = Duration::from_secs(self.timeout_secs);
        let reply =
            match tokio::time::timeout(wait, self.parts.swarm.offer_job(peer, signed.encode()))
                .await
            {
                Err(_) => {
                    return Outcome::Failed(
                        Failure::Stalled,
                        "no answer before the deadline".into(),
                    );
                }
                Ok(Err(e)) => return Outcome::Failed(Failure::Unreachable, e.to_string()),
                Ok(Ok(bytes)) => bytes,
            };
        let receipt = match JobReply::decode(&reply) {
            Ok(JobReply::Done(receipt)) => *receipt,
            Ok(JobReply::Refused(reason)) => return Outcome::Refused(reason),
            Ok(JobReply::Failed(reason)) => {
                return Outcome::Failed(Failure::Stalled, format!("the worker failed: {reason}"));
            }
            Err(e) => return Outcome::Failed(Failure::Corrupt, format!("bad reply: {e}")),
        };
        match self.verify_remote(planned, &offer, key, &receipt).await {
            Ok((rungs, summaries, verify_cpu)) => Outcome::Accepted {
                rungs,
                summaries,
                receipt: Some(Box::new(receipt)),
                verify_cpu,
            },
            Err(reason) => Outcome::Failed(Failure::Corrupt, reason),
        }
    }

    /// The receipt, then the bytes it names, then their structure and sampled frames.
    #[allow(clippy::type_complexity)]
    async fn verify_remote(
        &self,
        planned: &Planned,
        offer: &JobOffer,
        key: ProviderKey,
        receipt: &SignedReceipt,
    ) -> Result<
        (
            Vec<(SegmentRef, Vec<SegmentRef>)>,
            Vec<verify::RungSummary>,
            Duration,
        ),
        String,
    > {
        receipt
            .verify_for(offer, &key, unix_now())
            .map_err(|e| e.to_string())?;
        // Sizes first: a worker may not make this node fetch more than the rungs' bitrates
        // allow (x264 keeps a segment within about twice its share; four times is allowed).
        let segment_secs = f64::from(job_gop_secs(&planned.job));
        for (output, rung) in receipt.receipt.rungs.iter().zip(&planned.job.rungs) {
            let limit = (rung.video_bitrate as f64 / 8.0 * segment_secs * 4.0) as u64 + 64 * 1024;
            if let Some(big) = output.segments.iter().find(|s| s.size > limit) {
                return Err(format!(
                    "rung {}: a segment of {} bytes, more than its bitrate allows ({limit})",
                    rung.id, big.size
                ));
            }
        }
        if let Some(record) = &receipt.receipt.worker_record {
            self.parts.data_plane.learn(record);
        }
        let mut rungs = Vec::new();
        for output in &receipt.receipt.rungs {
            let init = self.fetch(&output.init, key).await?;
            let mut segments = Vec::new();
            for segment in &output.segments {
                segments.push(self.fetch(segment, key).await?);
            }
            rungs.push(RungBytes {
                init,
                segments,
                frames: offer.frames,
            });
        }
        let job = planned.job.clone();
        let references = self.references.clone();
        let chunk_path = planned.chunk_path.clone();
        let segment = rand::random_range(0..job.frames.div_ceil(job.gop.max(1)));
        let first = segment * job.gop;
        let last = (first + job.gop).min(job.frames);
        let mut samples: Vec<u64> = (0..SAMPLES_PER_JOB)
            .map(|_| rand::random_range(first..last.max(first + 1)))
            .collect();
        samples.sort_unstable();
        let (summaries, verify_cpu) = tokio::task::spawn_blocking(move || {
            let started = thread_cpu_time();
            let summaries = check_all(&job, &references, &rungs)?;
            let outputs: Vec<(&[u8], &[Vec<u8>])> = rungs
                .iter()
                .map(|r| (r.init.as_slice(), r.segments.as_slice()))
                .collect();
            let scores = verify::sample_quality(&chunk_path, &job, None, &samples, &outputs)?;
            verify::judge(&job, &samples, &scores)?;
            Ok::<_, VerifyError>((summaries, thread_cpu_time().saturating_sub(started)))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("verification: {e}"))?;
        let refs = receipt
            .receipt
            .rungs
            .iter()
            .map(|r| (r.init, r.segments.clone()))
            .collect();
        Ok((refs, summaries, verify_cpu))
    }

    /// One output, from the worker that made it.
    async fn fetch(&self, output: &SegmentRef, worker: ProviderKey) -> Result<Vec<u8>, String> {
        let request = FetchRequest {
            claimed_size: Some(output.size),
            provide: false,
            known_provider: Some(worker),
            ..FetchRequest::blob(output.hash)
        };
        self.parts.fetcher.ensure(request).await.map_err(|e| {
            format!(
                "output {} is not what the receipt says: {e}",
                output.hash.short()
            )
        })?;
        self.blobs
            .get_bytes(&output.hash)
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("output {}: {e}", output.hash.short()))
    }
}

/// Seconds per segment of a job.
fn job_gop_secs(job: &ChunkJob) -> f32 {
    job.gop as f32 * job.fps.1.max(1) as f32 / job.fps.0.max(1) as f32
}

/// The structure of every rung of a job's output.
fn check_all(
    job: &ChunkJob,
    references: &[Vec<u8>],
    rungs: &[RungBytes],
) -> Result<Vec<verify::RungSummary>, VerifyError> {
    if rungs.len() != job.rungs.len() {
        return Err(VerifyError::Media(format!(
            "{} rungs, not {}",
            rungs.len(),
            job.rungs.len()
        )));
    }
    rungs
        .iter()
        .enumerate()
        .map(|(r, rung)| {
            verify::check_structure(
                job,
                r,
                &rung.init,
                references.get(r).map(Vec::as_slice),
                &rung.segments,
            )
        })
        .collect()
}

/// CPU time of the calling thread (verification runs on one).
fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer it is given.
    #[allow(unsafe_code)]
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(
        now.tv_sec.max(0) as u64,
        now.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}
