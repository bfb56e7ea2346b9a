//! `make bench-transcode`: the default ladder (1080p, 720p, 480p, 360p + AAC + Opus, 2 s
//! CMAF segments) of a 60 s 1080p30 clip through StreamGate's in-process pipeline, and in the
//! same run the equivalent single `ffmpeg` command line (same rungs, bitrates, x264 preset
//! and options, segmenting to fMP4 HLS on disk). Prints both wall times and the ratio.
//!
//! Both write every segment to disk, so both pay for the bytes they produce.
//!
//! Then memory: a `streamgate-node` publishes a 60 s and a 300 s 1080p source through the
//! CLI (upload, transcode, store), and the same ffmpeg command runs on both sources; the
//! anonymous memory (`RssAnon`) of each process is sampled every 50 ms. Printed: the
//! node's peak per length and after each job, against its idle figure, and ffmpeg's peak
//! per length.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use streamgate_media::{TranscodeConfig, ladder::DEFAULT_LADDER, transcode_file};
use streamgate_tests::{
    init_node_dir,
    media::{make_clip, served_file},
    publish, start_node, test_config,
};

const SECONDS: u32 = 60;
const LONG_SECONDS: u32 = 300;
const RUNS: usize = 2;

fn main() -> anyhow::Result<()> {
    // The in-process pipeline runs on the allocator settings the node runs with.
    streamgate_node::memory::tune_allocator();
    let root = tempfile::tempdir()?;
    let source = root.path().join("source.mp4");
    make_source(&source, SECONDS)?;
    let (o, t) = speed(root.path(), &source)?;
    let long = root.path().join("long.mp4");
    make_source(&long, LONG_SECONDS)?;
    let memory = memory(root.path(), &source, &long)?;

    println!();
    println!("{SECONDS} s 1080p30, 4-rung ladder + AAC + Opus (best of {RUNS}):");
    println!(
        "  streamgate pipeline {o:7.2} s   ffmpeg command {t:7.2} s   ratio {:.2} (below 1 is faster)",
        o / t
    );
    memory.print();
    Ok(())
}

fn make_source(path: &Path, seconds: u32) -> anyhow::Result<()> {
    print!("bench-transcode: ");
    streamgate_tests::bench::make_1080p_source(path, seconds)
}

/// Wall time of the in-process pipeline and of the ffmpeg command, best of [`RUNS`].
fn speed(root: &Path, source: &Path) -> anyhow::Result<(f64, f64)> {
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    // Interleaved, so both see the same machine state.
    for run in 0..RUNS {
        let dir = root.join(format!("ours{run}"));
        let started = Instant::now();
        streamgate(source, &dir)?;
        ours.push(started.elapsed().as_secs_f64());
        let dir = root.join(format!("ffmpeg{run}"));
        let started = Instant::now();
        ffmpeg_ladder(source, &dir)?.wait_ok()?;
        theirs.push(started.elapsed().as_secs_f64());
        println!(
            "run {run}: streamgate {:.2} s, ffmpeg {:.2} s",
            ours[run], theirs[run]
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    Ok((best(&ours), best(&theirs)))
}

/// Peak anonymous memory of a process, sampled every 50 ms in the background.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `RssAnon` of process `pid` in KiB, if it is alive.
fn rss_anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

impl Sampler {
    fn start(pid: u32) -> Self {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_anon_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    /// The peak since start, in MB.
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

/// Anonymous memory of the node now, in MB, once it has settled (two equal readings).
fn settled_mb(pid: u32) -> f64 {
    let mut last = 0;
    for _ in 0..50 {
        let now = rss_anon_kib(pid).unwrap_or(0);
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(200));
    }
    last as f64 / 1024.0
}

struct Memory {
    cold_idle: f64,
    warm_idle: f64,
    /// (seconds, node peak, node after, ffmpeg peak), MB.
    rows: Vec<(u32, f64, f64, f64)>,
}

impl Memory {
    fn print(&self) {
        println!();
        println!("memory (RssAnon, MB) publishing 1080p30 with the default ladder:");
        println!(
            "  node idle: {:.1} at start, {:.1} after a first 2 s publish (FFmpeg and store caches warm)",
            self.cold_idle, self.warm_idle
        );
        for (secs, peak, after, ffmpeg) in &self.rows {
            println!(
                "  {secs:>3} s source: node peak {peak:7.1}, after the job {after:6.1} ({:+.0}% of warm idle); ffmpeg command peak {ffmpeg:7.1}; node/ffmpeg {:.2}",
                (after / self.warm_idle - 1.0) * 100.0,
                peak / ffmpeg
            );
        }
        if let [(_, short, _, _), (_, long, _, _)] = self.rows.as_slice() {
            println!(
                "  node peak {LONG_SECONDS} s / {SECONDS} s: {:.3} (target: within 10%)",
                long / short
            );
        }
    }
}

/// The node's and ffmpeg's memory while publishing `short` and `long`.
fn memory(root: &Path, short: &Path, long: &Path) -> anyhow::Result<Memory> {
    let dir = root.join("node");
    init_node_dir(&dir, &test_config())?;
    let node = start_node(&dir, &[])?;
    let pid = node.info.pid;
    let api = node.info.api_url.clone();
    let state = root.join("cli-state");
    let cold_idle = settled_mb(pid);
    let warmup = root.join("warmup.mp4");
    make_clip(&warmup, 2, "1920x1080", 30, true)?;
    publish(&api, &warmup, &[], &state).map_err(|e| anyhow::anyhow!("warm-up publish: {e}"))?;
    let warm_idle = settled_mb(pid);
    let mut rows = Vec::new();
    for (secs, source) in [(SECONDS, short), (LONG_SECONDS, long)] {
        println!("memory: publishing the {secs} s source on a node");
        let sampler = Sampler::start(pid);
        publish(&api, source, &[], &state).map_err(|e| anyhow::anyhow!("publish: {e}"))?;
        let peak = sampler.finish();
        let after = settled_mb(pid);
        println!("memory: the same ffmpeg command on the {secs} s source");
        let out = root.join(format!("ffmpeg-mem-{secs}"));
        let mut child = ffmpeg_ladder(source, &out)?;
        let sampler = Sampler::start(child.id());
        child.wait_ok()?;
        rows.push((secs, peak, after, sampler.finish()));
    }
    Ok(Memory {
        cold_idle,
        warm_idle,
        rows,
    })
}

/// A running ffmpeg command.
struct Ffmpeg(std::process::Child);

impl Ffmpeg {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn wait_ok(&mut self) -> anyhow::Result<()> {
        if !self.0.wait()?.success() {
            bail!("the ffmpeg ladder failed");
        }
        Ok(())
    }
}

fn streamgate(source: &Path, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cancel = AtomicBool::new(false);
    let result = transcode_file(
        source,
        &TranscodeConfig::default(),
        Arc::new(|_, _| {}),
        &cancel,
        |output| {
            let Some((track, name, bytes)) = served_file(output) else {
                return Ok(());
            };
            let track_dir = dir.join(track.to_string());
            std::fs::create_dir_all(&track_dir)
                .map_err(|e| streamgate_media::MediaError::Package(e.to_string()))?;
            std::fs::write(track_dir.join(&name), bytes)
                .map_err(|e| streamgate_media::MediaError::Package(e.to_string()))?;
            Ok(())
        },
    )?;
    if result.tracks.len() != DEFAULT_LADDER.len() + 2 {
        bail!(
            "expected 4 rungs and 2 audio tracks, got {}",
            result.tracks.len()
        );
    }
    Ok(())
}

/// The same ladder as one ffmpeg command: decode once, split to four scalers and x264
/// encoders with forced 2 s closed GOPs and no B-frames, audio to AAC and Opus, each
/// rendition to its own fMP4 HLS playlist with 2 s segments.
fn ffmpeg_ladder(source: &Path, dir: &Path) -> anyhow::Result<Ffmpeg> {
    std::fs::create_dir_all(dir)?;
    let mut filter = String::from("[0:v]split=4");
    for i in 0..4 {
        filter.push_str(&format!("[v{i}]"));
    }
    filter.push(';');
    let sizes = [(1920, 1080), (1280, 720), (854, 480), (640, 360)];
    for (i, (w, h)) in sizes.iter().enumerate() {
        filter.push_str(&format!("[v{i}]scale={w}:{h}:flags=bicubic[o{i}];"));
    }
    filter.push_str("[0:a]asplit=2[a0][a1]");
    let mut args: Vec<String> = vec![
        "-y".into(),
        "-v".into(),
        "error".into(),
        "-i".into(),
        source.display().to_string(),
    ];
    args.extend(["-filter_complex".into(), filter]);
    for (i, spec) in DEFAULT_LADDER.iter().enumerate() {
        let out = dir.join(format!("v{i}"));
        std::fs::create_dir_all(&out)?;
        let b = spec.video_bitrate;
        args.extend(
            [
                "-map",
                &format!("[o{i}]"),
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-bf",
                "0",
                "-g",
                "60",
                "-keyint_min",
                "60",
                "-sc_threshold",
                "0",
                "-flags",
                "+cgop",
                "-b:v",
                &b.to_string(),
                "-maxrate",
                &(b * 11 / 10).to_string(),
                "-bufsize",
                &(b * 2).to_string(),
            ]
            .map(String::from),
        );
        hls_args(&mut args, &out);
    }
    for (i, (codec, rate)) in [("aac", "128k"), ("libopus", "96k")].iter().enumerate() {
        let out = dir.join(format!("a{i}"));
        std::fs::create_dir_all(&out)?;
        args.extend(
            [
                "-map",
                &format!("[a{i}]"),
                "-c:a",
                codec,
                "-b:a",
                rate,
                "-ac",
                "2",
                "-ar",
                "48000",
            ]
            .map(String::from),
        );
        hls_args(&mut args, &out);
    }
    Command::new("ffmpeg")
        .args(&args)
        .spawn()
        .map(Ffmpeg)
        .context("run ffmpeg")
}

fn hls_args(args: &mut Vec<String>, out: &Path) {
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            "2",
            "-hls_segment_type",
            "fmp4",
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
        ]
        .map(String::from),
    );
    args.push("-hls_segment_filename".into());
    args.push(out.join("seg_%d.m4s").display().to_string());
    args.push(out.join("index.m3u8").display().to_string());
}
