//! Volunteering this node as a transcoding worker (`[worker] enabled = true`): its signed
//! advert, built from the hardware probe and the configuration, gossiped every third of its
//! time-to-live so that it never lapses while the node runs; and the jobs it takes.
//!
//! ```text
//!  offer (libp2p) ─▶ verify, decide (slots, price, codec, deadline) ─▶ fetch chunk (iroh, from
//!  the publisher) ─▶ transcode exactly its frames (blocking thread) ─▶ store outputs as blobs
//!  ─▶ signed receipt of their hashes ─▶ reply
//! ```
//!
//! At start-up the worker measures itself (`streamgate_media::speed`: 1080p to the 720p rung,
//! the way its jobs run) and, when NVENC opened, how many encode sessions its GPU allows;
//! adverts say "not measured" until then rather than guess.

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering},
    },
    time::Duration,
};

use streamgate_api::{config::WorkerConfig, v1::WorkerInfo};
use streamgate_media::{
    TranscodeConfig,
    chunk::{RungBytes, transcode_chunk},
    hw::{Capabilities, Mode},
    ladder::PlannedRung,
    transcode::ChunkJob,
};
use streamgate_protocol::{
    ContentHash,
    job::{JobOffer, JobReply, Receipt, RungOutput, SignedJobOffer},
    manifest::SegmentRef,
    worker::{Gpu, MAX_CODECS, MAX_GPUS, SignedWorkerAdvert, WorkMode, WorkerAdvert},
};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity, jobs::InboundJob};
use tokio::sync::mpsc;

use super::{
    blobs::{Blobs, blob_tag},
    fetch::{FetchRequest, Fetcher},
    presence::Presence,
};
use crate::{actors::data_plane::DataPlane, config::payment_address};

/// Hardware devices that count as GPUs (Vulkan may be a CPU software driver).
const GPU_DEVICES: [&str; 3] = ["cuda", "vaapi", "qsv"];

/// What a worker measured on itself at start-up; `None`: not (yet) measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Measured {
    pub speed_millifps: Option<u32>,
    /// Encode sessions its GPU opened at once (only probed where NVENC opened).
    pub encode_sessions: Option<u16>,
}

/// NVENC sessions tried at once; consumer cards stop at 3 to 8.
const MAX_SESSIONS_PROBED: u16 = 32;

/// This node's advert at `issued_at`, from what its probe opened and it measured.
pub fn advert(
    config: &WorkerConfig,
    caps: &Capabilities,
    node_key: [u8; 32],
    issued_at: u64,
    active_jobs: u16,
    measured: Measured,
) -> WorkerAdvert {
    let opened = |probes: &[streamgate_media::hw::Probe]| {
        probes
            .iter()
            .filter(|p| p.available)
            .map(|p| p.name.clone())
            .take(MAX_CODECS)
            .collect::<Vec<_>>()
    };
    let mode = match caps.mode() {
        Mode::FullGpu => WorkMode::Gpu,
        Mode::GpuDecodeCpuEncode => WorkMode::GpuDecodeCpuEncode,
        Mode::Cpu => WorkMode::Cpu,
    };
    let gpus = caps
        .devices
        .iter()
        .filter(|d| d.available && GPU_DEVICES.contains(&d.name.as_str()))
        .map(|d| Gpu {
            name: d.name.clone(),
            // A GPU whose encoder did not open encodes nothing.
            encode_sessions: if mode == WorkMode::Gpu {
                measured.encode_sessions
            } else {
                Some(0)
            },
        })
        .take(MAX_GPUS)
        .collect();
    WorkerAdvert {
        node_key,
        issued_at,
        ttl_secs: config.advert_ttl_secs,
        mode,
        decoders: opened(&caps.decoders),
        encoders: opened(&caps.encoders),
        gpus,
        speed_millifps: measured.speed_millifps,
        price_per_gigapixel: u128::from(config.price_per_gigapixel),
        max_jobs: config.max_jobs,
        active_jobs: active_jobs.min(config.max_jobs),
        payment_address: payment_address(&config.payment_address),
    }
}

/// Whether this worker takes `offer` (signature and shape already verified) at `now`.
fn acceptable(
    config: &WorkerConfig,
    caps: &Capabilities,
    offer: &JobOffer,
    now: u64,
) -> Result<(), String> {
    if offer.price_per_gigapixel < u128::from(config.price_per_gigapixel) {
        return Err(format!(
            "the price offered is below this worker's {} wei per gigapixel",
            config.price_per_gigapixel
        ));
    }
    if !caps.decoder_available(&offer.source_codec) {
        return Err(format!("this worker cannot decode {}", offer.source_codec));
    }
    if offer.deadline < now + MIN_JOB_SECS {
        return Err("the deadline leaves no time for the work".into());
    }
    let max_chunk = u64::from(config.max_chunk_mib) << 20;
    if offer.chunk_size > max_chunk {
        return Err(format!(
            "the chunk is {} bytes; this worker fetches at most {max_chunk}",
            offer.chunk_size
        ));
    }
    Ok(())
}

/// Gossips this node's advert now and every third of its time-to-live, until the task is
/// dropped. The first adverts go out every few seconds while the gossip mesh forms.
pub async fn advertise(worker: Arc<Worker>, swarm: SwarmHandle) {
    let (config, caps, identity) = (&worker.config, &worker.caps, &worker.identity);
    let every = Duration::from_secs(u64::from(config.advert_ttl_secs / 3).max(1));
    let mut sent = 0u32;
    loop {
        let active = worker.active.load(Ordering::Relaxed);
        let signed = advert(
            config,
            caps,
            identity.public_key(),
            unix_now(),
            active,
            worker.measured(),
        )
        .sign(&identity.signing_key());
        if swarm.advertise_worker(signed).await.is_err() {
            return;
        }
        sent += 1;
        // A node that just joined has no mesh peers yet, and gossipsub drops what it cannot
        // send: repeat early so that peers hear of the worker within seconds.
        let wait = if sent < 5 {
            Duration::from_secs(2).min(every)
        } else {
            every
        };
        // A finished measurement goes out at once rather than a third of a lifetime later.
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = worker.measured_now.notified() => {}
        }
    }
}

/// The worker's side of jobs.
#[derive(Debug)]
pub struct Worker {
    pub config: WorkerConfig,
    pub caps: Capabilities,
    pub identity: Identity,
    pub fetcher: Fetcher,
    pub blobs: Arc<Blobs>,
    pub presence: Arc<Presence>,
    pub data_plane: DataPlane,
    /// Where chunks wait while they are transcoded.
    pub work_dir: PathBuf,
    /// Decode with NVDEC when the chunk is H.264 and the probe opened it.
    pub hardware_decode: bool,
    /// Tests only: how this worker cheats (`testing.worker_cheat`).
    pub cheat: Option<String>,
    active: AtomicU16,
    /// Start-up measurements; 0: not measured (yet).
    speed_millifps: AtomicU32,
    encode_sessions: AtomicU16,
    measured_now: tokio::sync::Notify,
}

/// Jobs are refused once their deadline leaves less than this for the work.
const MIN_JOB_SECS: u64 = 5;

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: WorkerConfig,
        caps: Capabilities,
        identity: Identity,
        fetcher: Fetcher,
        blobs: Arc<Blobs>,
        presence: Arc<Presence>,
        data_plane: DataPlane,
        work_dir: PathBuf,
        hardware_decode: bool,
        cheat: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            caps,
            identity,
            fetcher,
            blobs,
            presence,
            data_plane,
            work_dir,
            hardware_decode,
            cheat,
            active: AtomicU16::new(0),
            speed_millifps: AtomicU32::new(0),
            encode_sessions: AtomicU16::new(0),
            measured_now: tokio::sync::Notify::new(),
        })
    }

    pub fn measured(&self) -> Measured {
        let speed = self.speed_millifps.load(Ordering::Relaxed);
        let sessions = self.encode_sessions.load(Ordering::Relaxed);
        Measured {
            speed_millifps: (speed > 0).then_some(speed),
            encode_sessions: (sessions > 0).then_some(sessions),
        }
    }

    /// Measures this worker's speed (and its GPU's encode sessions) on a thread of its own,
    /// so the node serves meanwhile; later adverts carry the result.
    pub async fn measure(self: Arc<Self>) {
        let worker = self.clone();
        let (done, result) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("speed-measurement".into())
            .spawn(move || {
                if worker.caps.encoder_available("h264_nvenc") {
                    let sessions =
                        streamgate_media::hw::encode_sessions("h264_nvenc", MAX_SESSIONS_PROBED);
                    worker.encode_sessions.store(sessions, Ordering::Relaxed);
                }
                let base = worker.decode_config("h264", &TranscodeConfig::default().x264_preset);
                let _ = done.send(streamgate_media::speed::measure(&worker.work_dir, &base));
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the speed measurement: {e}");
            return;
        }
        match result.await {
            Ok(Ok(speed)) => {
                let millifps = (speed.fps * 1000.0).round().clamp(1.0, f64::from(u32::MAX));
                self.speed_millifps
                    .store(millifps as u32, Ordering::Relaxed);
                self.measured_now.notify_one();
                tracing::info!(
                    fps = speed.fps,
                    frames = speed.frames,
                    secs = speed.wall.as_secs_f64(),
                    "measured this worker's speed (1080p to 720p)"
                );
            }
            Ok(Err(e)) => tracing::warn!("the speed measurement failed: {e}"),
            Err(_) => tracing::warn!("the speed measurement thread ended early"),
        }
    }

    /// Answers every job offer that reaches this node, until the swarm stops.
    pub async fn serve(self: Arc<Self>, mut inbound: mpsc::Receiver<InboundJob>) {
        while let Some(job) = inbound.recv().await {
            let worker = self.clone();
            tokio::spawn(async move {
                let reply = worker.answer(&job.offer).await;
                if let Some(reply) = reply {
                    let _ = job.reply.send(reply.encode());
                } else {
                    // The silent cheat: hold the reply until the publisher gives up.
                    tokio::time::sleep(Duration::from_secs(streamgate_protocol::job::MAX_JOB_SECS))
                        .await;
                    drop(job.reply);
                }
            });
        }
    }

    async fn answer(&self, bytes: &[u8]) -> Option<JobReply> {
        let now = unix_now();
        let signed = match SignedJobOffer::decode_verified(bytes, now) {
            Ok(signed) => signed,
            Err(e) => return Some(JobReply::Refused(JobReply::reason(&e.to_string()))),
        };
        let offer = &signed.offer;
        if let Err(reason) = acceptable(&self.config, &self.caps, offer, now) {
            return Some(JobReply::Refused(JobReply::reason(&reason)));
        }
        // A slot, or a refusal: the publisher asks someone else.
        let taken = self
            .active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.config.max_jobs).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            return Some(JobReply::Refused("busy: every job slot is taken".into()));
        }
        if self.cheat.as_deref() == Some("silent") {
            self.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let started = std::time::Instant::now();
        let result = self.run(offer).await;
        self.active.fetch_sub(1, Ordering::AcqRel);
        Some(match result {
            Ok(rungs) => {
                tracing::info!(
                    job = %hex::encode(offer.job_id),
                    frames = offer.frames,
                    secs = started.elapsed().as_secs_f64(),
                    "job done"
                );
                JobReply::Done(Box::new(
                    self.receipt(offer, rungs)
                        .sign(&self.identity.signing_key()),
                ))
            }
            Err(reason) => {
                tracing::warn!(job = %hex::encode(offer.job_id), "job failed: {reason}");
                JobReply::Failed(JobReply::reason(&reason))
            }
        })
    }

    /// Fetches the chunk, transcodes it, stores the outputs.
    async fn run(&self, offer: &JobOffer) -> Result<Vec<RungOutput>, String> {
        if let Some(record) = &offer.publisher_record {
            self.data_plane.learn(record);
        }
        let request = FetchRequest {
            claimed_size: Some(offer.chunk_size),
            provide: false,
            known_provider: Some(offer.publisher),
            ..FetchRequest::blob(offer.chunk)
        };
        let remaining = Duration::from_secs(offer.deadline.saturating_sub(unix_now()));
        let work = async {
            self.fetcher
                .ensure(request)
                .await
                .map_err(|e| format!("cannot fetch the chunk: {e}"))?;
            let bytes = self
                .blobs
                .get_bytes(&offer.chunk)
                .await
                .map_err(|e| format!("cannot read the chunk: {e}"))?;
            tokio::fs::create_dir_all(&self.work_dir)
                .await
                .map_err(|e| format!("work folder: {e}"))?;
            let path = self
                .work_dir
                .join(format!("{}.nut", hex::encode(offer.job_id)));
            tokio::fs::write(&path, &bytes)
                .await
                .map_err(|e| format!("cannot write the chunk: {e}"))?;
            let config = self.transcode_config(offer);
            let cancel = Arc::new(AtomicBool::new(false));
            let stop = cancel.clone();
            let transcode_path = path.clone();
            let guard = scopeguard(move || stop.store(true, Ordering::Relaxed));
            let result = tokio::task::spawn_blocking(move || {
                transcode_chunk(&transcode_path, &config, &cancel)
            })
            .await;
            drop(guard);
            let _ = tokio::fs::remove_file(&path).await;
            let rungs = result
                .map_err(|e| format!("the transcoder thread failed: {e}"))?
                .map_err(|e| e.to_string())?;
            self.store(offer, rungs).await
        };
        tokio::time::timeout(remaining, work)
            .await
            .map_err(|_| "the deadline passed".to_string())?
    }

    fn transcode_config(&self, offer: &JobOffer) -> TranscodeConfig {
        let mut job = chunk_job(offer);
        let mut extra_filter = None;
        match self.cheat.as_deref() {
            Some("other_video") => extra_filter = Some("hflip,negate".to_string()),
            Some("low_resolution") => {
                extra_filter = Some("scale=iw/4:ih/4,scale=iw*4:ih*4".to_string());
            }
            Some("drop_frame") => {
                job.first_frame += 1;
                job.frames = job.frames.saturating_sub(1).max(1);
            }
            _ => {}
        }
        TranscodeConfig {
            chunk: Some(job),
            extra_filter,
            ..self.decode_config(&offer.source_codec, &offer.preset)
        }
    }

    /// How this worker transcodes a source in `codec`: NVDEC when allowed and opened.
    fn decode_config(&self, codec: &str, preset: &str) -> TranscodeConfig {
        TranscodeConfig {
            x264_preset: preset.to_string(),
            video_decoder: (self.hardware_decode
                && codec == "h264"
                && self.caps.decoder_available("h264_cuvid"))
            .then(|| "h264_cuvid".to_string()),
            ..TranscodeConfig::default()
        }
    }

    /// Stores every output as a blob; returns what the receipt lists.
    async fn store(
        &self,
        offer: &JobOffer,
        rungs: Vec<RungBytes>,
    ) -> Result<Vec<RungOutput>, String> {
        let mut outputs = Vec::new();
        for (rung, spec) in rungs.into_iter().zip(&offer.rungs) {
            let init = self.store_one(rung.init).await?;
            let mut segments = Vec::new();
            for bytes in rung.segments {
                segments.push(self.store_one(bytes).await?);
            }
            outputs.push(RungOutput {
                id: spec.id.clone(),
                init,
                segments,
            });
        }
        self.blobs.sync().await.map_err(|e| e.to_string())?;
        if self.cheat.as_deref() == Some("wrong_receipt")
            && let Some(first) = outputs.first_mut().and_then(|r| r.segments.first_mut())
        {
            first.hash = ContentHash::of(b"bytes this worker never stored");
        }
        Ok(outputs)
    }

    async fn store_one(&self, bytes: Vec<u8>) -> Result<SegmentRef, String> {
        let hash = ContentHash::of(&bytes);
        let size = bytes.len() as u64;
        self.blobs
            .store_bytes(hash, bytes, blob_tag(&hash))
            .await
            .map_err(|e| format!("cannot store an output: {e}"))?;
        Ok(SegmentRef {
            hash,
            size,
            duration: 0,
        })
    }

    fn receipt(&self, offer: &JobOffer, rungs: Vec<RungOutput>) -> Receipt {
        Receipt {
            job_id: offer.job_id,
            worker: self.identity.public_key(),
            publisher: offer.publisher,
            chunk: offer.chunk,
            issued_at: unix_now(),
            rungs,
            worker_record: Some(self.presence.own_record()),
        }
    }
}

/// Runs `f` when dropped: a transcode whose task is dropped (deadline) stops between packets.
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// The media side of a job offer.
pub fn chunk_job(offer: &JobOffer) -> ChunkJob {
    ChunkJob {
        rungs: offer
            .rungs
            .iter()
            .map(|r| PlannedRung {
                id: r.id.clone(),
                width: r.width,
                height: r.height,
                video_bitrate: r.bitrate,
            })
            .collect(),
        fps: (offer.fps_num, offer.fps_den),
        rotation: i32::from(offer.rotation),
        origin: offer.origin,
        first_frame: offer.first_frame,
        frames: offer.frames,
        gop: u64::from(offer.gop),
    }
}

/// What `GET /api/v1/workers` shows of one advert.
pub fn info(signed: &SignedWorkerAdvert) -> WorkerInfo {
    let advert = &signed.advert;
    WorkerInfo {
        peer_id: streamgate_swarm::identity::peer_id_of(&advert.node_key)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        node_id: hex::encode(advert.node_key),
        mode: match advert.mode {
            WorkMode::Gpu => "gpu",
            WorkMode::GpuDecodeCpuEncode => "gpu-decode-cpu-encode",
            WorkMode::Cpu => "cpu",
        }
        .to_string(),
        decoders: advert.decoders.clone(),
        encoders: advert.encoders.clone(),
        gpus: advert
            .gpus
            .iter()
            .map(|g| streamgate_api::v1::WorkerGpu {
                name: g.name.clone(),
                encode_sessions: g.encode_sessions,
            })
            .collect(),
        speed_fps: advert.speed_millifps.map(|m| f64::from(m) / 1000.0),
        price_per_gigapixel: advert.price_per_gigapixel.to_string(),
        max_jobs: advert.max_jobs,
        active_jobs: advert.active_jobs,
        payment_address: advert
            .payment_address
            .map(|a| format!("0x{}", hex::encode(a))),
        issued_at: advert.issued_at,
        expires_at: advert.expires_at(),
        standing: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_media::hw::Probe;

    fn probe(name: &str, kind: &'static str, available: bool) -> Probe {
        Probe {
            name: name.into(),
            kind,
            available,
            detail: String::new(),
        }
    }

    /// What the probe finds on an H200: CUDA and NVDEC, no NVENC.
    fn datacenter_gpu() -> Capabilities {
        Capabilities {
            devices: vec![
                probe("cuda", "device", true),
                probe("vulkan", "device", true),
            ],
            encoders: vec![
                probe("libx264", "cpu", true),
                probe("h264_nvenc", "gpu", false),
            ],
            decoders: vec![probe("h264", "cpu", true), probe("h264_cuvid", "gpu", true)],
        }
    }

    fn offer() -> JobOffer {
        JobOffer {
            job_id: [7; 16],
            publisher: [2; 32],
            issued_at: 1_000,
            deadline: 1_600,
            chunk: ContentHash::of(b"chunk"),
            chunk_size: 40 << 20,
            source_codec: "h264".into(),
            fps_num: 30,
            fps_den: 1,
            rotation: 0,
            origin: 0,
            first_frame: 0,
            frames: 300,
            gop: 60,
            preset: "veryfast".into(),
            rungs: Vec::new(),
            price_per_gigapixel: 10,
            publisher_record: None,
        }
    }

    #[test]
    fn offers_beyond_what_this_worker_takes_are_refused_with_the_reason() {
        let config = WorkerConfig {
            price_per_gigapixel: 5,
            ..WorkerConfig::default()
        };
        let caps = datacenter_gpu();
        assert_eq!(acceptable(&config, &caps, &offer(), 1_000), Ok(()));
        type Change = fn(&mut JobOffer);
        let hostile: [(Change, &str); 4] = [
            // A publisher may not make this node download gigabytes for one job.
            (|o| o.chunk_size = 4 << 30, "fetches at most"),
            (|o| o.price_per_gigapixel = 4, "below this worker's 5 wei"),
            (|o| o.source_codec = "prores".into(), "cannot decode prores"),
            (|o| o.deadline = 1_002, "no time"),
        ];
        for (change, reason) in hostile {
            let mut o = offer();
            change(&mut o);
            let refused = acceptable(&config, &caps, &o, 1_000).expect_err(reason);
            assert!(refused.contains(reason), "{refused}");
        }
    }

    #[test]
    fn a_datacenter_gpu_offers_hybrid_work_and_says_it_cannot_encode() {
        let mut config = WorkerConfig {
            price_per_gigapixel: 7,
            payment_address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            ..WorkerConfig::default()
        };
        let a = advert(
            &config,
            &datacenter_gpu(),
            [1; 32],
            50,
            0,
            Measured::default(),
        );
        assert_eq!(a.mode, WorkMode::GpuDecodeCpuEncode);
        assert_eq!(a.encoders, ["libx264"]);
        assert_eq!(a.decoders, ["h264", "h264_cuvid"]);
        // Vulkan is not counted as a GPU; CUDA's encode sessions: none.
        assert_eq!(
            a.gpus,
            [Gpu {
                name: "cuda".into(),
                encode_sessions: Some(0)
            }]
        );
        assert_eq!(
            (a.price_per_gigapixel, a.issued_at, a.ttl_secs),
            (7, 50, 300)
        );
        assert_eq!(a.payment_address.map(|p| p[0]), Some(0x70));
        assert_eq!(a.speed_millifps, None, "not measured yet");
        config.payment_address.clear();
        let measured = Measured {
            speed_millifps: Some(41_500),
            encode_sessions: Some(5),
        };
        let later = advert(&config, &datacenter_gpu(), [1; 32], 50, 0, measured);
        assert_eq!(later.payment_address, None);
        assert_eq!(later.speed_millifps, Some(41_500));
        assert_eq!(
            later.gpus[0].encode_sessions,
            Some(0),
            "a GPU that cannot encode has no sessions, whatever was measured"
        );
    }
}
