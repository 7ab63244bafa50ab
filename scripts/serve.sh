#!/usr/bin/env bash
# Sets up a fresh Debian bookworm machine, builds sluice and streams the bundled default model
# through sluice-run (the server binary arrives with the server issue).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
bash scripts/build.sh
model=tests/models/espdl_tcn_block
./build/bin/sluice-run --model "$model/model.onnx" --describe
./build/bin/sluice-run --model "$model/model.onnx" --input "$model/input.npy" \
  --output build/espdl_tcn_block.out.npy --sessions 4
echo "wrote build/espdl_tcn_block.out.npy"
