//! Publishing: an uploaded file becomes a signed manifest of CMAF segments.
//!
//! ```text
//!  POST /api/v1/publish {upload_id, title, ladder}
//!     └─▶ job (redb: queued → running → done | failed)
//!           └─ blocking thread: probe ─▶ transcode ─▶ each init/media segment stored as a blob
//!                                                     (tagged, in the iroh-blobs store)
//!           └─ sign manifest with the node key ─▶ store it ─▶ sync ─▶ record every blob
//!              in one transaction ─▶ provide the manifest (Kademlia) ─▶ gossip it
//! ```
//!
//! Nothing is announced before every segment is stored and durable. A node restarted
//! during a job runs the job again from the start at start-up (segments are content
//! addressed, so what was stored before is reused); a job that cannot run fails with
//! its reason in `GET /api/v1/jobs/{id}`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, atomic::AtomicBool},
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use streamgate_media::{
    ManifestBuilder, Output, TranscodeConfig, ladder::parse_ladder, transcode_file,
};
use streamgate_protocol::{
    ContentHash,
    access::{AccessPolicy, Encryption, EncryptionMethod},
};

use crate::{
    api::ApiError,
    config::HardwareUse,
    db::{BlobEntry, JobEntry, JobState, Origin},
    node::Node,
    runfile::unix_now,
    uploads::upload_path,
};

/// Live progress of running jobs (what the database does not keep).
#[derive(Debug)]
pub struct Jobs {
    progress: Mutex<HashMap<String, JobProgress>>,
    /// One transcode at a time: it already keeps every core busy.
    gate: tokio::sync::Semaphore,
}

impl Default for Jobs {
    fn default() -> Self {
        Self {
            progress: Mutex::new(HashMap::new()),
            gate: tokio::sync::Semaphore::new(1),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct JobProgress {
    /// Seconds of media the source holds.
    pub duration_secs: f64,
    /// Seconds encoded so far, per track.
    pub tracks: Vec<TrackProgress>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrackProgress {
    pub id: String,
    pub seconds: f64,
}

/// `POST /api/v1/publish`.
#[derive(Debug, Deserialize)]
pub struct PublishRequest {
    pub upload_id: String,
    pub title: Option<String>,
    /// e.g. `1080p,720p`; the node's `transcode.ladder` when absent.
    pub ladder: Option<String>,
    /// `erc721:CHAIN_ID:0xCONTRACT[:TOKEN_ID]` or `erc1155:CHAIN_ID:0xCONTRACT:TOKEN_ID[:MIN]`.
    pub gate: Option<String>,
    /// Other nodes (by public origin) that may release the key of a gated video.
    #[serde(default)]
    pub key_servers: Vec<String>,
    /// The Ethereum account whose ContentRegistry entry for this video nodes will honour.
    pub registrant: Option<String>,
}

#[derive(Debug, Serialize)]
struct JobView {
    id: String,
    title: String,
    ladder: String,
    source_hash: Option<String>,
    #[serde(flatten)]
    state: JobState,
    progress: Option<JobProgress>,
}

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/manifests", get(list_manifests))
        .route("/api/v1/manifests/{id}", get(manifest))
        .route("/api/v1/manifests/{id}/pin", post(pin))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
}

async fn publish(
    State(node): State<Arc<Node>>,
    Json(request): Json<PublishRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let bad = |code, msg: String| ApiError::new(StatusCode::BAD_REQUEST, code, msg);
    let upload = node
        .db
        .upload(&request.upload_id)
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_upload",
                format!("no upload {:?}", request.upload_id),
            )
        })?;
    let received = tokio::fs::metadata(upload_path(&node, &request.upload_id))
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if received != upload.length {
        return Err(bad(
            "upload_incomplete",
            format!(
                "the upload has {received} of {} bytes; finish it first",
                upload.length
            ),
        ));
    }
    let ladder = request
        .ladder
        .unwrap_or_else(|| node.config.transcode.ladder.clone());
    parse_ladder(&ladder).map_err(|e| bad("bad_ladder", e.to_string()))?;
    let title = request
        .title
        .or_else(|| {
            upload
                .metadata
                .iter()
                .find(|(k, _)| k == "filename")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| "untitled".into());
    if title.len() > streamgate_protocol::manifest::MAX_TITLE_BYTES
        || title.chars().any(char::is_control)
    {
        return Err(bad(
            "bad_title",
            "titles are at most 256 bytes with no control characters".into(),
        ));
    }
    if let Some(gate) = &request.gate {
        gate.parse::<AccessPolicy>()
            .map_err(|e| bad("bad_gate", e.to_string()))?;
        if let Some(registrant) = &request.registrant {
            registrant
                .parse::<alloy_primitives::Address>()
                .map_err(|_| {
                    bad(
                        "bad_gate",
                        format!("registrant {registrant:?} is not a 0x address"),
                    )
                })?;
        }
    } else if !request.key_servers.is_empty() || request.registrant.is_some() {
        return Err(bad(
            "bad_gate",
            "key servers only make sense for a gated video (--gate)".into(),
        ));
    }
    if request.key_servers.len() + 1 > streamgate_protocol::access::MAX_KEY_WRAPS {
        return Err(bad("bad_gate", "too many key servers".into()));
    }
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    let id = hex::encode(raw);
    node.db
        .put_job(
            &id,
            &JobEntry {
                upload_id: request.upload_id,
                title,
                ladder,
                state: JobState::Queued,
                created_at: unix_now(),
                source_hash: None,
                gate: request.gate,
                key_servers: request.key_servers,
                registrant: request.registrant,
            },
        )
        .map_err(internal)?;
    spawn_job(node.clone(), id.clone());
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "job_id": id })),
    ))
}

async fn job(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let entry = node.db.job(&id).map_err(internal)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_job",
            format!("no job {id:?}"),
        )
    })?;
    let progress = node
        .jobs
        .progress
        .lock()
        .ok()
        .and_then(|p| p.get(&id).cloned());
    Ok(Json(JobView {
        id,
        title: entry.title,
        ladder: entry.ladder,
        source_hash: entry.source_hash,
        state: entry.state,
        progress,
    }))
}

async fn list_jobs(State(node): State<Arc<Node>>) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<serde_json::Value> = node
        .db
        .jobs()
        .map_err(internal)?
        .into_iter()
        .map(|(id, job)| {
            let mut view =
                serde_json::json!({ "id": id, "title": job.title, "created_at": job.created_at });
            if let (Some(obj), Ok(serde_json::Value::Object(state))) =
                (view.as_object_mut(), serde_json::to_value(&job.state))
            {
                obj.extend(state);
            }
            view
        })
        .collect();
    Ok(Json(serde_json::Value::Array(list)))
}

async fn list_manifests(
    State(node): State<Arc<Node>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list: Vec<serde_json::Value> = node
        .db
        .manifests()
        .map_err(internal)?
        .into_iter()
        .map(|(id, e)| {
            serde_json::json!({
                "id": id,
                "title": e.title,
                "duration_ms": e.duration_ms,
                "created_at": e.created_at,
                "origin": e.origin,
                "complete": e.complete,
            })
        })
        .collect();
    Ok(Json(serde_json::Value::Array(list)))
}

async fn manifest(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: ContentHash = id
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", format!("{e}")))?;
    let signed = node.manifest(id).await.map_err(ApiError::from)?;
    Ok(Json(serde_json::json!({
        "id": id,
        "manifest": signed.manifest,
        "signature": hex::encode(signed.signature),
    })))
}

/// `POST /api/v1/manifests/{id}/pin`: fetch and keep every blob of a video here.
async fn pin(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id: ContentHash = id
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", format!("{e}")))?;
    let blobs = node.pin(id).await.map_err(ApiError::from)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "id": id, "blobs": blobs })),
    ))
}

/// Runs the job in the background.
pub fn spawn_job(node: Arc<Node>, id: String) {
    tokio::spawn(async move {
        let _permit = node.jobs.gate.acquire().await;
        let state = match execute(&node, &id).await {
            Ok(manifest_id) => {
                tracing::info!(job = %id, manifest = %manifest_id, "published");
                JobState::Done {
                    manifest_id: manifest_id.to_string(),
                }
            }
            Err(error) => {
                tracing::warn!(job = %id, "publishing failed: {error}");
                JobState::Failed { error }
            }
        };
        set_state(&node, &id, state);
        if let Ok(mut progress) = node.jobs.progress.lock() {
            progress.remove(&id);
        }
    });
}

/// Restarts jobs that were queued or running when the node stopped.
pub fn resume_jobs(node: &Arc<Node>) -> usize {
    let Ok(jobs) = node.db.jobs() else { return 0 };
    let mut resumed = 0;
    for (id, job) in jobs {
        if matches!(job.state, JobState::Queued | JobState::Running) {
            tracing::info!(job = %id, "resuming a publishing job interrupted by a restart");
            spawn_job(node.clone(), id);
            resumed += 1;
        }
    }
    resumed
}

fn set_state(node: &Node, id: &str, state: JobState) {
    match node.db.job(id) {
        Ok(Some(mut job)) => {
            job.state = state;
            if let Err(e) = node.db.put_job(id, &job) {
                tracing::warn!(job = %id, "cannot record job state: {e}");
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(job = %id, "cannot read job: {e}"),
    }
}

async fn execute(node: &Arc<Node>, id: &str) -> Result<ContentHash, String> {
    let job = node
        .db
        .job(id)
        .map_err(|e| e.to_string())?
        .ok_or("the job vanished from the database")?;
    set_state(node, id, JobState::Running);
    let upload = node
        .db
        .upload(&job.upload_id)
        .map_err(|e| e.to_string())?
        .ok_or("the uploaded file is gone; upload it again")?;
    let path = upload_path(node, &job.upload_id);
    let received = tokio::fs::metadata(&path)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    if received != upload.length {
        return Err(format!(
            "the uploaded file has {received} of {} bytes; upload it again",
            upload.length
        ));
    }
    let (info, source_hash) = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            let source_hash =
                hash_file(&path).map_err(|e| format!("cannot read the upload: {e}"))?;
            let info = streamgate_media::probe(&path).map_err(|e| e.to_string())?;
            Ok::<_, String>((info, source_hash))
        })
        .await
        .map_err(|e| e.to_string())??
    };
    if let Ok(Some(mut entry)) = node.db.job(id) {
        entry.source_hash = Some(source_hash.to_string());
        let _ = node.db.put_job(id, &entry);
    }
    let config = transcode_config(
        node,
        &job.ladder,
        info.video.as_ref().map(|v| v.codec.as_str()),
    )?;
    let gating = match &job.gate {
        Some(gate) => {
            Some(prepare_gating(node, gate, job.registrant.as_deref(), &job.key_servers).await?)
        }
        None => None,
    };
    let content_key = gating.as_ref().map(|g| g.key);
    if let Ok(mut progress) = node.jobs.progress.lock() {
        progress.insert(
            id.to_string(),
            JobProgress {
                duration_secs: info.duration_secs,
                tracks: Vec::new(),
            },
        );
    }

    let handle = tokio::runtime::Handle::current();
    let worker_node = node.clone();
    let job_id = id.to_string();
    let title = job.title.clone();
    let (manifest, blobs) = tokio::task::spawn_blocking(move || {
        let progress_node = worker_node.clone();
        let progress_job = job_id.clone();
        let progress: streamgate_media::transcode::ProgressFn = Arc::new(move |track, seconds| {
            if let Ok(mut all) = progress_node.jobs.progress.lock()
                && let Some(p) = all.get_mut(&progress_job)
            {
                while p.tracks.len() <= track {
                    p.tracks.push(TrackProgress {
                        id: String::new(),
                        seconds: 0.0,
                    });
                }
                p.tracks[track].seconds = seconds;
            }
        });
        let cancel = AtomicBool::new(false);
        let mut builder = ManifestBuilder::new();
        let mut blobs: Vec<(ContentHash, BlobEntry)> = Vec::new();
        let result = transcode_file(&path, &config, progress, &cancel, |mut output| {
            // Gated: media segments are encrypted before they are hashed, so the swarm moves
            // and verifies ciphertext like any other blob. Init segments stay clear.
            if let (Some(key), Output::Segment { index, bytes, .. }) = (&content_key, &mut output) {
                *bytes = crate::access::keys::encrypt_segment(key, *index, bytes.as_slice());
            }
            let Some(hash) = builder.record(&output)? else {
                return Ok(());
            };
            let bytes = match output {
                Output::Init { bytes, .. } | Output::Segment { bytes, .. } => bytes,
                Output::Done(_) => return Ok(()),
            };
            let size = bytes.len() as u64;
            handle
                .block_on(store_segment(&worker_node, hash, bytes))
                .map_err(streamgate_media::MediaError::Package)?;
            blobs.push((
                hash,
                BlobEntry {
                    size,
                    origin: Origin::Published,
                    stored_at: unix_now(),
                },
            ));
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        if let Ok(mut all) = worker_node.jobs.progress.lock()
            && let Some(p) = all.get_mut(&job_id)
        {
            for (i, plan) in result.tracks.iter().enumerate() {
                if let Some(t) = p.tracks.get_mut(i) {
                    t.id = plan.id.clone();
                }
            }
        }
        let manifest = builder
            .finish(
                &result.tracks,
                &title,
                unix_now(),
                worker_node.identity.public_key(),
            )
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((manifest, blobs))
    })
    .await
    .map_err(|e| e.to_string())??;

    let mut manifest = manifest;
    if let Some(gating) = gating {
        manifest.access = Some(gating.policy);
        manifest.encryption = Some(gating.encryption);
    }
    let signed = manifest.sign(&node.identity.signing_key());
    signed
        .verify()
        .map_err(|e| format!("the new manifest does not verify: {e}"))?;
    let manifest_id = node
        .register_published(&signed, blobs)
        .await
        .map_err(|e| e.to_string())?;
    // The segments hold the content now; the upload is no longer needed.
    let _ = tokio::fs::remove_file(upload_path(node, &job.upload_id)).await;
    let _ = node.db.remove_upload(&job.upload_id);
    Ok(manifest_id)
}

/// A gated video's policy, content key, and the key sealed to every key server.
struct Gating {
    policy: AccessPolicy,
    key: crate::access::keys::ContentKey,
    encryption: Encryption,
}

async fn prepare_gating(
    node: &Node,
    gate: &str,
    registrant: Option<&str>,
    key_servers: &[String],
) -> Result<Gating, String> {
    let mut policy: AccessPolicy = gate
        .parse()
        .map_err(|e: streamgate_protocol::access::GateError| e.to_string())?;
    policy.registrant = match registrant {
        Some(r) => Some(
            r.parse()
                .map_err(|_| format!("registrant {r:?} is not a 0x address"))?,
        ),
        None => None,
    };
    if !node.access.chain_ids().contains(&policy.chain_id) {
        tracing::warn!(
            "chain {} is not configured here; this node cannot release keys for this video until it is",
            policy.chain_id
        );
    }
    let key = crate::access::keys::new_content_key();
    let mut key_wraps = vec![crate::access::keys::seal(
        &key,
        &node.identity.public_key(),
        Some(node.access.origin.clone()),
    )?];
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    for url in key_servers {
        let url = url.trim_end_matches('/');
        let status: serde_json::Value = client
            .get(format!("{url}/api/v1/status"))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot reach key server {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("key server {url} answered oddly: {e}"))?;
        let mut node_key = [0u8; 32];
        hex::decode_to_slice(
            status["node_id"].as_str().unwrap_or_default(),
            &mut node_key,
        )
        .map_err(|_| format!("key server {url} did not say its node id"))?;
        key_wraps.push(crate::access::keys::seal(
            &key,
            &node_key,
            Some(url.to_string()),
        )?);
    }
    Ok(Gating {
        policy,
        key,
        encryption: Encryption {
            method: EncryptionMethod::Aes128,
            key_wraps,
        },
    })
}

fn hash_file(path: &std::path::Path) -> std::io::Result<ContentHash> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(ContentHash::from_bytes(*hasher.finalize().as_bytes()))
}

/// Stores one segment as a tagged blob; the hash the store computes must match.
async fn store_segment(node: &Node, hash: ContentHash, bytes: Vec<u8>) -> Result<(), String> {
    let stored = node
        .data_plane
        .store()
        .blobs()
        .add_bytes(bytes)
        .with_named_tag(format!("sg/blob/{hash}"))
        .await
        .map_err(|e| format!("cannot store a segment: {e}"))?;
    if stored.hash.as_bytes() != hash.as_bytes() {
        return Err("the blob store hashed a segment differently".into());
    }
    Ok(())
}

fn transcode_config(
    node: &Node,
    ladder: &str,
    source_codec: Option<&str>,
) -> Result<TranscodeConfig, String> {
    let mut config = TranscodeConfig {
        ladder: parse_ladder(ladder).map_err(|e| e.to_string())?,
        x264_preset: node.config.transcode.preset.clone(),
        ..TranscodeConfig::default()
    };
    if node.config.transcode.hardware == HardwareUse::Auto
        && let Some(caps) = &node.capabilities
    {
        if caps.encoder_available("h264_nvenc") {
            config.video_encoder = "h264_nvenc".into();
        }
        if source_codec == Some("h264") && caps.decoder_available("h264_cuvid") {
            config.video_decoder = Some("h264_cuvid".into());
        }
    }
    Ok(config)
}
