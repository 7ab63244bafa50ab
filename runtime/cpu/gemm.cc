#include "runtime/cpu/gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "runtime/common/bf16.h"
#include "runtime/cpu/gemm_internal.h"

// This file is compiled for baseline x86-64: the AVX2 kernel gets its instruction set per
// function and only runs after the CPUID check.
#define SLUICE_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace sluice::cpu {

PackedWeights::PackedWeights(int k, int n, const float* w_kn, const float* bias,
                             Precision precision)
    : k_(k), n_(n), precision_(precision) {
  assert(k >= 0 && n >= 0);
  const int blocks = num_blocks();
  bias_.assign(static_cast<size_t>(blocks) * kBlockN, 0.0f);
  if (bias != nullptr && n > 0) std::memcpy(bias_.data(), bias, n * sizeof(float));
  if (precision == Precision::kBf16) {
    constexpr int kWordsPerRow = kBlockN / 2;
    constexpr int kHalfGroup = kColumnsPerBf16Group / 2;
    bf16_panels_.assign(static_cast<size_t>(blocks) * k * kWordsPerRow, 0u);
    for (int j = 0; j < blocks; ++j) {
      uint32_t* dst = bf16_panels_.data() + static_cast<int64_t>(j) * k * kWordsPerRow;
      for (int kk = 0; kk < k; ++kk) {
        const float* src = w_kn + static_cast<int64_t>(kk) * n;
        for (int word = 0; word < kWordsPerRow; ++word) {
          const int low_col =
              j * kBlockN + (word / kHalfGroup) * kColumnsPerBf16Group + word % kHalfGroup;
          const int high_col = low_col + kHalfGroup;
          const uint32_t low = low_col < n ? Bf16FromFloat(src[low_col]) : 0u;
          const uint32_t high = high_col < n ? Bf16FromFloat(src[high_col]) : 0u;
          dst[static_cast<int64_t>(kk) * kWordsPerRow + word] = low | (high << 16);
        }
      }
    }
    return;
  }
  panels_.assign(static_cast<size_t>(blocks) * k * kBlockN, 0.0f);
  for (int j = 0; j < blocks; ++j) {
    const int n0 = j * kBlockN;
    const int cols = std::min(kBlockN, n - n0);
    float* dst = panels_.data() + static_cast<int64_t>(j) * k * kBlockN;
    for (int kk = 0; kk < k; ++kk) {
      std::memcpy(dst + static_cast<int64_t>(kk) * kBlockN,
                  w_kn + static_cast<int64_t>(kk) * n + n0, cols * sizeof(float));
    }
  }
}

namespace internal {

GemmArgs MakeGemmArgs(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
                      Epilogue epilogue) {
  assert(ldc >= w.n());
  GemmArgs args;
  if (w.num_blocks() > 0 && w.k() > 0) {
    if (w.precision() == Precision::kBf16) {
      args.bf16_panels = w.bf16_block(0);
    } else {
      args.panels = w.block(0);
    }
  }
  args.bias = w.padded_bias();
  args.k = w.k();
  args.n = w.n();
  args.m = m;
  args.rows = rows;
  args.out = out;
  args.ldc = ldc;
  args.relu = epilogue == Epilogue::kRelu;
  return args;
}

// Fallback for CPUs without AVX2 + FMA: one row x kBlockN accumulators at a time. Slow (std::fma
// is a libm call there) but exact to the contract.
void GemmGeneric(const GemmArgs& g) {
  const int blocks = (g.n + kBlockN - 1) / kBlockN;
  float widened[kBlockN];  // One packed bf16 row as floats.
  for (int j = 0; j < blocks; ++j) {
    const int n0 = j * kBlockN;
    const int cols = std::min(kBlockN, g.n - n0);
    for (int i = 0; i < g.m; ++i) {
      const float* a = g.rows[i];
      float acc[kBlockN];
      std::memcpy(acc, g.bias + n0, sizeof(acc));
      for (int kk = 0; kk < g.k; ++kk) {
        const float x = a[kk];
        const float* wk;
        if (g.bf16_panels != nullptr) {
          constexpr int kHalfGroup = PackedWeights::kColumnsPerBf16Group / 2;
          const uint32_t* words =
              g.bf16_panels + (static_cast<int64_t>(j) * g.k + kk) * kBlockN / 2;
          for (int word = 0; word < kBlockN / 2; ++word) {
            const int col = (word / kHalfGroup) * 2 * kHalfGroup + word % kHalfGroup;
            widened[col] = FloatFromBf16(static_cast<uint16_t>(words[word]));
            widened[col + kHalfGroup] = FloatFromBf16(static_cast<uint16_t>(words[word] >> 16));
          }
          wk = widened;
        } else {
          wk = g.panels + (static_cast<int64_t>(j) * g.k + kk) * kBlockN;
        }
        // std::fma is exact-then-rounded on every platform, unlike a*b+c under contraction.
        for (int c = 0; c < kBlockN; ++c) acc[c] = std::fma(x, wk[c], acc[c]);
      }
      float* dst = g.out + i * g.ldc + n0;
      for (int c = 0; c < cols; ++c) {
        // Same NaN / -0 behaviour as max_ps(x, 0): anything not > 0 becomes +0.
        dst[c] = (g.relu && !(acc[c] > 0.0f)) ? 0.0f : acc[c];
      }
    }
  }
}

namespace {

// AVX2 tile: MR rows x NV vectors of 8 columns. 16 ymm registers hold MR * NV accumulators,
// NV weight vectors and one broadcast; NV is widened for short tiles so there are always at
// least 8 independent FMA chains (2 FMA pipes x 4-cycle latency).
constexpr int kAvx2Lanes = 8;
constexpr int kAvx2MaxRows = 6;
// K is processed in chunks of kAvx2ChunkK: a tile's rows are copied to a small stack buffer
// (rows kAvx2ChunkK floats apart, so rows that are 4 KB apart in memory stop evicting each
// other from the same L1 set) and the weights of a chunk (kAvx2ChunkK x kBlockN) stay hot
// while every row tile passes. Accumulators go through `out` between chunks, which keeps the
// per-element k order.
constexpr int kAvx2ChunkK = 256;
// The first row tile of a chunk prefetches weights this many packed rows ahead: the hardware
// prefetcher alone leaves the L3 stream (3 x 512 KB per cnn_tiny step) about 10% slower.
constexpr int kAvx2PrefetchRows = 16;

constexpr int Avx2Vecs(int mr) { return mr == 1 ? 8 : (mr <= 3 ? 4 : 2); }

SLUICE_TARGET_AVX2 inline __m256i Avx2FirstLanes(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// How a packed row of weights is stored: `Weight` is the element type, kColumnsPerWeight the
// columns each element holds, kRowStride the elements per packed row.
template <typename Weight>
struct PanelFormat;
template <>
struct PanelFormat<float> {
  static constexpr int kColumnsPerWeight = 1;
  static constexpr int kRowStride = kBlockN;
};
template <>
struct PanelFormat<uint32_t> {  // Two bf16 per word (PackedWeights' bf16 layout).
  static constexpr int kColumnsPerWeight = 2;
  static constexpr int kRowStride = kBlockN / 2;
};

// Loads NV vectors of 8 columns of one packed row.
template <int NV>
SLUICE_TARGET_AVX2 inline void LoadWeightsAvx2(const float* w, __m256 (&wv)[NV]) {
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) wv[v] = _mm256_load_ps(w + v * kAvx2Lanes);
}
template <int NV>
SLUICE_TARGET_AVX2 inline void LoadWeightsAvx2(const uint32_t* w, __m256 (&wv)[NV]) {
  static_assert(NV % 2 == 0, "bf16 words hold columns in pairs of vectors");
  const __m256i high_halves = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
#pragma GCC unroll 4
  for (int p = 0; p < NV / 2; ++p) {
    const __m256i words = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + p * kAvx2Lanes));
    wv[2 * p] = _mm256_castsi256_ps(_mm256_slli_epi32(words, 16));
    wv[2 * p + 1] = _mm256_castsi256_ps(_mm256_and_si256(words, high_halves));
  }
}

// Accumulates `kc` steps of rows [0, MR) x columns [0, cols) of one column panel. Row r's
// inputs are a[r * a_stride + kk]; `w` points at the panel's first column in the chunk's first
// packed row; `out` at the same column. Starts from `bias` if non-null, else from the partial
// sums in `out`; applies ReLU if `relu` (last chunk only). If `prefetch`, kc +
// kAvx2PrefetchRows packed rows must exist from `w` on.
template <int MR, int NV, typename Weight>
SLUICE_TARGET_AVX2 void TileAvx2(const float* a, int64_t a_stride, int kc, const Weight* w,
                                 const float* bias, float* out, int64_t ldc, int cols, bool relu,
                                 bool prefetch) {
  using Format = PanelFormat<Weight>;
  constexpr int kTileBytes =
      NV * kAvx2Lanes * static_cast<int>(sizeof(Weight)) / Format::kColumnsPerWeight;
  __m256 acc[MR][NV];
  if (bias != nullptr) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const __m256 b = _mm256_load_ps(bias + v * kAvx2Lanes);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][v] = b;
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        const int c = v * kAvx2Lanes;
        const float* src = out + r * ldc + c;
        acc[r][v] = c + kAvx2Lanes <= cols ? _mm256_loadu_ps(src)
                                           : _mm256_maskload_ps(src, Avx2FirstLanes(cols - c));
      }
    }
  }

  for (int kk = 0; kk < kc; ++kk, w += Format::kRowStride) {
    if (prefetch) {
      const char* ahead = reinterpret_cast<const char*>(w + kAvx2PrefetchRows * Format::kRowStride);
#pragma GCC unroll 4
      for (int byte = 0; byte < kTileBytes; byte += 64) __builtin_prefetch(ahead + byte);
    }
    __m256 wv[NV];
    LoadWeightsAvx2<NV>(w, wv);
    // Keep the weights in registers when they fit: GCC otherwise reloads them as memory
    // operands of every FMA, and the extra loads cost ~15% at MR = 2.
    if constexpr (MR * NV + NV + 1 <= 16) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) asm("" : "+x"(wv[v]));
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r * a_stride + kk);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm256_fmadd_ps(x, wv[v], acc[r][v]);
    }
  }

  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* dst = out + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      const int c = v * kAvx2Lanes;
      const __m256 y = relu ? _mm256_max_ps(acc[r][v], zero) : acc[r][v];
      if (c + kAvx2Lanes <= cols) {
        _mm256_storeu_ps(dst + c, y);
      } else if (c < cols) {
        _mm256_maskstore_ps(dst + c, Avx2FirstLanes(cols - c), y);
      }
    }
  }
}

// One row tile x one K chunk x every column panel of a block.
template <int MR, typename Weight>
SLUICE_TARGET_AVX2 void BlockAvx2(const float* a, int64_t a_stride, int kc, const Weight* w,
                                  const float* bias, float* out, int64_t ldc, int block_cols,
                                  bool relu, bool prefetch) {
  constexpr int kNV = Avx2Vecs(MR);
  constexpr int kCols = kNV * kAvx2Lanes;
  for (int c = 0; c < block_cols; c += kCols) {
    // With k == 0 there are no weights (w is null) and offsetting null is undefined.
    TileAvx2<MR, kNV>(
        a, a_stride, kc, w == nullptr ? nullptr : w + c / PanelFormat<Weight>::kColumnsPerWeight,
        bias == nullptr ? nullptr : bias + c, out + c, ldc, block_cols - c, relu, prefetch);
  }
}

template <typename Weight>
SLUICE_TARGET_AVX2 void GemmAvx2Panels(const GemmArgs& g, const Weight* panels) {
  using BlockFn = void (*)(const float*, int64_t, int, const Weight*, const float*, float*, int64_t,
                           int, bool, bool);
  static constexpr BlockFn kBlockFns[kAvx2MaxRows + 1] = {nullptr,
                                                          BlockAvx2<1, Weight>,
                                                          BlockAvx2<2, Weight>,
                                                          BlockAvx2<3, Weight>,
                                                          BlockAvx2<4, Weight>,
                                                          BlockAvx2<5, Weight>,
                                                          BlockAvx2<6, Weight>};
  constexpr int kRowStride = PanelFormat<Weight>::kRowStride;
  if (g.m <= 0) return;
  // Near-equal row tiles (m = 8 -> 4 + 4, not 6 + 2) keep every tile FMA-bound.
  const int tiles = (g.m + kAvx2MaxRows - 1) / kAvx2MaxRows;
  const int base_rows = g.m / tiles;
  const int extra_rows = g.m % tiles;
  const int blocks = (g.n + kBlockN - 1) / kBlockN;
  alignas(64) float packed_rows[kAvx2MaxRows * kAvx2ChunkK];
  // Blocks outermost, then K chunks: a chunk's weights stay in L2 while every row tile passes.
  for (int j = 0; j < blocks; ++j) {
    const Weight* block =
        panels == nullptr ? nullptr : panels + static_cast<int64_t>(j) * g.k * kRowStride;
    const int n0 = j * kBlockN;
    const int block_cols = std::min(kBlockN, g.n - n0);
    // k == 0 still needs one (empty) chunk to write the bias.
    for (int k0 = 0; k0 < g.k || k0 == 0; k0 += kAvx2ChunkK) {
      const int kc = std::min(kAvx2ChunkK, g.k - k0);
      const Weight* w = block == nullptr ? nullptr : block + static_cast<int64_t>(k0) * kRowStride;
      const float* bias = k0 == 0 ? g.bias + n0 : nullptr;
      const bool relu = g.relu && k0 + kc >= g.k;
      // Packed rows after this chunk (the next block follows this one in memory).
      const int64_t rows_after = static_cast<int64_t>(blocks - 1 - j) * g.k + (g.k - k0 - kc);
      int i = 0;
      for (int t = 0; t < tiles; ++t) {
        const int mr = base_rows + (t < extra_rows ? 1 : 0);
        const float* a = g.rows[i] + k0;
        int64_t a_stride = 0;
        if (mr > 1) {
          for (int r = 0; r < mr; ++r) {
            std::memcpy(packed_rows + r * kAvx2ChunkK, g.rows[i + r] + k0, kc * sizeof(float));
          }
          a = packed_rows;
          a_stride = kAvx2ChunkK;
        }
        // Only the first tile pulls the chunk in; the later ones find it in L2.
        const bool prefetch = t == 0 && rows_after >= kAvx2PrefetchRows;
        kBlockFns[mr](a, a_stride, kc, w, bias, g.out + i * g.ldc + n0, g.ldc, block_cols, relu,
                      prefetch);
        i += mr;
      }
    }
  }
}

}  // namespace

SLUICE_TARGET_AVX2 void GemmAvx2(const GemmArgs& g) {
  if (g.bf16_panels != nullptr) {
    GemmAvx2Panels(g, g.bf16_panels);
  } else {
    GemmAvx2Panels(g, g.panels);
  }
}

bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool CpuHasAvx512() {
  __builtin_cpu_init();
  // The AVX-512 file is compiled with F/BW/VL/DQ, so the compiler may use any of them.
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("fma");
}

}  // namespace internal

namespace {

struct Kernel {
  internal::GemmKernel fp32;
  internal::GemmKernel bf16;
  const char* name;  // Of the fp32 kernel.
};

Kernel ChooseKernel() {
  // No AVX-512 bf16 kernel yet: widening bf16 in registers is the same work in AVX2.
  if (internal::CpuHasAvx512()) return {internal::GemmAvx512, internal::GemmAvx2, "avx512"};
  if (internal::CpuHasAvx2()) return {internal::GemmAvx2, internal::GemmAvx2, "avx2"};
  return {internal::GemmGeneric, internal::GemmGeneric, "generic"};
}

// Chosen once, on first use (thread-safe static initialization).
const Kernel& ActiveKernel() {
  static const Kernel kernel = ChooseKernel();
  return kernel;
}

}  // namespace

void Gemm(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
          Epilogue epilogue) {
  if (m <= 0 || w.n() == 0) return;
  const Kernel& kernel = ActiveKernel();
  (w.precision() == Precision::kBf16 ? kernel.bf16 : kernel.fp32)(
      internal::MakeGemmArgs(w, m, rows, out, ldc, epilogue));
}

const char* GemmKernelName() { return ActiveKernel().name; }

}  // namespace sluice::cpu
