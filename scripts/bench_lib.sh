# shellcheck shell=bash
# Shared by the benchmark scripts (sourced): load average, section headers, machine info.

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
section() { printf '\n=== %s   (load average %s)\n' "$1" "$(loadavg)"; }

# CPU model and family, the ISA flags present and absent, cores, caches, kernel, compiler, load.
machine_info() {
  echo "date (UTC):   $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "commit:       $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (+ local changes)')"
  echo "cpu:          $(lscpu | sed -n 's/^Model name: *//p') (family $(lscpu | sed -n 's/^CPU family: *//p'), model $(lscpu | sed -n 's/^Model: *//p'))"
  echo "hypervisor:   $(lscpu | sed -n 's/^Hypervisor vendor: *//p')"
  echo "cores:        nproc $(nproc); $(lscpu | sed -n 's/^Thread(s) per core: *//p') thread(s) per core"
  echo "caches:       L1d $(lscpu | sed -n 's/^L1d cache: *//p'), L2 $(lscpu | sed -n 's/^L2 cache: *//p'), L3 $(lscpu | sed -n 's/^L3 cache: *//p')"
  echo "MHz (now):    $(awk -F': ' '/^cpu MHz/ {printf "%s ", $2}' /proc/cpuinfo)"
  local flags have=() missing=() f
  flags=" $(lscpu | sed -n 's/^Flags: *//p') "
  for f in sse4_2 avx fma avx2 avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 amx_tile; do
    if [[ "$flags" == *" $f "* ]]; then have+=("$f"); else missing+=("$f"); fi
  done
  echo "ISA present:  ${have[*]:-none}"
  echo "ISA absent:   ${missing[*]:-none}"
  echo "kernel:       $(uname -sr)"
  echo "compiler:     $(c++ --version | head -1)"
  echo "load average: $(loadavg) (1/5/15 min, $(nproc) cores)"
}

# Waits (up to 60 s) until `file` has a line matching `pattern` and prints the port after its
# last ':'; fails early when process `pid` has exited.
wait_port() {
  local file="$1" pattern="$2" pid="$3" line
  for _ in $(seq 600); do
    line="$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)"
    if [[ -n "$line" ]]; then sed -E 's/.*:([0-9]+).*/\1/' <<<"$line"; return 0; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$(basename "$0"): no '$pattern' in $file:" >&2; cat "$file" >&2; return 1
}

# "sum count" of sluice_batch_size for model $2 from the admin HTTP port $1.
batch_metrics() {
  curl -sf "http://127.0.0.1:$1/metrics" | awk -v m="$2" '
    $1 == "sluice_batch_size_sum{model=\"" m "\"}" {s=$2}
    $1 == "sluice_batch_size_count{model=\"" m "\"}" {c=$2}
    END {print s+0, c+0}'
}

# The processes a script started (append their pids): stop_started sends each SIGTERM, waits up
# to 5 s, then SIGKILL.
pids=()
stop_started() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  pids=()
}
