//! A worker's measurement of its own speed: a short 1080p30 H.264 clip made here (not
//! timed) is transcoded to the default ladder's 720p rung exactly as a job's chunk is
//! (same decoder choice, preset and code path), and timed.

use std::{
    path::Path,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use ffmpeg_next::{self as ffmpeg, Packet, Rational, codec, encoder, filter, format, frame};

use crate::{
    MediaError, TranscodeConfig, chunk,
    ladder::{self, DEFAULT_LADDER},
    transcode::ChunkJob,
};

/// Frames of the sample: one 2 s segment at 30 fps.
pub const SAMPLE_FRAMES: u64 = 60;
const SAMPLE_FPS: i32 = 30;

/// What one measurement found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speed {
    /// Output frames per second, 1080p decoded and 720p encoded.
    pub fps: f64,
    pub frames: u64,
    pub wall: Duration,
}

/// Measures how fast this machine transcodes, with `base`'s decoder, encoder and preset.
/// The sample is written into `dir` and removed.
pub fn measure(dir: &Path, base: &TranscodeConfig) -> Result<Speed, MediaError> {
    std::fs::create_dir_all(dir).map_err(speed_err)?;
    let sample = dir.join("speed-sample.nut");
    let result = make_sample(&sample, 1920, 1080, SAMPLE_FRAMES).and_then(|()| {
        let scan = chunk::scan(&sample)?;
        let fps = Rational(SAMPLE_FPS, 1);
        let plan = scan
            .plan(fps, SAMPLE_FRAMES, 1)
            .into_iter()
            .next()
            .ok_or_else(|| speed_err("the sample has no frames"))?;
        let rung = DEFAULT_LADDER
            .iter()
            .find(|r| r.short_side == 720)
            .copied()
            .ok_or_else(|| speed_err("the default ladder has no 720p rung"))?;
        let config = TranscodeConfig {
            chunk: Some(ChunkJob {
                rungs: ladder::plan(1920, 1080, &[rung]),
                fps: (SAMPLE_FPS as u32, 1),
                rotation: 0,
                origin: scan.origin(fps),
                first_frame: plan.first_frame,
                frames: plan.frames,
                gop: SAMPLE_FRAMES,
            }),
            extra_filter: None,
            audio_only: false,
            ..base.clone()
        };
        let started = Instant::now();
        let rungs = chunk::transcode_chunk(&sample, &config, &AtomicBool::new(false))?;
        let wall = started.elapsed();
        let frames = rungs.first().map_or(0, |r| r.frames);
        if frames == 0 {
            return Err(speed_err("the sample produced no frames"));
        }
        Ok(Speed {
            fps: frames as f64 / wall.as_secs_f64().max(1e-6),
            frames,
            wall,
        })
    });
    let _ = std::fs::remove_file(&sample);
    result
}

/// Writes `frames` frames of FFmpeg's `testsrc2` pattern (moving, detailed: a fair load for
/// an encoder) at `width`x`height` and 30 fps, as H.264 in NUT.
pub fn make_sample(path: &Path, width: u32, height: u32, frames: u64) -> Result<(), MediaError> {
    let mut graph = filter::Graph::new();
    let sink = filter::find("buffersink").ok_or_else(|| speed_err("no buffersink filter"))?;
    graph.add(&sink, "out", "").map_err(speed_err)?;
    let spec = format!("testsrc2=size={width}x{height}:rate={SAMPLE_FPS},format=yuv420p");
    graph
        .input("out", 0)
        .and_then(|p| p.parse(&spec))
        .map_err(speed_err)?;
    graph.validate().map_err(speed_err)?;

    let codec = encoder::find_by_name("libx264").ok_or_else(|| speed_err("no libx264"))?;
    let mut output = format::output_as(path, "nut").map_err(speed_err)?;
    let global_header = output
        .format()
        .flags()
        .contains(format::flag::Flags::GLOBAL_HEADER);
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(speed_err)?;
    let time_base = Rational(1, SAMPLE_FPS);
    enc.set_width(width);
    enc.set_height(height);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(time_base);
    enc.set_frame_rate(Some(Rational(SAMPLE_FPS, 1)));
    if global_header {
        enc.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut options = ffmpeg::Dictionary::new();
    options.set("preset", "ultrafast");
    options.set("crf", "18");
    let mut enc = enc.open_as_with(codec, options).map_err(speed_err)?;
    {
        let mut stream = output.add_stream(codec).map_err(speed_err)?;
        stream.set_parameters(&enc);
        stream.set_time_base(time_base);
    }
    output.write_header().map_err(speed_err)?;
    let stream_tb = output.stream(0).map(|s| s.time_base()).unwrap_or(time_base);
    let write = |enc: &mut encoder::Video,
                 output: &mut format::context::Output|
     -> Result<(), MediaError> {
        let mut packet = Packet::empty();
        while enc.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(time_base, stream_tb);
            packet.write_interleaved(output).map_err(speed_err)?;
        }
        Ok(())
    };
    let mut sink = graph
        .get("out")
        .ok_or_else(|| speed_err("the filter graph lost its output"))?;
    for index in 0..frames {
        let mut picture = frame::Video::empty();
        sink.sink().frame(&mut picture).map_err(speed_err)?;
        picture.set_pts(Some(index as i64));
        enc.send_frame(&picture).map_err(speed_err)?;
        write(&mut enc, &mut output)?;
    }
    enc.send_eof().map_err(speed_err)?;
    write(&mut enc, &mut output)?;
    output.write_trailer().map_err(speed_err)
}

fn speed_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Encode(format!("speed measurement: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_measurement_transcodes_the_sample_like_a_job() {
        crate::init();
        let dir = tempfile::tempdir().expect("temp dir");
        let speed = measure(dir.path(), &TranscodeConfig::default()).expect("measured");
        assert_eq!(speed.frames, SAMPLE_FRAMES, "every frame of the sample");
        assert!(speed.fps > 0.0 && speed.fps.is_finite());
        assert!(
            !dir.path().join("speed-sample.nut").exists(),
            "the sample is removed"
        );
    }
}
