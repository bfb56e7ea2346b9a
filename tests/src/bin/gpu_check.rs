//! `make gpu-check`: on a machine with a GPU, the hardware probe, then one hybrid chunk job
//! (NVDEC decode, x264 encode) beside the same job decoded on the CPU, both verified as a
//! publisher verifies a worker's output. Exits non-zero if NVDEC does not open or either
//! job fails verification.
//!
//!   gpu-check CLIP    (an H.264 file; `make gpu-check` makes a 10 s 1080p one)

use std::{path::PathBuf, sync::atomic::AtomicBool, time::Instant};

use anyhow::{Context, bail};
use streamgate_media::{
    TranscodeConfig,
    chunk::{self, transcode_chunk},
    hw, ladder,
    transcode::{ChunkJob, gop_frames, output_fps},
    verify,
};

fn main() -> anyhow::Result<()> {
    let clip = PathBuf::from(std::env::args().nth(1).context("usage: gpu-check CLIP")?);
    let caps = hw::probe();
    println!("{}", serde_json::to_string_pretty(&caps.to_json())?);
    if !caps.decoder_available("h264_cuvid") {
        bail!("NVDEC (h264_cuvid) did not open on this machine");
    }
    let info = streamgate_media::probe(&clip)?;
    let video = info.video.as_ref().context("the clip has no video")?;
    let config = TranscodeConfig::default();
    let fps = output_fps(video, &config);
    let gop = u64::from(gop_frames(fps, config.segment_secs));
    let scan = chunk::scan(&clip)?;
    let plans = scan.plan(fps, gop, 64);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("chunk-0.nut");
    chunk::split(&clip, &scan, &plans[..1], |_| path.clone(), |_| Ok(()))?;
    let (w, h) = video.display_size();
    let job = ChunkJob {
        rungs: ladder::plan(w, h, &config.ladder),
        fps: (fps.numerator() as u32, fps.denominator() as u32),
        rotation: video.rotation,
        origin: scan.origin(fps),
        first_frame: plans[0].first_frame,
        frames: plans[0].frames,
        gop,
    };
    for decoder in [Some("h264_cuvid"), None] {
        let config = TranscodeConfig {
            chunk: Some(job.clone()),
            video_decoder: decoder.map(str::to_string),
            ..TranscodeConfig::default()
        };
        let started = Instant::now();
        let rungs = transcode_chunk(&path, &config, &AtomicBool::new(false))?;
        let took = started.elapsed().as_secs_f64();
        for (r, rung) in rungs.iter().enumerate() {
            verify::check_structure(&job, r, &rung.init, None, &rung.segments)?;
        }
        let outputs: Vec<(&[u8], &[Vec<u8>])> = rungs
            .iter()
            .map(|r| (r.init.as_slice(), r.segments.as_slice()))
            .collect();
        let samples = [0, job.frames / 2, job.frames - 1];
        let scores = verify::sample_quality(&path, &job, None, &samples, &outputs)?;
        verify::judge(&job, &samples, &scores)?;
        println!(
            "{} decode + libx264 encode: {} frames x {} rungs in {took:.1} s, verified",
            decoder.unwrap_or("CPU"),
            job.frames,
            job.rungs.len()
        );
    }
    Ok(())
}
