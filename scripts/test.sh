#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine, builds sluice and runs every test suite that CI runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-$ROOT/build/pocl-cache}"
mkdir -p "$POCL_CACHE_DIR"
cd build
ctest --output-on-failure --timeout 900 -j2
