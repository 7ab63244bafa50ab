// AVX-512 microkernel. This file is compiled with -mavx512f/bw/vl/dq -mfma and only called
// after CpuHasAvx512(), so it uses nothing but intrinsics, C library calls and functions of its
// own (see GemmArgs). Same structure as the AVX2 kernel in gemm.cc, with 16-float vectors.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "runtime/cpu/gemm_internal.h"

namespace sluice::cpu::internal {
namespace {

constexpr int kLanes = 16;
constexpr int kVecsPerBlock = kBlockN / kLanes;
// A tile is MR rows x NB whole blocks (NB * 4 vectors), so each k step reads whole 256-byte
// packed rows. 6 x 1 and 3 x 2 both keep 24 of the 32 zmm registers as accumulators, leaving
// room for the weight vectors; short tiles take two blocks so there are always >= 8
// independent FMA chains (2 FMA pipes x 4-cycle latency).
constexpr int kMaxRows = 6;
constexpr int kMaxRowsTwoBlocks = 3;
// K chunking, as in the AVX2 kernel: a tile's rows are copied kChunkK floats apart into a stack
// buffer (rows 4 KB apart would share L1 sets), and a chunk's weights stay hot while every row
// tile passes. Partial sums go through `out` between chunks, keeping the per-element k order.
constexpr int kChunkK = 256;
// Software prefetch distance in packed rows, used by the first row tile of each chunk.
constexpr int kPrefetchRows = 16;

inline __mmask16 FirstLanes(int count) {
  return count >= kLanes ? static_cast<__mmask16>(0xFFFF)
                         : static_cast<__mmask16>((1u << count) - 1u);
}

// Accumulates `kc` steps of rows [0, MR) x columns [0, cols) of NB consecutive blocks. Row r's
// inputs are a[r * a_stride + kk]; `w` points at the chunk's first packed row in the first
// block (the next block is block_stride floats further); `out` at the first column. Starts from
// `bias` if non-null, else from the partial sums in `out`; applies ReLU if `relu` (last chunk
// only). If `prefetch`, kc + kPrefetchRows packed rows must exist from `w` on in every block.
template <int MR, int NB>
void Tile(const float* a, int64_t a_stride, int kc, const float* w, int64_t block_stride,
          const float* bias, float* out, int64_t ldc, int cols, bool relu, bool prefetch) {
  constexpr int kVecs = NB * kVecsPerBlock;
  const float* wb[NB];
#pragma GCC unroll 2
  for (int b = 0; b < NB; ++b) wb[b] = w + b * block_stride;

  __m512 acc[MR][kVecs];
  if (bias != nullptr) {
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      const __m512 b = _mm512_load_ps(bias + v * kLanes);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) acc[r][v] = b;
    }
  } else {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v) {
        const int c = v * kLanes;
        acc[r][v] = c < cols ? _mm512_maskz_loadu_ps(FirstLanes(cols - c), out + r * ldc + c)
                             : _mm512_setzero_ps();
      }
    }
  }

  for (int kk = 0; kk < kc; ++kk) {
    const int64_t row = static_cast<int64_t>(kk) * kBlockN;
    if (prefetch) {
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v) {
        __builtin_prefetch(wb[v / kVecsPerBlock] + row + kPrefetchRows * kBlockN +
                           (v % kVecsPerBlock) * kLanes);
      }
    }
    __m512 wv[kVecs];
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      wv[v] = _mm512_load_ps(wb[v / kVecsPerBlock] + row + (v % kVecsPerBlock) * kLanes);
      // Keep the weights in registers when they fit rather than reloading them as memory
      // operands of every FMA (see the AVX2 kernel).
      if constexpr (MR * kVecs + kVecs + 1 <= 32) asm("" : "+v"(wv[v]));
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * a_stride + kk]);
#pragma GCC unroll 8
      for (int v = 0; v < kVecs; ++v) acc[r][v] = _mm512_fmadd_ps(x, wv[v], acc[r][v]);
    }
  }

  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    float* dst = out + r * ldc;
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      const int c = v * kLanes;
      if (c >= cols) continue;
      // Keeps lanes > 0, so NaN and -0 become +0 like in the other kernels. Not max_ps: its
      // _mm512_undefined_ps trips GCC 12's -Wmaybe-uninitialized.
      const __m512 y =
          relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(acc[r][v], zero, _CMP_GT_OQ), acc[r][v])
               : acc[r][v];
      if (c + kLanes <= cols) {
        _mm512_storeu_ps(dst + c, y);
      } else {
        _mm512_mask_storeu_ps(dst + c, FirstLanes(cols - c), y);
      }
    }
  }
}

using TileFn = void (*)(const float*, int64_t, int, const float*, int64_t, const float*, float*,
                        int64_t, int, bool, bool);

}  // namespace

void GemmAvx512(const GemmArgs& g) {
  // Indexed by row count; the two-block table only goes up to kMaxRowsTwoBlocks.
  static constexpr TileFn kOneBlock[kMaxRows + 1] = {nullptr,    Tile<1, 1>, Tile<2, 1>, Tile<3, 1>,
                                                     Tile<4, 1>, Tile<5, 1>, Tile<6, 1>};
  static constexpr TileFn kTwoBlocks[kMaxRowsTwoBlocks + 1] = {nullptr, Tile<1, 2>, Tile<2, 2>,
                                                               Tile<3, 2>};
  if (g.m <= 0) return;
  const int blocks = (g.n + kBlockN - 1) / kBlockN;
  const int64_t block_stride = static_cast<int64_t>(g.k) * kBlockN;
  const int nb = (g.m <= kMaxRowsTwoBlocks && blocks >= 2) ? 2 : 1;
  const int max_rows = nb == 2 ? kMaxRowsTwoBlocks : kMaxRows;
  // Near-equal row tiles (m = 8 -> 4 + 4, not 6 + 2) keep every tile FMA-bound.
  const int tiles = (g.m + max_rows - 1) / max_rows;
  const int base_rows = g.m / tiles;
  const int extra_rows = g.m % tiles;
  alignas(64) float packed_rows[kMaxRows * kChunkK];
  // Block groups outermost, then K chunks: a chunk's weights stay in L2 while every row tile
  // passes.
  for (int j = 0; j < blocks; j += nb) {
    const int group = blocks - j >= nb ? nb : 1;
    const TileFn* tile_fns = group == 2 ? kTwoBlocks : kOneBlock;
    const float* block = g.panels + j * block_stride;
    const int n0 = j * kBlockN;
    const int cols = g.n - n0 < group * kBlockN ? g.n - n0 : group * kBlockN;
    // k == 0 still needs one (empty) chunk to write the bias.
    for (int k0 = 0; k0 < g.k || k0 == 0; k0 += kChunkK) {
      const int kc = g.k - k0 < kChunkK ? g.k - k0 : kChunkK;
      const float* w = block + static_cast<int64_t>(k0) * kBlockN;
      const float* bias = k0 == 0 ? g.bias + n0 : nullptr;
      const bool relu = g.relu && k0 + kc >= g.k;
      // Packed rows after this chunk in the group's last block (later blocks follow it).
      const int64_t rows_after = static_cast<int64_t>(blocks - j - group) * g.k + (g.k - k0 - kc);
      int i = 0;
      for (int t = 0; t < tiles; ++t) {
        const int mr = base_rows + (t < extra_rows ? 1 : 0);
        const float* a = g.rows[i] + k0;
        int64_t a_stride = 0;
        if (mr > 1) {
          for (int r = 0; r < mr; ++r) {
            std::memcpy(packed_rows + r * kChunkK, g.rows[i + r] + k0, kc * sizeof(float));
          }
          a = packed_rows;
          a_stride = kChunkK;
        }
        // Only the first tile pulls the chunk in; the later ones find it in L2.
        const bool prefetch = t == 0 && rows_after >= kPrefetchRows;
        tile_fns[mr](a, a_stride, kc, w, block_stride, bias, g.out + i * g.ldc + n0, g.ldc, cols,
                     relu, prefetch);
        i += mr;
      }
    }
  }
}

}  // namespace sluice::cpu::internal
