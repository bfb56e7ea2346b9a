//! Audio: one decoded stream split into AAC-LC (HLS/DASH) and Opus (WebRTC), each
//! packaged as CMAF with segments cut at the same boundaries as video.

use std::sync::mpsc::{Receiver, SyncSender};

use ffmpeg_next::{
    self as ffmpeg, ChannelLayout, Packet, Rational, Rescale, codec, encoder, filter, format, frame,
};

use super::{ProgressFn, WorkerMsg, encode_err, stats::SegmentStats};
use crate::{
    MediaError,
    cmaf::{Packaged, Packager},
};

pub(super) struct AudioJob {
    pub(super) aac_track: usize,
    pub(super) opus_track: usize,
    pub(super) aac_bitrate: u64,
    pub(super) opus_bitrate: u64,
    pub(super) segment_secs: u32,
    pub(super) input_time_base: Rational,
    pub(super) input_rate: u32,
    pub(super) input_format: format::Sample,
    pub(super) input_layout: ChannelLayout,
}

/// One audio encoding: encoder, packager, and where its next segment starts.
struct AudioLane {
    track: usize,
    encoder: encoder::Audio,
    packager: Packager,
    sink: String,
    next_cut: i64,
    cut_every: i64,
    stats: SegmentStats,
    codec: String,
}

const AUDIO_RATE: i32 = 48_000;

fn audio_lane(
    track: usize,
    name: &str,
    format: format::Sample,
    bitrate: u64,
    segment_secs: u32,
    sink: &str,
    codec_string: &str,
) -> Result<AudioLane, MediaError> {
    let codec = encoder::find_by_name(name)
        .ok_or_else(|| encode_err(format!("encoder {name} is not available")))?;
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .audio()
        .map_err(encode_err)?;
    enc.set_rate(AUDIO_RATE);
    enc.set_channel_layout(ChannelLayout::STEREO);
    enc.set_channels(2);
    enc.set_format(format);
    enc.set_bit_rate(bitrate as usize);
    enc.set_time_base(Rational(1, AUDIO_RATE));
    enc.set_flags(codec::Flags::GLOBAL_HEADER);
    let enc = enc.open_as(codec).map_err(encode_err)?;
    let packager = Packager::new(&enc, codec, Rational(1, AUDIO_RATE))?;
    let cut_every = i64::from(segment_secs) * i64::from(AUDIO_RATE);
    Ok(AudioLane {
        track,
        encoder: enc,
        packager,
        sink: sink.into(),
        next_cut: cut_every,
        cut_every,
        stats: SegmentStats::new(track, 0),
        codec: codec_string.into(),
    })
}

impl AudioLane {
    fn drain(
        &mut self,
        emitted: &mut Vec<Packaged>,
        out: &SyncSender<WorkerMsg>,
    ) -> Result<(), MediaError> {
        let mut packet = Packet::empty();
        while self.encoder.receive_packet(&mut packet).is_ok() {
            let pts = packet.pts().unwrap_or(0);
            // Every audio packet is a sync sample; cut at the same multiples of the
            // segment length as video.
            let cut = pts >= self.next_cut;
            if cut {
                while self.next_cut <= pts {
                    self.next_cut += self.cut_every;
                }
            }
            self.stats.frames += 1;
            self.packager.write(
                std::mem::replace(&mut packet, Packet::empty()),
                cut,
                emitted,
            )?;
            self.stats.emit(emitted, out)?;
        }
        Ok(())
    }
}

pub(super) fn audio_worker(
    job: AudioJob,
    frames: Receiver<Option<frame::Audio>>,
    out: &SyncSender<WorkerMsg>,
    progress: ProgressFn,
) -> Result<(), MediaError> {
    let mut lanes = [
        audio_lane(
            job.aac_track,
            "aac",
            format::Sample::F32(format::sample::Type::Planar),
            job.aac_bitrate,
            job.segment_secs,
            "sink_aac",
            "mp4a.40.2",
        )?,
        audio_lane(
            job.opus_track,
            "libopus",
            format::Sample::F32(format::sample::Type::Packed),
            job.opus_bitrate,
            job.segment_secs,
            "sink_opus",
            "opus",
        )?,
    ];
    let mut graph = filter::Graph::new();
    let sample_fmt: ffmpeg::ffi::AVSampleFormat = job.input_format.into();
    let args = format!(
        "time_base={}/{}:sample_rate={}:sample_fmt={}:channel_layout=0x{:x}",
        job.input_time_base.numerator(),
        job.input_time_base.denominator(),
        job.input_rate,
        sample_fmt as i32,
        job.input_layout.bits()
    );
    let abuffer = filter::find("abuffer").ok_or_else(|| encode_err("no abuffer filter"))?;
    let sink = filter::find("abuffersink").ok_or_else(|| encode_err("no abuffersink filter"))?;
    graph.add(&abuffer, "in", &args).map_err(encode_err)?;
    graph.add(&sink, "sink_aac", "").map_err(encode_err)?;
    graph.add(&sink, "sink_opus", "").map_err(encode_err)?;
    graph
        .output("in", 0)
        .and_then(|p| p.input("sink_aac", 0))
        .and_then(|p| p.input("sink_opus", 0))
        .and_then(|p| {
            p.parse(
                "asplit=2[a0][a1];\
                 [a0]aresample=48000,aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo[sink_aac];\
                 [a1]aresample=48000,aformat=sample_fmts=flt:sample_rates=48000:channel_layouts=stereo[sink_opus]",
            )
        })
        .map_err(encode_err)?;
    graph.validate().map_err(encode_err)?;
    for lane in &lanes {
        if let Some(mut ctx) = graph.get(&lane.sink) {
            ctx.sink().set_frame_size(lane.encoder.frame_size());
        }
    }
    let mut emitted = Vec::new();
    let mut seconds_reported = 0.0;
    let mut eof = false;
    while !eof {
        let msg = frames.recv().unwrap_or(None);
        match msg {
            Some(f) => {
                let mut ctx = graph
                    .get("in")
                    .ok_or_else(|| encode_err("filter graph lost its input"))?;
                ctx.source().add(&f).map_err(encode_err)?;
            }
            None => {
                eof = true;
                let mut ctx = graph
                    .get("in")
                    .ok_or_else(|| encode_err("filter graph lost its input"))?;
                ctx.source().flush().map_err(encode_err)?;
            }
        }
        for lane in lanes.iter_mut() {
            let Some(mut ctx) = graph.get(&lane.sink) else {
                continue;
            };
            let sink_tb = ctx.sink().time_base();
            loop {
                let mut f = frame::Audio::empty();
                match ctx.sink().frame(&mut f) {
                    Ok(()) => {
                        let pts = f.pts().map(|p| p.rescale(sink_tb, Rational(1, AUDIO_RATE)));
                        f.set_pts(pts);
                        lane.encoder.send_frame(&f).map_err(encode_err)?;
                        lane.drain(&mut emitted, out)?;
                        if let Some(p) = pts {
                            let secs = p as f64 / f64::from(AUDIO_RATE);
                            if secs - seconds_reported >= 1.0 {
                                seconds_reported = secs;
                                progress(lane.track, secs);
                            }
                        }
                    }
                    Err(ffmpeg::Error::Eof) => break,
                    Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                        break;
                    }
                    Err(e) => return Err(encode_err(e)),
                }
            }
        }
    }
    for lane in lanes.iter_mut() {
        lane.encoder.send_eof().map_err(encode_err)?;
        lane.drain(&mut emitted, out)?;
        lane.packager.finish(&mut emitted)?;
        lane.stats.emit(&mut emitted, out)?;
    }
    for lane in lanes {
        let timescale = lane.packager.timescale();
        progress(
            lane.track,
            lane.stats.total_ticks as f64 / f64::from(timescale.max(1)),
        );
        lane.stats.done(lane.codec, timescale, out)?;
    }
    Ok(())
}
