// AVX-512 microkernel. This file is compiled with -mavx512f/bw/vl/dq -mfma and only called
// after CpuHasAvx512(), so it uses nothing but intrinsics and its own internal functions (see
// GemmArgs).
#include <immintrin.h>

#include <cstdint>

#include "runtime/cpu/gemm_internal.h"

namespace sluice::cpu::internal {
namespace {

constexpr int kLanes = 16;
constexpr int kVecsPerBlock = kBlockN / kLanes;
// Tiles are MR rows x NB blocks (NB * 4 vectors of 16 columns). 6 x 1 block and 3 x 2 blocks
// both use 24 of the 32 zmm registers as accumulators, leaving room for the weight vectors;
// short tiles take two blocks so there are always >= 8 independent FMA chains.
constexpr int kMaxRows = 6;
constexpr int kMaxRowsTwoBlocks = 3;

// Computes rows [0, MR) x columns [0, cols) of NB consecutive blocks. `block` points at the
// first block's panel ([k][kBlockN], next block k * kBlockN floats further), `bias` and `out`
// at its first column.
template <int MR, int NB>
void Tile(const float* const* rows, int k, const float* block, const float* bias, float* out,
          int64_t ldc, int cols, bool relu) {
  constexpr int kVecs = NB * kVecsPerBlock;
  const int64_t block_stride = static_cast<int64_t>(k) * kBlockN;

  __m512 acc[MR][kVecs];
#pragma GCC unroll 8
  for (int v = 0; v < kVecs; ++v) {
    const __m512 b = _mm512_load_ps(bias + v * kLanes);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][v] = b;
  }
  const float* a[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) a[r] = rows[r];

  const float* wk = block;
  for (int kk = 0; kk < k; ++kk, wk += kBlockN) {
    __m512 wv[kVecs];
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      wv[v] =
          _mm512_load_ps(wk + (v / kVecsPerBlock) * block_stride + (v % kVecsPerBlock) * kLanes);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512 x = _mm512_set1_ps(a[r][kk]);
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
      // Keeps lanes > 0 (so NaN and -0 become +0, like the generic kernel). Not max_ps: its
      // _mm512_undefined_ps trips GCC 12's -Wmaybe-uninitialized.
      const __m512 y =
          relu ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(acc[r][v], zero, _CMP_GT_OQ), acc[r][v])
               : acc[r][v];
      if (c + kLanes <= cols) {
        _mm512_storeu_ps(dst + c, y);
      } else if (c < cols) {
        _mm512_mask_storeu_ps(dst + c, static_cast<__mmask16>((1u << (cols - c)) - 1u), y);
      }
    }
  }
}

// Runs one tile of `mr` rows; NB must be 1 or mr <= kMaxRowsTwoBlocks.
template <int NB>
void RunTile(int mr, const float* const* rows, int k, const float* block, const float* bias,
             float* out, int64_t ldc, int cols, bool relu) {
  switch (mr) {
    case 1:
      Tile<1, NB>(rows, k, block, bias, out, ldc, cols, relu);
      break;
    case 2:
      Tile<2, NB>(rows, k, block, bias, out, ldc, cols, relu);
      break;
    case 3:
      Tile<3, NB>(rows, k, block, bias, out, ldc, cols, relu);
      break;
    case 4:
      if constexpr (NB == 1) Tile<4, 1>(rows, k, block, bias, out, ldc, cols, relu);
      break;
    case 5:
      if constexpr (NB == 1) Tile<5, 1>(rows, k, block, bias, out, ldc, cols, relu);
      break;
    default:
      if constexpr (NB == 1) Tile<6, 1>(rows, k, block, bias, out, ldc, cols, relu);
      break;
  }
}

}  // namespace

void GemmAvx512(const GemmArgs& g) {
  if (g.m <= 0) return;
  const int blocks = (g.n + kBlockN - 1) / kBlockN;
  // Few rows: two blocks per tile (see kMaxRowsTwoBlocks); otherwise one.
  const int nb = (g.m <= kMaxRowsTwoBlocks && blocks >= 2) ? 2 : 1;
  const int max_rows = nb == 2 ? kMaxRowsTwoBlocks : kMaxRows;
  // Near-equal row tiles (m = 8 -> 4 + 4, not 6 + 2) keep every tile FMA-bound.
  const int tiles = (g.m + max_rows - 1) / max_rows;
  const int base_rows = g.m / tiles;
  const int extra_rows = g.m % tiles;
  // Block groups outermost: their panels stay in L2 while every row tile passes.
  for (int j = 0; j < blocks; j += nb) {
    const int group = (blocks - j >= nb) ? nb : 1;
    const float* block = g.panels + static_cast<int64_t>(j) * g.k * kBlockN;
    const int n0 = j * kBlockN;
    const int cols = g.n - n0 < group * kBlockN ? g.n - n0 : group * kBlockN;
    int i = 0;
    for (int t = 0; t < tiles; ++t) {
      const int mr = base_rows + (t < extra_rows ? 1 : 0);
      const float* const* rows = g.rows + i;
      float* out = g.out + i * g.ldc + n0;
      if (group == 2) {
        RunTile<2>(mr, rows, g.k, block, g.bias + n0, out, g.ldc, cols, g.relu);
      } else {
        RunTile<1>(mr, rows, g.k, block, g.bias + n0, out, g.ldc, cols, g.relu);
      }
      i += mr;
    }
  }
}

}  // namespace sluice::cpu::internal
