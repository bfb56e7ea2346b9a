#!/usr/bin/env bash
# Builds and tests the Solidity contracts offline, and (with `artifacts`) refreshes the
# committed ABI + bytecode artifacts that the Rust bindings are generated from.
#
#   scripts/contracts.sh test        forge build + forge test
#   scripts/contracts.sh artifacts   forge build, then write contracts/artifacts/*.json
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FOUNDRY_SOLC="$root/scripts/solc-js"
forge="$root/.tools/bin/forge"
[ -x "$forge" ] || { echo "forge is missing: run scripts/setup.sh" >&2; exit 1; }
cd "$root/contracts"
case "${1:-test}" in
  test)
    "$forge" build --quiet
    "$forge" test
    ;;
  artifacts)
    "$forge" build --quiet
    node "$root/scripts/export-artifacts.js" "$root/contracts/out" "$root/contracts/artifacts"
    ;;
  *)
    echo "usage: $0 [test|artifacts]" >&2
    exit 2
    ;;
esac
