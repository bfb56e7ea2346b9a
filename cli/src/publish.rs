//! `streamgate publish`: a tus 1.0 upload that resumes where it stopped, then a publishing
//! job on the node, with progress bars for both.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use streamgate_api::{
    cli::Published,
    v1::{JobState, JobView, ManifestSummary, ManifestView, PublishAccepted, PublishRequest},
};
use streamgate_protocol::access::TokenStandard;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{message_of, parse, send};

const TUS: &str = "1.0.0";
/// Bytes per PATCH request: a kill loses at most the request in flight, and the node
/// keeps whatever part of it arrived.
const CHUNK: u64 = 8 * 1024 * 1024;

#[derive(Debug)]
pub struct PublishArgs<'a> {
    pub file: &'a Path,
    pub title: Option<String>,
    pub ladder: Option<String>,
    pub json: bool,
    pub upload_rate: Option<u64>,
    pub gate: Option<String>,
    pub key_servers: Vec<String>,
    pub registrant: Option<String>,
}

/// Uploads this CLI started and has not finished, by file: where to resume them.
#[derive(Debug, Default, Serialize, Deserialize)]
struct UploadState {
    uploads: BTreeMap<String, String>,
}

fn state_path() -> anyhow::Result<PathBuf> {
    let dir = if let Ok(dir) = std::env::var("STREAMGATE_STATE_DIR") {
        PathBuf::from(dir)
    } else if let Ok(dir) = std::env::var("XDG_STATE_HOME") {
        PathBuf::from(dir).join("streamgate")
    } else {
        let home = std::env::var("HOME").context("HOME is not set; set STREAMGATE_STATE_DIR")?;
        PathBuf::from(home).join(".local/state/streamgate")
    };
    Ok(dir.join("uploads.json"))
}

impl UploadState {
    fn load() -> Self {
        state_path()
            .ok()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self) -> anyhow::Result<()> {
        let path = state_path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temp, &path)?;
        Ok(())
    }
}

/// Identifies "the same upload": same node, same file, same size and modification time.
fn upload_key(
    base: &str,
    file: &Path,
    size: u64,
    modified: Option<std::time::SystemTime>,
) -> String {
    let canonical = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
    let mtime = modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let text = format!("{base}\n{}\n{size}\n{mtime}", canonical.display());
    blake3::hash(text.as_bytes()).to_hex()[..32].to_string()
}

pub async fn publish(
    client: &reqwest::Client,
    base: &str,
    args: PublishArgs<'_>,
) -> anyhow::Result<()> {
    let file = args.file;
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", file.display());
    }
    let length = meta.len();
    if length == 0 {
        bail!("{} is empty", file.display());
    }
    let key = upload_key(base, file, length, meta.modified().ok());
    let mut state = UploadState::load();

    // Resume if this CLI started the same upload before and the node still has it.
    let mut resumed = None;
    if let Some(url) = state.uploads.get(&key).and_then(|url| on_node(base, url))
        && let Some(offset) = head_offset(client, &url).await?
    {
        resumed = Some((url, offset));
    }
    let (url, start) = match resumed {
        Some(found) => found,
        None => {
            let url = create_upload(client, base, file, length).await?;
            state.uploads.insert(key.clone(), url.clone());
            state.save()?;
            (url, 0)
        }
    };

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(length)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "upload    {bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(start);
    let mut handle = tokio::fs::File::open(file).await?;
    let mut offset = start;
    let mut sent = 0u64;
    while offset < length {
        let len = CHUNK.min(length - offset);
        handle.seek(std::io::SeekFrom::Start(offset)).await?;
        let mut chunk = vec![0u8; len as usize];
        handle.read_exact(&mut chunk).await?;
        let body = paced_body(chunk, args.upload_rate);
        let response = client
            .patch(&url)
            .header("Tus-Resumable", TUS)
            .header("Upload-Offset", offset)
            .header("Content-Type", "application/offset+octet-stream")
            .header("Content-Length", len)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow!("upload interrupted at {offset} of {length} bytes ({e}); run the same command again to resume"))?;
        match response.status().as_u16() {
            204 => {
                offset = response
                    .headers()
                    .get("upload-offset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| anyhow!("the node's answer has no Upload-Offset"))?;
                sent += len;
            }
            409 => {
                // Another writer, or bytes the node kept from an interrupted request: resync.
                offset = head_offset(client, &url)
                    .await?
                    .ok_or_else(|| anyhow!("the upload vanished from the node"))?;
            }
            code => {
                let text = response.text().await.unwrap_or_default();
                bail!(
                    "the node refused the upload (HTTP {code}): {}",
                    message_of(&text)
                );
            }
        }
        bar.set_position(offset);
    }
    bar.finish();
    state.uploads.remove(&key);
    state.save()?;

    let upload_id = url.rsplit('/').next().unwrap_or_default().to_string();
    let request = PublishRequest {
        upload_id,
        title: args
            .title
            .clone()
            .or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned())),
        ladder: args.ladder,
        gate: args.gate,
        key_servers: args.key_servers,
        registrant: args.registrant,
    };
    let job: PublishAccepted = parse(
        send(
            client.post(format!("{base}/api/v1/publish")).json(&request),
            base,
        )
        .await?,
    )
    .await?;
    let (manifest_id, source_hash) = follow_job(client, base, &job.job_id, args.json).await?;
    let hls = format!("{base}/hls/{manifest_id}/master.m3u8");
    let dash = format!("{base}/dash/{manifest_id}/manifest.mpd");
    if args.json {
        let published = Published {
            manifest_id,
            hls_url: hls,
            dash_url: dash,
            upload_length: length,
            resumed_from: start,
            bytes_sent: sent,
            source_hash,
        };
        println!("{}", serde_json::to_string(&published)?);
    } else {
        if start > 0 {
            println!("resumed the upload at {start} of {length} bytes");
        }
        println!("manifest: {manifest_id}");
        println!("HLS:      {hls}");
        println!("DASH:     {dash}");
    }
    Ok(())
}

async fn create_upload(
    client: &reqwest::Client,
    base: &str,
    file: &Path,
    length: u64,
) -> anyhow::Result<String> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let metadata = format!(
        "filename {}",
        base64::engine::general_purpose::STANDARD.encode(name)
    );
    let response = send(
        client
            .post(format!("{base}/api/v1/uploads"))
            .header("Tus-Resumable", TUS)
            .header("Upload-Length", length)
            .header("Upload-Metadata", metadata),
        base,
    )
    .await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow!("the node did not say where the upload lives"))?;
    on_node(base, location)
        .ok_or_else(|| anyhow!("the node put the upload at {location:?}, not on {base}: refused"))
}

/// `location` as an absolute URL, if it is on the node `base` (the operator token is sent
/// with every upload request, so nowhere else).
fn on_node(base: &str, location: &str) -> Option<String> {
    if location.starts_with('/') && !location.starts_with("//") {
        return Some(format!("{base}{location}"));
    }
    location
        .strip_prefix(base)
        .filter(|rest| rest.starts_with('/'))
        .map(|_| location.to_string())
}

/// The node's offset for an upload, or None if it no longer knows it.
async fn head_offset(client: &reqwest::Client, url: &str) -> anyhow::Result<Option<u64>> {
    let response = client
        .head(url)
        .header("Tus-Resumable", TUS)
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the node to resume the upload: {e}"))?;
    if !response.status().is_success() {
        return Ok(None);
    }
    Ok(response
        .headers()
        .get("upload-offset")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok()))
}

/// The body of one PATCH, sent no faster than `rate` bytes per second when given.
fn paced_body(chunk: Vec<u8>, rate: Option<u64>) -> reqwest::Body {
    let Some(rate) = rate.filter(|r| *r > 0) else {
        return reqwest::Body::from(chunk);
    };
    const PIECE: usize = 64 * 1024;
    let pause = Duration::from_secs_f64(PIECE as f64 / rate as f64);
    let pieces: Vec<Vec<u8>> = chunk.chunks(PIECE).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::iter(pieces).then(move |piece| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, std::io::Error>(piece)
    });
    reqwest::Body::wrap_stream(stream)
}

use futures::StreamExt;

/// Polls the job, drawing a bar per track, until it is done; returns the manifest id and
/// the BLAKE3 of the file as the node received it.
async fn follow_job(
    client: &reqwest::Client,
    base: &str,
    job_id: &str,
    json: bool,
) -> anyhow::Result<(String, String)> {
    let bars = MultiProgress::new();
    if json {
        bars.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let style = ProgressStyle::with_template("{prefix:<9} {bar:40} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut track_bars: Vec<ProgressBar> = Vec::new();
    let mut chunk_bars: Vec<ProgressBar> = Vec::new();
    loop {
        let job: JobView =
            parse(send(client.get(format!("{base}/api/v1/jobs/{job_id}")), base).await?).await?;
        match job.state {
            JobState::Done { manifest_id } => {
                for bar in track_bars.iter().chain(&chunk_bars) {
                    bar.finish();
                }
                return Ok((manifest_id, job.source_hash.unwrap_or_default()));
            }
            JobState::Failed { error } => {
                for bar in &track_bars {
                    bar.abandon();
                }
                bail!("publishing failed: {error}");
            }
            JobState::Cancelled => {
                for bar in &track_bars {
                    bar.abandon();
                }
                bail!("publishing job {job_id} was cancelled");
            }
            JobState::Queued | JobState::Running => {}
        }
        if let Some(progress) = &job.progress {
            let duration = progress.duration_secs;
            for (i, track) in progress.tracks.iter().enumerate() {
                if track_bars.len() <= i {
                    let bar = bars.add(ProgressBar::new((duration * 1000.0).max(1.0) as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("track {i}"));
                    track_bars.push(bar);
                }
                track_bars[i].set_position((track.seconds * 1000.0) as u64);
                track_bars[i].set_message(format!("{:.1} / {duration:.1} s", track.seconds));
            }
            // Video made by workers: a line per chunk, with who does it.
            for (i, chunk) in progress.chunks.iter().enumerate() {
                if chunk_bars.len() <= i {
                    let bar = bars.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("{prefix:<9} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(format!("chunk {}", chunk.index));
                    chunk_bars.push(bar);
                }
                let who = chunk.worker.as_deref().unwrap_or("-");
                chunk_bars[i].set_message(format!(
                    "segments {}-{}  {}  {who}",
                    chunk.first_segment,
                    chunk.first_segment + u64::from(chunk.segments.max(1)) - 1,
                    chunk.state
                ));
                chunk_bars[i].tick();
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `streamgate ls`.
pub async fn list(client: &reqwest::Client, base: &str, json: bool) -> anyhow::Result<()> {
    let list: Vec<ManifestSummary> =
        parse(send(client.get(format!("{base}/api/v1/manifests")), base).await?).await?;
    if json {
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    if list.is_empty() {
        println!("no manifests on this node");
    }
    for m in list {
        let held = if m.complete { "complete" } else { "partial" };
        let origin = serde_json::to_value(m.origin)?;
        println!(
            "{}  {:>8.1} s  {:<9} {:<8} {}",
            m.id,
            m.duration_ms as f64 / 1000.0,
            origin.as_str().unwrap_or("?"),
            held,
            m.title
        );
    }
    Ok(())
}

/// `streamgate info ID`.
pub async fn info(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    json: bool,
) -> anyhow::Result<()> {
    let found: ManifestView =
        parse(send(client.get(format!("{base}/api/v1/manifests/{id}")), base).await?).await?;
    if json {
        println!("{}", serde_json::to_string(&found)?);
        return Ok(());
    }
    let m = &found.manifest;
    println!("manifest: {}", found.id);
    println!("title:    {}", m.title);
    println!("duration: {:.1} s", m.duration_ms as f64 / 1000.0);
    println!("creator:  {}", hex::encode(m.creator));
    if let Some(access) = &m.access {
        let servers = m.encryption.as_ref().map_or(0, |e| e.key_wraps.len());
        let standard = match access.standard {
            TokenStandard::Erc721 => "erc721",
            TokenStandard::Erc1155 => "erc1155",
        };
        println!(
            "gate:     {standard} {} on chain {}{} (segments encrypted; {servers} key server(s))",
            access.contract,
            access.chain_id,
            access
                .token_id
                .map(|t| format!(", token {t}"))
                .unwrap_or_default(),
        );
    }
    for t in &m.tracks {
        let size = match (&t.video, &t.audio) {
            (Some(v), _) => format!("{}x{}", v.width, v.height),
            (None, Some(a)) => format!("{} Hz", a.sample_rate),
            (None, None) => "-".into(),
        };
        println!(
            "  {:<10} {:<12} {:<10} {:>6} kb/s  {} segments",
            t.id,
            t.codec,
            size,
            t.bandwidth / 1000,
            t.segments.len()
        );
    }
    println!("HLS:      {base}/hls/{}/master.m3u8", found.id);
    println!("DASH:     {base}/dash/{}/manifest.mpd", found.id);
    Ok(())
}
