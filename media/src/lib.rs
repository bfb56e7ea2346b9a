//! FFmpeg-based probing, transcoding and CMAF packaging. Not built yet: arrives with publishing.
