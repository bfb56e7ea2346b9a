//! One video rung: scale, encode with x264 (or a hardware encoder), package as CMAF.

use std::sync::{
    Arc,
    mpsc::{Receiver, SyncSender},
};

use ffmpeg_next::{
    self as ffmpeg, Packet, Rational, codec, encoder, format, frame, picture, software::scaling,
};

use super::{ProgressFn, TrackPlan, WorkerMsg, encode_err, stats::SegmentStats};
use crate::{MediaError, cmaf::Packager};

pub(super) struct VideoJob {
    pub(super) track: usize,
    pub(super) plan: TrackPlan,
    pub(super) time_base: Rational,
    pub(super) fps: Rational,
    pub(super) gop: u32,
    pub(super) encoder: String,
    pub(super) preset: String,
    /// Chunk jobs: where the first frame sits on the video's timeline (0 for a whole file).
    pub(super) first_frame: u64,
}

pub(super) fn video_worker(
    job: VideoJob,
    frames: Receiver<Option<Arc<frame::Video>>>,
    out: &SyncSender<WorkerMsg>,
    progress: ProgressFn,
) -> Result<(), MediaError> {
    let codec = encoder::find_by_name(&job.encoder)
        .ok_or_else(|| encode_err(format!("encoder {} is not available", job.encoder)))?;
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(encode_err)?;
    enc.set_width(job.plan.width);
    enc.set_height(job.plan.height);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(job.time_base);
    enc.set_frame_rate(Some(job.fps));
    let bitrate = job.plan.bitrate;
    let mut options = ffmpeg::Dictionary::new();
    let gop = job.gop.to_string();
    for (key, value) in [
        ("bf", "0"),
        ("g", gop.as_str()),
        ("keyint_min", gop.as_str()),
        ("sc_threshold", "0"),
        // Closed GOPs, and codec headers in the init segment rather than in-band.
        ("flags", "+cgop+global_header"),
        ("forced-idr", "1"),
        ("b", &bitrate.to_string()),
        ("maxrate", &(bitrate * 11 / 10).to_string()),
        ("bufsize", &(bitrate * 2).to_string()),
    ] {
        options.set(key, value);
    }
    if job.encoder == "libx264" {
        options.set("preset", &job.preset);
    } else {
        // NVENC spelling of the same constraints.
        options.set("no-scenecut", "1");
        options.set("strict_gop", "1");
    }
    let mut enc = enc.open_as_with(codec, options).map_err(encode_err)?;
    let codec_string = avc_codec_string(&enc);
    let mut packager = Packager::new(&enc, codec, job.time_base)?;
    let mut scaler: Option<scaling::Context> = None;
    let mut index: i64 = 0;
    let gop_u64 = u64::from(job.gop);
    let mut stats = SegmentStats::new(job.track, (job.first_frame / gop_u64) as usize);
    // Ticks of the packager's timescale per frame: exact, as the timescale is a multiple
    // of the encoder's time base denominator.
    let ticks_per_frame = u64::from(packager.timescale()) * job.time_base.numerator() as u64
        / (job.time_base.denominator().max(1) as u64);
    stats.shift_ticks = job.first_frame * ticks_per_frame;
    let mut packet = Packet::empty();
    let mut emitted = Vec::new();
    let gop = i64::from(job.gop);
    let report_every = (f64::from(job.fps).round() as i64).max(1);

    let mut drain = |enc: &mut encoder::Video,
                     packager: &mut Packager,
                     stats: &mut SegmentStats|
     -> Result<(), MediaError> {
        while enc.receive_packet(&mut packet).is_ok() {
            let key = packet.is_key();
            stats.frames += 1;
            packager.write(
                std::mem::replace(&mut packet, Packet::empty()),
                key,
                &mut emitted,
            )?;
            stats.emit(&mut emitted, out)?;
        }
        Ok(())
    };

    while let Ok(Some(source)) = frames.recv() {
        let mut picture = frame::Video::empty();
        if source.width() == job.plan.width && source.height() == job.plan.height {
            ref_frame(&mut picture, &source)?;
        } else {
            let scaler = match scaler.as_mut() {
                Some(s) => s,
                None => scaler.insert(
                    scaling::Context::get(
                        source.format(),
                        source.width(),
                        source.height(),
                        format::Pixel::YUV420P,
                        job.plan.width,
                        job.plan.height,
                        scaling::Flags::BICUBIC,
                    )
                    .map_err(encode_err)?,
                ),
            };
            scaler.run(&source, &mut picture).map_err(encode_err)?;
        }
        picture.set_pts(Some(index));
        // Decoded frames carry their source picture type; anything but None would force it.
        picture.set_kind(if index % gop == 0 {
            picture::Type::I
        } else {
            picture::Type::None
        });
        enc.send_frame(&picture).map_err(encode_err)?;
        drain(&mut enc, &mut packager, &mut stats)?;
        index += 1;
        if index % report_every == 0 {
            progress(job.track, index as f64 / f64::from(job.fps));
        }
    }
    enc.send_eof().map_err(encode_err)?;
    drain(&mut enc, &mut packager, &mut stats)?;
    packager.finish(&mut emitted)?;
    stats.emit(&mut emitted, out)?;
    progress(job.track, index as f64 / f64::from(job.fps));
    let timescale = packager.timescale();
    stats.done(codec_string, timescale, out)
}

/// A new reference to `source`'s buffers (no copy), so the worker owns a frame it may
/// stamp with its own pts and picture type.
fn ref_frame(dest: &mut frame::Video, source: &frame::Video) -> Result<(), MediaError> {
    // SAFETY: both frames are valid AVFrames; dest is empty, so av_frame_ref may fill it.
    #[allow(unsafe_code)]
    let r = unsafe { ffmpeg::ffi::av_frame_ref(dest.as_mut_ptr(), source.as_ptr()) };
    if r < 0 {
        return Err(encode_err(ffmpeg::Error::from(r)));
    }
    Ok(())
}

/// `avc1.PPCCLL` from the encoder's SPS (RFC 6381).
fn avc_codec_string(enc: &encoder::Video) -> String {
    // SAFETY: extradata/extradata_size describe a buffer owned by the open encoder.
    #[allow(unsafe_code)]
    let extradata: &[u8] = unsafe {
        let ctx = enc.as_ptr();
        if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
            &[]
        } else {
            std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize)
        }
    };
    let sps = if extradata.first() == Some(&1) && extradata.len() >= 4 {
        // avcC: version, profile, compatibility, level.
        Some([extradata[1], extradata[2], extradata[3]])
    } else {
        // Annex B: find the SPS NAL unit (type 7) after a start code.
        extradata
            .windows(7)
            .find(|w| w[0..3] == [0, 0, 1] && w[3] & 0x1f == 7)
            .map(|w| [w[4], w[5], w[6]])
    };
    match sps {
        Some([profile, compat, level]) => format!("avc1.{profile:02x}{compat:02x}{level:02x}"),
        // High profile, level 4.0: a safe description when the SPS cannot be read.
        None => "avc1.640028".into(),
    }
}
