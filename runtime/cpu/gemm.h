// Batched matrix products for the CPU backend: out[m][n] = bias[n] + sum_k a_m[k] * w[k][n].
//
// Each of the m rows comes from its own pointer (one session's window or frame), so a
// layer's frames of every session in a batch run as one product without gathering.
// Accumulation order per output element is fixed (bias, then k = 0, 1, ..., K-1, one fused
// multiply-add each) whatever m is and however rows are grouped, so a session's result is
// bitwise identical alone or inside a batch of any size.
#ifndef SLUICE_RUNTIME_CPU_GEMM_H_
#define SLUICE_RUNTIME_CPU_GEMM_H_

#include <cstdint>
#include <vector>

namespace sluice::cpu {

// What the product does to each output element before storing it.
enum class Epilogue { kNone, kRelu };

// A weight matrix [K][N] plus bias [N], repacked once at model load into the panel layout the
// microkernels stream. Immutable after construction; safe to share between threads.
class PackedWeights {
 public:
  PackedWeights() = default;
  // `w_kn` is row-major [k][n]; `bias` is [n] or nullptr (zero bias).
  PackedWeights(int k, int n, const float* w_kn, const float* bias);

  int k() const { return k_; }
  int n() const { return n_; }
  // Bytes of packed weights (for reporting).
  int64_t bytes() const { return static_cast<int64_t>(panels_.size()) * sizeof(float); }

  // Layout (implementation detail, exposed for the kernels): N is split into blocks of
  // kBlockN columns (the last one zero-padded); block j holds [K][kBlockN] contiguous floats.
  static constexpr int kBlockN = 64;
  const float* block(int j) const { return panels_.data() + static_cast<int64_t>(j) * k_ * kBlockN; }
  const float* padded_bias() const { return bias_.data(); }
  int num_blocks() const { return (n_ + kBlockN - 1) / kBlockN; }

 private:
  int k_ = 0;
  int n_ = 0;
  std::vector<float> panels_;  // [num_blocks][K][kBlockN]
  std::vector<float> bias_;    // [num_blocks * kBlockN]
};

// out[i * ldc + n] = epilogue(bias[n] + sum_k rows[i][k] * w[k][n]) for i < m, n < w.n().
// `rows[i]` points at K contiguous floats. Allocation-free; thread-compatible.
void Gemm(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
          Epilogue epilogue);

// Name of the microkernel Gemm dispatches to on this CPU ("avx512" or "generic").
const char* GemmKernelName();

}  // namespace sluice::cpu

#endif  // SLUICE_RUNTIME_CPU_GEMM_H_
