//! Publishing: an uploaded file becomes a signed manifest of CMAF segments.
//!
//! ```text
//!  submit(PublishRequest) ─▶ validate() ─▶ job (redb: queued → running → done | failed | cancelled)
//!     └─▶ one job at a time:
//!           blocking thread: probe ─▶ transcode (media push/pull) ─▶ encrypt (gated) ─▶ hash
//!                 │ bounded channel of segments (backpressure: the encoder waits for the store)
//!                 ▼
//!           async storer: each init/media segment stored as a tagged blob
//!           ─▶ sign the manifest ─▶ store it ─▶ sync ─▶ record every blob in one transaction
//!           ─▶ provide the manifest (Kademlia) ─▶ gossip it
//! ```
//!
//! Nothing is announced before every segment is stored and durable. A cancelled job stops
//! between two packets and announces nothing. A node restarted during a job runs the job
//! again at start-up (segments are content addressed, so what was stored before is
//! reused); a job that cannot run fails with its reason in `GET /api/v1/jobs/{id}`.

mod distribute;
mod gating;
mod pipeline;

pub use distribute::WorkParts;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use streamgate_api::v1::{JobProgress, JobState, JobView, PublishRequest};
use streamgate_media::{
    TranscodeConfig,
    hw::Capabilities,
    ladder::{RungSpec, parse_ladder},
};
use streamgate_protocol::{ContentHash, access::AccessPolicy, manifest::MAX_TITLE_BYTES};
use streamgate_swarm::{daemon::unix_now, identity::Identity};
use tokio::sync::Semaphore;

use super::{access::Access, blobs::Blobs, library::Library, uploads::Uploads};
use crate::{
    actors::db::{DbError, JobEntry, NodeDb},
    config::{HardwareUse, TranscodeSettings},
};

/// Why a publish was refused or a job failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("no upload {0:?}")]
    NoSuchUpload(String),
    #[error("the upload has {offset} of {length} bytes; finish it first")]
    UploadIncomplete { offset: u64, length: u64 },
    #[error("ladder: {0}")]
    BadLadder(String),
    #[error("titles are at most {MAX_TITLE_BYTES} bytes with no control characters")]
    BadTitle,
    #[error("gate: {0}")]
    BadGate(String),
    #[error("key server: {0}")]
    KeyServer(String),
    #[error("{0}")]
    Media(String),
    #[error("storage: {0}")]
    Store(String),
    #[error("no job {0:?}")]
    NoSuchJob(String),
    #[error("job {0} has already ended")]
    AlreadyEnded(String),
    #[error("the job was cancelled")]
    Cancelled,
}

impl From<DbError> for PublishError {
    fn from(e: DbError) -> Self {
        Self::Store(e.to_string())
    }
}

/// A publish request, checked: what a job runs with.
#[derive(Debug, Clone)]
pub struct Validated {
    pub ladder_text: String,
    pub ladder: Vec<RungSpec>,
    pub title: String,
    /// The gate with its registrant, for gated videos.
    pub gate: Option<AccessPolicy>,
    pub key_servers: Vec<String>,
}

/// Checks every field of a request against this node's defaults and limits. The one
/// place a publish is validated: at submission, and again when the job runs.
pub fn validate(
    request: &PublishRequest,
    defaults: &TranscodeSettings,
    file_name: Option<&str>,
) -> Result<Validated, PublishError> {
    let ladder_text = request
        .ladder
        .clone()
        .unwrap_or_else(|| defaults.ladder.clone());
    let ladder = parse_ladder(&ladder_text).map_err(|e| PublishError::BadLadder(e.to_string()))?;
    let title = request
        .title
        .clone()
        .or_else(|| file_name.map(str::to_string))
        .unwrap_or_else(|| "untitled".into());
    if title.len() > MAX_TITLE_BYTES || title.chars().any(char::is_control) {
        return Err(PublishError::BadTitle);
    }
    let gate = match &request.gate {
        Some(gate) => {
            let mut policy: AccessPolicy =
                gate.parse()
                    .map_err(|e: streamgate_protocol::access::GateError| {
                        PublishError::BadGate(e.to_string())
                    })?;
            policy.registrant = match &request.registrant {
                Some(r) => Some(r.parse().map_err(|_| {
                    PublishError::BadGate(format!("registrant {r:?} is not a 0x address"))
                })?),
                None => None,
            };
            Some(policy)
        }
        None if !request.key_servers.is_empty() || request.registrant.is_some() => {
            return Err(PublishError::BadGate(
                "key servers and a registrant only make sense for a gated video (--gate)".into(),
            ));
        }
        None => None,
    };
    if request.key_servers.len() + 1 > streamgate_protocol::access::MAX_KEY_WRAPS {
        return Err(PublishError::BadGate("too many key servers".into()));
    }
    for server in &request.key_servers {
        gating::parse_key_server(server).map_err(PublishError::BadGate)?;
    }
    Ok(Validated {
        ladder_text,
        ladder,
        title,
        gate,
        key_servers: request.key_servers.clone(),
    })
}

/// A running job's live progress and its cancel switch.
#[derive(Debug, Default)]
struct Live {
    progress: JobProgress,
    cancel: Arc<AtomicBool>,
}

/// What publishing needs from the rest of the node.
#[derive(Debug)]
pub struct PublishParts {
    pub db: Arc<NodeDb>,
    pub uploads: Arc<Uploads>,
    pub blobs: Arc<Blobs>,
    pub library: Arc<Library>,
    pub access: Arc<Access>,
    pub identity: Identity,
    pub settings: TranscodeSettings,
    pub capabilities: Option<Capabilities>,
    pub work: Arc<WorkParts>,
}

#[derive(Debug)]
pub struct Publisher {
    parts: PublishParts,
    /// Jobs queued or running in this process.
    live: Mutex<HashMap<String, Live>>,
    /// One transcode at a time: it already keeps every core busy.
    gate: Semaphore,
}

impl Publisher {
    pub fn new(parts: PublishParts) -> Arc<Self> {
        Arc::new(Self {
            parts,
            live: Mutex::new(HashMap::new()),
            gate: Semaphore::new(1),
        })
    }

    /// Checks the request and queues a job for it; returns the job id.
    pub async fn submit(self: &Arc<Self>, request: PublishRequest) -> Result<String, PublishError> {
        let (_, upload) = self
            .parts
            .uploads
            .complete(&request.upload_id)
            .await
            .map_err(|e| upload_error(&request.upload_id, e))?;
        let validated = validate(
            &request,
            &self.parts.settings,
            file_name(&upload.entry.metadata),
        )?;
        let mut raw = [0u8; 16];
        rand::fill(&mut raw);
        let id = hex::encode(raw);
        self.parts.db.put_job(
            &id,
            &JobEntry {
                upload_id: request.upload_id,
                title: validated.title,
                ladder: validated.ladder_text,
                state: JobState::Queued,
                created_at: unix_now(),
                source_hash: None,
                gate: request.gate,
                key_servers: request.key_servers,
                registrant: request.registrant,
                chunks: Vec::new(),
            },
        )?;
        self.spawn(id.clone());
        Ok(id)
    }

    /// One job as the API shows it.
    pub fn job(&self, id: &str) -> Result<JobView, PublishError> {
        let entry = self
            .parts
            .db
            .job(id)?
            .ok_or_else(|| PublishError::NoSuchJob(id.to_string()))?;
        Ok(self.view(id.to_string(), entry))
    }

    /// Every job this node knows.
    pub fn jobs(&self) -> Result<Vec<JobView>, PublishError> {
        Ok(self
            .parts
            .db
            .jobs()?
            .into_iter()
            .map(|(id, entry)| self.view(id, entry))
            .collect())
    }

    fn view(&self, id: String, entry: JobEntry) -> JobView {
        let progress = self
            .live
            .lock()
            .ok()
            .and_then(|live| live.get(&id).map(|l| l.progress.clone()));
        JobView {
            id,
            title: entry.title,
            ladder: entry.ladder,
            created_at: entry.created_at,
            source_hash: entry.source_hash,
            state: entry.state,
            progress,
            chunks: entry.chunks,
        }
    }

    /// Uploads that queued or running jobs will read: never expired under them.
    pub fn uploads_in_use(&self) -> HashSet<String> {
        self.parts
            .db
            .jobs()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, job)| !job.state.is_final())
            .map(|(_, job)| job.upload_id)
            .collect()
    }

    /// Ended jobs remembered now.
    pub fn ended_jobs(&self) -> usize {
        self.parts
            .db
            .jobs()
            .map(|jobs| jobs.iter().filter(|(_, j)| j.state.is_final()).count())
            .unwrap_or(0)
    }

    /// Forgets the oldest ended jobs beyond `transcode.keep_ended_jobs`.
    fn forget_old_jobs(&self) {
        let Ok(jobs) = self.parts.db.jobs() else {
            return;
        };
        let mut ended: Vec<_> = jobs
            .into_iter()
            .filter(|(_, job)| job.state.is_final())
            .collect();
        let keep = self.parts.settings.keep_ended_jobs;
        if ended.len() <= keep {
            return;
        }
        // Newest first; ids break ties so the order is stable.
        ended.sort_by(|(a_id, a), (b_id, b)| b.created_at.cmp(&a.created_at).then(b_id.cmp(a_id)));
        for (id, _) in &ended[keep..] {
            if let Err(e) = self.parts.db.remove_job(id) {
                tracing::warn!(job = %id, "cannot forget an old job: {e}");
            }
        }
    }

    /// Stops a queued or running job; it ends as cancelled and announces nothing.
    pub fn cancel(&self, id: &str) -> Result<JobView, PublishError> {
        let view = self.job(id)?;
        if view.state.is_final() {
            return Err(PublishError::AlreadyEnded(id.to_string()));
        }
        if let Ok(live) = self.live.lock()
            && let Some(job) = live.get(id)
        {
            job.cancel.store(true, Ordering::Relaxed);
        }
        tracing::info!(job = %id, "cancel requested");
        Ok(view)
    }

    /// Restarts jobs that were queued or running when the node stopped.
    pub fn resume(self: &Arc<Self>) -> usize {
        let Ok(jobs) = self.parts.db.jobs() else {
            return 0;
        };
        let mut resumed = 0;
        for (id, job) in jobs {
            if matches!(job.state, JobState::Queued | JobState::Running) {
                tracing::info!(job = %id, "resuming a publishing job interrupted by a restart");
                self.spawn(id);
                resumed += 1;
            }
        }
        resumed
    }

    fn spawn(self: &Arc<Self>, id: String) {
        let cancel = Arc::new(AtomicBool::new(false));
        if let Ok(mut live) = self.live.lock() {
            live.insert(
                id.clone(),
                Live {
                    progress: JobProgress::default(),
                    cancel: cancel.clone(),
                },
            );
        }
        let publisher = self.clone();
        tokio::spawn(async move {
            let result = match publisher.gate.acquire().await {
                Ok(_permit) if cancel.load(Ordering::Relaxed) => Err(PublishError::Cancelled),
                Ok(_permit) => publisher.execute(&id, &cancel).await,
                Err(_) => Err(PublishError::Store("the job queue closed".into())),
            };
            let state = match result {
                Ok(manifest_id) => {
                    tracing::info!(job = %id, manifest = %manifest_id, "published");
                    JobState::Done {
                        manifest_id: manifest_id.to_string(),
                    }
                }
                Err(PublishError::Cancelled) => {
                    tracing::info!(job = %id, "publishing cancelled");
                    JobState::Cancelled
                }
                Err(error) => {
                    tracing::warn!(job = %id, "publishing failed: {error}");
                    JobState::Failed {
                        error: error.to_string(),
                    }
                }
            };
            publisher.set_state(&id, state);
            if let Ok(mut live) = publisher.live.lock() {
                live.remove(&id);
            }
            publisher.forget_old_jobs();
            // The encoders' hundreds of megabytes are free now; hand them back.
            let _ = tokio::task::spawn_blocking(crate::memory::release_free_memory).await;
        });
    }

    fn set_state(&self, id: &str, state: JobState) {
        self.update_job(id, |job| job.state = state);
    }

    fn update_job(&self, id: &str, change: impl FnOnce(&mut JobEntry)) {
        match self.parts.db.job(id) {
            Ok(Some(mut job)) => {
                change(&mut job);
                if let Err(e) = self.parts.db.put_job(id, &job) {
                    tracing::warn!(job = %id, "cannot record job state: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(job = %id, "cannot read job: {e}"),
        }
    }

    /// Reports how far a track has got.
    fn report(&self, id: &str, update: impl FnOnce(&mut JobProgress)) {
        if let Ok(mut live) = self.live.lock()
            && let Some(job) = live.get_mut(id)
        {
            update(&mut job.progress);
        }
    }

    async fn execute(
        self: &Arc<Self>,
        id: &str,
        cancel: &Arc<AtomicBool>,
    ) -> Result<ContentHash, PublishError> {
        let job = self
            .parts
            .db
            .job(id)?
            .ok_or_else(|| PublishError::NoSuchJob(id.to_string()))?;
        self.set_state(id, JobState::Running);
        let (path, upload) = self
            .parts
            .uploads
            .complete(&job.upload_id)
            .await
            .map_err(|e| upload_error(&job.upload_id, e))?;
        let request = PublishRequest {
            upload_id: job.upload_id.clone(),
            title: Some(job.title.clone()),
            ladder: Some(job.ladder.clone()),
            gate: job.gate.clone(),
            key_servers: job.key_servers.clone(),
            registrant: job.registrant.clone(),
        };
        let validated = validate(
            &request,
            &self.parts.settings,
            file_name(&upload.entry.metadata),
        )?;
        let probed = pipeline::probe(path.clone()).await?;
        self.update_job(id, |job| {
            job.source_hash = Some(probed.source_hash.to_string());
        });
        let config = self.transcode_config(
            validated.ladder.clone(),
            probed.info.video.as_ref().map(|v| v.codec.as_str()),
        );
        let gating = match &validated.gate {
            Some(policy) => Some(gating::prepare(
                policy.clone(),
                &validated.key_servers,
                &self.parts.identity,
                &self.parts.access,
            )?),
            None => None,
        };
        self.report(id, |p| p.duration_secs = probed.info.duration_secs);
        let job_id = id.to_string();
        let publisher = self.clone();
        let progress: streamgate_media::transcode::ProgressFn = Arc::new(move |track, seconds| {
            publisher.report(&job_id, |p| {
                while p.tracks.len() <= track {
                    p.tracks.push(streamgate_api::v1::TrackProgress {
                        id: String::new(),
                        seconds: 0.0,
                    });
                }
                p.tracks[track].seconds = seconds;
            });
        });
        // Public videos go to workers when any are known; a gated one never leaves this
        // node in the clear.
        let through_workers = gating.is_none()
            && self.parts.settings.use_workers
            && distribute::workers_available(
                &self.parts.work,
                &self.parts.settings,
                self.parts.identity.public_key(),
                &probed.info,
            )
            .await;
        let (mut manifest, blobs) = if through_workers {
            tracing::info!(job = %id, "transcoding through volunteered workers");
            self.through_workers(
                id,
                path,
                &probed.info,
                config,
                progress,
                cancel,
                &validated.title,
            )
            .await?
        } else {
            let transcoded = pipeline::transcode_and_store(
                &self.parts.blobs,
                pipeline::Job {
                    path,
                    config,
                    content_key: gating.as_ref().map(|g| g.key),
                    progress,
                    cancel: cancel.clone(),
                },
            )
            .await?;
            self.name_tracks(id, &transcoded.tracks);
            if cancel.load(Ordering::Relaxed) {
                return Err(PublishError::Cancelled);
            }
            let manifest = transcoded
                .builder
                .finish(
                    &transcoded.tracks,
                    &validated.title,
                    unix_now(),
                    self.parts.identity.public_key(),
                )
                .map_err(|e| PublishError::Media(e.to_string()))?;
            (manifest, transcoded.blobs)
        };
        if let Some(gating) = gating {
            gating.seal_into(&mut manifest)?;
        }
        let signed = manifest.sign(&self.parts.identity.signing_key());
        signed
            .verify()
            .map_err(|e| PublishError::Media(format!("the new manifest does not verify: {e}")))?;
        let manifest_id = self
            .parts
            .library
            .register_published(&signed, blobs)
            .await
            .map_err(|e| PublishError::Store(e.to_string()))?;
        // The segments hold the content now; the upload is no longer needed.
        if let Err(e) = self.parts.uploads.remove(&job.upload_id).await {
            tracing::debug!("upload {} not removed: {e}", job.upload_id);
        }
        Ok(manifest_id)
    }

    /// Shows track ids in the job's progress.
    fn name_tracks(&self, id: &str, tracks: &[streamgate_media::TrackPlan]) {
        self.report(id, |p| {
            for (i, plan) in tracks.iter().enumerate() {
                if let Some(t) = p.tracks.get_mut(i) {
                    t.id = plan.id.clone();
                }
            }
        });
    }

    /// Video rungs through workers, audio here, at the same time; the unsigned manifest
    /// and the rows of every blob it names.
    #[allow(clippy::too_many_arguments)]
    async fn through_workers(
        self: &Arc<Self>,
        id: &str,
        path: std::path::PathBuf,
        info: &streamgate_media::MediaInfo,
        config: TranscodeConfig,
        progress: streamgate_media::transcode::ProgressFn,
        cancel: &Arc<AtomicBool>,
        title: &str,
    ) -> Result<
        (
            streamgate_protocol::Manifest,
            Vec<(ContentHash, crate::actors::db::BlobEntry)>,
        ),
        PublishError,
    > {
        let publisher = self.clone();
        let job_id = id.to_string();
        let video = distribute::Distribution {
            info,
            parts: self.parts.work.clone(),
            blobs: self.parts.blobs.clone(),
            identity: self.parts.identity.clone(),
            settings: self.parts.settings.clone(),
            config: config.clone(),
            path: path.clone(),
            job_id: id.to_string(),
            cancel: cancel.clone(),
            report: Arc::new(move |chunks| publisher.report(&job_id, |p| p.chunks = chunks)),
        }
        .run();
        let audio = async {
            if info.audio.is_none() {
                return Ok(None);
            }
            pipeline::transcode_and_store(
                &self.parts.blobs,
                pipeline::Job {
                    path: path.clone(),
                    config: TranscodeConfig {
                        audio_only: true,
                        ..config.clone()
                    },
                    content_key: None,
                    progress,
                    cancel: cancel.clone(),
                },
            )
            .await
            .map(Some)
        };
        let (video, audio) = tokio::join!(video, audio);
        let (video, audio) = (video?, audio?);
        let chunks = self
            .live
            .lock()
            .ok()
            .and_then(|live| live.get(id).map(|l| l.progress.chunks.clone()))
            .unwrap_or_default();
        self.update_job(id, |job| job.chunks = chunks);
        if cancel.load(Ordering::Relaxed) {
            return Err(PublishError::Cancelled);
        }
        let created_at = unix_now();
        let creator = self.parts.identity.public_key();
        let mut tracks = video.tracks;
        let mut blobs = video.blobs;
        if let Some(audio) = audio {
            self.name_tracks(id, &audio.tracks);
            let audio_manifest = audio
                .builder
                .finish(&audio.tracks, title, created_at, creator)
                .map_err(|e| PublishError::Media(e.to_string()))?;
            tracks.extend(audio_manifest.tracks);
            blobs.extend(audio.blobs);
        }
        let duration_ms = streamgate_protocol::manifest::Track::longest_ms(&tracks);
        let manifest = streamgate_protocol::Manifest {
            title: title.to_string(),
            created_at,
            duration_ms,
            creator,
            tracks,
            access: None,
            encryption: None,
            work: video.work,
        };
        manifest
            .validate()
            .map_err(|e| PublishError::Media(format!("the manifest from workers: {e}")))?;
        tracing::info!(
            job = %id,
            chunks = video.chunks,
            by_workers = manifest.work.len(),
            "video rungs made through workers and verified"
        );
        Ok((manifest, blobs))
    }

    fn transcode_config(
        &self,
        ladder: Vec<RungSpec>,
        source_codec: Option<&str>,
    ) -> TranscodeConfig {
        let mut config = TranscodeConfig {
            ladder,
            x264_preset: self.parts.settings.preset.clone(),
            ..TranscodeConfig::default()
        };
        if self.parts.settings.hardware == HardwareUse::Auto
            && let Some(caps) = &self.parts.capabilities
        {
            if caps.encoder_available("h264_nvenc") {
                config.video_encoder = "h264_nvenc".into();
            }
            if source_codec == Some("h264") && caps.decoder_available("h264_cuvid") {
                config.video_decoder = Some("h264_cuvid".into());
            }
        }
        config
    }
}

fn file_name(metadata: &[(String, String)]) -> Option<&str> {
    metadata
        .iter()
        .find(|(k, _)| k == "filename")
        .map(|(_, v)| v.as_str())
}

fn upload_error(id: &str, e: super::uploads::UploadError) -> PublishError {
    use super::uploads::UploadError;
    match e {
        UploadError::NotFound(_) => PublishError::NoSuchUpload(id.to_string()),
        UploadError::Incomplete { offset, length } => {
            PublishError::UploadIncomplete { offset, length }
        }
        other => PublishError::Store(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PublishRequest {
        PublishRequest {
            upload_id: "0".repeat(32),
            ..PublishRequest::default()
        }
    }

    #[test]
    fn validation_fills_defaults_and_refuses_bad_fields() {
        let defaults = TranscodeSettings::default();
        let ok = validate(&request(), &defaults, Some("clip.mp4")).expect("valid");
        assert_eq!(ok.title, "clip.mp4");
        assert_eq!(ok.ladder_text, defaults.ladder);
        assert!(ok.gate.is_none());

        let bad = |change: fn(&mut PublishRequest)| {
            let mut r = request();
            change(&mut r);
            validate(&r, &defaults, None).expect_err("refused")
        };
        assert!(matches!(
            bad(|r| r.ladder = Some("999999p".into())),
            PublishError::BadLadder(_)
        ));
        assert_eq!(
            bad(|r| r.title = Some("a\nb".into())),
            PublishError::BadTitle
        );
        assert_eq!(
            bad(|r| r.title = Some("x".repeat(MAX_TITLE_BYTES + 1))),
            PublishError::BadTitle
        );
        assert!(matches!(
            bad(|r| r.gate = Some("erc721:nope".into())),
            PublishError::BadGate(_)
        ));
        assert!(matches!(
            bad(|r| r.key_servers = vec!["http://elsewhere".into()]),
            PublishError::BadGate(_)
        ));
        assert!(matches!(
            bad(|r| {
                r.gate = Some("erc721:1:0x5FbDB2315678afecb367f032d93F642f64180aa3".into());
                r.registrant = Some("me".into());
            }),
            PublishError::BadGate(_)
        ));
        let gated = PublishRequest {
            gate: Some("erc721:1:0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
            registrant: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
            ..request()
        };
        let ok = validate(&gated, &defaults, None).expect("valid gate");
        assert!(ok.gate.is_some_and(|g| g.registrant.is_some()));
        let node_id = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let with_server = |server: &str| PublishRequest {
            key_servers: vec![server.to_string()],
            ..gated.clone()
        };
        validate(
            &with_server(&format!("{node_id}@http://10.0.0.2:7700")),
            &defaults,
            None,
        )
        .expect("NODE_ID@URL");
        for bad_server in [
            "http://10.0.0.2:7700".to_string(),
            format!("{node_id}@ftp://10.0.0.2"),
            format!("{node_id}@http://host/\"#EXT-X-KEY"),
            format!("{}@http://10.0.0.2:7700", &node_id[..60]),
        ] {
            assert!(
                matches!(
                    validate(&with_server(&bad_server), &defaults, None),
                    Err(PublishError::BadGate(_))
                ),
                "{bad_server}"
            );
        }
    }
}
