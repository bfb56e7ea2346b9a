#!/usr/bin/env bash
# Installs everything StreamGate needs to build, test and run its demo, idempotently.
#
#   Debian packages: FFmpeg 5.1 development libraries (linked by ffmpeg-next), pkg-config,
#                    clang/libclang (bindgen), ffmpeg (the CLI, used by tests as the reference
#                    player), chromium (browser tests), wrk and nginx (benchmark baselines),
#                    iproute2 and nftables (the NAT tests build network namespaces).
#   npm packages:    anvil/forge/cast (Foundry), solc-js, OpenZeppelin contracts,
#                    playwright-core and hls.js (browser playback tests), into the
#                    project-local folder .tools/ (ignored by git).
#   crates.io:       cargo-fuzz, into .tools/bin.
#
# Re-running it on a ready machine takes a few seconds: every step checks first.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"

say() { printf 'setup: %s\n' "$*"; }

apt_packages=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libswscale-dev libswresample-dev
  libavdevice-dev
  ffmpeg
  chromium
  wrk nginx-light
  iproute2 nftables procps psmisc curl
)

missing=()
for pkg in "${apt_packages[@]}"; do
  # dpkg-query prints "install ok installed" only for a fully installed package.
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# npm tools, pinned in .tools/package.json so every machine gets the same versions.
mkdir -p "$tools"
cat > "$tools/package.json.new" <<'JSON'
{
  "name": "streamgate-tools",
  "private": true,
  "description": "Third-party tools StreamGate uses; installed by scripts/setup.sh",
  "dependencies": {
    "@foundry-rs/anvil-linux-amd64": "1.7.1",
    "@foundry-rs/cast-linux-amd64": "1.7.1",
    "@foundry-rs/forge-linux-amd64": "1.7.1",
    "@openzeppelin/contracts": "5.7.0",
    "hls.js": "1.7.4",
    "playwright-core": "1.65.1",
    "solc": "0.8.37"
  }
}
JSON
if ! cmp -s "$tools/package.json.new" "$tools/package.json" || [ ! -d "$tools/node_modules" ]; then
  mv "$tools/package.json.new" "$tools/package.json"
  say "installing npm tools into .tools/"
  (cd "$tools" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
else
  rm -f "$tools/package.json.new"
  say "npm tools present"
fi

# Stable paths for the tools, so scripts and tests need not know npm's layout.
mkdir -p "$tools/bin"
for tool in anvil forge cast; do
  target="$(find "$tools/node_modules/@foundry-rs/$tool-linux-amd64" -type f -name "$tool" -perm -u+x 2>/dev/null | head -n1)"
  if [ -z "$target" ]; then
    say "could not find the $tool binary in @foundry-rs/$tool-linux-amd64" >&2
    exit 1
  fi
  ln -sf "$target" "$tools/bin/$tool"
done
# cargo-fuzz (`make fuzz-check`, `make fuzz`), from crates.io into .tools/bin, pinned like the
# npm tools; one already on the PATH is used as it is.
if [ ! -x "$tools/bin/cargo-fuzz" ] && ! command -v cargo-fuzz >/dev/null; then
  say "installing cargo-fuzz into .tools/"
  cargo install --quiet --locked --root "$tools" cargo-fuzz --version 0.13.2
else
  say "cargo-fuzz present"
fi
say "ready (tools in $tools/bin)"
