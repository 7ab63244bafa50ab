#!/usr/bin/env bash
# Where a server's instructions go per frame: runs sluice-server (or, with --echo, the bare gRPC
# echo) under valgrind's callgrind, drives it with sluice-client bench (ping-pong, frames of 128
# float32, model cnn_tiny), and counts instructions only over the measured runs (callgrind_control
# zeroes the counters after a warm-up run and dumps after the measured one). Instruction counts
# repeat from run to run within ~1%, unlike wall-clock on a shared machine; they do not show
# cache misses, wake-up latency or time spent in the kernel (use perf for those).
#
#   scripts/bench_profile.sh [--bin DIR] [--server_bin DIR] [--echo] [--configs "1:2000 64:100"]
#                            [--out DIR] [--top N]
#
#   --bin DIR         sluice-client, sluice-echo-server (default build/bin)
#   --server_bin DIR  the sluice-server to profile (default: --bin)
#   --echo            profile sluice-echo-server instead (the transport floor)
#   --configs L       space-separated SESSIONS:FRAMES measured runs (default "1:2000 64:100";
#                     each after a warm-up run of a tenth of the frames)
#   --out DIR         callgrind files and logs (default build/bench-results/profile-<UTC time>)
#   --top N           functions listed per run, by own instructions (default 25)
#
# Prints, per run: instructions per frame in total, in the backend step (CpuBackend::Step,
# inclusive), in the idle-session reaper (a 100 ms timer, not per frame), and the rest (the server
# path), then the top functions by own instructions outside the backend step. Under callgrind the
# server runs ~50x slower, so timers weigh more per frame and batches may form differently;
# the mean batch of each run is printed. A contended absl::Mutex spins before it sleeps, and how
# long depends on when valgrind switches threads: Mutex::Lock's own count varies between runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="$ROOT/build/bin"
server_bin=""
echo_mode=0
configs="1:2000 64:100"
out=""
top=25
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$(cd "$2" && pwd)"; shift ;;
    --server_bin) server_bin="$(cd "$2" && pwd)"; shift ;;
    --echo) echo_mode=1 ;;
    --configs) configs="$2"; shift ;;
    --out) out="$2"; shift ;;
    --top) top="$2"; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench_profile.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[[ -n "$server_bin" ]] || server_bin="$BIN"
[[ -n "$out" ]] || out="$ROOT/build/bench-results/profile-$(date -u +%Y%m%dT%H%M%SZ)"
command -v valgrind >/dev/null || { echo "bench_profile.sh: valgrind is not installed" >&2; exit 1; }
mkdir -p "$out"

vg_pid=""
cleanup() {
  if [[ -n "$vg_pid" ]]; then
    kill -TERM "$vg_pid" 2>/dev/null || true
    wait "$vg_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $echo_mode -eq 1 ]]; then
  model="echo"
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.%p.out" \
    "$BIN/sluice-echo-server" --host 127.0.0.1 --port 0 --channels 128 >"$out/server.log" 2>&1 &
  pattern='listening on'
else
  model=cnn_tiny
  valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.%p.out" \
    "$server_bin/sluice-server" --model_repository "$ROOT/models" --host 127.0.0.1 --grpc_port 0 \
    --http_port 0 >"$out/server.log" 2>&1 &
  pattern='gRPC listening on'
fi
vg_pid=$!
port=""
for _ in $(seq 1200); do
  port="$(grep -m1 -oE "$pattern [0-9.]+:[0-9]+" "$out/server.log" | sed -E 's/.*://' || true)"
  [[ -n "$port" ]] && break
  kill -0 "$vg_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n "$port" ]] || { echo "bench_profile.sh: the server did not start:" >&2; cat "$out/server.log" >&2; exit 1; }
http="$(grep -m1 -oE 'admin HTTP server listening on [0-9.]+:[0-9]+' "$out/server.log" | sed -E 's/.*://' || true)"
batches() {
  [[ -n "$http" ]] || { echo "0 0"; return; }
  curl -sf "http://127.0.0.1:$http/metrics" | awk '
    /^sluice_batch_size_sum\{model="cnn_tiny"\}/ {s=$2}
    /^sluice_batch_size_count\{model="cnn_tiny"\}/ {c=$2}
    END {print s+0, c+0}'
}
bench() {
  "$BIN/sluice-client" bench --server "127.0.0.1:$port" --model "$model" --sessions "$1" \
    --frames "$2" --warmup 0 --json
}

dumps=()
for cfg in $configs; do
  sessions="${cfg%%:*}" frames="${cfg##*:}"
  bench "$sessions" "$(( frames / 10 > 1 ? frames / 10 : 1 ))" >/dev/null
  callgrind_control -z "$vg_pid" >/dev/null
  read -r sum0 count0 <<<"$(batches)"
  echo "s$sessions x $frames: $(bench "$sessions" "$frames")"
  read -r sum1 count1 <<<"$(batches)"
  callgrind_control -d "s${sessions}x${frames}" "$vg_pid" >/dev/null
  dumps+=("$sessions:$frames:$((sum1 - sum0)):$((count1 - count0))")
done
cleanup
vg_pid=""

for d in "${dumps[@]}"; do
  IFS=: read -r sessions frames bsum bcount <<<"$d"
  file="$(grep -l "^desc: Trigger: dump s${sessions}x${frames}\$" "$out"/callgrind.*.out.* | head -1)"
  python3 - "$file" "$((sessions * frames))" "$sessions" "$bsum" "$bcount" "$top" <<'PYEOF'
import re, subprocess, sys
path, frames, sessions, bsum, bcount, top = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
def annotate(*flags):
    return subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", *flags, path],
                          capture_output=True, text=True, check=True).stdout
def rows(text):
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(.*)", line)
        if m:
            yield int(m.group(1).replace(",", "")), m.group(2)
inclusive = list(rows(annotate("--inclusive=yes")))
total = next(v for v, name in inclusive if name.startswith("PROGRAM TOTALS"))
def incl(pattern):
    return next((v for v, name in inclusive if re.search(pattern, name)), 0)
step, reaper = incl(r"CpuBackend::Step\("), incl(r"SessionRegistry::ReapIdle")
print(f"\n{path}: {sessions} session(s), {frames} frames"
      + (f", mean batch {bsum / bcount:.1f}" if bcount else ""))
print("| instructions per frame | |\n|---|---|")
for label, value in [("total", total), ("backend step (CpuBackend::Step, inclusive)", step),
                     ("idle reaper (timer)", reaper), ("server path (the rest)", total - step - reaper)]:
    print(f"| {label} | {value / frames:,.0f} |")
# Own cost, leaving out the backend's kernels (everything under CpuBackend::Step is counted
# above) and the thread entry frames (clone, start_thread, thread bodies), which a dump taken
# while they are running charges with their threads' whole cost.
kernels = re.compile(r"sluice::cpu::|sluice::streaming::")
own = [(v, name) for v, name in rows(annotate()) if not name.startswith("PROGRAM TOTALS")
       and not kernels.search(name) and v < (total - step) * 0.5]
print(f"\nTop {top} functions outside the backend step, own instructions per frame:\n")
print("| instr/frame | function |\n|---|---|")
for v, name in own[:top]:
    name = re.sub(r"\s*\[[^\]]*\]$", "", name)
    name = re.sub(r"^\?\?\?:|^[./\w-]+\.[chS]+:", "", name)
    print(f"| {v / frames:,.0f} | `{name[:120]}` |")
PYEOF
done
