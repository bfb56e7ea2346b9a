//! Figures the benchmarks (`src/bin/bench_*.rs`) share.

use std::{path::Path, time::Duration};

use anyhow::Context;

use crate::media::ffmpeg;

/// Throughput of `bytes` moved in `took`, in MiB/s.
pub fn mib_per_sec(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

/// The median of `values` (the upper one of an even count); sorts them.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A 1920x1080 30 fps source of `seconds` with a tone, as the transcoding benchmarks use
/// (not timed).
pub fn make_1080p_source(path: &Path, seconds: u32) -> anyhow::Result<()> {
    println!("making a {seconds} s 1920x1080 30 fps source with a tone (not timed)");
    let video = format!("testsrc2=size=1920x1080:rate=30:duration={seconds}");
    let tone = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
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
        path.to_str().context("utf-8")?,
    ])
}
