//! The transcoder: packets in, CMAF init and media segments out.
//!
//! ```text
//!  send_packet ─▶ video decoder ─▶ filter graph (rotate, fps, yuv420p) ─▶ Arc<frame> ─┬─▶ rung worker thread ─┐
//!       │                                                                            └─▶ rung worker thread ─┤
//!       └─────▶ audio decoder ─▶ frame ─▶ audio worker thread (asplit: AAC, Opus) ─────────────────────────┤
//!                                                                                                          ▼
//!  receive ◀── Status::{Output(Init | Segment | Done), NeedInput, Finished} ◀── bounded output channel ◀────┘
//! ```
//!
//! Push/pull: after each `send_packet`, call `receive` until it answers `NeedInput`; after
//! `send_eof`, call it until `Finished`. Worker input queues hold 4 frames; when one is
//! full, `send_packet` waits and meanwhile moves finished outputs into an internal queue,
//! so producer and consumer can never block each other.
//!
//! Every video segment starts with an IDR frame: keyframes are forced every
//! `segment_secs × fps` frames in every rung (the same frames, since all rungs see the same
//! frame sequence), B-frames are off, GOPs are closed. Audio segments are cut at the same
//! multiples of `segment_secs`.

use std::{
    collections::VecDeque,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel},
    },
    thread::JoinHandle,
    time::Duration,
};

use ffmpeg_next::{
    self as ffmpeg, ChannelLayout, Packet, Rational, codec, decoder, filter, format, frame,
};
use streamgate_protocol::manifest::TrackKind;

mod audio;
mod stats;
mod video;

use audio::{AudioJob, audio_worker};
use video::{VideoJob, video_worker};

use crate::{
    MediaError, MediaInfo,
    ladder::{self, RungSpec},
    probe,
};

/// How to transcode.
#[derive(Debug, Clone)]
pub struct TranscodeConfig {
    pub ladder: Vec<RungSpec>,
    /// Segment (and GOP) length in seconds.
    pub segment_secs: u32,
    pub x264_preset: String,
    pub aac_bitrate: u64,
    pub opus_bitrate: u64,
    /// FFmpeg encoder for video: `libx264`, or a hardware one such as `h264_nvenc`.
    pub video_encoder: String,
    /// FFmpeg decoder to use instead of the default, e.g. `h264_cuvid` (NVDEC).
    pub video_decoder: Option<String>,
    /// Frame rates above this are reduced to it.
    pub max_fps: u32,
    /// A worker's share of a video (see [`crate::chunk`]); `None` for a whole file.
    pub chunk: Option<ChunkJob>,
    /// Audio only: the publisher's share when workers make the video rungs.
    pub audio_only: bool,
    /// FFmpeg filters applied to decoded frames before rotation and the frame rate
    /// (`yadif` for interlaced sources; the tests' dishonest workers use it too).
    pub extra_filter: Option<String>,
}

/// What one chunk job encodes: exactly these rungs, these frames of the output grid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkJob {
    pub rungs: Vec<ladder::PlannedRung>,
    /// Output frames per second, as the publisher chose it for the whole video.
    pub fps: (u32, u32),
    /// Degrees clockwise, from the source (a remuxed chunk loses the display matrix).
    pub rotation: i32,
    /// The video's first output frame, in 1/fps units of absolute time.
    pub origin: i64,
    /// The job's frames, counted from the video's first.
    pub first_frame: u64,
    pub frames: u64,
    /// Frames per segment (and GOP).
    pub gop: u64,
}

impl Default for TranscodeConfig {
    fn default() -> Self {
        Self {
            ladder: ladder::DEFAULT_LADDER.to_vec(),
            segment_secs: 2,
            x264_preset: "veryfast".into(),
            aac_bitrate: 128_000,
            opus_bitrate: 96_000,
            video_encoder: "libx264".into(),
            video_decoder: None,
            max_fps: 60,
            chunk: None,
            audio_only: false,
            extra_filter: None,
        }
    }
}

/// A track the transcoder will produce, known before encoding starts.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPlan {
    pub id: String,
    pub kind: TrackKind,
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction (video).
    pub frame_rate: (u32, u32),
    pub sample_rate: u32,
    pub channels: u32,
    pub bitrate: u64,
}

/// Facts about a finished track.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackDone {
    pub track: usize,
    /// RFC 6381 codec string.
    pub codec: String,
    /// Units per second of segment durations.
    pub timescale: u32,
    /// Peak and average bits per second over segments.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    /// Frames (video) or packets (audio) encoded.
    pub frames: u64,
}

#[derive(Debug)]
pub enum Output {
    Init {
        track: usize,
        bytes: Vec<u8>,
    },
    Segment {
        track: usize,
        index: usize,
        bytes: Vec<u8>,
        duration: u64,
    },
    Done(TrackDone),
}

#[derive(Debug)]
pub enum Status {
    Output(Output),
    NeedInput,
    Finished,
}

/// Reports how far a track has got, in seconds of media.
pub type ProgressFn = Arc<dyn Fn(usize, f64) + Send + Sync>;

enum WorkerMsg {
    Output(Output),
    Failed(MediaError),
    Exited,
}

/// Frames queued per worker: enough to keep both cores busy, small enough that memory stays
/// at a few decoded frames (a 1080p frame is 3 MB).
const WORKER_QUEUE: usize = 4;
/// Outputs queued from all workers.
const OUTPUT_QUEUE: usize = 32;

pub struct Transcoder {
    tracks: Vec<TrackPlan>,
    video: Option<VideoFront>,
    audio: Option<AudioFront>,
    outputs: Receiver<WorkerMsg>,
    pending: VecDeque<Output>,
    failure: Option<MediaError>,
    live_workers: usize,
    _workers: Vec<JoinHandle<()>>,
    eof_sent: bool,
    declared_secs: f64,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("tracks", &self.tracks)
            .finish_non_exhaustive()
    }
}

struct VideoFront {
    stream_index: usize,
    source: FrameSource,
    /// Chunk jobs: the output frames (pts in 1/fps) to keep.
    window: Option<std::ops::Range<i64>>,
    senders: Vec<SyncSender<Option<Arc<frame::Video>>>>,
}

/// Decoding and the shared filters (rotation, frame rate, pixel format): packets in, output
/// frames out, with pts in 1/fps. Transcoding and verification see the same frames.
pub(crate) struct FrameSource {
    decoder: decoder::Video,
    stream_time_base: Rational,
    rotation: i32,
    fps: Rational,
    extra_filter: Option<String>,
    graph: Option<filter::Graph>,
    first_pts: Option<i64>,
    last_pts: i64,
    last_duration: i64,
    corrupt_packets: u64,
    packets: u64,
}

impl FrameSource {
    /// A decoder for `stream` (FFmpeg's default, or `decoder_name`) on `threads` threads
    /// (0: as many as FFmpeg likes), rotating by `rotation` degrees clockwise and resampling
    /// to `fps`.
    pub(crate) fn open(
        stream: &format::stream::Stream,
        decoder_name: Option<&str>,
        threads: usize,
        rotation: i32,
        fps: Rational,
        extra_filter: Option<String>,
    ) -> Result<Self, MediaError> {
        let mut context =
            codec::Context::from_parameters(stream.parameters()).map_err(decode_err)?;
        context.set_threading(ffmpeg::threading::Config {
            kind: ffmpeg::threading::Type::Frame,
            count: threads,
            ..Default::default()
        });
        let mut dec = context.decoder();
        dec.set_packet_time_base(stream.time_base());
        let decoder = match decoder_name {
            Some(name) => {
                let codec = decoder::find_by_name(name)
                    .ok_or_else(|| decode_err(format!("decoder {name} is not available")))?;
                dec.open_as(codec)
                    .and_then(|d| d.video())
                    .map_err(decode_err)?
            }
            None => dec.video().map_err(decode_err)?,
        };
        Ok(Self {
            decoder,
            stream_time_base: stream.time_base(),
            rotation,
            fps,
            extra_filter,
            graph: None,
            first_pts: None,
            last_pts: 0,
            last_duration: 0,
            corrupt_packets: 0,
            packets: 0,
        })
    }

    /// Decodes `packet` (`None`: the end of input) and appends the frames it completes.
    pub(crate) fn push(
        &mut self,
        packet: Option<&Packet>,
        frames: &mut Vec<frame::Video>,
    ) -> Result<(), MediaError> {
        match packet {
            Some(p) => {
                self.packets += 1;
                if let Err(e) = self.decoder.send_packet(p) {
                    // A damaged packet is skipped, as players do; too many fail the job.
                    self.corrupt_packets += 1;
                    if self.corrupt_packets > 50 && self.corrupt_packets * 10 > self.packets {
                        return Err(decode_err(format!("too many damaged video packets ({e})")));
                    }
                    return Ok(());
                }
            }
            None => self.decoder.send_eof().map_err(decode_err)?,
        }
        let mut decoded = frame::Video::empty();
        while self.decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded
                .timestamp()
                .unwrap_or(self.last_pts + self.last_duration.max(1));
            self.first_pts.get_or_insert(pts);
            self.last_duration = decoded.packet().duration.max(0);
            self.last_pts = pts;
            decoded.set_pts(Some(pts));
            if self.graph.is_none() {
                self.graph = Some(video_graph(
                    &decoded,
                    self.stream_time_base,
                    self.rotation,
                    self.fps,
                    self.extra_filter.as_deref(),
                )?);
            }
            if let Some(graph) = self.graph.as_mut() {
                add_to_graph(graph, &decoded)?;
                pull_video(graph, frames)?;
            }
            decoded = frame::Video::empty();
        }
        if packet.is_none()
            && let Some(graph) = self.graph.as_mut()
        {
            // Closing at the end of the last frame (not at its start) keeps its duration, so
            // the fps filter emits the same frame count as the source.
            close_graph(graph, self.last_pts + self.last_duration.max(1))?;
            pull_video(graph, frames)?;
        }
        Ok(())
    }

    /// Skips decoding frames no other frame refers to (while what is wanted is still far
    /// ahead: verification then pays for the reference frames only), or stops skipping.
    pub(crate) fn skip_unreferenced(&mut self, skip: bool) {
        self.decoder.skip_frame(if skip {
            ffmpeg::codec::discard::Discard::NonReference
        } else {
            ffmpeg::codec::discard::Discard::Default
        });
    }

    /// Seconds of source decoded so far.
    fn decoded_secs(&self) -> Option<f64> {
        let first = self.first_pts?;
        let ticks = self.last_pts + self.last_duration - first;
        Some(ticks as f64 * f64::from(self.stream_time_base))
    }
}

struct AudioFront {
    stream_index: usize,
    decoder: decoder::Audio,
    stream_time_base: Rational,
    sender: SyncSender<Option<frame::Audio>>,
    first_pts: Option<i64>,
    last_end: i64,
    corrupt_packets: u64,
    packets: u64,
}

fn decode_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Decode(e.to_string())
}

fn encode_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Encode(e.to_string())
}

impl Transcoder {
    /// Sets up decoders for `input`'s streams and starts one worker per track.
    pub fn new(
        input: &format::context::Input,
        info: &MediaInfo,
        config: &TranscodeConfig,
        progress: ProgressFn,
    ) -> Result<Self, MediaError> {
        let (out_tx, out_rx) = sync_channel(OUTPUT_QUEUE);
        let mut tracks = Vec::new();
        let mut workers = Vec::new();

        let video = match &info.video {
            Some(_) if config.audio_only => None,
            None => None,
            Some(v) => {
                let stream = input
                    .stream(v.stream_index)
                    .ok_or_else(|| decode_err("video stream vanished"))?;
                let fps = output_fps(v, config);
                let gop = match &config.chunk {
                    Some(chunk) => chunk.gop.clamp(1, u64::from(u32::MAX)) as u32,
                    None => gop_frames(fps, config.segment_secs),
                };
                let rotation = config.chunk.as_ref().map_or(v.rotation, |c| c.rotation);
                let rungs = match &config.chunk {
                    Some(chunk) => chunk.rungs.clone(),
                    None => {
                        let (display_w, display_h) = v.display_size();
                        ladder::plan(display_w, display_h, &config.ladder)
                    }
                };
                let window = config.chunk.as_ref().map(|c| {
                    let start = c.origin.saturating_add(c.first_frame as i64);
                    start..start.saturating_add(c.frames as i64)
                });
                let source = FrameSource::open(
                    &stream,
                    config.video_decoder.as_deref(),
                    0,
                    rotation,
                    fps,
                    config.extra_filter.clone(),
                )?;
                let mut senders = Vec::new();
                for rung in rungs {
                    let track = tracks.len();
                    let plan = TrackPlan {
                        id: rung.id.clone(),
                        kind: TrackKind::Video,
                        width: rung.width,
                        height: rung.height,
                        frame_rate: (fps.numerator() as u32, fps.denominator() as u32),
                        sample_rate: 0,
                        channels: 0,
                        bitrate: rung.video_bitrate,
                    };
                    let (tx, rx) = sync_channel(WORKER_QUEUE);
                    senders.push(tx);
                    let job = VideoJob {
                        track,
                        plan: plan.clone(),
                        time_base: fps.invert(),
                        fps,
                        gop,
                        encoder: config.video_encoder.clone(),
                        preset: config.x264_preset.clone(),
                        first_frame: config.chunk.as_ref().map_or(0, |c| c.first_frame),
                    };
                    let out = out_tx.clone();
                    let progress = progress.clone();
                    workers.push(
                        std::thread::Builder::new()
                            .name(format!("rung-{}", plan.id))
                            .spawn(move || {
                                run_worker(out, move |tx| video_worker(job, rx, tx, progress))
                            })
                            .map_err(encode_err)?,
                    );
                    tracks.push(plan);
                }
                Some(VideoFront {
                    stream_index: v.stream_index,
                    source,
                    window,
                    senders,
                })
            }
        };

        let audio = match &info.audio {
            Some(_) if config.chunk.is_some() => None,
            None => None,
            Some(a) => {
                let stream = input
                    .stream(a.stream_index)
                    .ok_or_else(|| decode_err("audio stream vanished"))?;
                let mut dec = codec::Context::from_parameters(stream.parameters())
                    .map_err(decode_err)?
                    .decoder();
                dec.set_packet_time_base(stream.time_base());
                let decoder = dec.audio().map_err(decode_err)?;
                let aac = tracks.len();
                for (id, bitrate) in [
                    ("audio_aac", config.aac_bitrate),
                    ("audio_opus", config.opus_bitrate),
                ] {
                    tracks.push(TrackPlan {
                        id: id.into(),
                        kind: TrackKind::Audio,
                        width: 0,
                        height: 0,
                        frame_rate: (0, 1),
                        sample_rate: 48_000,
                        channels: 2,
                        bitrate,
                    });
                }
                let (tx, rx) = sync_channel(WORKER_QUEUE * 4);
                let mut layout = decoder.channel_layout();
                if layout.is_empty() {
                    layout = ChannelLayout::default(i32::from(decoder.channels()));
                }
                let job = AudioJob {
                    aac_track: aac,
                    opus_track: aac + 1,
                    aac_bitrate: config.aac_bitrate,
                    opus_bitrate: config.opus_bitrate,
                    segment_secs: config.segment_secs,
                    input_time_base: stream.time_base(),
                    input_rate: decoder.rate(),
                    input_format: decoder.format(),
                    input_layout: layout,
                };
                let out = out_tx.clone();
                let progress = progress.clone();
                workers.push(
                    std::thread::Builder::new()
                        .name("audio".into())
                        .spawn(move || {
                            run_worker(out, move |tx| audio_worker(job, rx, tx, progress))
                        })
                        .map_err(encode_err)?,
                );
                Some(AudioFront {
                    stream_index: a.stream_index,
                    decoder,
                    stream_time_base: stream.time_base(),
                    sender: tx,
                    first_pts: None,
                    last_end: 0,
                    corrupt_packets: 0,
                    packets: 0,
                })
            }
        };

        Ok(Self {
            live_workers: workers.len(),
            _workers: workers,
            tracks,
            video,
            audio,
            outputs: out_rx,
            pending: VecDeque::new(),
            failure: None,
            eof_sent: false,
            declared_secs: info.duration_secs,
        })
    }

    /// The tracks this transcoder produces, in track-index order.
    pub fn tracks(&self) -> &[TrackPlan] {
        &self.tracks
    }

    /// Feeds one demuxed packet. Packets of other streams are ignored.
    pub fn send_packet(&mut self, packet: &Packet) -> Result<(), MediaError> {
        let stream = packet.stream();
        if self
            .video
            .as_ref()
            .is_some_and(|v| v.stream_index == stream)
        {
            self.video_packet(Some(packet))
        } else if self
            .audio
            .as_ref()
            .is_some_and(|a| a.stream_index == stream)
        {
            self.audio_packet(Some(packet))
        } else {
            Ok(())
        }
    }

    /// Signals the end of input: decoders and encoders are drained.
    pub fn send_eof(&mut self) -> Result<(), MediaError> {
        if self.eof_sent {
            return Ok(());
        }
        if self.video.is_some() {
            self.video_packet(None)?;
        }
        if self.audio.is_some() {
            self.audio_packet(None)?;
        }
        self.check_complete()?;
        self.eof_sent = true;
        Ok(())
    }

    /// The next output, or what the transcoder needs.
    pub fn receive(&mut self) -> Result<Status, MediaError> {
        if let Some(e) = self.failure.take() {
            return Err(e);
        }
        if let Some(output) = self.pending.pop_front() {
            return Ok(Status::Output(output));
        }
        loop {
            let msg = if self.eof_sent {
                if self.live_workers == 0 {
                    return Ok(Status::Finished);
                }
                match self.outputs.recv() {
                    Ok(msg) => msg,
                    Err(_) => return Ok(Status::Finished),
                }
            } else {
                match self.outputs.try_recv() {
                    Ok(msg) => msg,
                    Err(TryRecvError::Empty) => return Ok(Status::NeedInput),
                    Err(TryRecvError::Disconnected) => {
                        return Err(encode_err("all workers stopped"));
                    }
                }
            };
            match msg {
                WorkerMsg::Output(output) => return Ok(Status::Output(output)),
                WorkerMsg::Failed(e) => return Err(e),
                WorkerMsg::Exited => self.live_workers = self.live_workers.saturating_sub(1),
            }
        }
    }

    /// Moves worker messages into `pending` for up to `wait`.
    fn collect(&mut self, wait: Duration) -> Result<(), MediaError> {
        match self.outputs.recv_timeout(wait) {
            Ok(WorkerMsg::Output(o)) => self.pending.push_back(o),
            Ok(WorkerMsg::Failed(e)) => return Err(e),
            Ok(WorkerMsg::Exited) => self.live_workers = self.live_workers.saturating_sub(1),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err(encode_err("all workers stopped")),
        }
        Ok(())
    }

    /// Sends to a worker queue, collecting outputs while it is full.
    fn send_to<T>(&mut self, sender: &SyncSender<T>, mut msg: T) -> Result<(), MediaError> {
        loop {
            match sender.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    msg = back;
                    self.collect(Duration::from_millis(5))?;
                }
                Err(TrySendError::Disconnected(_)) => {
                    // The worker stopped: its reason is in the output queue.
                    loop {
                        match self.outputs.recv_timeout(Duration::from_secs(5)) {
                            Ok(WorkerMsg::Failed(e)) => return Err(e),
                            Ok(WorkerMsg::Output(o)) => self.pending.push_back(o),
                            Ok(WorkerMsg::Exited) => {}
                            Err(_) => {
                                return Err(encode_err("a worker stopped without saying why"));
                            }
                        }
                    }
                }
            }
        }
    }

    fn video_packet(&mut self, packet: Option<&Packet>) -> Result<(), MediaError> {
        let Some(front) = self.video.as_mut() else {
            return Ok(());
        };
        let mut frames = Vec::new();
        front.source.push(packet, &mut frames)?;
        if let Some(window) = &front.window {
            frames.retain(|f| f.pts().is_some_and(|pts| window.contains(&pts)));
        }
        let senders = front.senders.clone();
        for f in frames {
            let shared = Arc::new(f);
            for sender in &senders {
                self.send_to(sender, Some(shared.clone()))?;
            }
        }
        if packet.is_none() {
            for sender in &senders {
                self.send_to(sender, None)?;
            }
        }
        Ok(())
    }

    fn audio_packet(&mut self, packet: Option<&Packet>) -> Result<(), MediaError> {
        let Some(front) = self.audio.as_mut() else {
            return Ok(());
        };
        match packet {
            Some(p) => {
                front.packets += 1;
                if front.decoder.send_packet(p).is_err() {
                    front.corrupt_packets += 1;
                    if front.corrupt_packets > 50 && front.corrupt_packets * 10 > front.packets {
                        return Err(decode_err("too many damaged audio packets"));
                    }
                    return Ok(());
                }
            }
            None => front.decoder.send_eof().map_err(decode_err)?,
        }
        let mut frames = Vec::new();
        let mut decoded = frame::Audio::empty();
        while front.decoder.receive_frame(&mut decoded).is_ok() {
            let pts = decoded.timestamp().unwrap_or(front.last_end);
            front.first_pts.get_or_insert(pts);
            let samples = decoded.samples() as i64;
            let duration = Rational(samples as i32, decoded.rate().max(1) as i32);
            front.last_end =
                pts + (f64::from(duration) / f64::from(front.stream_time_base)).round() as i64;
            decoded.set_pts(Some(pts));
            frames.push(std::mem::replace(&mut decoded, frame::Audio::empty()));
        }
        let sender = front.sender.clone();
        for f in frames {
            self.send_to(&sender, Some(f))?;
        }
        if packet.is_none() {
            self.send_to(&sender, None)?;
        }
        Ok(())
    }

    /// A file cut off mid-stream ends early without an error from FFmpeg: compare what was
    /// decoded with what the container declared.
    fn check_complete(&self) -> Result<(), MediaError> {
        if self.video.as_ref().is_some_and(|v| v.window.is_some()) {
            // A chunk's frame count is checked against its job instead.
            return Ok(());
        }
        let decoded = match (&self.video, &self.audio) {
            (Some(v), _) if v.source.first_pts.is_some() => v.source.decoded_secs().unwrap_or(0.0),
            (_, Some(a)) if a.first_pts.is_some() => {
                (a.last_end - a.first_pts.unwrap_or(0)) as f64 * f64::from(a.stream_time_base)
            }
            _ => 0.0,
        };
        if decoded <= 0.0 {
            return Err(MediaError::Decode("no frame could be decoded".into()));
        }
        if self.declared_secs > 1.0 && decoded < self.declared_secs * 0.9 - 0.5 {
            return Err(MediaError::Truncated {
                declared_secs: self.declared_secs,
                decoded_secs: decoded,
            });
        }
        Ok(())
    }
}

/// Runs a worker body and reports its end.
fn run_worker(
    out: SyncSender<WorkerMsg>,
    body: impl FnOnce(&SyncSender<WorkerMsg>) -> Result<(), MediaError>,
) {
    if let Err(e) = body(&out) {
        let _ = out.send(WorkerMsg::Failed(e));
    }
    let _ = out.send(WorkerMsg::Exited);
}

/// The output frame rate for a source: its own, capped, or the one a chunk job was given.
pub fn output_fps(video: &crate::VideoInfo, config: &TranscodeConfig) -> Rational {
    match &config.chunk {
        Some(c) if c.fps.0 > 0 && c.fps.1 > 0 => Rational(c.fps.0 as i32, c.fps.1 as i32),
        _ => target_fps(video.frame_rate, config.max_fps),
    }
}

/// Frames per segment (and GOP) at `fps`.
pub fn gop_frames(fps: Rational, segment_secs: u32) -> u32 {
    ((f64::from(segment_secs) * f64::from(fps)).round() as u32).max(1)
}

fn target_fps(rate: (i32, i32), max_fps: u32) -> Rational {
    let (num, den) = rate;
    if num <= 0 || den <= 0 {
        return Rational(30, 1);
    }
    let fps = f64::from(num) / f64::from(den);
    if fps > f64::from(max_fps) || fps < 1.0 {
        return Rational(max_fps.clamp(1, 240) as i32, 1);
    }
    Rational(num, den).reduce()
}

fn add_to_graph(graph: &mut filter::Graph, frame: &frame::Video) -> Result<(), MediaError> {
    let mut ctx = graph
        .get("in")
        .ok_or_else(|| decode_err("filter graph lost its input"))?;
    ctx.source().add(frame).map_err(decode_err)
}

fn close_graph(graph: &mut filter::Graph, pts: i64) -> Result<(), MediaError> {
    let mut ctx = graph
        .get("in")
        .ok_or_else(|| decode_err("filter graph lost its input"))?;
    ctx.source().close(pts).map_err(decode_err)
}

/// Rotation, frame rate and pixel format, applied once before the split to rungs.
fn video_graph(
    first: &frame::Video,
    time_base: Rational,
    rotation: i32,
    fps: Rational,
    extra_filter: Option<&str>,
) -> Result<filter::Graph, MediaError> {
    let mut graph = filter::Graph::new();
    let pix: ffmpeg::ffi::AVPixelFormat = first.format().into();
    let sar = first.aspect_ratio();
    let (sar_n, sar_d) = if sar.numerator() > 0 && sar.denominator() > 0 {
        (sar.numerator(), sar.denominator())
    } else {
        (1, 1)
    };
    let args = format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={sar_n}/{sar_d}",
        first.width(),
        first.height(),
        pix as i32,
        time_base.numerator(),
        time_base.denominator()
    );
    let buffer = filter::find("buffer").ok_or_else(|| decode_err("no buffer filter"))?;
    let sink = filter::find("buffersink").ok_or_else(|| decode_err("no buffersink filter"))?;
    graph.add(&buffer, "in", &args).map_err(decode_err)?;
    graph.add(&sink, "out", "").map_err(decode_err)?;
    let rotate = match rotation.rem_euclid(360) {
        90 => "transpose=clock,",
        180 => "hflip,vflip,",
        270 => "transpose=cclock,",
        _ => "",
    };
    let extra = extra_filter.map(|f| format!("{f},")).unwrap_or_default();
    let spec = format!(
        "{extra}{rotate}fps=fps={}/{}:round=near,format=yuv420p",
        fps.numerator(),
        fps.denominator()
    );
    graph
        .output("in", 0)
        .and_then(|p| p.input("out", 0))
        .and_then(|p| p.parse(&spec))
        .map_err(decode_err)?;
    graph.validate().map_err(decode_err)?;
    Ok(graph)
}

fn pull_video(graph: &mut filter::Graph, frames: &mut Vec<frame::Video>) -> Result<(), MediaError> {
    let Some(mut out) = graph.get("out") else {
        return Err(decode_err("filter graph lost its output"));
    };
    let mut sink = out.sink();
    loop {
        let mut f = frame::Video::empty();
        match sink.frame(&mut f) {
            Ok(()) => frames.push(f),
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {
                return Ok(());
            }
            Err(e) => return Err(decode_err(e)),
        }
    }
}

/// What `transcode_file` produced.
#[derive(Debug, Clone)]
pub struct TranscodeResult {
    pub info: MediaInfo,
    pub tracks: Vec<TrackPlan>,
}

/// Transcodes the file at `path`, handing every output to `sink` as it is produced.
/// `cancel` is checked between packets.
pub fn transcode_file(
    path: &Path,
    config: &TranscodeConfig,
    progress: ProgressFn,
    cancel: &AtomicBool,
    mut sink: impl FnMut(Output) -> Result<(), MediaError>,
) -> Result<TranscodeResult, MediaError> {
    let mut input = probe::open_input(path)?;
    let info = probe::info_of(&input)?;
    let mut transcoder = Transcoder::new(&input, &info, config, progress)?;
    let tracks = transcoder.tracks().to_vec();
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(MediaError::Cancelled);
        }
        // A fresh packet every time: FFmpeg 5.1's `av_read_frame` overwrites the packet it
        // is given without releasing its buffer, so reusing one leaks every packet read
        // (memory grew by the size of the input).
        let mut packet = Packet::empty();
        match packet.read(&mut input) {
            Ok(()) => transcoder.send_packet(&packet)?,
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(decode_err(e)),
        }
        while let Status::Output(output) = transcoder.receive()? {
            sink(output)?;
        }
    }
    transcoder.send_eof()?;
    loop {
        match transcoder.receive()? {
            Status::Output(output) => sink(output)?,
            Status::Finished => break,
            Status::NeedInput => {}
        }
    }
    Ok(TranscodeResult { info, tracks })
}

/// The init segment every chunk of `rung` has: the encoder's settings and parameter sets,
/// from one frame encoded as a chunk job would. A publisher holds each worker's init
/// segment against it, byte for byte.
pub fn rung_init(
    rung: &ladder::PlannedRung,
    fps: Rational,
    gop: u32,
    config: &TranscodeConfig,
) -> Result<Vec<u8>, MediaError> {
    crate::init();
    let plan = TrackPlan {
        id: rung.id.clone(),
        kind: TrackKind::Video,
        width: rung.width,
        height: rung.height,
        frame_rate: (fps.numerator() as u32, fps.denominator() as u32),
        sample_rate: 0,
        channels: 0,
        bitrate: rung.video_bitrate,
    };
    let job = VideoJob {
        track: 0,
        plan,
        time_base: fps.invert(),
        fps,
        gop: gop.max(1),
        encoder: config.video_encoder.clone(),
        preset: config.x264_preset.clone(),
        first_frame: 0,
    };
    let mut picture = frame::Video::new(format::Pixel::YUV420P, rung.width, rung.height);
    for plane in 0..picture.planes() {
        picture.data_mut(plane).fill(128);
    }
    let (frames_tx, frames_rx) = sync_channel(2);
    let (out_tx, out_rx) = sync_channel(OUTPUT_QUEUE);
    frames_tx
        .send(Some(Arc::new(picture)))
        .and_then(|()| frames_tx.send(None))
        .map_err(|_| encode_err("cannot queue the probe frame"))?;
    video_worker(job, frames_rx, &out_tx, Arc::new(|_, _| {}))?;
    drop(out_tx);
    while let Ok(msg) = out_rx.recv() {
        if let WorkerMsg::Output(Output::Init { bytes, .. }) = msg {
            return Ok(bytes);
        }
    }
    Err(encode_err("the encoder made no init segment"))
}
