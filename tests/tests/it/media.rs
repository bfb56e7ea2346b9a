//! The media pipeline in-process, checked with the real ffmpeg and ffprobe tools.

use std::{
    path::Path,
    sync::{Arc, atomic::AtomicBool},
};

use streamgate_media::{ManifestBuilder, TranscodeConfig, playlist, transcode_file};
use streamgate_protocol::manifest::{Manifest, TrackKind};
use streamgate_tests::media::{
    decode_errors, make_clip, segment_starts_with_keyframe, served_file, stream_duration,
    video_frames,
};

/// Transcodes `source` into `out_dir` laid out as the gateway serves it, and returns the
/// manifest.
fn publish_to_dir(source: &Path, out_dir: &Path) -> Manifest {
    let mut builder = ManifestBuilder::new();
    let mut files: Vec<(usize, String, Vec<u8>)> = Vec::new();
    let cancel = AtomicBool::new(false);
    let result = transcode_file(
        source,
        &TranscodeConfig::default(),
        Arc::new(|_, _| {}),
        &cancel,
        |output| {
            builder.record(&output)?;
            files.extend(served_file(output));
            Ok(())
        },
    )
    .expect("transcode");
    let manifest = builder
        .finish(&result.tracks, "test", 0, [0; 32])
        .expect("manifest");
    for (track, name, bytes) in files {
        let dir = out_dir.join(&result.tracks[track].id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(name), bytes).expect("write");
    }
    std::fs::write(out_dir.join("master.m3u8"), playlist::hls_master(&manifest)).expect("write");
    std::fs::write(out_dir.join("manifest.mpd"), playlist::dash_mpd(&manifest)).expect("write");
    for track in &manifest.tracks {
        std::fs::write(
            out_dir.join(&track.id).join("index.m3u8"),
            playlist::hls_media(track, None),
        )
        .expect("write");
    }
    manifest
}

#[test]
fn a_720p_clip_becomes_a_clean_keyframe_aligned_ladder() {
    let root = tempfile::tempdir().expect("tempdir");
    let source = root.path().join("clip.mp4");
    make_clip(&source, 12, "1280x720", 30, true).expect("clip");
    let out = root.path().join("out");
    let manifest = publish_to_dir(&source, &out);

    let ids: Vec<&str> = manifest.tracks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["720p", "480p", "360p", "audio_aac", "audio_opus"]);
    let master = out.join("master.m3u8");
    let errors = decode_errors(master.to_str().expect("utf-8"), &[]).expect("decode master");
    assert!(
        errors.is_empty(),
        "decoding the master printed errors: {errors}"
    );
    for track in manifest
        .tracks
        .iter()
        .filter(|t| t.kind == TrackKind::Video)
    {
        let playlist = out.join(&track.id).join("index.m3u8");
        let frames = video_frames(playlist.to_str().expect("utf-8"), &[]).expect("frames");
        assert_eq!(frames.len(), 360, "{}: frame count", track.id);
        assert!(
            frames.iter().all(|f| f.pict_type != "B"),
            "{}: has B-frames",
            track.id
        );
        let duration =
            stream_duration(playlist.to_str().expect("utf-8"), "v", &[]).expect("duration");
        assert!(
            (duration - 12.0).abs() <= 1.0 / 30.0 + 1e-6,
            "{}: duration {duration}",
            track.id
        );
        assert_eq!(track.segments.len(), 6, "{}: 2 s segments", track.id);
        let init = std::fs::read(out.join(&track.id).join("init.mp4")).expect("init");
        for i in 0..track.segments.len() {
            let seg = std::fs::read(out.join(&track.id).join(playlist::segment_name(i)))
                .expect("segment");
            assert!(
                segment_starts_with_keyframe(&init, &seg, root.path()).expect("probe segment"),
                "{} segment {i} does not start with a keyframe",
                track.id
            );
        }
    }
    let aac = out.join("audio_aac/index.m3u8");
    let audio = stream_duration(aac.to_str().expect("utf-8"), "a", &[]).expect("audio duration");
    assert!((audio - 12.0).abs() < 0.1, "audio duration {audio}");
}
