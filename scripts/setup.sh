#!/usr/bin/env bash
# Installs everything sluice needs on Debian bookworm: build toolchain, C++ libraries,
# OpenCL (PoCL), and a Python venv for reference-model tests. Idempotent; quiet when
# everything is already present.
# `--build-only` (or SLUICE_SETUP_PROFILE=build) installs only what compiles sluice with tests
# off (the Dockerfile's build stage): no test/benchmark libraries, PoCL, Python, podman.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SLUICE_VENV:-$ROOT/.venv}"

APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl ca-certificates
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  libabsl-dev libspdlog-dev libfmt-dev libonnx-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libdnnl-dev libeigen3-dev
  ocl-icd-opencl-dev opencl-c-headers pocl-opencl-icd clinfo
  libcpp-httplib-dev prometheus libb64-0d
  python3 python3-venv python3-numpy python3-torch python3-matplotlib
  clang libclang-rt-14-dev valgrind openssl yamllint
  podman buildah debootstrap uidmap fuse-overlayfs
)
PIP_PACKAGES=(onnxruntime==1.20.1 onnx==1.16.2)
# Open Inference Protocol conformance (tests/oip): the Triton Python client, and perf_analyzer.
# tritonclient 2.41.1's manylinux wheel ships the perf_analyzer binary in .venv/bin (the PyPI
# "perf-analyzer" package is an empty placeholder); the binary links libcudart.so.12 (from
# nvidia-cuda-runtime-cu12, never called without a GPU) and libb64.so.0d (Debian libb64-0d).
# The grpc extra is spelled out (grpcio) because its protobuf<5 pin is only a packaging limit.
PIP_PACKAGES+=(tritonclient==2.41.1 grpcio==1.85.3 nvidia-cuda-runtime-cu12==12.9.79)
# Python client stubs (client/python) and offline Kubernetes schema checks (tests/deploy).
PIP_PACKAGES+=(grpcio-tools==1.85.1 kubernetes-validate==1.31.0)

BUILD_ONLY_APT_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  libabsl-dev libspdlog-dev libfmt-dev libonnx-dev
  ocl-icd-opencl-dev opencl-c-headers libcpp-httplib-dev
)

PROFILE="${SLUICE_SETUP_PROFILE:-all}"
for arg in "$@"; do
  case "$arg" in
    --build-only) PROFILE=build ;;
    *) echo "setup: unknown argument: $arg (only --build-only)" >&2; exit 2 ;;
  esac
done
case "$PROFILE" in
  all) ;;
  build) APT_PACKAGES=("${BUILD_ONLY_APT_PACKAGES[@]}") ;;
  *) echo "setup: unknown SLUICE_SETUP_PROFILE=$PROFILE (all or build)" >&2; exit 2 ;;
esac

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if ((${#missing[@]})); then
  echo "setup: installing ${#missing[@]} Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $PROFILE == build ]]; then exit 0; fi

# Debian's python3 (not a pyenv shim) so that python3-torch and python3-numpy are visible.
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup: creating Python venv at $VENV"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
if ! "$VENV/bin/python" - "${PIP_PACKAGES[@]}" <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for spec in sys.argv[1:]:
    name, want = spec.split("==")
    if version(name) != want:
        sys.exit(1)
PY
then
  echo "setup: installing Python packages: ${PIP_PACKAGES[*]}"
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}"
fi
