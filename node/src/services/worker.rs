//! Volunteering this node as a transcoding worker (`[worker] enabled = true`): its signed
//! advert, built from the hardware probe and the configuration, gossiped every third of its
//! time-to-live so that it never lapses while the node runs.
//!
//! Not built yet: taking jobs (the job protocol), the start-up speed measurement and the
//! per-GPU session probe; the advert says "not measured" for those rather than guess.

use std::time::Duration;

use streamgate_api::{config::WorkerConfig, v1::WorkerInfo};
use streamgate_media::hw::{Capabilities, Mode};
use streamgate_protocol::worker::{
    Gpu, MAX_CODECS, MAX_GPUS, SignedWorkerAdvert, WorkMode, WorkerAdvert,
};
use streamgate_swarm::{SwarmHandle, daemon::unix_now, identity::Identity};

use crate::config::payment_address;

/// Hardware devices that count as GPUs (Vulkan may be a CPU software driver).
const GPU_DEVICES: [&str; 3] = ["cuda", "vaapi", "qsv"];

/// This node's advert at `issued_at`, from what its probe opened.
pub fn advert(
    config: &WorkerConfig,
    caps: &Capabilities,
    node_key: [u8; 32],
    issued_at: u64,
) -> WorkerAdvert {
    let opened = |probes: &[streamgate_media::hw::Probe]| {
        probes
            .iter()
            .filter(|p| p.available)
            .map(|p| p.name.clone())
            .take(MAX_CODECS)
            .collect::<Vec<_>>()
    };
    let mode = match caps.mode() {
        Mode::FullGpu => WorkMode::Gpu,
        Mode::GpuDecodeCpuEncode => WorkMode::GpuDecodeCpuEncode,
        Mode::Cpu => WorkMode::Cpu,
    };
    let gpus = caps
        .devices
        .iter()
        .filter(|d| d.available && GPU_DEVICES.contains(&d.name.as_str()))
        .map(|d| Gpu {
            name: d.name.clone(),
            // A GPU whose encoder did not open encodes nothing; how many sessions one that
            // did allows is not probed yet.
            encode_sessions: (mode != WorkMode::Gpu).then_some(0),
        })
        .take(MAX_GPUS)
        .collect();
    WorkerAdvert {
        node_key,
        issued_at,
        ttl_secs: config.advert_ttl_secs,
        mode,
        decoders: opened(&caps.decoders),
        encoders: opened(&caps.encoders),
        gpus,
        speed_millifps: None,
        price_per_gigapixel: u128::from(config.price_per_gigapixel),
        max_jobs: config.max_jobs,
        // No job is taken yet.
        active_jobs: 0,
        payment_address: payment_address(&config.payment_address),
    }
}

/// Gossips this node's advert now and every third of its time-to-live, until the task is
/// dropped. The first adverts go out every few seconds while the gossip mesh forms.
pub async fn advertise(
    config: WorkerConfig,
    caps: Capabilities,
    identity: Identity,
    swarm: SwarmHandle,
) {
    let every = Duration::from_secs(u64::from(config.advert_ttl_secs / 3).max(1));
    let mut sent = 0u32;
    loop {
        let signed =
            advert(&config, &caps, identity.public_key(), unix_now()).sign(&identity.signing_key());
        if swarm.advertise_worker(signed).await.is_err() {
            return;
        }
        sent += 1;
        // A node that just joined has no mesh peers yet, and gossipsub drops what it cannot
        // send: repeat early so that peers hear of the worker within seconds.
        let wait = if sent < 5 {
            Duration::from_secs(2).min(every)
        } else {
            every
        };
        tokio::time::sleep(wait).await;
    }
}

/// What `GET /api/v1/workers` shows of one advert.
pub fn info(signed: &SignedWorkerAdvert) -> WorkerInfo {
    let advert = &signed.advert;
    WorkerInfo {
        peer_id: streamgate_swarm::identity::peer_id_of(&advert.node_key)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        node_id: hex::encode(advert.node_key),
        mode: match advert.mode {
            WorkMode::Gpu => "gpu",
            WorkMode::GpuDecodeCpuEncode => "gpu-decode-cpu-encode",
            WorkMode::Cpu => "cpu",
        }
        .to_string(),
        decoders: advert.decoders.clone(),
        encoders: advert.encoders.clone(),
        gpus: advert
            .gpus
            .iter()
            .map(|g| streamgate_api::v1::WorkerGpu {
                name: g.name.clone(),
                encode_sessions: g.encode_sessions,
            })
            .collect(),
        speed_fps: advert.speed_millifps.map(|m| f64::from(m) / 1000.0),
        price_per_gigapixel: advert.price_per_gigapixel.to_string(),
        max_jobs: advert.max_jobs,
        active_jobs: advert.active_jobs,
        payment_address: advert
            .payment_address
            .map(|a| format!("0x{}", hex::encode(a))),
        issued_at: advert.issued_at,
        expires_at: advert.expires_at(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamgate_media::hw::Probe;

    fn probe(name: &str, kind: &'static str, available: bool) -> Probe {
        Probe {
            name: name.into(),
            kind,
            available,
            detail: String::new(),
        }
    }

    /// What the probe finds on an H200: CUDA and NVDEC, no NVENC.
    fn datacenter_gpu() -> Capabilities {
        Capabilities {
            devices: vec![
                probe("cuda", "device", true),
                probe("vulkan", "device", true),
            ],
            encoders: vec![
                probe("libx264", "cpu", true),
                probe("h264_nvenc", "gpu", false),
            ],
            decoders: vec![probe("h264", "cpu", true), probe("h264_cuvid", "gpu", true)],
        }
    }

    #[test]
    fn a_datacenter_gpu_offers_hybrid_work_and_says_it_cannot_encode() {
        let mut config = WorkerConfig {
            price_per_gigapixel: 7,
            payment_address: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into(),
            ..WorkerConfig::default()
        };
        let a = advert(&config, &datacenter_gpu(), [1; 32], 50);
        assert_eq!(a.mode, WorkMode::GpuDecodeCpuEncode);
        assert_eq!(a.encoders, ["libx264"]);
        assert_eq!(a.decoders, ["h264", "h264_cuvid"]);
        // Vulkan is not counted as a GPU; CUDA's encode sessions: none.
        assert_eq!(
            a.gpus,
            [Gpu {
                name: "cuda".into(),
                encode_sessions: Some(0)
            }]
        );
        assert_eq!(
            (a.price_per_gigapixel, a.issued_at, a.ttl_secs),
            (7, 50, 300)
        );
        assert_eq!(a.payment_address.map(|p| p[0]), Some(0x70));
        assert_eq!(a.speed_millifps, None, "speed is not measured yet");
        config.payment_address.clear();
        assert_eq!(
            advert(&config, &datacenter_gpu(), [1; 32], 50).payment_address,
            None
        );
    }
}
