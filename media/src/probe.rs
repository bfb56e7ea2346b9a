//! Probing an input: container, streams, duration, frame rate, rotation, dimensions and
//! audio layout, and whether FFmpeg can decode each stream.

use std::{fs::File, path::Path};

use ffmpeg_next::{self as ffmpeg, codec, format, media};

use crate::MediaError;

/// What an input file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// FFmpeg's demuxer name, e.g. `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: String,
    /// Declared duration in seconds (0 when the container does not say).
    pub duration_secs: f64,
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub stream_index: usize,
    pub codec: String,
    /// Coded size.
    pub width: u32,
    pub height: u32,
    /// Rotation to apply for display, in degrees clockwise (0, 90, 180, 270, or other).
    pub rotation: i32,
    /// Frames per second as a fraction (the average rate; 0/1 when unknown).
    pub frame_rate: (i32, i32),
    /// The stream's timestamps are not evenly spaced.
    pub variable_frame_rate: bool,
    /// Frame count the container declares, when it does.
    pub frames: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    pub stream_index: usize,
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    /// e.g. `stereo`, `mono`, `5.1`, or `N channels`.
    pub layout: String,
}

impl VideoInfo {
    /// Size after rotation, as displayed.
    pub fn display_size(&self) -> (u32, u32) {
        if matches!(self.rotation.rem_euclid(180), 90) {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Frames per second as a float (0 when unknown).
    pub fn fps(&self) -> f64 {
        if self.frame_rate.1 == 0 {
            0.0
        } else {
            f64::from(self.frame_rate.0) / f64::from(self.frame_rate.1)
        }
    }
}

/// Opens `path` for demuxing without ever handing FFmpeg the path itself (ffmpeg-next panics
/// on paths that are not UTF-8 or hold NUL bytes; a file handle has neither problem).
pub(crate) fn open_input(path: &Path) -> Result<format::context::Input, MediaError> {
    crate::init();
    let file = File::open(path).map_err(|e| MediaError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(MediaError::Open {
            path: path.display().to_string(),
            reason: "the file is empty".into(),
        });
    }
    let io = format::context::StreamIo::from_read_seek(file).map_err(|e| MediaError::Open {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    format::input_from_stream(io, None, None).map_err(|e| MediaError::Open {
        path: path.display().to_string(),
        reason: match e {
            ffmpeg::Error::InvalidData => "not a media file FFmpeg can read (invalid data)".into(),
            other => other.to_string(),
        },
    })
}

/// Probes `path`.
pub fn probe(path: &Path) -> Result<MediaInfo, MediaError> {
    let input = open_input(path)?;
    info_of(&input)
}

pub(crate) fn info_of(input: &format::context::Input) -> Result<MediaInfo, MediaError> {
    let duration_secs = if input.duration() > 0 {
        input.duration() as f64 / f64::from(ffmpeg::ffi::AV_TIME_BASE)
    } else {
        0.0
    };
    let video = match input.streams().best(media::Type::Video) {
        Some(stream) if !is_cover_art(&stream) => Some(video_info(&stream)?),
        _ => None,
    };
    let audio = match input.streams().best(media::Type::Audio) {
        Some(stream) => Some(audio_info(&stream)?),
        None => None,
    };
    if video.is_none() && audio.is_none() {
        return Err(MediaError::NoStreams);
    }
    Ok(MediaInfo {
        container: input.format().name().to_string(),
        duration_secs,
        video,
        audio,
    })
}

/// An attached picture (album art) is a video stream of one frame, not a video.
fn is_cover_art(stream: &format::stream::Stream) -> bool {
    stream
        .disposition()
        .contains(format::stream::Disposition::ATTACHED_PIC)
}

fn unknown_codec(stream: &format::stream::Stream, kind: &str) -> MediaError {
    let id = stream.parameters().id();
    MediaError::UnsupportedCodec {
        stream: stream.index(),
        kind: kind.to_string(),
        codec: if id == codec::Id::None {
            "unknown".to_string()
        } else {
            id.name().to_string()
        },
    }
}

fn video_info(stream: &format::stream::Stream) -> Result<VideoInfo, MediaError> {
    let params = stream.parameters();
    if codec::decoder::find(params.id()).is_none() {
        return Err(unknown_codec(stream, "video"));
    }
    let context =
        codec::Context::from_parameters(params).map_err(|e| MediaError::Decode(e.to_string()))?;
    let decoder = context
        .decoder()
        .video()
        .map_err(|_| unknown_codec(stream, "video"))?;
    let avg = stream.avg_frame_rate();
    let real = stream.rate();
    let usable = |r: ffmpeg::Rational| r.numerator() > 0 && r.denominator() > 0;
    let frame_rate = if usable(avg) {
        avg
    } else if usable(real) {
        real
    } else {
        ffmpeg::Rational(0, 1)
    };
    let variable_frame_rate = usable(avg)
        && usable(real)
        && (f64::from(avg) - f64::from(real)).abs() > 0.01 * f64::from(real).max(1.0);
    Ok(VideoInfo {
        stream_index: stream.index(),
        codec: stream.parameters().id().name().to_string(),
        width: decoder.width(),
        height: decoder.height(),
        rotation: rotation_of(stream),
        frame_rate: (frame_rate.numerator(), frame_rate.denominator()),
        variable_frame_rate,
        frames: (stream.frames() > 0).then_some(stream.frames() as u64),
    })
}

fn audio_info(stream: &format::stream::Stream) -> Result<AudioInfo, MediaError> {
    let params = stream.parameters();
    if codec::decoder::find(params.id()).is_none() {
        return Err(unknown_codec(stream, "audio"));
    }
    let context =
        codec::Context::from_parameters(params).map_err(|e| MediaError::Decode(e.to_string()))?;
    let decoder = context
        .decoder()
        .audio()
        .map_err(|_| unknown_codec(stream, "audio"))?;
    let channels = decoder.channels();
    let layout = match channels {
        1 => "mono".to_string(),
        2 => "stereo".to_string(),
        6 => "5.1".to_string(),
        8 => "7.1".to_string(),
        n => format!("{n} channels"),
    };
    Ok(AudioInfo {
        stream_index: stream.index(),
        codec: stream.parameters().id().name().to_string(),
        sample_rate: decoder.rate(),
        channels,
        layout,
    })
}

/// Degrees clockwise to rotate for display, from the display matrix side data.
fn rotation_of(stream: &format::stream::Stream) -> i32 {
    for side in stream.side_data() {
        if side.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix {
            let data = side.data();
            if data.len() >= 36 {
                let mut matrix = [0i32; 9];
                for (i, m) in matrix.iter_mut().enumerate() {
                    let b = &data[i * 4..i * 4 + 4];
                    *m = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                }
                // SAFETY: av_display_rotation_get reads exactly 9 i32s from the pointer.
                #[allow(unsafe_code)]
                let counter_clockwise =
                    unsafe { ffmpeg::ffi::av_display_rotation_get(matrix.as_ptr()) };
                if counter_clockwise.is_nan() {
                    return 0;
                }
                // FFmpeg reports counter-clockwise degrees; players rotate clockwise by the negation.
                return (-counter_clockwise.round() as i32).rem_euclid(360);
            }
        }
    }
    0
}
