// Internal interface between Gemm's dispatcher (gemm.cc) and its microkernels, one per
// instruction set. Not part of the public API; tests and benchmarks call the kernels directly.
#ifndef SLUICE_RUNTIME_CPU_GEMM_INTERNAL_H_
#define SLUICE_RUNTIME_CPU_GEMM_INTERNAL_H_

#include <cstdint>

#include "runtime/cpu/gemm.h"

namespace sluice::cpu::internal {

inline constexpr int kBlockN = PackedWeights::kBlockN;

// One Gemm call as plain values. The kernels take this instead of PackedWeights so that the
// translation units compiled for a newer instruction set instantiate no inline or template
// function shared with baseline code: the linker could otherwise keep their copy and run it on
// a CPU without that instruction set.
struct GemmArgs {
  const float* panels = nullptr;  // [ceil(n / kBlockN)][k][kBlockN], 64-byte aligned
  // Instead of `panels` for bf16 weights: [ceil(n / kBlockN)][k][kBlockN / 2] words, 64-byte
  // aligned, in PackedWeights' bf16 layout. Only the generic and AVX2 kernels read it.
  const uint32_t* bf16_panels = nullptr;
  const float* bias = nullptr;  // [ceil(n / kBlockN) * kBlockN], zero-padded, 64-byte aligned
  int k = 0;
  int n = 0;
  int m = 0;
  const float* const* rows = nullptr;  // m pointers to k floats each
  float* out = nullptr;                // row i at out + i * ldc
  int64_t ldc = 0;
  bool relu = false;
};

GemmArgs MakeGemmArgs(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
                      Epilogue epilogue);

// The kernels. Each computes every element as bias, then one fused multiply-add per k in
// increasing k, then the epilogue, so each is batch invariant (and, with IEEE fused
// multiply-add, all of them agree bitwise).
using GemmKernel = void (*)(const GemmArgs& args);
void GemmGeneric(const GemmArgs& args);  // Portable C++ (std::fma).
void GemmAvx2(const GemmArgs& args);     // Needs CpuHasAvx2(): AVX2 + FMA.
void GemmAvx512(const GemmArgs& args);   // Needs CpuHasAvx512(): AVX-512 F/BW/VL/DQ; fp32 only.

bool CpuHasAvx2();
bool CpuHasAvx512();

}  // namespace sluice::cpu::internal

#endif  // SLUICE_RUNTIME_CPU_GEMM_INTERNAL_H_
