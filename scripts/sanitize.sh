#!/usr/bin/env bash
# Sanitizer builds (clang; Debian's gRPC, protobuf and Abseil stay uninstrumented):
#
#   scripts/sanitize.sh address [ctest args...]
#       ASan + UBSan in build-asan/ (-O1 -g): builds everything and runs the unit, integration
#       and OpenCL (PoCL) suites, the Python-driven OIP tests included (they start the
#       instrumented sluice-server). Any error report, leak or undefined behaviour fails the test.
#       The same build holds the libFuzzer targets (scripts/fuzz.sh uses it), so CI compiles the
#       tree with clang once.
#   scripts/sanitize.sh thread [harness args...]
#       TSan in build-tsan/: builds and runs the concurrency harness of tests/tsan (scheduler,
#       sessions and CPU backend driven from many threads, no gRPC), with Abseil's mutexes made
#       visible to TSan by tests/tsan/absl_tsan_annotations.cc.
#
# Prints the build and run times. Extra arguments go to ctest (address) or the harness (thread).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

mode="${1:-address}"
if [[ $# -gt 0 ]]; then shift; fi
if ! command -v clang++ >/dev/null; then
  echo "sanitize: clang++ is missing (scripts/setup.sh installs clang and libclang-rt-14-dev)" >&2
  exit 1
fi

configure() {  # <build dir> <sanitizers> [cmake args...]
  if [[ ! -f "$1/CMakeCache.txt" ]]; then
    CC=clang CXX=clang++ cmake -S . -B "$1" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DSLUICE_SANITIZE="$2" "${@:3}" >/dev/null
  fi
}

case "$mode" in
  configure-address)  # used by scripts/fuzz.sh
    configure "$ROOT/build-asan" address,undefined -DSLUICE_BUILD_FUZZERS=ON
    ;;
  address)
    BUILD="$ROOT/build-asan"
    configure "$BUILD" address,undefined -DSLUICE_BUILD_FUZZERS=ON
    start=$(date +%s)
    cmake --build "$BUILD" -j"$(nproc)"
    built=$(date +%s)
    # detect_leaks: LSan runs at every instrumented process's exit; tests/sanitizers/lsan.supp
    # lists the (uninstrumented) library allocations it may ignore.
    export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1:strict_init_order=1:check_initialization_order=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
    export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
    export POCL_CACHE_DIR="$BUILD/pocl-cache"
    mkdir -p "$POCL_CACHE_DIR"
    rc=0
    (cd "$BUILD" && ctest -L 'unit|integration|opencl' -LE 'docker|deploy' -E '^BackpressureTest\.' \
      -j2 --output-on-failure --timeout 1800 "$@") || rc=$?
    if [[ $# -eq 0 ]]; then
      # The backpressure test bounds the server's RSS growth; ASan's quarantine of freed memory
      # alone exceeds that bound, so it runs with the quarantine off (every other check stays on).
      (cd "$BUILD" && ASAN_OPTIONS="$ASAN_OPTIONS:quarantine_size_mb=0:thread_local_quarantine_size_kb=0" \
        ctest -R '^BackpressureTest\.' --output-on-failure --timeout 1800) || rc=$?
    fi
    done_at=$(date +%s)
    echo "sanitize: address,undefined build $((built - start)) s, tests $((done_at - built)) s"
    exit "$rc"
    ;;
  thread)
    BUILD="$ROOT/build-tsan"
    configure "$BUILD" thread
    start=$(date +%s)
    cmake --build "$BUILD" -j"$(nproc)" --target tsan_harness
    built=$(date +%s)
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:history_size=4${TSAN_OPTIONS:+:$TSAN_OPTIONS}"
    # First the annotation layer itself: real races must be reported (TSan exits 66), accesses
    # ordered by Abseil mutexes, CondVars and shared absl::Status must not.
    rc=0
    for case in race wrong_lock mutex reader await condvar status; do
      self_rc=0
      "$BUILD/bin/tsan_harness" --self-test="$case" >"$BUILD/self_test_$case.log" 2>&1 || self_rc=$?
      want=0
      if [[ $case == race || $case == wrong_lock ]]; then want=66; fi
      if [[ $self_rc -ne $want ]]; then
        echo "sanitize: self-test $case exited $self_rc, expected $want:" >&2
        cat "$BUILD/self_test_$case.log" >&2
        rc=1
      fi
    done
    if [[ $rc -eq 0 ]]; then echo "sanitize: TSan annotation self-tests passed"; fi
    "$BUILD/bin/tsan_harness" "$@" || rc=$?
    done_at=$(date +%s)
    echo "sanitize: thread build $((built - start)) s, harness $((done_at - built)) s"
    exit "$rc"
    ;;
  *)
    echo "usage: scripts/sanitize.sh address|thread [args...]" >&2
    exit 2
    ;;
esac
