#include "runtime/cpu/gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "runtime/common/bf16.h"
#include "runtime/cpu/gemm_internal.h"

namespace sluice::cpu {
namespace {

// A random problem: weights, bias and a pool of rows to point into. With bf16 the weights are
// drawn as bf16 values, which the packing must then hold exactly: every check below compares
// against `w`, so a bf16 product must equal the fp32 product of the same weights bit for bit.
struct Problem {
  int k;
  int n;
  std::vector<float> w;     // [k][n]
  std::vector<float> bias;  // [n]
  PackedWeights packed;

  Problem(int k_in, int n_in, uint32_t seed, Precision precision) : k(k_in), n(n_in) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    w.resize(static_cast<size_t>(k) * n);
    for (float& x : w) x = precision == Precision::kBf16 ? RoundToBf16(dist(rng)) : dist(rng);
    bias.resize(n);
    for (float& x : bias) x = dist(rng);
    packed = PackedWeights(k, n, w.data(), bias.data(), precision);
  }
};

// `count` rows of k floats, each at its own odd offset so no kernel can assume alignment.
struct Rows {
  std::vector<float> storage;
  std::vector<const float*> ptrs;

  Rows(int count, int k, uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    const size_t stride = static_cast<size_t>(k) + 3;
    storage.resize(stride * count + 1);
    for (float& x : storage) x = dist(rng);
    for (int i = 0; i < count; ++i) ptrs.push_back(storage.data() + 1 + stride * i);
  }
};

// The contract, literally: bias, then one fused multiply-add per k in order, then epilogue.
// Every kernel uses IEEE fused multiply-adds, so every kernel must match this bit for bit; that
// implies batch invariance, which is also tested directly below.
float SequentialFma(const Problem& p, const float* a, int col, const float* bias, bool relu) {
  float acc = bias == nullptr ? 0.0f : bias[col];
  for (int kk = 0; kk < p.k; ++kk) {
    acc = std::fma(a[kk], p.w[static_cast<size_t>(kk) * p.n + col], acc);
  }
  return (relu && !(acc > 0.0f)) ? 0.0f : acc;
}

struct KernelCase {
  std::string name;
  internal::GemmKernel fn;  // nullptr: the public, dispatching Gemm().
  Precision precision = Precision::kFp32;
};

void PrintTo(const KernelCase& kernel, std::ostream* os) { *os << kernel.name; }

std::vector<KernelCase> AvailableKernels() {
  std::vector<KernelCase> kernels;
  for (Precision precision : {Precision::kFp32, Precision::kBf16}) {
    const std::string suffix = precision == Precision::kBf16 ? "_bf16" : "";
    kernels.push_back({"dispatch" + suffix, nullptr, precision});
    kernels.push_back({"generic" + suffix, internal::GemmGeneric, precision});
    if (internal::CpuHasAvx2()) kernels.push_back({"avx2" + suffix, internal::GemmAvx2, precision});
  }
  if (internal::CpuHasAvx512()) kernels.push_back({"avx512", internal::GemmAvx512});
  return kernels;
}

class GemmKernelTest : public ::testing::TestWithParam<KernelCase> {
 protected:
  Problem MakeProblem(int k, int n, uint32_t seed) const {
    return Problem(k, n, seed, GetParam().precision);
  }

  void Run(const PackedWeights& w, int m, const float* const* rows, float* out, int ldc,
           Epilogue epilogue) {
    if (GetParam().fn == nullptr) {
      Gemm(w, m, rows, out, ldc, epilogue);
    } else {
      GetParam().fn(internal::MakeGemmArgs(w, m, rows, out, ldc, epilogue));
    }
  }

  // Runs m rows and checks against a double-precision reference within the worst-case bound
  // for k sequential float FMAs, and bitwise against SequentialFma.
  void CheckShape(int m, int k, int n, Epilogue epilogue, bool with_bias) {
    SCOPED_TRACE(testing::Message() << "m=" << m << " k=" << k << " n=" << n);
    const Problem p = MakeProblem(k, n, 1000 * k + n);
    const PackedWeights no_bias(k, n, p.w.data(), nullptr, GetParam().precision);
    const PackedWeights& w = with_bias ? p.packed : no_bias;
    const Rows rows(m, k, m + 7);
    std::vector<float> out(static_cast<size_t>(m) * n, -7.0f);
    Run(w, m, rows.ptrs.data(), out.data(), n, epilogue);

    const bool relu = epilogue == Epilogue::kRelu;
    const double gamma = k * static_cast<double>(FLT_EPSILON) / (1 - k * FLT_EPSILON);
    for (int i = 0; i < m; ++i) {
      const float* a = rows.ptrs[i];
      for (int c = 0; c < n; ++c) {
        double ref = with_bias ? p.bias[c] : 0.0;
        double magnitude = std::fabs(ref);
        for (int kk = 0; kk < k; ++kk) {
          const double term = static_cast<double>(a[kk]) * p.w[static_cast<size_t>(kk) * n + c];
          ref += term;
          magnitude += std::fabs(term);
        }
        if (relu) ref = std::max(ref, 0.0);
        const float got = out[static_cast<size_t>(i) * n + c];
        ASSERT_NEAR(got, ref, gamma * magnitude + 1e-30) << "row " << i << " col " << c;
        const float want = SequentialFma(p, a, c, with_bias ? p.bias.data() : nullptr, relu);
        ASSERT_EQ(std::memcmp(&got, &want, sizeof(float)), 0)
            << "row " << i << " col " << c << ": " << got << " vs " << want;
      }
    }
  }
};

TEST_P(GemmKernelTest, OddShapesMatchReference) {
  // K around the kernels' 256-step chunks, N around their 8/16/64-column vectors and blocks.
  for (int k : {1, 3, 17, 255, 256, 257, 1000}) {
    for (int n : {1, 5, 16, 63, 64, 65, 100, 130}) {
      CheckShape(/*m=*/(k + n) % 13 + 1, k, n, Epilogue::kNone, /*with_bias=*/true);
    }
  }
}

TEST_P(GemmKernelTest, EveryRowCountMatchesReference) {
  for (int m = 1; m <= 13; ++m) CheckShape(m, 1000, 100, Epilogue::kNone, /*with_bias=*/true);
  CheckShape(255, 37, 130, Epilogue::kNone, /*with_bias=*/true);
}

TEST_P(GemmKernelTest, FewRowsManyBlocks) {
  for (int m = 1; m <= 4; ++m) {
    CheckShape(m, 257, 200, Epilogue::kNone, /*with_bias=*/true);
    CheckShape(m, 300, 130, Epilogue::kRelu, /*with_bias=*/true);
  }
}

TEST_P(GemmKernelTest, TargetShapeMatchesReference) {
  CheckShape(64, 1024, 128, Epilogue::kNone, /*with_bias=*/true);
}

TEST_P(GemmKernelTest, ReluClampsNegatives) {
  CheckShape(9, 300, 77, Epilogue::kRelu, /*with_bias=*/true);
  CheckShape(1, 3, 130, Epilogue::kRelu, /*with_bias=*/true);
}

TEST_P(GemmKernelTest, NullBiasIsZeroBias) {
  CheckShape(5, 64, 70, Epilogue::kNone, /*with_bias=*/false);
  CheckShape(2, 3, 129, Epilogue::kRelu, /*with_bias=*/false);
}

TEST_P(GemmKernelTest, ZeroKGivesBias) {
  CheckShape(3, 0, 70, Epilogue::kRelu, /*with_bias=*/true);
}

TEST_P(GemmKernelTest, LdcPaddingIsUntouched) {
  const int m = 11, k = 50, n = 70, ldc = 83;
  const Problem p = MakeProblem(k, n, 3);
  const Rows rows(m, k, 4);
  std::vector<float> out(static_cast<size_t>(m) * ldc, 42.0f);
  Run(p.packed, m, rows.ptrs.data(), out.data(), ldc, Epilogue::kNone);
  for (int i = 0; i < m; ++i) {
    for (int c = 0; c < ldc; ++c) {
      const float got = out[static_cast<size_t>(i) * ldc + c];
      if (c < n) {
        EXPECT_EQ(got, SequentialFma(p, rows.ptrs[i], c, p.bias.data(), false));
      } else {
        EXPECT_EQ(got, 42.0f) << "row " << i << " col " << c;
      }
    }
  }
}

TEST_P(GemmKernelTest, ZeroRowsWritesNothing) {
  const Problem p = MakeProblem(8, 8, 5);
  float out = 42.0f;
  Run(p.packed, 0, nullptr, &out, 8, Epilogue::kNone);
  EXPECT_EQ(out, 42.0f);
}

// A row's output must not depend on the batch size or its position in the batch.
TEST_P(GemmKernelTest, BatchInvariantBitwise) {
  for (auto [k, n] : {std::pair{1024, 128}, std::pair{1000, 100}, std::pair{3, 65}}) {
    SCOPED_TRACE(testing::Message() << "k=" << k << " n=" << n);
    const Problem p = MakeProblem(k, n, 11);
    const Rows pool(256, k, 12);
    const Rows probe(1, k, 13);

    std::vector<float> alone(n);
    Run(p.packed, 1, probe.ptrs.data(), alone.data(), n, Epilogue::kNone);

    for (int m : {2, 7, 8, 13, 64, 255, 256}) {
      // The probe row sits at several positions of one batch: first and last of a row tile,
      // the batch's middle and end; random rows fill the rest.
      std::vector<const float*> ptrs(pool.ptrs.begin(), pool.ptrs.begin() + m);
      std::vector<int> positions;
      for (int pos : {0, 2, 5, 6, 7, m / 2, m - 1}) {
        if (pos < m) {
          ptrs[pos] = probe.ptrs[0];
          positions.push_back(pos);
        }
      }
      std::vector<float> out(static_cast<size_t>(m) * n);
      Run(p.packed, m, ptrs.data(), out.data(), n, Epilogue::kNone);
      for (int pos : positions) {
        ASSERT_EQ(
            std::memcmp(out.data() + static_cast<size_t>(pos) * n, alone.data(), n * sizeof(float)),
            0)
            << "m=" << m << " pos=" << pos;
      }
    }
  }
}

// PackedWeights is shared read-only between threads; Gemm keeps its state on the stack.
TEST_P(GemmKernelTest, ConcurrentCallsAgree) {
  const int m = 9, k = 520, n = 100;
  const Problem p = MakeProblem(k, n, 31);
  const Rows rows(m, k, 32);
  std::vector<float> expected(static_cast<size_t>(m) * n);
  Run(p.packed, m, rows.ptrs.data(), expected.data(), n, Epilogue::kRelu);
  std::vector<std::vector<float>> outs(4, std::vector<float>(expected.size()));
  std::vector<std::thread> threads;
  for (auto& out : outs) {
    threads.emplace_back([&, out = out.data()] {
      for (int rep = 0; rep < 20; ++rep) {
        Run(p.packed, m, rows.ptrs.data(), out, n, Epilogue::kRelu);
      }
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& out : outs) {
    EXPECT_EQ(std::memcmp(out.data(), expected.data(), expected.size() * sizeof(float)), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, GemmKernelTest, ::testing::ValuesIn(AvailableKernels()),
                         [](const testing::TestParamInfo<KernelCase>& info) {
                           return info.param.name;
                         });

TEST(GemmTest, KernelNameMatchesCpu) {
  const std::string name = GemmKernelName();
  if (internal::CpuHasAvx512()) {
    EXPECT_EQ(name, "avx512");
  } else if (internal::CpuHasAvx2()) {
    EXPECT_EQ(name, "avx2");
  } else {
    EXPECT_EQ(name, "generic");
  }
}

TEST(GemmTest, PackedLayout) {
  const int k = 3, n = 70;
  const Problem p(k, n, 21, Precision::kFp32);
  EXPECT_EQ(p.packed.num_blocks(), 2);
  EXPECT_EQ(p.packed.bytes(), 2 * k * PackedWeights::kBlockN * static_cast<int64_t>(sizeof(float)));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.packed.block(0)) % 64, 0u);
  EXPECT_EQ(p.packed.block(1)[2 * PackedWeights::kBlockN + 5], p.w[2 * n + 64 + 5]);
  EXPECT_EQ(p.packed.block(1)[2 * PackedWeights::kBlockN + 6], 0.0f);  // padding
  EXPECT_EQ(p.packed.padded_bias()[69], p.bias[69]);
  EXPECT_EQ(p.packed.padded_bias()[70], 0.0f);

  const PackedWeights copy = p.packed;  // stays aligned when copied
  EXPECT_EQ(reinterpret_cast<uintptr_t>(copy.block(0)) % 64, 0u);
}

TEST(GemmTest, Bf16PackedLayout) {
  const int k = 2, n = 70;
  std::vector<float> w(k * n);
  for (int i = 0; i < k * n; ++i) w[i] = 1.0f + (i % 128) / 128.0f;  // Exact in bf16.
  const PackedWeights packed(k, n, w.data(), nullptr, Precision::kBf16);
  EXPECT_EQ(packed.bytes(), 2 * k * PackedWeights::kBlockN * 2);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(packed.bf16_block(0)) % 64, 0u);
  const auto column = [&](int j, int kk, int col) {
    const uint32_t word =
        packed.bf16_block(j)[kk * PackedWeights::kBlockN / 2 + (col / 16) * 8 + col % 8];
    return FloatFromBf16(static_cast<uint16_t>(col % 16 < 8 ? word : word >> 16));
  };
  EXPECT_EQ(column(0, 1, 3), w[1 * n + 3]);
  EXPECT_EQ(column(0, 1, 11), w[1 * n + 11]);  // High half of the word holding column 3.
  EXPECT_EQ(column(0, 0, 63), w[63]);
  EXPECT_EQ(column(1, 1, 5), w[1 * n + 64 + 5]);
  EXPECT_EQ(column(1, 1, 6), 0.0f);  // Padding.
}

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(RoundToBf16(1.0f), 1.0f);
  // bf16 values are 1/128 apart in [1, 2).
  EXPECT_EQ(RoundToBf16(1.0f + 1.0f / 256), 1.0f);               // Tie: even (1.0) wins.
  EXPECT_EQ(RoundToBf16(1.0f + 3.0f / 256), 1.0f + 2.0f / 128);  // Tie: even (1 + 2/128) wins.
  EXPECT_EQ(RoundToBf16(1.0f + 1.5f / 256), 1.0f + 1.0f / 128);  // Above the tie: up.
  EXPECT_EQ(RoundToBf16(-2.5f), -2.5f);
  EXPECT_EQ(RoundToBf16(0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(RoundToBf16(-0.0f)));
  EXPECT_TRUE(std::isnan(RoundToBf16(std::nanf(""))));
  // A NaN whose payload sits only in the low bits must not become infinity.
  EXPECT_TRUE(std::isnan(RoundToBf16(std::bit_cast<float>(0x7F800001u))));
  EXPECT_EQ(RoundToBf16(std::numeric_limits<float>::infinity()),
            std::numeric_limits<float>::infinity());
  EXPECT_EQ(RoundToBf16(FLT_MAX), std::numeric_limits<float>::infinity());
  for (float x : {0.1f, -3.14159f, 1e-20f, 7e30f}) {
    EXPECT_LE(std::fabs(RoundToBf16(x) - x), std::fabs(x) / 256) << x;
  }
}

}  // namespace
}  // namespace sluice::cpu
