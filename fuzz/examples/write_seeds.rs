//! Writes the seed corpus, `fuzz/seeds/<target>/`: a few valid inputs per target, so that a
//! short run starts from messages that get past every check. Rerun it after a change of a
//! wire format:
//!
//! ```sh
//! cargo run --manifest-path fuzz/Cargo.toml --example write_seeds
//! ```

use std::{fs, path::Path};

use streamgate_api::{
    config::{ChainConfig, DEFAULT_CONFIG_TOML, NodeConfig},
    v1::{ManifestView, PublishRequest, SignInRequest},
};
use streamgate_fuzz::{SEED_NOW, signing_key, with_now};
use streamgate_protocol::{
    Announcement, ContentHash, Manifest, NodeRecord, SignedManifest,
    access::{Encryption, EncryptionMethod, WrappedKey},
    manifest::{AudioParams, SegmentRef, Track, TrackKind, VideoParams, WorkRecord},
    worker::{Gpu, WorkMode, WorkerAdvert},
};
use streamgate_swarm::{identity::peer_id_of, records::node_record_key};

const GATE: &str = "erc721:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3";

fn main() -> std::io::Result<()> {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = seeds.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)
    };

    let public = manifest().sign(signing_key());
    let mut gated = manifest();
    gated.access = Some(GATE.parse().expect("the gate parses"));
    gated.encryption = Some(Encryption {
        method: EncryptionMethod::Aes128,
        key_wraps: vec![WrappedKey {
            node_key: [9; 32],
            url: Some("http://127.0.0.1:7700".into()),
            sealed: vec![1; 48],
        }],
    });
    let gated = gated.sign(signing_key());
    for seed in [&public, &gated] {
        SignedManifest::decode_verified(&seed.encode()).expect("a seed manifest verifies");
    }
    write("signed_manifest", "public", &public.encode())?;
    write("signed_manifest", "gated", &gated.encode())?;

    let node_key = signing_key().verifying_key().to_bytes();
    let full_record = NodeRecord {
        node_key,
        direct_addrs: vec![
            "192.168.1.20:4433".parse().expect("an address"),
            "[2001:db8::1]:4433".parse().expect("an address"),
        ],
        relay_url: Some("http://127.0.0.1:3340/".into()),
        issued_at: SEED_NOW,
    }
    .sign(signing_key());
    let bare_record = NodeRecord {
        node_key,
        direct_addrs: vec![],
        relay_url: None,
        issued_at: SEED_NOW,
    }
    .sign(signing_key());
    write(
        "node_record",
        "full",
        &with_now(SEED_NOW, &full_record.encode()),
    )?;
    write(
        "node_record",
        "bare",
        &with_now(SEED_NOW, &bare_record.encode()),
    )?;

    let announcement = Announcement {
        hash: ContentHash::of(b"segment"),
        size: 1_048_576,
        provider: full_record.clone(),
    };
    write(
        "announcement",
        "full",
        &with_now(SEED_NOW, &announcement.encode()),
    )?;

    let hybrid = WorkerAdvert {
        node_key,
        issued_at: SEED_NOW,
        ttl_secs: 300,
        mode: WorkMode::GpuDecodeCpuEncode,
        decoders: vec!["h264".into(), "h264_cuvid".into()],
        encoders: vec!["libx264".into()],
        gpus: vec![Gpu {
            name: "cuda".into(),
            encode_sessions: Some(0),
        }],
        speed_millifps: Some(95_000),
        price_per_gigapixel: 250_000_000_000,
        max_jobs: 2,
        active_jobs: 1,
        payment_address: Some([0x70; 20]),
    }
    .sign(signing_key());
    write(
        "worker_advert",
        "hybrid",
        &with_now(SEED_NOW, &hybrid.encode()),
    )?;

    let offer = streamgate_protocol::job::JobOffer {
        job_id: [7; 16],
        publisher: node_key,
        issued_at: SEED_NOW,
        deadline: SEED_NOW + 600,
        chunk: ContentHash::of(b"chunk"),
        chunk_size: 4_000_000,
        source_codec: "h264".into(),
        fps_num: 30,
        fps_den: 1,
        rotation: 0,
        origin: 0,
        first_frame: 300,
        frames: 300,
        gop: 60,
        preset: "veryfast".into(),
        rungs: vec![streamgate_protocol::job::JobRung {
            id: "720p".into(),
            width: 1280,
            height: 720,
            bitrate: 2_800_000,
        }],
        price_per_gigapixel: 1_000_000_000,
        publisher_record: Some(full_record.clone()),
    }
    .sign(signing_key());
    write("job_message", "offer", &with_now(SEED_NOW, &offer.encode()))?;
    let output = |n: u8| SegmentRef {
        hash: ContentHash::of(&[n]),
        size: 90_000,
        duration: 0,
    };
    let receipt = streamgate_protocol::job::Receipt {
        job_id: offer.offer.job_id,
        worker: signing_key().verifying_key().to_bytes(),
        publisher: offer.offer.publisher,
        chunk: offer.offer.chunk,
        issued_at: SEED_NOW + 60,
        rungs: vec![streamgate_protocol::job::RungOutput {
            id: "720p".into(),
            init: output(0),
            segments: (1..=5).map(output).collect(),
        }],
        worker_record: Some(full_record.clone()),
    }
    .sign(signing_key());
    write("job_message", "receipt", &with_now(SEED_NOW, &receipt.encode()))?;
    let refused = streamgate_protocol::job::JobReply::Refused("busy".into());
    write("job_message", "refused", &with_now(SEED_NOW, &refused.encode()))?;

    let peer = peer_id_of(&node_key).expect("an Ed25519 key");
    let key = node_record_key(&peer);
    let key = key.as_ref();
    let key_len = u8::try_from(key.len()).expect("a node record key is short");
    let dht = [&[key_len][..], key, &full_record.encode()].concat();
    write("dht_record", "node_record", &with_now(SEED_NOW, &dht))?;

    let siwe = "127.0.0.1:7700 wants you to sign in with your Ethereum account:\n\
                0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\nWatch gated videos.\n\n\
                URI: http://127.0.0.1:7700/watch\nVersion: 1\nChain ID: 31337\n\
                Nonce: abcd1234efgh\nIssued At: 2026-11-27T10:00:00Z\n\
                Expiration Time: 2026-11-27T10:10:00.5+01:00";
    write("siwe_message", "statement", siwe.as_bytes())?;
    let siwe_full = "http://127.0.0.1:7700 wants you to sign in with your Ethereum account:\n\
                     0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\n\n\
                     URI: http://127.0.0.1:7700\nVersion: 1\nChain ID: 1\n\
                     Nonce: 0123456789abcdef\nIssued At: 2026-11-27T10:00:00-02:30\n\
                     Expiration Time: 2026-11-28T10:00:00Z\nNot Before: 2026-11-27T10:00:00Z\n\
                     Request ID: 42\nResources:\n- ipfs://x\n- https://example.com/a\n";
    write("siwe_message", "every_field", siwe_full.as_bytes())?;
    // Times alone (`parse_time`), the edges of what RFC 3339 can write among them.
    write("siwe_message", "time", b"2026-11-27T10:00:00.5+01:00")?;
    write("siwe_message", "earliest_time", b"0000-01-01T00:00:00Z")?;
    write("siwe_message", "latest_time", b"9999-12-31T23:59:59Z")?;

    for (name, size, header) in [
        ("first_bytes", 10_000, "bytes=0-499"),
        ("open_end", 10_000, "bytes=9500-"),
        ("suffix", 10_000, "bytes=-500"),
        ("several", 10_000, "bytes=0-0, -1"),
    ] {
        write("http_range", name, &with_now(size, header.as_bytes()))?;
    }

    write(
        "tus_headers",
        "metadata",
        b"filename d29ybGQubXA0,is_confidential",
    )?;
    write("tus_headers", "length", b"1048576")?;

    write("node_config", "default", DEFAULT_CONFIG_TOML.as_bytes())?;
    let mut config = NodeConfig::default();
    config.swarm.bootstrap = vec![
        "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
            .parse()
            .expect("a multiaddr"),
    ];
    config.chains.push(ChainConfig {
        chain_id: 31337,
        rpc_urls: vec!["http://127.0.0.1:8545".into()],
        registry: Some("0x5FbDB2315678afecb367f032d93F642f64180aa3".into()),
    });
    config.testing.corrupt_served_byte_at = Some(7);
    write("node_config", "chains", config.to_toml().as_bytes())?;

    write("access_gate", "erc721", GATE.as_bytes())?;
    write(
        "access_gate",
        "erc1155",
        b"erc1155:5:0x5FbDB2315678afecb367f032d93F642f64180aa3:7:3",
    )?;
    write("access_gate", "key_server_url", b"https://[::1]:7700")?;

    let hash = ContentHash::of(b"x");
    write("content_hash", "hex", hash.to_hex().as_bytes())?;
    write("content_hash", "json", format!("\"{hash}\"").as_bytes())?;

    let publish = PublishRequest {
        upload_id: "00112233445566778899aabbccddeeff".into(),
        title: Some("Clip".into()),
        ladder: Some("720p,480p".into()),
        gate: Some(GATE.into()),
        key_servers: vec![format!("{}@http://127.0.0.1:7701", "ab".repeat(32))],
        registrant: Some("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266".into()),
    };
    let sign_in = SignInRequest {
        message: siwe.into(),
        signature: format!("0x{}", "11".repeat(65)),
    };
    let view = ManifestView {
        id: gated.id(),
        manifest: gated.manifest.clone(),
        signature: gated.signature.iter().map(|b| format!("{b:02x}")).collect(),
    };
    write("api_json", "publish", &json(&publish))?;
    write("api_json", "sign_in", &json(&sign_in))?;
    write("api_json", "manifest_view", &json(&view))?;
    Ok(())
}

fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("an API body serialises")
}

/// A two-track manifest (one video rung, one audio track) by the fuzz signing key.
fn manifest() -> Manifest {
    let segment = |n: u8| SegmentRef {
        hash: ContentHash::of(&[n]),
        size: 1000 + u64::from(n),
        duration: 180_000,
    };
    Manifest {
        title: "Seed clip".into(),
        created_at: SEED_NOW,
        duration_ms: 4000,
        creator: signing_key().verifying_key().to_bytes(),
        tracks: vec![
            Track {
                id: "720p".into(),
                kind: TrackKind::Video,
                codec: "avc1.64001f".into(),
                bandwidth: 3_000_000,
                average_bandwidth: 2_800_000,
                video: Some(VideoParams {
                    width: 1280,
                    height: 720,
                    frame_rate_num: 30,
                    frame_rate_den: 1,
                }),
                audio: None,
                timescale: 90_000,
                init: segment(0),
                segments: vec![segment(1), segment(2)],
            },
            Track {
                id: "audio_aac".into(),
                kind: TrackKind::Audio,
                codec: "mp4a.40.2".into(),
                bandwidth: 130_000,
                average_bandwidth: 128_000,
                video: None,
                audio: Some(AudioParams {
                    sample_rate: 48_000,
                    channels: 2,
                }),
                timescale: 48_000,
                init: segment(3),
                segments: vec![segment(4), segment(5)],
            },
        ],
        access: None,
        encryption: None,
        work: vec![WorkRecord {
            first_segment: 1,
            segments: 1,
            worker: signing_key().verifying_key().to_bytes(),
            receipt: SegmentRef {
                duration: 0,
                ..segment(6)
            },
        }],
    }
}
