//! Per-track segment accounting: indices, bytes, durations, bandwidth.

use std::sync::mpsc::SyncSender;

use super::{Output, TrackDone, WorkerMsg};
use crate::{MediaError, cmaf::Packaged};

/// Counts segments and bytes of one track, and forwards its packaged output.
pub(super) struct SegmentStats {
    track: usize,
    next_index: usize,
    total_bytes: u64,
    pub(super) total_ticks: u64,
    peak_bps: f64,
    pub(super) frames: u64,
    /// Added to every segment's decode time (chunk jobs; see `cmaf::shift_timeline`).
    pub(super) shift_ticks: u64,
}

impl SegmentStats {
    pub(super) fn new(track: usize, first_index: usize) -> Self {
        Self {
            track,
            next_index: first_index,
            shift_ticks: 0,
            total_bytes: 0,
            total_ticks: 0,
            peak_bps: 0.0,
            frames: 0,
        }
    }

    pub(super) fn emit(
        &mut self,
        packaged: &mut Vec<Packaged>,
        out: &SyncSender<WorkerMsg>,
    ) -> Result<(), MediaError> {
        for item in packaged.drain(..) {
            let output = match item {
                Packaged::Init(bytes) => Output::Init {
                    track: self.track,
                    bytes,
                },
                Packaged::Segment {
                    mut bytes,
                    duration,
                } => {
                    if self.shift_ticks > 0 {
                        crate::cmaf::shift_timeline(&mut bytes, self.shift_ticks)?;
                    }
                    self.total_bytes += bytes.len() as u64;
                    self.total_ticks += duration;
                    let index = self.next_index;
                    self.next_index += 1;
                    Output::Segment {
                        track: self.track,
                        index,
                        duration,
                        bytes,
                    }
                }
            };
            if let Output::Segment {
                bytes, duration, ..
            } = &output
            {
                // Bits per tick; `done` converts to bits per second once the timescale is known.
                let bits = bytes.len() as f64 * 8.0;
                self.peak_bps = self.peak_bps.max(bits / (*duration).max(1) as f64);
            }
            out.send(WorkerMsg::Output(output))
                .map_err(|_| MediaError::Cancelled)?;
        }
        Ok(())
    }

    pub(super) fn done(
        self,
        codec: String,
        timescale: u32,
        out: &SyncSender<WorkerMsg>,
    ) -> Result<(), MediaError> {
        let scale = f64::from(timescale.max(1));
        let seconds = self.total_ticks as f64 / scale;
        let average = if seconds > 0.0 {
            self.total_bytes as f64 * 8.0 / seconds
        } else {
            0.0
        };
        let done = TrackDone {
            track: self.track,
            codec,
            timescale,
            bandwidth: (self.peak_bps * scale).ceil().max(average).max(1.0) as u64,
            average_bandwidth: average.ceil().max(1.0) as u64,
            frames: self.frames,
        };
        out.send(WorkerMsg::Output(Output::Done(done)))
            .map_err(|_| MediaError::Cancelled)
    }
}
