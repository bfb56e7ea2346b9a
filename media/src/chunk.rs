//! Splitting a source into chunks that workers transcode on their own, on the same 2 s
//! output grid as a whole-file transcode.
//!
//! ```text
//!  output grid (1/fps):  | seg 0 | seg 1 | seg 2 | seg 3 | seg 4 | seg 5 | ...
//!  jobs:                 [ job 0: segments 0-2   ][ job 1: segments 3-5   ]
//!  source keyframes:     K0          K1              K2         K3
//!  chunk 0 (remuxed):    K0 ...................................▶ (stops at the first keyframe past its end)
//!  chunk 1 (remuxed):                K1 ..........................................▶
//! ```
//!
//! A chunk is the source's own video packets, remuxed into NUT (no re-encode; NUT keeps
//! the stream's time base and timestamps exactly), from the last keyframe at or before the
//! job's first output frame to the first keyframe after its last. A worker decodes it
//! through the same filters as a whole-file transcode; FFmpeg's `fps` filter maps frames to
//! absolute multiples of 1/fps, so the frames a job keeps are the very frames the whole file
//! would have given those grid points. Audio stays with the publisher.

use std::{fs::File, io::BufWriter, path::Path};

use ffmpeg_next::{self as ffmpeg, Packet, Rational, format, media};

use crate::{MediaError, probe};

/// Where a source's video keyframes are, from one pass of demuxing (no decoding).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceScan {
    pub stream_index: usize,
    /// The stream's time base.
    pub time_base: (i32, i32),
    /// Keyframe packets: (packet ordinal among the stream's packets, pts).
    pub keyframes: Vec<(u64, i64)>,
    /// Earliest pts, and the latest pts plus that packet's duration.
    pub first_pts: i64,
    pub end_pts: i64,
    pub packets: u64,
    /// Added to every timestamp of a chunk, so that none is negative (B-frame delays give
    /// negative decode times, which muxers would otherwise shift by amounts of their own).
    pub shift: i64,
}

/// One job's share of the output grid, and the source packets it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Output frame (1/fps units, counted from the video's first frame) the job starts at.
    pub first_frame: u64,
    /// Frames the job encodes.
    pub frames: u64,
    /// Index of the job's first segment in every rung.
    pub first_segment: u64,
    /// Ordinal of the keyframe packet the chunk starts at.
    start_packet: u64,
    /// The first keyframe after the job's end, if any: (ordinal, pts).
    stop_at: Option<(u64, i64)>,
}

/// `pts` in `from` units as a multiple of `to`, rounded to nearest (ties away from zero),
/// as the `fps` filter rounds.
pub fn rescale_near(pts: i64, from: Rational, to: Rational) -> i64 {
    let num = i128::from(pts) * i128::from(from.numerator()) * i128::from(to.denominator());
    let den = i128::from(from.denominator()) * i128::from(to.numerator());
    if den == 0 {
        return 0;
    }
    let (num, den) = if den < 0 { (-num, -den) } else { (num, den) };
    let rounded = if num >= 0 {
        (num + den / 2) / den
    } else {
        -((-num + den / 2) / den)
    };
    rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn chunk_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Package(format!("chunking: {e}"))
}

/// Demuxes `path` once and notes where its video keyframes are.
pub fn scan(path: &Path) -> Result<SourceScan, MediaError> {
    let mut input = probe::open_input(path)?;
    let stream = input
        .streams()
        .best(media::Type::Video)
        .ok_or_else(|| chunk_err("the source has no video"))?;
    let stream_index = stream.index();
    let tb = stream.time_base();
    let mut scan = SourceScan {
        stream_index,
        time_base: (tb.numerator(), tb.denominator()),
        keyframes: Vec::new(),
        first_pts: i64::MAX,
        end_pts: i64::MIN,
        packets: 0,
        shift: 0,
    };
    let mut earliest = i64::MAX;
    loop {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(MediaError::Decode(e.to_string())),
        }
        if packet.stream() != stream_index {
            continue;
        }
        let Some(pts) = packet.pts().or(packet.dts()) else {
            scan.packets += 1;
            continue;
        };
        if packet.is_key() {
            scan.keyframes.push((scan.packets, pts));
        }
        scan.first_pts = scan.first_pts.min(pts);
        earliest = earliest.min(pts).min(packet.dts().unwrap_or(pts));
        scan.end_pts = scan.end_pts.max(pts + packet.duration().max(1));
        scan.packets += 1;
    }
    scan.shift = earliest.min(0).saturating_neg();
    if scan.keyframes.is_empty() || scan.first_pts > scan.end_pts {
        return Err(MediaError::Decode(
            "no video keyframe could be found in the source".into(),
        ));
    }
    Ok(scan)
}

impl SourceScan {
    fn time_base(&self) -> Rational {
        Rational(self.time_base.0, self.time_base.1)
    }

    /// The video's first output frame in a chunk's timestamps, in 1/fps units.
    pub fn origin(&self, fps: Rational) -> i64 {
        rescale_near(self.first_pts + self.shift, self.time_base(), fps.invert())
    }

    /// Output frames a whole-file transcode at `fps` produces: the grid points from the
    /// first frame's to the end of the last one.
    pub fn output_frames(&self, fps: Rational) -> u64 {
        let out = fps.invert();
        let first = rescale_near(self.first_pts, self.time_base(), out);
        let end = rescale_near(self.end_pts, self.time_base(), out);
        (end - first).max(1) as u64
    }

    /// Jobs of `segments_per_job` segments of `gop` frames each, covering every output frame.
    pub fn plan(&self, fps: Rational, gop: u64, segments_per_job: u64) -> Vec<ChunkPlan> {
        let total = self.output_frames(fps);
        let out = fps.invert();
        let tb = self.time_base();
        let origin = rescale_near(self.first_pts, tb, out);
        let grid = |pts: i64| rescale_near(pts, tb, out) - origin;
        let per_job = gop.max(1) * segments_per_job.max(1);
        let mut plans = Vec::new();
        let mut first = 0u64;
        while first < total {
            let frames = per_job.min(total - first);
            let end = (first + frames) as i64;
            let start_packet = self
                .keyframes
                .iter()
                .rev()
                .find(|(_, pts)| grid(*pts) <= first as i64)
                .or(self.keyframes.first())
                .map(|(ordinal, _)| *ordinal)
                .unwrap_or(0);
            let stop_at = if first + frames >= total {
                None
            } else {
                self.keyframes
                    .iter()
                    .find(|(_, pts)| grid(*pts) > end)
                    .copied()
            };
            plans.push(ChunkPlan {
                first_frame: first,
                frames,
                first_segment: first / gop.max(1),
                start_packet,
                stop_at,
            });
            first += frames;
        }
        plans
    }
}

/// One chunk being written.
struct ChunkWriter {
    plan_index: usize,
    output: format::context::Output,
    /// Past the stop keyframe: packets shown before it (open-GOP leading pictures) still
    /// belong to the chunk.
    past_stop: bool,
    done: bool,
}

/// Writes every chunk of `plans` from `path` in one pass of demuxing, into files named by
/// `path_of(index)`; `finished(index)` is called as each chunk is complete, so its job can
/// start while later chunks are still being written.
pub fn split(
    path: &Path,
    scan: &SourceScan,
    plans: &[ChunkPlan],
    path_of: impl Fn(usize) -> std::path::PathBuf,
    mut finished: impl FnMut(usize) -> Result<(), MediaError>,
) -> Result<(), MediaError> {
    let mut input = probe::open_input(path)?;
    let stream = input
        .stream(scan.stream_index)
        .ok_or_else(|| chunk_err("the video stream vanished"))?;
    let parameters = stream.parameters();
    let stream_tb = stream.time_base();
    let mut writers: Vec<ChunkWriter> = Vec::new();
    let mut next_plan = 0usize;
    let mut ordinal = 0u64;
    let open = |index: usize| -> Result<ChunkWriter, MediaError> {
        let file = File::create(path_of(index)).map_err(chunk_err)?;
        let io = format::context::StreamIo::from_write(BufWriter::new(file)).map_err(chunk_err)?;
        let mut output = format::output_to_stream(io, None, Some("nut")).map_err(chunk_err)?;
        {
            let mut out_stream = output
                .add_stream(ffmpeg::encoder::find(ffmpeg::codec::Id::None))
                .map_err(chunk_err)?;
            out_stream.set_parameters(parameters.clone());
            out_stream.set_time_base(stream_tb);
            // SAFETY: the stream's codecpar is valid for the life of the output context.
            #[allow(unsafe_code)]
            unsafe {
                (*(*out_stream.as_mut_ptr()).codecpar).codec_tag = 0;
            }
        }
        output.write_header().map_err(chunk_err)?;
        Ok(ChunkWriter {
            plan_index: index,
            output,
            past_stop: false,
            done: false,
        })
    };
    let close = |writer: &mut ChunkWriter| -> Result<(), MediaError> {
        writer.done = true;
        writer.output.write_trailer().map_err(chunk_err)
    };
    loop {
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(MediaError::Decode(e.to_string())),
        }
        if packet.stream() != scan.stream_index {
            continue;
        }
        while next_plan < plans.len() && plans[next_plan].start_packet <= ordinal {
            writers.push(open(next_plan)?);
            next_plan += 1;
        }
        let pts = packet.pts().or(packet.dts()).unwrap_or(i64::MIN);
        for writer in writers.iter_mut().filter(|w| !w.done) {
            let plan = &plans[writer.plan_index];
            if let Some((stop_ordinal, stop_pts)) = plan.stop_at {
                if ordinal >= stop_ordinal {
                    writer.past_stop = true;
                }
                if writer.past_stop && ordinal > stop_ordinal && pts >= stop_pts {
                    close(writer)?;
                    finished(writer.plan_index)?;
                    continue;
                }
            }
            let mut copy = packet.clone();
            copy.set_pts(packet.pts().map(|t| t + scan.shift));
            copy.set_dts(packet.dts().map(|t| t + scan.shift));
            copy.set_stream(0);
            copy.set_position(-1);
            let out_tb = writer
                .output
                .stream(0)
                .map(|s| s.time_base())
                .unwrap_or(stream_tb);
            copy.rescale_ts(stream_tb, out_tb);
            copy.write_interleaved(&mut writer.output)
                .map_err(chunk_err)?;
        }
        writers.retain(|w| !w.done);
        ordinal += 1;
    }
    for mut writer in writers {
        close(&mut writer)?;
        finished(writer.plan_index)?;
    }
    if next_plan < plans.len() {
        return Err(chunk_err("the source ended before every chunk began"));
    }
    Ok(())
}

/// One rung of a chunk job's output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RungBytes {
    pub init: Vec<u8>,
    pub segments: Vec<Vec<u8>>,
    pub frames: u64,
}

/// Runs the chunk job `config.chunk` on the chunk at `path`: every rung's init, segments
/// and frame count, which must be the job's.
pub fn transcode_chunk(
    path: &Path,
    config: &crate::TranscodeConfig,
    cancel: &std::sync::atomic::AtomicBool,
) -> Result<Vec<RungBytes>, MediaError> {
    let job = config
        .chunk
        .as_ref()
        .ok_or_else(|| chunk_err("not a chunk job"))?;
    let mut rungs = vec![RungBytes::default(); job.rungs.len()];
    let too_many = || chunk_err("output for a rung the job does not have");
    crate::transcode_file(
        path,
        config,
        std::sync::Arc::new(|_, _| {}),
        cancel,
        |output| {
            match output {
                crate::Output::Init { track, bytes } => {
                    rungs.get_mut(track).ok_or_else(too_many)?.init = bytes;
                }
                crate::Output::Segment { track, bytes, .. } => {
                    rungs
                        .get_mut(track)
                        .ok_or_else(too_many)?
                        .segments
                        .push(bytes);
                }
                crate::Output::Done(done) => {
                    rungs.get_mut(done.track).ok_or_else(too_many)?.frames = done.frames;
                }
            }
            Ok(())
        },
    )?;
    for (rung, spec) in rungs.iter().zip(&job.rungs) {
        if rung.frames != job.frames {
            return Err(chunk_err(format!(
                "rung {}: the chunk gave {} frames of the job's {}",
                spec.id, rung.frames, job.frames
            )));
        }
    }
    Ok(rungs)
}
