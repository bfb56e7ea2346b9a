//! Media checks with the real `ffmpeg` and `ffprobe` command-line tools (installed by
//! `scripts/setup.sh`): making test clips, decoding playlists, and inspecting frames.

use std::{path::Path, process::Command};

use anyhow::{Context, bail};

/// Runs `ffmpeg -y -v error ARGS...`.
pub fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg")
        .args(["-y", "-v", "error", "-nostdin"])
        .args(args)
        .output()
        .context("cannot run ffmpeg (run scripts/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "ffmpeg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A test clip from FFmpeg's lavfi sources: `secs` seconds of `testsrc2` at `size` and
/// `fps`, with a 440 Hz tone unless `audio` is false.
pub fn make_clip(path: &Path, secs: u32, size: &str, fps: u32, audio: bool) -> anyhow::Result<()> {
    let video = format!("testsrc2=size={size}:rate={fps}:duration={secs}");
    let tone = format!("sine=frequency=440:sample_rate=48000:duration={secs}");
    let out = path.to_str().context("utf-8 path")?;
    let mut args = vec!["-f", "lavfi", "-i", &video];
    if audio {
        args.extend(["-f", "lavfi", "-i", &tone, "-c:a", "aac"]);
    }
    args.extend([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        out,
    ]);
    ffmpeg(&args)
}

/// Decodes every stream of `input` (a file or URL) completely; returns FFmpeg's error
/// output, which is empty when decoding was clean.
pub fn decode_errors(input: &str, extra: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(extra)
        .args(["-i", input, "-map", "0", "-f", "null", "-"])
        .output()
        .context("cannot run ffmpeg")?;
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("ffmpeg could not decode {input}: {errors}");
    }
    Ok(errors)
}

/// One decoded video frame as ffprobe reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameInfo {
    pub key: bool,
    pub pict_type: String,
    pub pts_time: f64,
}

/// `ffprobe -v error EXTRA -select_streams STREAM -show_entries ENTRIES -of csv=p=0 INPUT`.
fn ffprobe_csv(input: &str, extra: &[&str], stream: &str, entries: &str) -> anyhow::Result<String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(extra)
        .args([
            "-select_streams",
            stream,
            "-show_entries",
            entries,
            "-of",
            "csv=p=0",
            input,
        ])
        .output()
        .context("cannot run ffprobe")?;
    if !out.status.success() {
        bail!(
            "ffprobe {input} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every video frame of `input`.
pub fn video_frames(input: &str, extra: &[&str]) -> anyhow::Result<Vec<FrameInfo>> {
    let csv = ffprobe_csv(input, extra, "v:0", "frame=key_frame,pict_type,pts_time")?;
    let mut frames = Vec::new();
    for line in csv.lines() {
        // key_frame,pts_time,pict_type in ffprobe's field order.
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() < 3 {
            continue;
        }
        frames.push(FrameInfo {
            key: fields[0] == "1",
            pts_time: fields[1].parse().unwrap_or(f64::NAN),
            pict_type: fields[2].to_string(),
        });
    }
    Ok(frames)
}

/// Duration of the first stream of `kind` (`v` or `a`) in `input`, by decoding it.
pub fn stream_duration(input: &str, kind: &str, extra: &[&str]) -> anyhow::Result<f64> {
    let csv = ffprobe_csv(
        input,
        extra,
        &format!("{kind}:0"),
        "packet=pts_time,duration_time",
    )?;
    let mut first = f64::INFINITY;
    let mut end: f64 = 0.0;
    for line in csv.lines() {
        let mut fields = line.split(',');
        let (Some(pts), Some(dur)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (Ok(pts), Ok(dur)) = (pts.trim().parse::<f64>(), dur.trim().parse::<f64>()) else {
            continue;
        };
        first = first.min(pts);
        end = end.max(pts + dur);
    }
    if !first.is_finite() {
        bail!("no packets in {input}");
    }
    Ok(end - first)
}

/// Whether the first frame of one segment (with its init segment) is a keyframe.
pub fn segment_starts_with_keyframe(
    init: &[u8],
    segment: &[u8],
    scratch: &Path,
) -> anyhow::Result<bool> {
    let joined = scratch.join("joined.mp4");
    let mut bytes = init.to_vec();
    bytes.extend_from_slice(segment);
    std::fs::write(&joined, bytes)?;
    let frames = video_frames(
        joined.to_str().context("utf-8")?,
        &["-read_intervals", "%+#1"],
    )?;
    Ok(frames.first().is_some_and(|f| f.key && f.pict_type == "I"))
}

/// A transcoder output as the file the gateway serves it as: its track index, its name
/// under the track (`init.mp4`, `seg_{n}.m4s`) and its bytes; `None` for the final report.
pub fn served_file(output: streamgate_media::Output) -> Option<(usize, String, Vec<u8>)> {
    use streamgate_media::{Output, playlist};
    match output {
        Output::Init { track, bytes } => Some((track, playlist::INIT_NAME.to_string(), bytes)),
        Output::Segment {
            track,
            index,
            bytes,
            ..
        } => Some((track, playlist::segment_name(index), bytes)),
        Output::Done(_) => None,
    }
}
