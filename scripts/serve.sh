#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine, builds sluice and serves the bundled default model
# repository (models/) on :8001 (gRPC) and :8000 (HTTP admin). Extra arguments go to
# sluice-server (see build/bin/sluice-server --help).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
exec ./build/bin/sluice-server --model_repository "$ROOT/models" "$@"
