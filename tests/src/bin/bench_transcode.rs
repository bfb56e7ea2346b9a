//! `make bench-transcode`: the default ladder (1080p, 720p, 480p, 360p + AAC + Opus, 2 s
//! CMAF segments) of a 60 s 1080p30 clip through StreamGate's in-process pipeline, and in the
//! same run the equivalent single `ffmpeg` command line (same rungs, bitrates, x264 preset
//! and options, segmenting to fMP4 HLS on disk). Prints both wall times and the ratio.
//!
//! Both write every segment to disk, so both pay for the bytes they produce.

use std::{
    path::Path,
    process::Command,
    sync::{Arc, atomic::AtomicBool},
    time::Instant,
};

use anyhow::{Context, bail};
use streamgate_media::{TranscodeConfig, ladder::DEFAULT_LADDER, transcode_file};
use streamgate_tests::media::{ffmpeg, served_file};

const SECONDS: u32 = 60;
const RUNS: usize = 2;

fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let source = root.path().join("source.mp4");
    println!(
        "bench-transcode: making a {SECONDS} s 1920x1080 30 fps source with a tone (not timed)"
    );
    let video = format!("testsrc2=size=1920x1080:rate=30:duration={SECONDS}");
    let tone = format!("sine=frequency=440:sample_rate=48000:duration={SECONDS}");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &video,
        "-f",
        "lavfi",
        "-i",
        &tone,
        "-c:v",
        "libx264",
        "-preset",
        "fast",
        "-crf",
        "18",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        source.to_str().context("utf-8")?,
    ])?;

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    // Interleaved, so both see the same machine state.
    for run in 0..RUNS {
        let dir = root.path().join(format!("ours{run}"));
        let started = Instant::now();
        streamgate(&source, &dir)?;
        ours.push(started.elapsed().as_secs_f64());
        let dir = root.path().join(format!("ffmpeg{run}"));
        let started = Instant::now();
        ffmpeg_ladder(&source, &dir)?;
        theirs.push(started.elapsed().as_secs_f64());
        println!(
            "run {run}: streamgate {:.2} s, ffmpeg {:.2} s",
            ours[run], theirs[run]
        );
    }
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let (o, t) = (best(&ours), best(&theirs));
    println!();
    println!("{SECONDS} s 1080p30, 4-rung ladder + AAC + Opus (best of {RUNS}):");
    println!(
        "  streamgate pipeline {o:7.2} s   ffmpeg command {t:7.2} s   ratio {:.2} (below 1 is faster)",
        o / t
    );
    Ok(())
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
fn ffmpeg_ladder(source: &Path, dir: &Path) -> anyhow::Result<()> {
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
    let status = Command::new("ffmpeg")
        .args(&args)
        .status()
        .context("run ffmpeg")?;
    if !status.success() {
        bail!("the ffmpeg ladder failed");
    }
    Ok(())
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
