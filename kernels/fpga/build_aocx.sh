#!/usr/bin/env bash
# Builds the Intel FPGA image (.aocx) of one model's sluice kernels for a BittWare IA-420F card
# (or its emulator) with the Intel FPGA SDK for OpenCL offline compiler, aoc.
#
# The kernels are specialised per model (sizes are compile-time constants), so the image is
# built from the OpenCL C that sluice generates for the model: step 1 emits it with
# `sluice-opencl --emit_source` (single-work-item variant), step 2 runs aoc on it. The image
# carries the source's fingerprint kernel; the backend refuses an image built for another model.
#
# Usage:
#   kernels/fpga/build_aocx.sh --board BOARD [options] MODEL.onnx OUT.aocx
#   kernels/fpga/build_aocx.sh --emulator [options] MODEL.onnx OUT.aocx
#
# Options:
#   --board NAME       BSP board variant for -board= (list them with `aoc -list-boards` once the
#                      BittWare IA-420F BSP is installed and AOCL_BOARD_PACKAGE_ROOT points at
#                      it). Default: $SLUICE_AOC_BOARD. Required for hardware builds.
#   --emulator         Build for the Intel FPGA emulator (-march=emulator): minutes instead of
#                      hours, runs on the host through the "Intel(R) FPGA Emulation Platform".
#   --sluice-opencl P  The sluice-opencl tool (default: build/bin/sluice-opencl, then $PATH).
#   --aoc-flag FLAG    Extra flag for aoc (repeatable), e.g. --aoc-flag=-report
#                      --aoc-flag=-DSLUICE_FPGA_CHANNELS --aoc-flag=-DSR_DEPTH=12.
#   --source-only      Stop after writing OUT.cl (no aoc), e.g. to inspect or copy to a build host.
#   -h, --help         This text.
#
# Then run sluice with the image: `opencl_binary: "OUT.aocx"` in the model's config.pbtxt
# (the backend's OpenClOptions::binary_path); on an Intel FPGA platform the backend picks the
# single-work-item kernels the image holds.
# See docs/FPGA.md for the BSP, flashing (aocl program) and what has been verified.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "build_aocx.sh: $*" >&2; exit 2; }

board="${SLUICE_AOC_BOARD:-}"
emulator=0
source_only=0
tool=""
aoc_flags=()
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --board) board="${2:?--board needs a value}"; shift 2 ;;
    --board=*) board="${1#*=}"; shift ;;
    --emulator) emulator=1; shift ;;
    --sluice-opencl) tool="${2:?--sluice-opencl needs a value}"; shift 2 ;;
    --sluice-opencl=*) tool="${1#*=}"; shift ;;
    --aoc-flag) aoc_flags+=("${2:?--aoc-flag needs a value}"); shift 2 ;;
    --aoc-flag=*) aoc_flags+=("${1#*=}"); shift ;;
    --source-only) source_only=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -eq 2 ]] || { usage >&2; die "expected MODEL.onnx and OUT.aocx"; }
model="${positional[0]}"
out="${positional[1]}"
[[ -f "$model" ]] || die "no model file $model"
[[ "$out" == *.aocx ]] || die "the output name must end in .aocx (aoc derives its work directory from it)"

repo="$(cd "$(dirname "$0")/../.." && pwd)"
if [[ -z "$tool" ]]; then
  if [[ -x "$repo/build/bin/sluice-opencl" ]]; then
    tool="$repo/build/bin/sluice-opencl"
  else
    tool="$(command -v sluice-opencl || true)"
  fi
fi
[[ -n "$tool" && -x "$tool" ]] || die "sluice-opencl not found: build it (ninja -C build sluice-opencl) or pass --sluice-opencl"

source="${out%.aocx}.cl"
echo "== generating single-work-item kernels for $model -> $source"
"$tool" --model "$model" --variant single_work_item --emit_source "$source"
if [[ $source_only -eq 1 ]]; then
  exit 0
fi

command -v aoc >/dev/null || die "aoc not found: source the Intel FPGA SDK for OpenCL environment (init_opencl.sh)"
args=(-v "-o" "$out")
if [[ $emulator -eq 1 ]]; then
  args+=(-march=emulator)
  [[ -n "$board" ]] && args+=("-board=$board")
else
  [[ -n "$board" ]] || die "a hardware build needs --board (see aoc -list-boards) or \$SLUICE_AOC_BOARD"
  args+=("-board=$board")
fi
echo "== aoc ${args[*]} ${aoc_flags[*]:-} $source"
aoc "${args[@]}" "${aoc_flags[@]}" "$source"
echo "== built $out"
[[ $emulator -eq 1 ]] && echo "   run with CL_CONTEXT_EMULATOR_DEVICE_INTELFPGA=1 (older SDKs) on the emulation platform"
[[ $emulator -eq 0 ]] && echo "   flash with: aocl program acl0 $out   (device name from aocl diagnose)"
