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
# Everything but the container smoke test (label docker, 15-30 min cold on 2 cores).
ctest --output-on-failure --timeout 900 -j2 -LE docker
cd "$ROOT"
# The sanitizer and fuzzing stages (docs/RELIABILITY.md): the unit, integration and OpenCL suites
# again under ASan + UBSan (clang, -O1), each libFuzzer target for a bounded time on top of the
# same build, and the TSan harness (scheduler, sessions and CPU backend without gRPC, whose
# uninstrumented Debian build TSan cannot see into). Each fails on any report.
bash scripts/sanitize.sh address
bash scripts/fuzz.sh "${SLUICE_FUZZ_SECONDS:-60}"
bash scripts/sanitize.sh thread
# The image smoke runs when its inputs changed since it last passed by hand (the stamp lists their
# hashes; after `ctest -L docker` passes, `sha256sum $(cut -c67- tests/docker/verified.sha256)
# > tests/docker/verified.sha256` records them).
if ! sha256sum --check --status tests/docker/verified.sha256 2>/dev/null; then
  echo "test: the Dockerfile or its inputs changed: running the image smoke test"
  (cd build && ctest --output-on-failure -L docker)
fi
