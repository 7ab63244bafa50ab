#!/usr/bin/env bash
# Builds sluice and runs every benchmark in one go, so that the ratios docs/BENCHMARKS.md quotes
# are taken in the same run on the same machine:
#   1. machine info (CPU model, ISA flags, cores, kernel, load average);
#   2. one core's fp32 FMA peak and the GEMM of the cnn_tiny layer shape — sluice's kernels,
#      oneDNN and Eigen — (sluice-gemm-bench, pinned to one core, libraries on one thread);
#   3. one CpuBackend Step of models/cnn_tiny at batch 1, 64, 256 (sluice-step-bench, pinned);
#   4. transport: sluice-client bench against the bare gRPC echo (sluice-echo-server, frames of
#      128 floats) and against sluice-server (model cnn_tiny, frames of 128 floats), alternating,
#      for 1 x 3000, 64 x 300, 1000 x 30 and 10000 x 10 (sessions x frames; --configs), ping-pong;
#      the server's mean
#      batch from /metrics (sluice_batch_size_sum / _count) over each run, and each server's CPU
#      time per frame (user + system, from /proc; steadier than wall-clock on a shared machine).
# Prints a summary (Markdown tables) at the end; raw outputs go to the results directory.
# The streaming step against ONNX Runtime and PyTorch is scripts/compare_bench.sh;
# scripts/plot_bench.py plots either script's results (transport: server vs echo).
#
#   scripts/bench.sh [--no-build] [--bin DIR] [--baseline_bin DIR] [--rounds N] [--reps N]
#                    [--out DIR] [--skip gemm,step,transport] [--configs S:F:W,...]
#
#   --no-build   use the binaries already in build/bin (default: scripts/build.sh first)
#   --bin DIR    use the binaries in DIR (e.g. another build directory's bin/); implies --no-build
#   --baseline_bin DIR
#                transport: also run DIR/sluice-server (e.g. a build of the previous commit) as
#                target "baseline", alternating with echo and the server, for before/after in one
#                run (sluice-client and the echo come from the --bin directory)
#   --rounds N   transport rounds per configuration, echo and server alternating; the summary
#                takes the median of each statistic over rounds (default 3)
#   --reps N     repetitions of each Google Benchmark; the summary takes the median (default 3)
#   --out DIR    results directory (default build/bench-results/<UTC time>)
#   --skip LIST  comma-separated parts to leave out: gemm, step, transport
#   --configs LIST
#                transport: comma-separated sessions:frames:warmup (frames per session measured,
#                warm-up frames sent first and left out); default
#                1:3000:300,64:300:30,1000:30:3,10000:10:1 (10000 is the server's default
#                --max_sessions)
#
# Every process it starts is stopped on exit (also on Ctrl-C). The machine is shared: look at
# the load average it prints, and rerun when it is high.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/build/bin"
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY=python3

build=1
baseline=""
rounds=3
reps=3
out=""
skip=""
configs_list="1:3000:300,64:300:30,1000:30:3,10000:10:1"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-build) build=0 ;;
    --bin) BIN="$(cd "$2" && pwd)"; build=0; shift ;;
    --baseline_bin) baseline="$(cd "$2" && pwd)"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --reps) reps="$2"; shift ;;
    --out) out="$2"; shift ;;
    --skip) skip="$2"; shift ;;
    --configs) configs_list="$2"; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
skipped() { [[ ",$skip," == *",$1,"* ]]; }
[[ -n "$out" ]] || out="$ROOT/build/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"

# --- processes we start, stopped on exit ---------------------------------------------------
cleanup() {
  stop_started
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=scripts/bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"

# --- 1. machine ------------------------------------------------------------------------------
machine_info | tee "$out/machine.txt"

# --- build -----------------------------------------------------------------------------------
targets=(sluice-gemm-bench sluice-step-bench sluice-echo-server sluice-server sluice-client)
if [[ $build -eq 1 ]]; then
  section "build (scripts/build.sh)"
  if ! bash scripts/build.sh; then
    # A target the benchmarks do not use may be broken mid-edit; these five are what counts.
    echo "bench.sh: the full build failed; building only ${targets[*]}" >&2
    cmake --build build -j"$(nproc)" --target "${targets[@]}"
  fi
fi
needed=()
skipped gemm || needed+=(sluice-gemm-bench)
skipped step || needed+=(sluice-step-bench)
skipped transport || needed+=(sluice-echo-server sluice-server sluice-client)
if [[ -n "$baseline" && ! -x "$baseline/sluice-server" ]]; then
  echo "bench.sh: $baseline/sluice-server is missing" >&2; exit 1
fi
for b in "${needed[@]}"; do
  [[ -x "$BIN/$b" ]] || { echo "bench.sh: $BIN/$b is missing (build first)" >&2; exit 1; }
done

bench_flags=(--benchmark_repetitions="$reps" --benchmark_display_aggregates_only=true
             --benchmark_out_format=json)
# The library benchmarks use one core: pin to the second CPU (the first takes most interrupts).
pin=(taskset -c "$(( $(nproc) > 1 ? 1 : 0 ))")

# --- 2. FMA peak + GEMM libraries --------------------------------------------------------------
if ! skipped gemm; then
  section "FMA peak and GEMM (sluice-gemm-bench, ${pin[*]}, OMP_NUM_THREADS=1)"
  OMP_NUM_THREADS=1 "${pin[@]}" "$BIN/sluice-gemm-bench" --threads=1 "${bench_flags[@]}" \
    --benchmark_min_time=0.3 --benchmark_out="$out/gemm.json" 2>&1 | tee "$out/gemm.txt"
fi

# --- 3. backend step ---------------------------------------------------------------------------
if ! skipped step; then
  section "CpuBackend Step, models/cnn_tiny (sluice-step-bench, ${pin[*]})"
  "${pin[@]}" "$BIN/sluice-step-bench" "${bench_flags[@]}" --benchmark_min_time=0.5 \
    --benchmark_out="$out/step.json" 2>&1 | tee "$out/step.txt"
fi

# --- 4. transport: echo vs server ------------------------------------------------------------
# CPU time (user + system) of process $1 so far, in microseconds.
cpu_us() {
  awk -v tck="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); print ($12 + $13) * 1e6 / tck}' "/proc/$1/stat"
}

# Starts $1/sluice-server as target $2 on models/; sets <target>_pid, _grpc and _http.
start_server() {
  local bin="$1" name="$2" pid grpc http
  "$bin/sluice-server" --model_repository "$ROOT/models" --host 127.0.0.1 --grpc_port 0 \
    --http_port 0 >"$out/$name.log" 2>&1 &
  pid=$!; pids+=("$pid")
  grpc="$(wait_port "$out/$name.log" 'gRPC listening on' "$pid")"
  http="$(wait_port "$out/$name.log" 'admin HTTP server listening on' "$pid")"
  for _ in $(seq 300); do
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/readyz")" == 200 ]] && break
    sleep 0.1
  done
  printf -v "${name}_pid" '%s' "$pid"
  printf -v "${name}_grpc" '%s' "$grpc"
  printf -v "${name}_http" '%s' "$http"
  echo "$name: $bin/sluice-server, gRPC :$grpc, HTTP :$http"
  grep -m1 'model cnn_tiny ready' "$out/$name.log" || true
}

if ! skipped transport; then
  section "transport: bare gRPC echo vs sluice-server (loopback, ping-pong, unpinned)"
  mkdir -p "$out/transport"
  "$BIN/sluice-echo-server" --host 127.0.0.1 --port 0 --channels 128 >"$out/echo-server.log" 2>&1 &
  echo_pid=$!; pids+=("$echo_pid")
  echo_port="$(wait_port "$out/echo-server.log" 'listening on' "$echo_pid")"
  echo "echo on :$echo_port (frames [1,128] float32)"
  targets=(echo)
  server_http=""  # Set by start_server, as are the other <target>_ variables.
  if [[ -n "$baseline" ]]; then
    start_server "$baseline" baseline
    targets+=(baseline)
  fi
  start_server "$BIN" server
  targets+=(server)

  IFS=, read -r -a configs <<<"$configs_list"
  for ((round = 1; round <= rounds; round++)); do
    for cfg in "${configs[@]}"; do
      IFS=: read -r sessions frames warmup <<<"$cfg"
      for target in "${targets[@]}"; do
        if [[ $target == echo ]]; then addr="127.0.0.1:$echo_port" model=echo pid=$echo_pid http=""
        else
          grpc_var="${target}_grpc" http_var="${target}_http" pid_var="${target}_pid"
          addr="127.0.0.1:${!grpc_var}" model=cnn_tiny pid="${!pid_var}" http="${!http_var}"
        fi
        tag="${target}-s${sessions}-r${round}"
        sum0=0 count0=0 sum1=0 count1=0
        [[ -n "$http" ]] && read -r sum0 count0 <<<"$(batch_metrics "$http" cnn_tiny)"
        cpu0="$(cpu_us "$pid")"
        rc=0
        "$BIN/sluice-client" bench --server "$addr" --model "$model" --sessions "$sessions" \
          --frames "$frames" --warmup "$warmup" --json >"$out/transport/$tag.json" \
          2>"$out/transport/$tag.err" || rc=$?
        cpu1="$(cpu_us "$pid")"
        [[ -n "$http" ]] && read -r sum1 count1 <<<"$(batch_metrics "$http" cnn_tiny)"
        echo "{\"batch_sum\": $((sum1 - sum0)), \"batch_count\": $((count1 - count0)), \"cpu_us_per_frame\": $(awk -v a="$cpu0" -v b="$cpu1" -v n="$((sessions * (frames + warmup)))" 'BEGIN {printf "%.1f", (b - a) / n}')}" \
          >"$out/transport/$tag.metrics.json"
        printf '%-22s load %s rc=%d %s\n' "$tag" "$(loadavg)" "$rc" "$(cat "$out/transport/$tag.json")"
      done
    done
  done
  curl -sf "http://127.0.0.1:$server_http/metrics" >"$out/server-metrics.txt" || true
  cleanup
fi

# --- summary ---------------------------------------------------------------------------------
section "summary"
"$PY" - "$out" "$rounds" <<'PYEOF' | tee "$out/summary.md"
import json, os, re, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])

def load_bench(name):
    path = os.path.join(out, name)
    if not os.path.exists(path):
        return {}
    runs = json.load(open(path))["benchmarks"]
    res = {}
    for r in runs:
        if r.get("run_type") == "aggregate" and r.get("aggregate_name") != "median":
            continue
        key = r["run_name"] if "run_name" in r else r["name"]
        key = key.replace("/real_time", "")
        # Prefer the median aggregate; a single repetition has only the iteration entry.
        if r.get("run_type") == "aggregate" or key not in res:
            res[key] = r
    return res

def cpu_share(results):
    # Real / CPU time of single-threaded benchmarks: ~1.0 when the pinned core was ours alone.
    ratios = [r["real_time"] / r["cpu_time"] for r in results.values() if r.get("cpu_time")]
    return statistics.median(ratios) if ratios else float("nan")

def us(r):
    t = r["real_time"]
    return {"ns": t / 1e3, "us": t, "ms": t * 1e3, "s": t * 1e6}[r.get("time_unit", "us")]

print(f"Results in {out}\n")
gemm = load_bench("gemm.json")
if gemm:
    peaks = {k: v["GFLOP/s"] for k, v in gemm.items() if k.startswith("BM_FmaPeak/")}
    print("gemm bench: median real/CPU time %.2f (1.00 = the pinned core was not shared)\n"
          % cpu_share(gemm))
    print("FMA peak, one core (median of repetitions, real time):\n")
    print("| benchmark | GFLOP/s |\n|---|---|")
    for k, v in peaks.items():
        print(f"| {k} | {v:.1f} |")
    best_peak = max(peaks.values()) if peaks else float("nan")
    for bench in ("BM_Layer", "BM_Chain"):
        libs, sizes = [], []
        for k in gemm:
            m = re.match(bench + r"/([^/]+)/(\d+)$", k)
            if m:
                if m.group(1) not in libs: libs.append(m.group(1))
                if int(m.group(2)) not in sizes: sizes.append(int(m.group(2)))
        sizes.sort()
        if not libs: continue
        what = "one layer [m,1024]x[1024,128] + bias" if bench == "BM_Layer" else \
               "3-layer chain + bias + ReLU (one cnn_tiny step)"
        print(f"\n{bench}: {what}; µs per call / GFLOP/s (% of FMA peak), median:\n")
        print("| library | " + " | ".join(f"m={m}" for m in sizes) +
              " | rows ≠ same row alone (" + "/".join(f"m={m}" for m in sizes if m > 1) + ") |")
        print("|---|" + "---|" * (len(sizes) + 1))
        for lib in libs:
            cells, differ = [], []
            for m in sizes:
                r = gemm.get(f"{bench}/{lib}/{m}")
                if r is None or "GFLOP/s" not in r:
                    cells.append("—"); continue
                gf = r["GFLOP/s"]
                cells.append(f"{us(r):.1f} µs / {gf:.1f} ({100 * gf / best_peak:.0f}%)")
                if "rows_differ" in r: differ.append(f"{int(r['rows_differ'])}")
            print(f"| {lib} | " + " | ".join(cells) + f" | {'/'.join(differ) or '—'} |")
        labels = {}
        for k, v in gemm.items():
            m = re.match(bench + r"/([^/]+)/", k)
            if m and v.get("label"): labels[m.group(1)] = v["label"]
        print("\n" + "; ".join(f"{k}: {v}" for k, v in labels.items()))
    chain = {lib: {m: gemm.get(f"BM_Chain/{lib}/{m}") for m in (1, 64, 256)} for lib in ("sluice", "onednn", "eigen")}
    if chain["sluice"][1] and chain["onednn"][1]:
        print("\nsluice / oneDNN chain: batch 1 time ratio %.2f (target <= 0.8); batch 256 throughput ratio %.2f (target >= 1.0)"
              % (us(chain["sluice"][1]) / us(chain["onednn"][1]),
                 chain["sluice"][256]["GFLOP/s"] / chain["onednn"][256]["GFLOP/s"]))

step = load_bench("step.json")
if step:
    print("\nCpuBackend Step, models/cnn_tiny (median, real time; real/CPU time %.2f):\n"
          % cpu_share(step))
    print("| batch | µs per step | µs per session | GFLOP/s |\n|---|---|---|---|")
    base = None
    for k, r in sorted(step.items(), key=lambda kv: int(kv[0].split("/")[-1])):
        b = int(k.split("/")[-1])
        t = us(r)
        base = base or t
        print(f"| {b} | {t:.1f} | {t / b:.2f} ({t / b / base:.2f}x batch 1) | {r['GFLOP/s']:.1f} |")

tdir = os.path.join(out, "transport")
if os.path.isdir(tdir):
    def med(target, s, key, suffix=".json"):
        vals = []
        for rnd in range(1, rounds + 1):
            p = os.path.join(tdir, f"{target}-s{s}-r{rnd}{suffix}")
            try:
                vals.append(json.load(open(p))[key])
            except Exception:
                pass
        return statistics.median(vals) if vals else float("nan")
    def total(target, s, key, suffix=".json"):
        t = 0
        for rnd in range(1, rounds + 1):
            try: t += json.load(open(os.path.join(tdir, f"{target}-s{s}{'-r' + str(rnd)}{suffix}")))[key]
            except Exception: pass
        return t
    targets = ["echo"] + [t for t in ("baseline", "server")
                          if any(f.startswith(t + "-s") for f in os.listdir(tdir))]
    print(f"\nTransport, loopback ping-pong, frames of 128 float32 (median of {rounds} round(s)):\n")
    print("| sessions | | p50 µs | p90 µs | p99 µs | p99.9 µs | frames/s | errors | mean batch | server CPU µs/frame |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    sessions = sorted({int(m.group(1)) for f in os.listdir(tdir)
                       for m in [re.match(r"echo-s(\d+)-r1\.json$", f)] if m})
    for s in sessions:
        for target in targets:
            mb = ""
            if target != "echo":
                bs, bc = total(target, s, "batch_sum", ".metrics.json"), total(target, s, "batch_count", ".metrics.json")
                mb = f"{bs / bc:.1f}" if bc else "—"
            print(f"| {s} | {target} | {med(target, s, 'p50_us'):.0f} | {med(target, s, 'p90_us'):.0f} | "
                  f"{med(target, s, 'p99_us'):.0f} | {med(target, s, 'p999_us'):.0f} | "
                  f"{med(target, s, 'frames_per_s'):.0f} | {total(target, s, 'errors')} | {mb} | "
                  f"{med(target, s, 'cpu_us_per_frame', '.metrics.json'):.1f} |")
        for target in targets[1:]:
            ratios.append((s, target, med(target, s, "p50_us") / med("echo", s, "p50_us"),
                           med(target, s, "p99_us") / med("echo", s, "p99_us"),
                           med(target, s, "frames_per_s") / med("echo", s, "frames_per_s")))
    print("\n| sessions | | /echo p50 | /echo p99 | /echo frames/s |\n|---|---|---|---|---|")
    for s, target, a, b, c in ratios:
        print(f"| {s} | {target} | {a:.2f} | {b:.2f} | {c:.2f} |")
    print("\n(targets: 1 session p50 <= 1.2, p99 <= 1.5; 64 sessions frames/s >= 0.8; "
          "1000 and 10000 sessions: no errors, mean batch > 1)")
PYEOF
echo "load average at the end: $(loadavg)"
