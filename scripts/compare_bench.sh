#!/usr/bin/env bash
# One streaming step of a model (default models/cnn_tiny) on one pinned core, in one run, by:
#   1. sluice: sluice-run --bench --json, CPU backend in fp32 and with bf16 weights
#      (--precision bf16), and the OpenCL backend on PoCL's CPU device when there is one
#      (POCL_MAX_PTHREAD_COUNT=1);
#   2. ONNX Runtime: the model exported by sluice-run --export_streaming_onnx (states as explicit
#      inputs/outputs), one Run() per step from Python with IOBinding, one thread; at batch N the
#      export has a batch dim of N (N sessions per Run()), tests/bench/ort_stream_bench.py;
#   3. PyTorch eager (the venv's torch): conv1d on each layer's [cache, frame] window under
#      no_grad, one thread, tests/bench/torch_stream_bench.py (causal conv chains only);
# in --rounds rounds (each round runs every runner once, so load changes hit all of them), then
# scripts/plot_bench.py: summary tables (medians over rounds) and PNGs of the results.
#
#   scripts/compare_bench.sh [--bin DIR] [--model M.onnx] [--batch 1,64,256] [--steps N]
#                            [--rounds N] [--out DIR] [--plots DIR] [--skip opencl,ort,torch]
#
#   --bin DIR    where sluice-run is (default build/bin)
#   --model M    offline ONNX model (default models/cnn_tiny/model.onnx)
#   --batch L    comma-separated batch sizes (default 1,64,256)
#   --steps N    timed steps per batch size and runner (default 1000; 100 warm-up steps first)
#   --rounds N   rounds of all runners (default 3)
#   --out DIR    results directory (default build/bench-results/compare-<UTC time>)
#   --plots DIR  where the PNGs go (default <out>/plots)
#   --skip LIST  runners to leave out: bf16, opencl, ort, torch
#
# Every runner is pinned to the second CPU (taskset), as in scripts/bench.sh. The machine is
# shared: the load average is printed before each part and kept in <out>/load.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"
BIN="$ROOT/build/bin"
PY="$ROOT/.venv/bin/python"
model="$ROOT/models/cnn_tiny/model.onnx"
batches="1,64,256"
steps=1000
rounds=3
out=""
plots=""
skip=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$(cd "$2" && pwd)"; shift ;;
    --model) model="$2"; shift ;;
    --batch) batches="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --out) out="$2"; shift ;;
    --plots) plots="$2"; shift ;;
    --skip) skip="$2"; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
    *) echo "compare_bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
skipped() { [[ ",$skip," == *",$1,"* ]]; }
[[ -n "$out" ]] || out="$ROOT/build/bench-results/compare-$(date -u +%Y%m%dT%H%M%SZ)"
[[ -n "$plots" ]] || plots="$out/plots"
mkdir -p "$out"
[[ -x "$BIN/sluice-run" ]] || { echo "compare_bench.sh: $BIN/sluice-run is missing (build it)" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "compare_bench.sh: no $PY (run scripts/setup.sh)" >&2; exit 1; }
pin=(taskset -c "$(( $(nproc) > 1 ? 1 : 0 ))")
common=(--steps "$steps" --warmup_steps 100)
# Appends "<part> <load average>" to load.txt and prints the section header.
part() { section "$1"; echo "$1: $(loadavg)" >>"$out/load.txt"; }

machine_info | tee "$out/machine.txt"
{ echo "torch:        $("$PY" -c 'import torch; print(torch.__version__)') ($("$PY" -c 'import torch; print(torch.__config__.show())' | grep -o 'BLAS_INFO=[^,]*\|USE_MKLDNN=[^,]*' | tr '\n' ' '))"
  echo "onnxruntime:  $("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')"
  echo "model:        $model"
} | tee -a "$out/machine.txt"

if ! skipped ort; then
  for b in ${batches//,/ }; do
    "$BIN/sluice-run" --model "$model" --export_streaming_onnx "$out/streaming-b$b.onnx" \
      --export_batch "$b" 2>/dev/null
  done
fi
: >"$out/sluice-cpu.jsonl"; : >"$out/sluice-opencl.jsonl"; : >"$out/ort.jsonl"; : >"$out/torch.jsonl"
for ((round = 1; round <= rounds; round++)); do
  part "round $round/$rounds: sluice, CPU backend (sluice-run --bench, ${pin[*]})"
  "${pin[@]}" "$BIN/sluice-run" --model "$model" --bench --json --backend cpu \
    --batch "$batches" "${common[@]}" | tee -a "$out/sluice-cpu.jsonl"

  if ! skipped bf16; then
    part "round $round/$rounds: sluice, CPU backend, bf16 weights (--precision bf16, ${pin[*]})"
    "${pin[@]}" "$BIN/sluice-run" --model "$model" --bench --json --backend cpu --precision bf16 \
      --batch "$batches" "${common[@]}" | tee -a "$out/sluice-cpu.jsonl"
  fi

  if ! skipped opencl; then
    part "round $round/$rounds: sluice, OpenCL backend on PoCL's CPU device (${pin[*]}, POCL_MAX_PTHREAD_COUNT=1)"
    if ! POCL_MAX_PTHREAD_COUNT=1 "${pin[@]}" "$BIN/sluice-run" --model "$model" --bench --json \
        --backend opencl --opencl_device cpu --batch "$batches" "${common[@]}" \
        2>"$out/sluice-opencl.err" | tee -a "$out/sluice-opencl.jsonl"; then
      echo "no OpenCL result: $(tail -1 "$out/sluice-opencl.err")"
    fi
  fi

  if ! skipped ort; then
    part "round $round/$rounds: ONNX Runtime, exported streaming model, Python IOBinding (${pin[*]})"
    for b in ${batches//,/ }; do
      "${pin[@]}" "$PY" tests/bench/ort_stream_bench.py --model "$out/streaming-b$b.onnx" \
        --label "$model" "${common[@]}" | tee -a "$out/ort.jsonl"
    done
  fi

  if ! skipped torch; then
    part "round $round/$rounds: PyTorch eager, conv1d on [cache, frame] windows (${pin[*]})"
    "${pin[@]}" "$PY" tests/bench/torch_stream_bench.py --model "$model" --batch "$batches" \
      "${common[@]}" | tee -a "$out/torch.jsonl"
  fi
done

part "summary and plots"
"$PY" scripts/plot_bench.py "$out" --out "$plots" | tee "$out/summary.md"
echo "load average at the end: $(loadavg)" | tee -a "$out/load.txt"
