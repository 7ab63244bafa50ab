#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang + ASan + UBSan in build-asan/ (the build
# of scripts/sanitize.sh address) and runs
# each for the given time; fails (non-zero) on any crash, leak, timeout or out-of-memory, and
# prints a summary (runs, coverage, corpus growth per target).
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     targets: onnx config session (default all)
#
# Seeds are made by the targets themselves from the repository's models and configs
# (SLUICE_FUZZ_WRITE_SEEDS); the corpus each run grows is kept in build-asan/fuzz/<target>/corpus
# for the next run. A crasher lands in build-asan/fuzz/<target>/artifacts/: minimize it with
#   build-asan/bin/fuzz_<target> -minimize_crash=1 -runs=10000 <crash-file>
# fix the bug, and add the input to tests/fuzz/regressions/<target>/ (replayed by ctest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

seconds="${1:-60}"
if [[ $# -gt 0 ]]; then shift; fi
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then targets=(onnx config session); fi
BUILD="$ROOT/build-asan"

if ! command -v clang++ >/dev/null; then
  echo "fuzz: clang++ is missing (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi
bash scripts/sanitize.sh configure-address
build_start=$(date +%s)
cmake --build "$BUILD" -j"$(nproc)" --target "${targets[@]/#/fuzz_}"
echo "fuzz: build took $(($(date +%s) - build_start)) s"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:symbolize=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

failed=0
summary=()
for target in "${targets[@]}"; do
  dir="$BUILD/fuzz/$target"
  mkdir -p "$dir/seeds" "$dir/corpus" "$dir/artifacts"
  rm -f "$dir/seeds"/*
  SLUICE_FUZZ_WRITE_SEEDS="$dir/seeds" "$BUILD/bin/fuzz_$target" 2>/dev/null
  corpus_before=$(find "$dir/corpus" -type f | wc -l)
  dict=()
  if [[ -f "tests/fuzz/$target.dict" ]]; then dict=(-dict="tests/fuzz/$target.dict"); fi
  log="$dir/last_run.log"
  echo "fuzz: $target for ${seconds}s (log: $log)"
  rc=0
  "$BUILD/bin/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -detect_leaks=1 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" "${dict[@]}" \
    "$dir/corpus" "$dir/seeds" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  corpus_after=$(find "$dir/corpus" -type f | wc -l)
  result="ok"
  if [[ $rc -ne 0 ]]; then
    result="FAILED (exit $rc)"
    failed=1
    grep -E 'ERROR: |SUMMARY: |FUZZ_CHECK|runtime error|Test unit written' "$log" | head -20 >&2 || true
  fi
  summary+=("$(printf '%-8s %-18s runs %-9s %-22s corpus %s -> %s' "$target" "$result" \
    "${runs:-?}" "${cov:-cov: ?}" "$corpus_before" "$corpus_after")")
done
echo "fuzz: summary (${seconds}s per target)"
printf '  %s\n' "${summary[@]}"
exit "$failed"
