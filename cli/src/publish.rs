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
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::send;

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
    if let Some(url) = state.uploads.get(&key).cloned()
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
    let request = serde_json::json!({
        "upload_id": upload_id,
        "title": args.title.clone().or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned())),
        "ladder": args.ladder,
        "gate": args.gate,
        "key_servers": args.key_servers,
        "registrant": args.registrant,
    });
    let job: Value = send(
        client.post(format!("{base}/api/v1/publish")).json(&request),
        base,
    )
    .await?
    .json()
    .await?;
    let job_id = job["job_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the node did not return a job id"))?;
    let (manifest_id, source_hash) = follow_job(client, base, job_id, args.json).await?;
    let hls = format!("{base}/hls/{manifest_id}/master.m3u8");
    let dash = format!("{base}/dash/{manifest_id}/manifest.mpd");
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "manifest_id": manifest_id,
                "hls_url": hls,
                "dash_url": dash,
                "upload_length": length,
                "resumed_from": start,
                "bytes_sent": sent,
                "source_hash": source_hash,
            })
        );
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
    Ok(if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    })
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

fn message_of(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

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
    loop {
        let job: Value = send(client.get(format!("{base}/api/v1/jobs/{job_id}")), base)
            .await?
            .json()
            .await?;
        match job["state"].as_str() {
            Some("done") => {
                for bar in &track_bars {
                    bar.finish();
                }
                let manifest = job["manifest_id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("the job finished without a manifest id"))?;
                let source = job["source_hash"].as_str().unwrap_or_default();
                return Ok((manifest.to_string(), source.to_string()));
            }
            Some("failed") => {
                for bar in &track_bars {
                    bar.abandon();
                }
                bail!(
                    "publishing failed: {}",
                    job["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {}
        }
        let duration = job["progress"]["duration_secs"].as_f64().unwrap_or(0.0);
        if let Some(tracks) = job["progress"]["tracks"].as_array() {
            for (i, track) in tracks.iter().enumerate() {
                if track_bars.len() <= i {
                    let bar = bars.add(ProgressBar::new((duration * 1000.0).max(1.0) as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(format!("track {i}"));
                    track_bars.push(bar);
                }
                let seconds = track["seconds"].as_f64().unwrap_or(0.0);
                track_bars[i].set_position((seconds * 1000.0) as u64);
                track_bars[i].set_message(format!("{seconds:.1} / {duration:.1} s"));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `streamgate ls`.
pub async fn list(client: &reqwest::Client, base: &str, json: bool) -> anyhow::Result<()> {
    let list: Value = send(client.get(format!("{base}/api/v1/manifests")), base)
        .await?
        .json()
        .await?;
    if json {
        println!("{list}");
        return Ok(());
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        println!("no manifests on this node");
    }
    for m in items {
        let seconds = m["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0;
        let held = if m["complete"].as_bool() == Some(true) {
            "complete"
        } else {
            "partial"
        };
        println!(
            "{}  {:>8.1} s  {:<9} {:<8} {}",
            m["id"].as_str().unwrap_or("?"),
            seconds,
            m["origin"].as_str().unwrap_or("?"),
            held,
            m["title"].as_str().unwrap_or("")
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
    let found: Value = send(client.get(format!("{base}/api/v1/manifests/{id}")), base)
        .await?
        .json()
        .await?;
    if json {
        println!("{found}");
        return Ok(());
    }
    let m = &found["manifest"];
    println!("manifest: {}", found["id"].as_str().unwrap_or(id));
    println!("title:    {}", m["title"].as_str().unwrap_or(""));
    println!(
        "duration: {:.1} s",
        m["duration_ms"].as_u64().unwrap_or(0) as f64 / 1000.0
    );
    println!("creator:  {}", m["creator"].as_str().unwrap_or("?"));
    if let Some(access) = m["access"].as_object() {
        let servers = m["encryption"]["key_wraps"].as_array().map_or(0, Vec::len);
        println!(
            "gate:     {} {} on chain {}{} (segments encrypted; {servers} key server(s))",
            access["standard"].as_str().unwrap_or("?"),
            access["contract"].as_str().unwrap_or("?"),
            access["chain_id"],
            access["token_id"]
                .as_str()
                .map(|t| format!(", token {t}"))
                .unwrap_or_default(),
        );
    }
    for t in m["tracks"].as_array().cloned().unwrap_or_default() {
        let size = match (t["video"]["width"].as_u64(), t["video"]["height"].as_u64()) {
            (Some(w), Some(h)) => format!("{w}x{h}"),
            _ => format!("{} Hz", t["audio"]["sample_rate"].as_u64().unwrap_or(0)),
        };
        println!(
            "  {:<10} {:<12} {:<10} {:>6} kb/s  {} segments",
            t["id"].as_str().unwrap_or("?"),
            t["codec"].as_str().unwrap_or("?"),
            size,
            t["bandwidth"].as_u64().unwrap_or(0) / 1000,
            t["segments"].as_array().map_or(0, Vec::len)
        );
    }
    println!("HLS:      {base}/hls/{id}/master.m3u8");
    println!("DASH:     {base}/dash/{id}/manifest.mpd");
    Ok(())
}
