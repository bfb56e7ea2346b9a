//! CMAF packaging in memory: the `mp4` muxer writes fragmented MP4 into a buffer we own,
//! and we cut it into an init segment and media segments at the boundaries we choose.
//!
//! `movflags=frag_custom+dash+delay_moov+skip_trailer`: fragments are written only when we
//! flush, the `moov` waits for the first packet (so the edit list for AAC priming is right),
//! and no index is written at the end. Avoid `cmaf`: it drops the edit list.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use ffmpeg_next::{self as ffmpeg, Packet, Rational, codec, format};

use crate::MediaError;

/// What the packager hands back.
#[derive(Debug)]
pub(crate) enum Packaged {
    Init(Vec<u8>),
    /// A media segment and its duration in [`Packager::timescale`] units.
    Segment {
        bytes: Vec<u8>,
        duration: u64,
    },
}

/// A `Write` target shared with the muxer's I/O context.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("packager buffer poisoned"))?
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

pub(crate) struct Packager {
    output: format::context::Output,
    buffer: SharedBuf,
    encoder_time_base: Rational,
    stream_time_base: Rational,
    init_sent: bool,
    /// pts (stream time base) of the first packet of the segment being built.
    segment_start: Option<i64>,
    /// Largest pts + duration seen, for the last segment's duration.
    end: i64,
}

fn package_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Package(e.to_string())
}

impl Packager {
    /// A packager for one encoded stream. The encoder must have been opened with the
    /// GLOBAL_HEADER flag (MP4 keeps codec headers in the init segment).
    pub(crate) fn new(
        encoder: &codec::encoder::Encoder,
        codec: ffmpeg::Codec,
        encoder_time_base: Rational,
    ) -> Result<Self, MediaError> {
        let buffer = SharedBuf::default();
        let io = format::context::StreamIo::from_write(buffer.clone()).map_err(package_err)?;
        let mut output = format::output_to_stream(io, None, Some("mp4")).map_err(package_err)?;
        {
            let mut stream = output.add_stream(codec).map_err(package_err)?;
            stream.set_parameters(encoder);
            stream.set_time_base(encoder_time_base);
            // Let the muxer pick the codec tag for MP4.
            // SAFETY: the stream's codecpar is valid for the life of the output context.
            #[allow(unsafe_code)]
            unsafe {
                (*(*stream.as_mut_ptr()).codecpar).codec_tag = 0;
            }
        }
        let mut options = ffmpeg::Dictionary::new();
        options.set("movflags", "frag_custom+dash+delay_moov+skip_trailer");
        let ignored = output
            .write_header_with(options)
            .map_err(package_err)?
            .iter()
            .next()
            .is_some();
        if ignored {
            return Err(MediaError::Package("the mp4 muxer ignored movflags".into()));
        }
        let stream_time_base = output
            .stream(0)
            .map(|s| s.time_base())
            .ok_or_else(|| MediaError::Package("muxer lost its stream".into()))?;
        Ok(Self {
            output,
            buffer,
            encoder_time_base,
            stream_time_base,
            init_sent: false,
            segment_start: None,
            end: 0,
        })
    }

    /// Units per second of segment durations.
    pub(crate) fn timescale(&self) -> u32 {
        // Stream time bases chosen by the mp4 muxer are 1/N.
        (f64::from(self.stream_time_base.denominator())
            / f64::from(self.stream_time_base.numerator().max(1))) as u32
    }

    /// Writes one encoded packet. With `new_segment`, the packet starts a new segment and
    /// the previous one is emitted first (it must then be a keyframe).
    pub(crate) fn write(
        &mut self,
        mut packet: Packet,
        new_segment: bool,
        out: &mut Vec<Packaged>,
    ) -> Result<(), MediaError> {
        packet.set_stream(0);
        if packet.duration() == 0 {
            // libx264 on FFmpeg 5.1 leaves durations at 0; one frame is one tick of 1/fps.
            packet.set_duration(1);
        }
        packet.rescale_ts(self.encoder_time_base, self.stream_time_base);
        let pts = packet.pts().or(packet.dts()).unwrap_or(self.end);
        if new_segment && self.segment_start.is_some() {
            self.cut(pts, out)?;
        }
        if self.segment_start.is_none() {
            self.segment_start = Some(pts);
        }
        self.end = self.end.max(pts + packet.duration());
        packet.write(&mut self.output).map_err(package_err)?;
        if !self.init_sent {
            // delay_moov holds the first packet back, so this flush emits ftyp+moov only.
            self.flush()?;
            out.push(Packaged::Init(self.buffer.take()));
            self.init_sent = true;
        }
        Ok(())
    }

    /// Emits the last segment.
    pub(crate) fn finish(&mut self, out: &mut Vec<Packaged>) -> Result<(), MediaError> {
        if self.segment_start.is_some() {
            let end = self.end;
            self.cut(end, out)?;
        }
        self.output.write_trailer().map_err(package_err)?;
        let rest = self.buffer.take();
        if !rest.is_empty()
            && let Some(Packaged::Segment { bytes, .. }) = out.last_mut()
        {
            bytes.extend_from_slice(&rest);
        }
        Ok(())
    }

    fn cut(&mut self, next_start: i64, out: &mut Vec<Packaged>) -> Result<(), MediaError> {
        self.flush()?;
        let bytes = self.buffer.take();
        let start = self.segment_start.take().unwrap_or(next_start);
        if !bytes.is_empty() {
            out.push(Packaged::Segment {
                bytes,
                duration: (next_start - start).max(1) as u64,
            });
        }
        Ok(())
    }

    /// Writes the buffered fragment and pushes it through the I/O context.
    fn flush(&mut self) -> Result<(), MediaError> {
        // SAFETY: the output context is open (header written) and owned by self; a NULL
        // packet asks a frag_custom muxer to write its pending fragment.
        #[allow(unsafe_code)]
        unsafe {
            let ctx = self.output.as_mut_ptr();
            let r = ffmpeg::ffi::av_write_frame(ctx, std::ptr::null_mut());
            if r < 0 {
                return Err(package_err(ffmpeg::Error::from(r)));
            }
            ffmpeg::ffi::avio_flush((*ctx).pb);
        }
        Ok(())
    }
}

/// Moves a media segment along the track's timeline by `ticks`: every `tfdt` (decode time
/// of a fragment) and `sidx` (earliest presentation time) is shifted. A chunk job packages
/// its frames from time zero, so its init segment is byte-for-byte the one every other
/// chunk of the rung has, and then places its segments where they belong on the video's
/// timeline.
pub(crate) fn shift_timeline(segment: &mut [u8], ticks: u64) -> Result<(), MediaError> {
    shift_in(segment, ticks, 0)
}

fn shift_in(data: &mut [u8], ticks: u64, depth: usize) -> Result<(), MediaError> {
    let bad = |what: &str| MediaError::Package(format!("malformed media segment: {what}"));
    let mut at = 0usize;
    while at + 8 <= data.len() {
        let size32 = u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
        let kind = [data[at + 4], data[at + 5], data[at + 6], data[at + 7]];
        let (header, size) = match size32 {
            0 => (8, data.len() - at),
            1 => {
                let large = data
                    .get(at + 8..at + 16)
                    .ok_or_else(|| bad("cut-off box size"))?;
                let mut b = [0u8; 8];
                b.copy_from_slice(large);
                (
                    16,
                    usize::try_from(u64::from_be_bytes(b)).map_err(|_| bad("box size"))?,
                )
            }
            n => (8, n as usize),
        };
        if size < header || at + size > data.len() {
            return Err(bad("a box runs past the end"));
        }
        let body = &mut data[at + header..at + size];
        match &kind {
            b"moof" | b"traf" if depth < 2 => shift_in(body, ticks, depth + 1)?,
            b"tfdt" | b"sidx" => {
                let version = *body.first().ok_or_else(|| bad("empty time box"))?;
                // tfdt: version+flags, time. sidx: version+flags, reference id, timescale, time.
                let offset = if kind == *b"tfdt" { 4 } else { 12 };
                if version == 1 {
                    let field = body
                        .get_mut(offset..offset + 8)
                        .ok_or_else(|| bad("cut-off time"))?;
                    let mut b = [0u8; 8];
                    b.copy_from_slice(field);
                    let shifted = u64::from_be_bytes(b)
                        .checked_add(ticks)
                        .ok_or_else(|| bad("time overflows"))?;
                    field.copy_from_slice(&shifted.to_be_bytes());
                } else {
                    let field = body
                        .get_mut(offset..offset + 4)
                        .ok_or_else(|| bad("cut-off time"))?;
                    let shifted =
                        u64::from(u32::from_be_bytes([field[0], field[1], field[2], field[3]]))
                            + ticks;
                    let shifted =
                        u32::try_from(shifted).map_err(|_| bad("32-bit time overflows"))?;
                    field.copy_from_slice(&shifted.to_be_bytes());
                }
            }
            _ => {}
        }
        at += size;
    }
    Ok(())
}
