//! Checking a chunk job's output before it counts: its structure, and a sample of its
//! frames against the source (see `docs/decisions/0009-verifying-worker-output.md`).
//!
//! Structure: the init segment is the rung's (byte-for-byte: the same encoder settings and
//! parameter sets as every other chunk), and each media segment decodes as H.264 at the
//! rung's size, starts with a keyframe, and holds exactly the frames of its place on the
//! output grid, with timestamps continuous from the job's first frame.
//!
//! Quality: frames chosen by the publisher at random are decoded from the output and from
//! the source chunk (through the same decoder and filters as a transcode, then scaled to
//! the rung as the encoder's input was), and compared with FFmpeg's `ssim` filter.

use std::io::Cursor;

use ffmpeg_next::{
    self as ffmpeg, Packet, Rational, decoder, filter, format, frame, media, software::scaling,
};

use crate::{
    MediaError,
    chunk::rescale_near,
    probe,
    transcode::{ChunkJob, FrameSource},
};

/// Lowest SSIM (luma and chroma together, FFmpeg's `All`) of a sampled frame against the
/// source: honest encodes measured 0.94-0.997, another picture 0.3-0.7. Calibrated in
/// `docs/decisions/0009-verifying-worker-output.md`; the low-resolution check in [`judge`]
/// does not depend on it.
pub const MIN_SSIM: f64 = 0.80;

/// Why an output was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("rung {rung}: {reason}")]
    Structure { rung: String, reason: String },
    #[error("rung {rung}: frame {frame} does not match the source (SSIM {ssim:.3} < {min:.3})")]
    Quality {
        rung: String,
        frame: u64,
        ssim: f64,
        min: f64,
    },
    #[error(
        "rung {rung}: frame {frame} is closer to the source at half its resolution (SSIM {half:.3}) than to the source (SSIM {full:.3}): scaled up from a lower resolution"
    )]
    LowResolution {
        rung: String,
        frame: u64,
        full: f64,
        half: f64,
    },
    #[error("verification could not run: {0}")]
    Media(String),
}

impl From<MediaError> for VerifyError {
    fn from(e: MediaError) -> Self {
        Self::Media(e.to_string())
    }
}

/// What a structurally sound rung of a job adds up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RungSummary {
    /// RFC 6381 codec string from the init segment's `avcC`.
    pub codec: String,
    /// Units per second of `durations`.
    pub timescale: u32,
    /// Each segment's duration, measured from its frames.
    pub durations: Vec<u64>,
    pub frames: u64,
}

/// Segments a job of `job.frames` frames is cut into.
pub fn segments_in(job: &ChunkJob) -> u64 {
    job.frames.div_ceil(job.gop.max(1))
}

/// Checks rung `rung` of `job`'s output. `reference_init` is the rung's init segment from
/// an earlier accepted job (or this node's own encode), if there is one yet.
pub fn check_structure(
    job: &ChunkJob,
    rung: usize,
    init: &[u8],
    reference_init: Option<&[u8]>,
    segments: &[Vec<u8>],
) -> Result<RungSummary, VerifyError> {
    let spec = job
        .rungs
        .get(rung)
        .ok_or_else(|| VerifyError::Media(format!("no rung {rung} in the job")))?;
    let refuse = |reason: String| VerifyError::Structure {
        rung: spec.id.clone(),
        reason,
    };
    if let Some(reference) = reference_init
        && reference != init
    {
        return Err(refuse(
            "its init segment differs from the rung's (other encoder settings or parameter sets)"
                .into(),
        ));
    }
    let codec = avc_codec_of_init(init)
        .ok_or_else(|| refuse("the init segment has no H.264 configuration (avcC)".into()))?;
    let expected_segments = segments_in(job);
    if segments.len() as u64 != expected_segments {
        return Err(refuse(format!(
            "{} segments, not {expected_segments}",
            segments.len()
        )));
    }
    let fps = Rational(job.fps.0 as i32, job.fps.1 as i32);
    let frame_tb = fps.invert();
    let mut durations = Vec::new();
    let mut timescale = 0u32;
    for (i, segment) in segments.iter().enumerate() {
        let first = job.first_frame + i as u64 * job.gop;
        let count = job.gop.min(job.first_frame + job.frames - first);
        let mut bytes = Vec::with_capacity(init.len() + segment.len());
        bytes.extend_from_slice(init);
        bytes.extend_from_slice(segment);
        let mut input = open_mp4(bytes).map_err(|e| refuse(format!("segment {i}: {e}")))?;
        let stream = input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| refuse(format!("segment {i} has no video stream")))?;
        let (index, tb) = (stream.index(), stream.time_base());
        let params = stream.parameters();
        if params.id() != ffmpeg::codec::Id::H264 {
            return Err(refuse(format!(
                "segment {i} is {:?}, not H.264",
                params.id()
            )));
        }
        let (width, height) = coded_size(&params);
        if (width, height) != (spec.width, spec.height) {
            return Err(refuse(format!(
                "segment {i} is {width}x{height}, not {}x{}",
                spec.width, spec.height
            )));
        }
        timescale = (tb.denominator() / tb.numerator().max(1)) as u32;
        // Ticks per frame: exact when the timescale is a multiple of the frame rate's.
        let per_frame = i64::from(tb.denominator()) * i64::from(fps.denominator())
            / (i64::from(tb.numerator()) * i64::from(fps.numerator())).max(1);
        let mut seen = 0u64;
        let mut ticks = 0u64;
        loop {
            let mut packet = Packet::empty();
            match packet.read(&mut input) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(e) => return Err(refuse(format!("segment {i} does not demux: {e}"))),
            }
            if packet.stream() != index {
                continue;
            }
            let pts = packet.pts().or(packet.dts()).unwrap_or(i64::MIN);
            let want = (first + seen) as i64;
            if pts != want * per_frame {
                return Err(refuse(format!(
                    "segment {i}: frame {seen} is at grid position {}, not {want} (timestamps not continuous with the job's offset, or a frame missing)",
                    rescale_near(pts, tb, frame_tb)
                )));
            }
            if seen == 0 && !packet.is_key() {
                return Err(refuse(format!(
                    "segment {i} does not start with a keyframe"
                )));
            }
            if packet.duration() != per_frame {
                return Err(refuse(format!(
                    "segment {i}: frame {seen} lasts {} ticks, not {per_frame}",
                    packet.duration()
                )));
            }
            ticks += packet.duration() as u64;
            seen += 1;
        }
        if seen != count {
            return Err(refuse(format!(
                "segment {i} holds {seen} frames, not {count}"
            )));
        }
        durations.push(ticks);
    }
    Ok(RungSummary {
        codec,
        timescale,
        durations,
        frames: job.frames,
    })
}

/// `avc1.PPCCLL` from the `avcC` box of an init segment.
pub fn avc_codec_of_init(init: &[u8]) -> Option<String> {
    let at = init.windows(4).position(|w| w == b"avcC")?;
    let config = init.get(at + 4..at + 8)?;
    if config[0] != 1 {
        return None;
    }
    Some(format!(
        "avc1.{:02x}{:02x}{:02x}",
        config[1], config[2], config[3]
    ))
}

fn coded_size(params: &ffmpeg::codec::Parameters) -> (u32, u32) {
    // SAFETY: codecpar is valid for as long as `params` is.
    #[allow(unsafe_code)]
    unsafe {
        let p = params.as_ptr();
        ((*p).width.max(0) as u32, (*p).height.max(0) as u32)
    }
}

fn open_mp4(bytes: Vec<u8>) -> Result<format::context::Input, MediaError> {
    crate::init();
    let io = format::context::StreamIo::from_read_seek(Cursor::new(bytes))
        .map_err(|e| MediaError::Decode(e.to_string()))?;
    format::input_from_stream(io, Some("mp4"), None).map_err(|e| MediaError::Decode(e.to_string()))
}

/// How one sampled frame of a rung compares: SSIM against the source as the rung should
/// show it, and against the source at half the rung's resolution scaled back up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub full: f64,
    pub half: f64,
}

/// Passes sampled frames whose output is as close to the source as an honest encode's, and
/// closer to it than to a half-resolution copy of it (what an output scaled up from a
/// lower resolution is closest to). `scores[sample][rung]`, as [`sample_quality`] gives.
pub fn judge(job: &ChunkJob, samples: &[u64], scores: &[Vec<Score>]) -> Result<(), VerifyError> {
    for (sample, row) in samples.iter().zip(scores) {
        for (rung, score) in job.rungs.iter().zip(row) {
            if score.full < MIN_SSIM {
                return Err(VerifyError::Quality {
                    rung: rung.id.clone(),
                    frame: *sample,
                    ssim: score.full,
                    min: MIN_SSIM,
                });
            }
            if score.half >= score.full {
                return Err(VerifyError::LowResolution {
                    rung: rung.id.clone(),
                    frame: *sample,
                    full: score.full,
                    half: score.half,
                });
            }
        }
    }
    Ok(())
}

/// SSIM of the sampled frames (`samples`: frame numbers within the job) of every rung
/// against the source chunk at `chunk`, on the calling thread alone (so that its cost can be
/// measured there). `outputs[r]` is rung r's init and segments, already
/// structurally checked. Returns `ssim[sample][rung]`.
pub fn sample_quality(
    chunk: &std::path::Path,
    job: &ChunkJob,
    decoder_name: Option<&str>,
    samples: &[u64],
    outputs: &[(&[u8], &[Vec<u8>])],
) -> Result<Vec<Vec<Score>>, VerifyError> {
    let references = source_frames(chunk, job, decoder_name, samples)?;
    let gop = job.gop.max(1);
    // Each rung's output is decoded once per segment sampled, for every sample in it.
    let mut outputs_at: Vec<Vec<Option<frame::Video>>> =
        vec![vec![None; job.rungs.len()]; samples.len()];
    let mut sampled_segments: Vec<u64> = samples.iter().map(|s| s / gop).collect();
    sampled_segments.sort_unstable();
    sampled_segments.dedup();
    for (r, (rung, (init, segments))) in job.rungs.iter().zip(outputs).enumerate() {
        for &segment in &sampled_segments {
            let bytes = segments.get(segment as usize).ok_or_else(|| {
                VerifyError::Media(format!("no segment {segment} in rung {}", rung.id))
            })?;
            let in_segment: Vec<usize> = (0..samples.len())
                .filter(|&i| samples[i] / gop == segment)
                .collect();
            let within: Vec<u64> = in_segment.iter().map(|&i| samples[i] % gop).collect();
            let frames =
                output_frames(init, bytes, &within).map_err(|e| VerifyError::Structure {
                    rung: rung.id.clone(),
                    reason: format!("segment {segment} does not decode to its frames: {e}"),
                })?;
            for (i, f) in in_segment.into_iter().zip(frames) {
                outputs_at[i][r] = Some(f);
            }
        }
    }
    let mut scores = Vec::new();
    for (reference, outputs) in references.iter().zip(outputs_at) {
        let mut row = Vec::new();
        for (rung, output) in job.rungs.iter().zip(outputs) {
            let output =
                output.ok_or_else(|| VerifyError::Media("a sample was not decoded".into()))?;
            let scaled = scale(reference, rung.width, rung.height)?;
            let half = scale(
                &scale(reference, (rung.width / 2).max(2), (rung.height / 2).max(2))?,
                rung.width,
                rung.height,
            )?;
            row.push(Score {
                full: ssim(&scaled, &output)?,
                half: ssim(&half, &output)?,
            });
        }
        scores.push(row);
    }
    Ok(scores)
}

/// The source's output frames at `samples`, as the transcoder's rungs received them.
fn source_frames(
    chunk: &std::path::Path,
    job: &ChunkJob,
    decoder_name: Option<&str>,
    samples: &[u64],
) -> Result<Vec<frame::Video>, VerifyError> {
    let mut input = probe::open_input(chunk)?;
    let stream = input
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| VerifyError::Media("the chunk has no video".into()))?;
    let index = stream.index();
    let tb = stream.time_base();
    let fps = Rational(job.fps.0 as i32, job.fps.1 as i32);
    let mut source = FrameSource::open(&stream, decoder_name, 1, job.rotation, fps, None)?;
    let wanted: Vec<i64> = samples
        .iter()
        .map(|s| job.origin + (job.first_frame + s) as i64)
        .collect();
    let last = wanted.iter().copied().max().unwrap_or(i64::MIN);
    let wanted_secs: Vec<f64> = wanted.iter().map(|&w| w as f64 / f64::from(fps)).collect();
    let first_wanted_secs = wanted_secs.iter().copied().fold(f64::INFINITY, f64::min);
    // Nothing before the last keyframe ahead of the first frame wanted is needed; a
    // demux-only scan finds it.
    let before_secs = first_wanted_secs - SAMPLE_WINDOW_SECS;
    let start = crate::chunk::scan(chunk)?
        .keyframes
        .iter()
        .take_while(|(_, pts)| *pts as f64 * f64::from(tb) <= before_secs)
        .last()
        .map_or(0, |(ordinal, _)| *ordinal);
    let mut found: Vec<Option<frame::Video>> = vec![None; wanted.len()];
    let mut frames = Vec::new();
    let mut ended = false;
    let mut ordinal = 0u64;
    while !ended && found.iter().any(Option::is_none) {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) if packet.stream() == index => {
                ordinal += 1;
                if ordinal <= start {
                    continue;
                }
                // Frames away from the samples only need decoding if others refer to them.
                let at = packet.pts().or(packet.dts()).unwrap_or(0) as f64 * f64::from(tb);
                let near = wanted_secs
                    .iter()
                    .any(|w| (at - w).abs() <= SAMPLE_WINDOW_SECS);
                source.skip_unreferenced(!near);
                source.push(Some(&packet), &mut frames)?;
            }
            Ok(()) => continue,
            Err(ffmpeg::Error::Eof) => {
                source.push(None, &mut frames)?;
                ended = true;
            }
            Err(e) => return Err(VerifyError::Media(e.to_string())),
        }
        for f in frames.drain(..) {
            let Some(pts) = f.pts() else { continue };
            if pts > last {
                ended = true;
            }
            for (slot, want) in found.iter_mut().zip(&wanted) {
                if *want == pts && slot.is_none() {
                    *slot = Some(f.clone());
                }
            }
        }
    }
    found
        .into_iter()
        .zip(samples)
        .map(|(f, s)| {
            f.ok_or_else(|| VerifyError::Media(format!("the source has no frame {s} of the job")))
        })
        .collect()
}

/// Source frames this close (in seconds) to a sampled frame are all decoded; the frame-rate
/// conversion picks a sample from among them.
const SAMPLE_WINDOW_SECS: f64 = 0.25;

/// The `within[i]`-th frames (in presentation order) of one media segment, in that order.
fn output_frames(
    init: &[u8],
    segment: &[u8],
    within: &[u64],
) -> Result<Vec<frame::Video>, MediaError> {
    let mut bytes = Vec::with_capacity(init.len() + segment.len());
    bytes.extend_from_slice(init);
    bytes.extend_from_slice(segment);
    let mut input = open_mp4(bytes)?;
    let stream = input
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| MediaError::Decode("no video stream".into()))?;
    let index = stream.index();
    let mut decoder = ffmpeg::codec::Context::from_parameters(stream.parameters())
        .and_then(|c| c.decoder().video())
        .map_err(|e| MediaError::Decode(e.to_string()))?;
    let last = within.iter().copied().max().unwrap_or(0);
    let mut found: Vec<Option<frame::Video>> = vec![None; within.len()];
    let mut seen = 0u64;
    let mut decoded = frame::Video::empty();
    // Whether every wanted frame is in.
    let mut take = |decoder: &mut decoder::Video| -> bool {
        while seen <= last && decoder.receive_frame(&mut decoded).is_ok() {
            for (slot, _) in found.iter_mut().zip(within).filter(|(_, w)| **w == seen) {
                *slot = Some(decoded.clone());
            }
            seen += 1;
        }
        seen > last
    };
    let mut complete = false;
    while !complete {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) if packet.stream() == index => {
                decoder
                    .send_packet(&packet)
                    .map_err(|e| MediaError::Decode(e.to_string()))?;
            }
            Ok(()) => continue,
            Err(ffmpeg::Error::Eof) => {
                decoder
                    .send_eof()
                    .map_err(|e| MediaError::Decode(e.to_string()))?;
                take(&mut decoder);
                break;
            }
            Err(e) => return Err(MediaError::Decode(e.to_string())),
        }
        complete = take(&mut decoder);
    }
    found
        .into_iter()
        .zip(within)
        .map(|(f, w)| f.ok_or_else(|| MediaError::Decode(format!("the segment has no frame {w}"))))
        .collect()
}

/// `frame` scaled to `width`x`height` in yuv420p, as the encoder's input was.
fn scale(frame: &frame::Video, width: u32, height: u32) -> Result<frame::Video, VerifyError> {
    let media = |e: ffmpeg::Error| VerifyError::Media(e.to_string());
    let mut out = frame::Video::empty();
    let mut scaler = scaling::Context::get(
        frame.format(),
        frame.width(),
        frame.height(),
        format::Pixel::YUV420P,
        width,
        height,
        scaling::Flags::BICUBIC,
    )
    .map_err(media)?;
    scaler.run(frame, &mut out).map_err(media)?;
    Ok(out)
}

/// FFmpeg's SSIM (`All`) of two frames of the same size.
fn ssim(a: &frame::Video, b: &frame::Video) -> Result<f64, VerifyError> {
    let media = |e: ffmpeg::Error| VerifyError::Media(format!("ssim: {e}"));
    let mut graph = filter::Graph::new();
    // SAFETY: the graph is valid and has no filters yet, when FFmpeg reads this; one thread
    // keeps verification's cost on the thread that measures it.
    #[allow(unsafe_code)]
    unsafe {
        (*graph.as_mut_ptr()).nb_threads = 1;
    }
    let buffer = filter::find("buffer").ok_or_else(|| VerifyError::Media("no buffer".into()))?;
    let sink =
        filter::find("buffersink").ok_or_else(|| VerifyError::Media("no buffersink".into()))?;
    for (name, f) in [("a", a), ("b", b)] {
        let pix: ffmpeg::ffi::AVPixelFormat = f.format().into();
        let args = format!(
            "video_size={}x{}:pix_fmt={}:time_base=1/25:pixel_aspect=1/1",
            f.width(),
            f.height(),
            pix as i32
        );
        graph.add(&buffer, name, &args).map_err(media)?;
    }
    graph.add(&sink, "out", "").map_err(media)?;
    graph
        .output("a", 0)
        .and_then(|p| p.output("b", 0))
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse("[a][b]ssim"))
        .map_err(media)?;
    graph.validate().map_err(media)?;
    for (name, f) in [("a", a), ("b", b)] {
        let mut copy = f.clone();
        copy.set_pts(Some(0));
        let mut ctx = graph
            .get(name)
            .ok_or_else(|| VerifyError::Media("ssim input lost".into()))?;
        ctx.source().add(&copy).map_err(media)?;
        ctx.source().close(1).map_err(media)?;
    }
    let mut out = graph
        .get("out")
        .ok_or_else(|| VerifyError::Media("ssim output lost".into()))?;
    let mut result = frame::Video::empty();
    out.sink().frame(&mut result).map_err(media)?;
    result
        .metadata()
        .get("lavfi.ssim.All")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| VerifyError::Media("the ssim filter reported nothing".into()))
}
