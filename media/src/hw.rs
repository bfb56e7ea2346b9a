//! Which hardware codecs really work on this machine, found by opening them.
//!
//! Nothing is assumed from the presence of a driver or a device node: a device context is
//! created and an encoder or decoder actually opened. Datacenter GPUs (H100, H200) have
//! NVDEC but no NVENC: there the NVENC open fails while the CUVID decoder opens. Vulkan can
//! open on a CPU software driver (lavapipe), so it is reported but never counted as a GPU.

use serde_json::{Value, json};

use ffmpeg_next::{self as ffmpeg, Rational, codec, decoder, encoder, format};

/// One probe result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: String,
    pub kind: &'static str,
    pub available: bool,
    pub detail: String,
}

/// Everything the probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub devices: Vec<Probe>,
    pub encoders: Vec<Probe>,
    pub decoders: Vec<Probe>,
}

/// How a worker can transcode, from what the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Hardware decode and encode.
    FullGpu,
    /// Hardware decode, CPU (x264) encode: datacenter GPUs without NVENC.
    GpuDecodeCpuEncode,
    Cpu,
}

impl Capabilities {
    pub fn encoder_available(&self, name: &str) -> bool {
        self.encoders.iter().any(|p| p.name == name && p.available)
    }

    pub fn decoder_available(&self, name: &str) -> bool {
        self.decoders.iter().any(|p| p.name == name && p.available)
    }

    pub fn mode(&self) -> Mode {
        let gpu_decode = self.decoder_available("h264_cuvid");
        let gpu_encode = self.encoder_available("h264_nvenc")
            || self.encoder_available("h264_vaapi")
            || self.encoder_available("h264_qsv");
        match (gpu_decode, gpu_encode) {
            (_, true) => Mode::FullGpu,
            (true, false) => Mode::GpuDecodeCpuEncode,
            _ => Mode::Cpu,
        }
    }

    pub fn to_json(&self) -> Value {
        let list = |probes: &[Probe]| -> Vec<Value> {
            probes
                .iter()
                .map(|p| json!({ "name": p.name, "kind": p.kind, "available": p.available, "detail": p.detail }))
                .collect()
        };
        json!({
            "mode": match self.mode() {
                Mode::FullGpu => "gpu",
                Mode::GpuDecodeCpuEncode => "gpu-decode-cpu-encode",
                Mode::Cpu => "cpu",
            },
            "devices": list(&self.devices),
            "encoders": list(&self.encoders),
            "decoders": list(&self.decoders),
        })
    }
}

/// Software decoders probed: the source codecs a CPU worker can take.
const SOFTWARE_DECODERS: [&str; 5] = ["h264", "hevc", "vp9", "av1", "mpeg4"];

/// The software encoder and decoders only: what a node that must not use its hardware
/// (`transcode.hardware = "off"`) can do.
pub fn probe_software() -> Capabilities {
    crate::init();
    let encoders = vec![Probe {
        name: "libx264".into(),
        kind: "cpu",
        available: open_encoder("libx264").is_ok(),
        detail: "software H.264".into(),
    }];
    let decoders = SOFTWARE_DECODERS
        .iter()
        .map(|name| {
            let result = open_decoder(name);
            Probe {
                name: (*name).into(),
                kind: "cpu",
                available: result.is_ok(),
                detail: result.err().unwrap_or_else(|| "opened".into()),
            }
        })
        .collect();
    Capabilities {
        devices: Vec::new(),
        encoders,
        decoders,
    }
}

/// Probes devices, encoders and decoders. Each failed probe returns in about a millisecond.
pub fn probe() -> Capabilities {
    let Capabilities {
        mut encoders,
        decoders: software_decoders,
        ..
    } = probe_software();
    let devices = ["cuda", "vaapi", "qsv", "vulkan"]
        .iter()
        .map(|name| probe_device(name))
        .collect();
    for name in ["h264_nvenc", "hevc_nvenc", "h264_vaapi", "h264_qsv"] {
        let result = open_encoder(name);
        encoders.push(Probe {
            name: name.into(),
            kind: "gpu",
            available: result.is_ok(),
            detail: result.err().unwrap_or_else(|| "opened".into()),
        });
    }
    let mut decoders = software_decoders;
    for name in ["h264_cuvid", "hevc_cuvid"] {
        let result = open_decoder(name);
        decoders.push(Probe {
            name: name.into(),
            kind: "gpu",
            available: result.is_ok(),
            detail: result.err().unwrap_or_else(|| "opened".into()),
        });
    }
    Capabilities {
        devices,
        encoders,
        decoders,
    }
}

fn probe_device(name: &str) -> Probe {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return Probe {
            name: name.into(),
            kind: "device",
            available: false,
            detail: "bad name".into(),
        };
    };
    // SAFETY: plain FFmpeg calls with a valid C string; the buffer is released on success.
    #[allow(unsafe_code)]
    let (available, detail) = unsafe {
        let kind = ffmpeg::ffi::av_hwdevice_find_type_by_name(cname.as_ptr());
        if kind == ffmpeg::ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_NONE {
            (false, "not compiled into FFmpeg".to_string())
        } else {
            let mut buffer: *mut ffmpeg::ffi::AVBufferRef = std::ptr::null_mut();
            let r = ffmpeg::ffi::av_hwdevice_ctx_create(
                &mut buffer,
                kind,
                std::ptr::null(),
                std::ptr::null_mut(),
                0,
            );
            if r < 0 {
                (false, ffmpeg::Error::from(r).to_string())
            } else {
                ffmpeg::ffi::av_buffer_unref(&mut buffer);
                let note = if name == "vulkan" {
                    "opened (may be a CPU software driver such as lavapipe; not counted as a GPU)"
                } else {
                    "opened"
                };
                (true, note.to_string())
            }
        }
    };
    Probe {
        name: name.into(),
        kind: "device",
        available,
        detail,
    }
}

/// How many `name` encoders open at once, up to `max`: consumer NVIDIA cards cap
/// concurrent NVENC sessions, and a worker must not take more jobs than it can encode.
pub fn encode_sessions(name: &str, max: u16) -> u16 {
    let mut open = Vec::new();
    while open.len() < usize::from(max) {
        match open_encoder_context(name) {
            Ok(encoder) => open.push(encoder),
            Err(_) => break,
        }
    }
    open.len() as u16
}

/// Opens an H.264/HEVC encoder at 256x144, which any working encoder accepts.
fn open_encoder(name: &str) -> Result<(), String> {
    open_encoder_context(name).map(|_| ())
}

fn open_encoder_context(name: &str) -> Result<encoder::Video, String> {
    let codec = encoder::find_by_name(name).ok_or("not compiled into FFmpeg")?;
    let mut enc = codec::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(|e| e.to_string())?;
    enc.set_width(256);
    enc.set_height(144);
    enc.set_format(format::Pixel::YUV420P);
    enc.set_time_base(Rational(1, 30));
    enc.open_as(codec).map_err(|e| e.to_string())
}

fn open_decoder(name: &str) -> Result<(), String> {
    let codec = decoder::find_by_name(name).ok_or("not compiled into FFmpeg")?;
    codec::Context::new_with_codec(codec)
        .decoder()
        .open_as(codec)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
