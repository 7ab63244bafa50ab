// Batched matrix products for the CPU backend: out[m][n] = bias[n] + sum_k a_m[k] * w[k][n].
//
// Each of the m rows comes from its own pointer (one session's window or frame), so a
// layer's frames of every session in a batch run as one product without gathering.
// Accumulation order per output element is fixed (bias, then k = 0, 1, ..., K-1, one fused
// multiply-add each) whatever m is and however rows are grouped, so a session's result is
// bitwise identical alone or inside a batch of any size.
#ifndef SLUICE_RUNTIME_CPU_GEMM_H_
#define SLUICE_RUNTIME_CPU_GEMM_H_

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "runtime/common/precision.h"

namespace sluice::cpu {

// Allocator for cache-line-aligned storage, so that a packed panel row never straddles two
// cache lines (and stays aligned when PackedWeights is copied).
template <typename T>
struct CacheAlignedAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};

  CacheAlignedAllocator() = default;
  template <typename U>
  CacheAlignedAllocator(const CacheAlignedAllocator<U>&) {}  // NOLINT(runtime/explicit)

  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, std::size_t n) { ::operator delete(p, n * sizeof(T), kAlignment); }

  template <typename U>
  bool operator==(const CacheAlignedAllocator<U>&) const {
    return true;
  }
};

// What the product does to each output element before storing it.
enum class Epilogue { kNone, kRelu };

// A weight matrix [K][N] plus bias [N], repacked once at model load into the panel layout the
// microkernels stream, as floats or as bf16 (half the bytes; each weight rounded to the nearest
// bf16, widened back to float exactly inside the kernel, so a bf16 product equals the fp32
// product of the rounded weights bit for bit). Immutable after construction; safe to share
// between threads.
class PackedWeights {
 public:
  PackedWeights() = default;
  // `w_kn` is row-major [k][n]; `bias` is [n] or nullptr (zero bias). The bias stays float.
  PackedWeights(int k, int n, const float* w_kn, const float* bias,
                Precision precision = Precision::kFp32);

  int k() const { return k_; }
  int n() const { return n_; }
  Precision precision() const { return precision_; }
  // Bytes of packed weights (for reporting).
  int64_t bytes() const {
    return static_cast<int64_t>(panels_.size() * sizeof(float) +
                                bf16_panels_.size() * sizeof(uint32_t));
  }

  // Layout (implementation detail, exposed for the kernels): N is split into blocks of
  // kBlockN columns (the last one zero-padded); block j holds [K][kBlockN] contiguous floats,
  // 64-byte aligned. The bias is zero-padded to num_blocks() * kBlockN floats.
  static constexpr int kBlockN = 64;
  const float* block(int j) const {
    return panels_.data() + static_cast<int64_t>(j) * k_ * kBlockN;
  }
  const float* padded_bias() const { return bias_.data(); }
  int num_blocks() const { return (n_ + kBlockN - 1) / kBlockN; }

  // bf16 layout: block j holds [K][kBlockN / 2] 32-bit words, 64-byte aligned; word 8g + i of a
  // packed row holds column 16g + i in its low half and column 16g + 8 + i in its high half, so
  // one 8-word load yields two 8-float vectors with a shift and a mask. Empty for fp32 (and
  // block() for bf16).
  static constexpr int kColumnsPerBf16Group = 16;
  const uint32_t* bf16_block(int j) const {
    return bf16_panels_.data() + static_cast<int64_t>(j) * k_ * (kBlockN / 2);
  }

 private:
  int k_ = 0;
  int n_ = 0;
  Precision precision_ = Precision::kFp32;
  std::vector<float, CacheAlignedAllocator<float>> panels_;             // [num_blocks][K][kBlockN]
  std::vector<uint32_t, CacheAlignedAllocator<uint32_t>> bf16_panels_;  // [blocks][K][kBlockN/2]
  std::vector<float, CacheAlignedAllocator<float>> bias_;               // [num_blocks * kBlockN]
};

// out[i * ldc + n] = epilogue(bias[n] + sum_k rows[i][k] * w[k][n]) for i < m, n < w.n().
// `rows[i]` points at K contiguous floats. Allocation-free; thread-compatible.
void Gemm(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
          Epilogue epilogue);

// Name of the microkernel Gemm dispatches fp32 weights to on this CPU: "avx512", "avx2" (AVX2 +
// FMA, for CPUs or hypervisors that do not expose AVX-512) or "generic". bf16 weights run on the
// AVX2 kernel on both AVX2 and AVX-512 CPUs (widening in registers), else on the generic one.
const char* GemmKernelName();

}  // namespace sluice::cpu

#endif  // SLUICE_RUNTIME_CPU_GEMM_H_
