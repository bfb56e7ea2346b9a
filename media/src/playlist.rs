//! HLS and DASH documents, rendered from a manifest on whichever node serves it.
//!
//! URL layout, relative to `/hls/{id}/` and `/dash/{id}/`:
//! `master.m3u8` / `manifest.mpd`, `{track}/index.m3u8`, `{track}/init.mp4`,
//! `{track}/seg_{n}.m4s` (n from 0).

use std::fmt::Write;

use streamgate_protocol::{
    access::Encryption,
    manifest::{Manifest, Track, TrackKind},
};

/// File name of a media segment.
pub fn segment_name(index: usize) -> String {
    format!("seg_{index}.m4s")
}

pub const INIT_NAME: &str = "init.mp4";

/// The audio track HLS and DASH players get (AAC); Opus tracks are kept for WebRTC.
fn player_audio(manifest: &Manifest) -> Option<&Track> {
    manifest
        .tracks
        .iter()
        .find(|t| t.kind == TrackKind::Audio && t.codec.starts_with("mp4a"))
}

fn videos(manifest: &Manifest) -> impl Iterator<Item = &Track> {
    manifest
        .tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Video)
}

/// `master.m3u8`.
pub fn hls_master(manifest: &Manifest) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let audio = player_audio(manifest);
    let has_video = videos(manifest).next().is_some();
    if let (Some(a), true) = (audio, has_video) {
        let channels = a.audio.map_or(2, |p| p.channels);
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"{channels}\",URI=\"{}/index.m3u8\"",
            a.id
        );
    }
    for v in videos(manifest) {
        let (bandwidth, average, codecs) = match audio {
            Some(a) => (
                v.bandwidth + a.bandwidth,
                v.average_bandwidth + a.average_bandwidth,
                format!("{},{}", v.codec, a.codec),
            ),
            None => (v.bandwidth, v.average_bandwidth, v.codec.clone()),
        };
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={bandwidth},AVERAGE-BANDWIDTH={average},CODECS=\"{codecs}\""
        );
        if let Some(p) = v.video {
            let rate = f64::from(p.frame_rate_num) / f64::from(p.frame_rate_den);
            let _ = write!(
                out,
                ",RESOLUTION={}x{},FRAME-RATE={rate:.3}",
                p.width, p.height
            );
        }
        if audio.is_some() {
            out.push_str(",AUDIO=\"audio\"");
        }
        let _ = writeln!(out, "\n{}/index.m3u8", v.id);
    }
    if let (Some(a), false) = (audio, has_video) {
        let _ = writeln!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"\n{}/index.m3u8",
            a.bandwidth, a.average_bandwidth, a.codec, a.id
        );
    }
    out
}

/// Where a gated track's key is, and the track's number in its manifest (for the IVs).
#[derive(Debug, Clone, Copy)]
pub struct HlsKey<'a> {
    pub uri: &'a str,
    pub track_number: usize,
}

/// `{track}/index.m3u8`. With `key`, media segments are AES-128 encrypted, each with its own
/// IV given in an `EXT-X-KEY` before it (the init segment is clear: its `EXT-X-MAP` comes
/// first). Players fetch the key once: every `EXT-X-KEY` names the same URI.
pub fn hls_media(track: &Track, key: Option<HlsKey<'_>>) -> String {
    let target = track.max_segment_secs().ceil().max(1.0) as u64;
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{INIT_NAME}\"\n"
    );
    let scale = f64::from(track.timescale);
    for (i, seg) in track.segments.iter().enumerate() {
        if let Some(key) = key {
            let iv = u128::from_be_bytes(Encryption::iv(key.track_number, i));
            let _ = writeln!(
                out,
                "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\",IV=0x{iv:032x}",
                key.uri
            );
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.6},\n{}",
            seg.duration as f64 / scale,
            segment_name(i)
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// `manifest.mpd`: a static MPD with one adaptation set for video and one for audio,
/// segment URLs from a template and exact durations from a segment timeline.
pub fn dash_mpd(manifest: &Manifest) -> String {
    let duration = iso_duration(manifest.duration_ms);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\" \
         type=\"static\" mediaPresentationDuration=\"{duration}\" minBufferTime=\"PT4S\">\n\
         <Period id=\"0\" start=\"PT0S\">\n"
    );
    let video: Vec<&Track> = videos(manifest).collect();
    if !video.is_empty() {
        out.push_str(
            "<AdaptationSet id=\"0\" contentType=\"video\" mimeType=\"video/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n",
        );
        for v in video {
            let p = v
                .video
                .unwrap_or(streamgate_protocol::manifest::VideoParams {
                    width: 0,
                    height: 0,
                    frame_rate_num: 0,
                    frame_rate_den: 1,
                });
            let _ = writeln!(
                out,
                "<Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" width=\"{}\" height=\"{}\" frameRate=\"{}/{}\">",
                v.id, v.bandwidth, v.codec, p.width, p.height, p.frame_rate_num, p.frame_rate_den
            );
            segment_template(&mut out, v);
            out.push_str("</Representation>\n");
        }
        out.push_str("</AdaptationSet>\n");
    }
    if let Some(a) = player_audio(manifest) {
        let p = a
            .audio
            .unwrap_or(streamgate_protocol::manifest::AudioParams {
                sample_rate: 48_000,
                channels: 2,
            });
        let _ = writeln!(
            out,
            "<AdaptationSet id=\"1\" contentType=\"audio\" mimeType=\"audio/mp4\" segmentAlignment=\"true\" startWithSAP=\"1\">\n\
             <Representation id=\"{}\" bandwidth=\"{}\" codecs=\"{}\" audioSamplingRate=\"{}\">\n\
             <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>",
            a.id, a.bandwidth, a.codec, p.sample_rate, p.channels
        );
        segment_template(&mut out, a);
        out.push_str("</Representation>\n</AdaptationSet>\n");
    }
    out.push_str("</Period>\n</MPD>\n");
    out
}

fn segment_template(out: &mut String, track: &Track) {
    let _ = writeln!(
        out,
        "<SegmentTemplate timescale=\"{}\" initialization=\"$RepresentationID$/{INIT_NAME}\" \
         media=\"$RepresentationID$/seg_$Number$.m4s\" startNumber=\"0\">\n<SegmentTimeline>",
        track.timescale
    );
    // Runs of equal durations collapse into one <S> with a repeat count.
    let mut start = 0u64;
    let mut i = 0;
    let segs = &track.segments;
    while i < segs.len() {
        let d = segs[i].duration;
        let mut run = 1;
        while i + run < segs.len() && segs[i + run].duration == d {
            run += 1;
        }
        if run > 1 {
            let _ = writeln!(out, "<S t=\"{start}\" d=\"{d}\" r=\"{}\"/>", run - 1);
        } else {
            let _ = writeln!(out, "<S t=\"{start}\" d=\"{d}\"/>");
        }
        start += d * run as u64;
        i += run;
    }
    out.push_str("</SegmentTimeline>\n</SegmentTemplate>\n");
}

fn iso_duration(ms: u64) -> String {
    format!("PT{}.{:03}S", ms / 1000, ms % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_protocol::{
        ContentHash,
        manifest::{AudioParams, SegmentRef, VideoParams},
    };

    fn track(id: &str, kind: TrackKind, n: usize) -> Track {
        let seg = SegmentRef {
            hash: ContentHash::of(id.as_bytes()),
            size: 10,
            duration: 2 * 90_000,
        };
        Track {
            id: id.into(),
            kind,
            codec: if kind == TrackKind::Video {
                "avc1.64001f".into()
            } else {
                "mp4a.40.2".into()
            },
            bandwidth: 1000,
            average_bandwidth: 900,
            video: (kind == TrackKind::Video).then_some(VideoParams {
                width: 1280,
                height: 720,
                frame_rate_num: 30,
                frame_rate_den: 1,
            }),
            audio: (kind == TrackKind::Audio).then_some(AudioParams {
                sample_rate: 48_000,
                channels: 2,
            }),
            timescale: 90_000,
            init: seg,
            segments: vec![seg; n],
        }
    }

    fn manifest(tracks: Vec<Track>) -> Manifest {
        Manifest {
            title: "t".into(),
            created_at: 0,
            duration_ms: 12_000,
            creator: [0; 32],
            tracks,
            access: None,
            encryption: None,
            work: Vec::new(),
        }
    }

    #[test]
    fn master_lists_rungs_with_audio_group() {
        let m = manifest(vec![
            track("720p", TrackKind::Video, 6),
            track("audio_aac", TrackKind::Audio, 6),
        ]);
        let master = hls_master(&m);
        assert!(master.contains("BANDWIDTH=2000,AVERAGE-BANDWIDTH=1800,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"\n720p/index.m3u8"), "{master}");
        assert!(master.contains("URI=\"audio_aac/index.m3u8\""));
    }

    #[test]
    fn audio_only_and_video_only_masters() {
        let audio_only = hls_master(&manifest(vec![track("audio_aac", TrackKind::Audio, 2)]));
        assert!(
            audio_only.contains("CODECS=\"mp4a.40.2\"\naudio_aac/index.m3u8"),
            "{audio_only}"
        );
        let video_only = hls_master(&manifest(vec![track("360p", TrackKind::Video, 2)]));
        assert!(!video_only.contains("AUDIO="), "{video_only}");
    }

    #[test]
    fn media_playlist_and_mpd() {
        let t = track("720p", TrackKind::Video, 3);
        let media = hls_media(&t, None);
        let gated = hls_media(
            &t,
            Some(HlsKey {
                uri: "/keys/x",
                track_number: 1,
            }),
        );
        assert!(gated.contains(
            "#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-KEY:METHOD=AES-128,URI=\"/keys/x\",IV=0x00000000000000010000000000000000\n#EXTINF"
        ), "{gated}");
        assert!(gated.contains(
            "#EXT-X-KEY:METHOD=AES-128,URI=\"/keys/x\",IV=0x00000000000000010000000000000002\n#EXTINF:2.000000,\nseg_2.m4s"
        ), "{gated}");
        assert!(media.contains("#EXT-X-TARGETDURATION:2\n"));
        assert!(media.contains("#EXTINF:2.000000,\nseg_2.m4s\n#EXT-X-ENDLIST"));
        let mpd = dash_mpd(&manifest(vec![t, track("audio_aac", TrackKind::Audio, 3)]));
        assert!(mpd.contains("<S t=\"0\" d=\"180000\" r=\"2\"/>"), "{mpd}");
        assert!(mpd.contains("mediaPresentationDuration=\"PT12.000S\""));
    }
}
