//! Playback in a real browser: Debian's Chromium driven by playwright-core, playing with
//! hls.js (both from npm, installed by `scripts/setup.sh` into `.tools/`).

use std::{path::PathBuf, process::Command};

use anyhow::{Context, bail};

fn tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/node_modules")
}

/// What the player saw: one JSON object (see `tests/browser/hls_play.cjs`).
pub fn play_hls_rungs(
    origin: &str,
    master: &str,
    times: &[f64],
) -> anyhow::Result<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("browser/hls_play.cjs");
    let hls = tools().join("hls.js/dist/hls.min.js");
    if !hls.exists() {
        bail!("{} is missing (run scripts/setup.sh)", hls.display());
    }
    let out = Command::new("node")
        .env("NODE_PATH", tools())
        .arg(&script)
        .args([origin, master])
        .arg(&hls)
        .arg("/usr/bin/chromium")
        .args(times.iter().map(|t| t.to_string()))
        .output()
        .context("cannot run node (run scripts/setup.sh)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let value: serde_json::Value = serde_json::from_str(line).with_context(|| {
        format!(
            "the player printed no result: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(error) = value.get("error").and_then(|e| e.as_str()) {
        bail!("the player failed: {error}");
    }
    Ok(value)
}
