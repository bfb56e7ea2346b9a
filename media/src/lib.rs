//! Media for StreamGate: probing, the adaptive ladder, CMAF packaging, playlists, and the
//! hardware probe, on FFmpeg 5.1 through `ffmpeg-next`.
//!
//! ```text
//!  file ─▶ demux ─┬─▶ video decode ─▶ [rotate] ─▶ fps ─▶ yuv420p ──Arc<frame>──┬─▶ rung 1080p: scale ─▶ x264 ─▶ CMAF ─┐
//!                 │                                                          ├─▶ rung 720p:  scale ─▶ x264 ─▶ CMAF ─┤
//!                 │                                                          └─▶ ...                               ├─▶ Output
//!                 └─▶ audio decode ──frames──▶ asplit ─┬─▶ AAC-LC stereo ─▶ CMAF ─────────────────────────────────┤   (init,
//!                                                       └─▶ Opus stereo   ─▶ CMAF ─────────────────────────────────┘   segments)
//! ```
//!
//! The caller pushes packets into a [`Transcoder`] and pulls [`Output`]s out; each rung and
//! the audio run on threads of their own (one per rung measured 0.91-0.94x the `ffmpeg`
//! command line's time on two cores; `make bench-transcode` prints the current figure).

pub mod assemble;
pub mod chunk;
mod cmaf;
pub mod hw;
pub mod ladder;
pub mod playlist;
pub mod probe;
pub mod speed;
pub mod transcode;
pub mod verify;

pub use assemble::ManifestBuilder;
pub use ffmpeg_next::Rational;
pub use probe::{AudioInfo, MediaInfo, VideoInfo, probe};
pub use transcode::{
    Output, Status, TrackDone, TrackPlan, TranscodeConfig, Transcoder, transcode_file,
};

/// Why a media operation failed. Messages are written for the person who supplied the file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("cannot open {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("the file has no audio or video stream")]
    NoStreams,
    #[error("{kind} stream {stream} uses a codec this node cannot decode ({codec})")]
    UnsupportedCodec {
        stream: usize,
        kind: String,
        codec: String,
    },
    #[error(
        "the file is truncated or damaged: it declares {declared_secs:.1} s but only {decoded_secs:.1} s could be decoded"
    )]
    Truncated {
        declared_secs: f64,
        decoded_secs: f64,
    },
    #[error("decoding failed: {0}")]
    Decode(String),
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("packaging failed: {0}")]
    Package(String),
    #[error("transcoding was cancelled")]
    Cancelled,
}

/// Initialises FFmpeg once per process and silences its own logging: errors reach the
/// caller as [`MediaError`]s with context instead of as lines on stderr.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg_next::init();
        ffmpeg_next::log::set_level(ffmpeg_next::log::Level::Quiet);
    });
}
