#!/usr/bin/env bash
# The scheduler's max_queue_delay_us against load: sluice-client bench (ping-pong, frames of 128
# float32) on copies of models/cnn_tiny that differ only in max_queue_delay_us, at several session
# counts, with the bare gRPC echo (sluice-echo-server) at each session count as the floor, in
# rounds (each round runs every point once, so load changes hit all of them). Records frames/s,
# p50, p99 and the mean batch (sluice_batch_size_sum / _count from /metrics over each run), and
# writes the medians over rounds, with the raw runs, to one JSON file; prints a Markdown table.
#
#   scripts/bench_delay_sweep.sh [--bin DIR] [--sessions 1,64,256] [--delays 0,50,100,200,500,1000]
#                                [--rounds N] [--frames N] [--out FILE]
#
#   --bin DIR       sluice-server, sluice-client, sluice-echo-server (default build/bin)
#   --sessions L    session counts (default 1,64,256)
#   --delays L      max_queue_delay_us values (default 0,50,100,200,500,1000)
#   --rounds N      rounds (default 3); the table shows medians over rounds
#   --frames N      measured frames per run, spread over its sessions (default 12800: 1 session
#                   sends 12800, 64 send 200 each, 256 send 50 each), plus 10% warm-up
#   --out FILE      results (default docs/bench/delay_sweep.json: medians, and every run);
#                   logs go to build/bench-results/delay-sweep-<UTC time>/
#
# One server serves every delay (one model folder and scheduler per value, idle but for the one
# being measured). Every process it starts is stopped on exit. The machine is shared: the load
# average is recorded with each run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/bench_lib.sh
source "$ROOT/scripts/bench_lib.sh"
BIN="$ROOT/build/bin"
PY=/usr/bin/python3
[[ -x "$PY" ]] || PY=python3
sessions_list="1,64,256"
delays="0,50,100,200,500,1000"
rounds=3
frames_total=12800
out="$ROOT/docs/bench/delay_sweep.json"
args="$*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN="$(cd "$2" && pwd)"; shift ;;
    --sessions) sessions_list="$2"; shift ;;
    --delays) delays="$2"; shift ;;
    --rounds) rounds="$2"; shift ;;
    --frames) frames_total="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,/^set /p' "$0" | sed '$d'; exit 0 ;;
    *) echo "bench_delay_sweep.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for b in sluice-server sluice-client sluice-echo-server; do
  [[ -x "$BIN/$b" ]] || { echo "bench_delay_sweep.sh: $BIN/$b is missing (build it)" >&2; exit 1; }
done
runs="$ROOT/build/bench-results/delay-sweep-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$runs" "$(dirname "$out")"
repo="$(mktemp -d)"

cleanup() {
  stop_started
  rm -rf "$repo"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


machine_info | tee "$runs/machine.txt"
for d in ${delays//,/ }; do
  mkdir "$repo/cnn_tiny_d$d"
  ln -s "$ROOT/models/cnn_tiny/model.onnx" "$repo/cnn_tiny_d$d/model.onnx"
  printf 'max_batch: 256\nmax_queue_delay_us: %d\n' "$d" >"$repo/cnn_tiny_d$d/config.pbtxt"
done
"$BIN/sluice-echo-server" --host 127.0.0.1 --port 0 --channels 128 >"$runs/echo-server.log" 2>&1 &
echo_pid=$!; pids+=("$echo_pid")
"$BIN/sluice-server" --model_repository "$repo" --host 127.0.0.1 --grpc_port 0 --http_port 0 \
  >"$runs/server.log" 2>&1 &
server_pid=$!; pids+=("$server_pid")
echo_port="$(wait_port "$runs/echo-server.log" 'listening on' "$echo_pid")"
grpc_port="$(wait_port "$runs/server.log" 'gRPC listening on' "$server_pid")"
http_port="$(wait_port "$runs/server.log" 'admin HTTP server listening on' "$server_pid")"
for _ in $(seq 300); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http_port/readyz")" == 200 ]] && break
  sleep 0.1
done

section "sweep: sessions {$sessions_list} x max_queue_delay_us {$delays}, $rounds round(s)"
for ((round = 1; round <= rounds; round++)); do
  for s in ${sessions_list//,/ }; do
    frames=$(( frames_total / s > 20 ? frames_total / s : 20 ))
    warmup=$(( frames / 10 > 2 ? frames / 10 : 2 ))
    for d in echo ${delays//,/ }; do
      if [[ $d == echo ]]; then addr="127.0.0.1:$echo_port" model=echo
      else addr="127.0.0.1:$grpc_port" model="cnn_tiny_d$d"; fi
      tag="s$s-d$d-r$round"
      [[ $d != echo ]] && read -r sum0 count0 <<<"$(batch_metrics "$http_port" "$model")"
      load="$(loadavg)"
      rc=0
      "$BIN/sluice-client" bench --server "$addr" --model "$model" --sessions "$s" \
        --frames "$frames" --warmup "$warmup" --json >"$runs/$tag.json" 2>"$runs/$tag.err" || rc=$?
      batch="null"
      if [[ $d != echo ]]; then
        read -r sum1 count1 <<<"$(batch_metrics "$http_port" "$model")"
        (( count1 > count0 )) && batch="$("$PY" -c "print(round(($sum1 - $sum0) / ($count1 - $count0), 2))")"
      fi
      echo "{\"sessions\": $s, \"delay\": \"$d\", \"round\": $round, \"rc\": $rc, \"mean_batch\": $batch, \"load\": \"$load\", \"bench\": $(cat "$runs/$tag.json" 2>/dev/null || echo null)}" \
        >>"$runs/runs.jsonl"
      printf '%-16s load %s rc=%d batch %s %s\n' "$tag" "$load" "$rc" "$batch" "$(cat "$runs/$tag.json")"
    done
  done
done
cleanup
trap - EXIT

section "summary"
"$PY" - "$runs" "$out" "$rounds" "$args" <<'PYEOF'
import json, os, statistics, sys
runs_dir, out, rounds, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
runs = [json.loads(line) for line in open(os.path.join(runs_dir, "runs.jsonl"))]
machine = open(os.path.join(runs_dir, "machine.txt")).read().splitlines()
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
points = {}
for r in runs:
    points.setdefault((r["sessions"], r["delay"]), []).append(r)
results = []
for (s, d), rs in sorted(points.items(), key=lambda kv: (kv[0][0], kv[0][1] != "echo",
                                                        int(kv[0][1]) if kv[0][1] != "echo" else 0)):
    ok = [r for r in rs if r["bench"] is not None]
    point = {"sessions": s, "target": "echo" if d == "echo" else "server",
             "max_queue_delay_us": None if d == "echo" else int(d), "rounds": len(rs),
             "errors": sum(r["bench"]["errors"] for r in ok) + sum(1 for r in rs if r["rc"]),
             "load_average_1min": [float(r["load"].split()[0]) for r in rs]}
    for key in ("frames_per_s", "p50_us", "p99_us"):
        point[key] = med([r["bench"][key] for r in ok])
    point["mean_batch"] = med([r["mean_batch"] for r in rs])
    results.append(point)
echo = {p["sessions"]: p for p in results if p["target"] == "echo"}
for p in results:
    e = echo.get(p["sessions"])
    if p["target"] == "server" and e and e["frames_per_s"]:
        p["frames_per_s_vs_echo"] = round(p["frames_per_s"] / e["frames_per_s"], 3)
        p["p50_vs_echo"] = round(p["p50_us"] / e["p50_us"], 3)
        p["p99_vs_echo"] = round(p["p99_us"] / e["p99_us"], 3)
doc = {"what": "sluice-client bench, ping-pong, frames of 128 float32: models/cnn_tiny copies "
               "differing in max_queue_delay_us (max_batch 256), and the bare gRPC echo; medians "
               "over rounds",
       "command": "scripts/bench_delay_sweep.sh " + args, "machine": machine,
       "rounds": rounds, "results": results, "runs": runs}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
print(f"wrote {out}\n")
print("| sessions | max_queue_delay_us | frames/s | p50 µs | p99 µs | mean batch | frames/s vs echo | p50 vs echo | p99 vs echo |")
print("|---|---|---|---|---|---|---|---|---|")
for p in results:
    d = "echo" if p["target"] == "echo" else p["max_queue_delay_us"]
    fmt = lambda v, spec: "—" if v is None else format(v, spec)
    print(f"| {p['sessions']} | {d} | {fmt(p['frames_per_s'], '.0f')} | {fmt(p['p50_us'], '.0f')} | "
          f"{fmt(p['p99_us'], '.0f')} | {fmt(p['mean_batch'], '.1f')} | "
          f"{fmt(p.get('frames_per_s_vs_echo'), '.2f')} | {fmt(p.get('p50_vs_echo'), '.2f')} | "
          f"{fmt(p.get('p99_vs_echo'), '.2f')} |")
PYEOF
echo "load average at the end: $(loadavg)"
