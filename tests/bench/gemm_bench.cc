// Gemm speed on the cnn_tiny layer shape (K = 8 frames x 128 channels, N = 128): sluice's own
// batch-invariant kernels beside reference libraries (oneDNN matmul, Eigen) for the same
// shapes, plus one core's fp32 FMA peak, all in one run.
//
//   OMP_NUM_THREADS=1 taskset -c 1 sluice-gemm-bench [--threads=1] [benchmark flags]
//
// Benchmarks (m = rows = sessions in a batch; every time is real time):
//   BM_FmaPeak/<isa>/<chains>  independent FMA chains in registers: the core's fp32 peak.
//   BM_Layer/<lib>/<m>         one layer: out[m,128] = bias + A[m,1024] x W[1024,128].
//   BM_Chain/<lib>/<m>         one cnn_tiny step: 3 such layers with ReLU, each layer's output
//                              written into the last frame of the next layer's input windows.
// <lib> is `sluice` (the kernel Gemm dispatches to on this CPU), `sluice-<isa>` (another of our
// kernels, forced), `onednn` (oneDNN matmul primitive: created once, weights reordered once to
// the layout it asks for, bias and ReLU fused as post-op) or `eigen` (Eigen::Map products,
// compiled for this target's flags — baseline x86-64 unless the build adds -m flags).
// Counters: GFLOP/s (2 FLOP per multiply-add, from real time) and, for m > 1, `rows_differ`:
// how many of the m output rows differ in any bit from the same row computed alone (m = 1) by
// the same library (0 = batch invariant here). Each result is also checked against sluice's
// dispatched kernel (|error| <= 1e-4 (1 + max |y|)) before timing.
// The libraries run on --threads threads (default 1: OpenMP, used by Debian's oneDNN, and Eigen).
#include <benchmark/benchmark.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "runtime/common/bf16.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_internal.h"

#ifdef SLUICE_BENCH_OPENMP
#include <omp.h>
#endif
#ifdef SLUICE_BENCH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif
#ifdef SLUICE_BENCH_EIGEN
#include <Eigen/Core>
#endif

namespace sluice::cpu {
namespace {

constexpr int kFrames = 8;
constexpr int kChannels = 128;
constexpr int kK = kFrames * kChannels;
constexpr int kN = kChannels;
constexpr int kChainLayers = 3;

using AlignedFloats = std::vector<float, CacheAlignedAllocator<float>>;

AlignedFloats RandomVector(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  AlignedFloats v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

// The data of one benchmark, the same for every library (the generators are seeded, so row 0
// is the same whatever m is). Layer l reads m windows of K floats, one per session, row i at
// in[l] + i * kK (a session's window: its last 8 frames, oldest first). Its output goes to the
// last frame of the next layer's windows (row stride kK), or, for the last layer, to `out`
// [m][kN] — as the backend writes each new frame into the session's ring and reads the window.
struct Problem {
  Problem(int m_, int layers_, bool relu_) : m(m_), layers(layers_), relu(relu_) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(kK) / 3.0f);  // keeps |y| ~ |x|
    for (int l = 0; l < layers; ++l) {
      weights.push_back(RandomVector(static_cast<size_t>(kK) * kN, 10 + l));
      for (float& w : weights.back()) w *= scale;
      bias.push_back(RandomVector(kN, 20 + l));
      in.push_back(RandomVector(static_cast<size_t>(m) * kK, 30 + l));
    }
    out.assign(static_cast<size_t>(m) * kN, 0.0f);
  }
  float* dst(int l) {
    return l + 1 < layers ? in[l + 1].data() + (kFrames - 1) * kChannels : out.data();
  }
  int ldd(int l) const { return l + 1 < layers ? kK : kN; }

  int m;
  int layers;
  bool relu;
  std::vector<AlignedFloats> weights;  // [layers][kK * kN], row-major [k][n]
  std::vector<AlignedFloats> bias;     // [layers][kN]
  std::vector<AlignedFloats> in;       // [layers][m * kK]
  AlignedFloats out;                   // [m * kN]
};

// One library's way of computing a Problem. Everything it needs is prepared in the
// constructor; Run() is the timed part.
class Runner {
 public:
  virtual ~Runner() = default;
  virtual void Run() = 0;
  virtual std::string Label() const = 0;
};

// ---- sluice ------------------------------------------------------------------------------

class SluiceRunner final : public Runner {
 public:
  SluiceRunner(Problem& p, internal::GemmKernel kernel, std::string name,
               Precision precision = Precision::kFp32)
      : p_(p), kernel_(kernel), name_(std::move(name)) {
    for (int l = 0; l < p.layers; ++l) {
      packed_.emplace_back(kK, kN, p.weights[l].data(), p.bias[l].data(), precision);
      rows_.emplace_back(p.m);
      for (int i = 0; i < p.m; ++i) rows_[l][i] = p.in[l].data() + static_cast<size_t>(i) * kK;
    }
  }
  void Run() override {
    const Epilogue epilogue = p_.relu ? Epilogue::kRelu : Epilogue::kNone;
    for (int l = 0; l < p_.layers; ++l) {
      if (kernel_ == nullptr) {
        Gemm(packed_[l], p_.m, rows_[l].data(), p_.dst(l), p_.ldd(l), epilogue);
      } else {
        kernel_(internal::MakeGemmArgs(packed_[l], p_.m, rows_[l].data(), p_.dst(l), p_.ldd(l),
                                       epilogue));
      }
    }
  }
  std::string Label() const override { return name_; }

 private:
  Problem& p_;
  internal::GemmKernel kernel_;  // nullptr: Gemm's dispatch
  std::string name_;
  std::vector<PackedWeights> packed_;
  std::vector<std::vector<const float*>> rows_;
};

// ---- oneDNN ------------------------------------------------------------------------------

#ifdef SLUICE_BENCH_ONEDNN
class OneDnnRunner final : public Runner {
 public:
  explicit OneDnnRunner(Problem& p) : p_(p), engine_(dnnl::engine::kind::cpu, 0), stream_(engine_) {
    using dnnl::memory;
    const memory::dim m = p.m;
    for (int l = 0; l < p.layers; ++l) {
      const memory::desc src_md({m, kK}, memory::data_type::f32, memory::dims{kK, 1});
      const memory::desc any_weights_md({kK, kN}, memory::data_type::f32, memory::format_tag::any);
      const memory::desc user_weights_md({kK, kN}, memory::data_type::f32, memory::format_tag::ab);
      const memory::desc bias_md({1, kN}, memory::data_type::f32, memory::format_tag::ab);
      const memory::desc dst_md({m, kN}, memory::data_type::f32,
                                memory::dims{static_cast<memory::dim>(p.ldd(l)), 1});
      dnnl::primitive_attr attr;
      if (p.relu) {
        dnnl::post_ops ops;
        ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::primitive_desc pd(
          dnnl::matmul::desc(src_md, any_weights_md, bias_md, dst_md), attr, engine_);
      impl_ = pd.impl_info_str();
      // Weights in the layout the primitive prefers, reordered once (as sluice packs once).
      memory user_weights(user_weights_md, engine_, p.weights[l].data());
      memory weights(pd.weights_desc(), engine_);
      dnnl::reorder(user_weights, weights).execute(stream_, user_weights, weights);
      stream_.wait();
      weights_.push_back(weights);
      primitives_.emplace_back(pd);
      args_.push_back({{DNNL_ARG_SRC, memory(src_md, engine_, p.in[l].data())},
                       {DNNL_ARG_WEIGHTS, weights},
                       {DNNL_ARG_BIAS, memory(bias_md, engine_, p.bias[l].data())},
                       {DNNL_ARG_DST, memory(dst_md, engine_, p.dst(l))}});
    }
  }
  void Run() override {
    for (size_t l = 0; l < primitives_.size(); ++l) primitives_[l].execute(stream_, args_[l]);
    stream_.wait();
  }
  std::string Label() const override {
    const dnnl_version_t* v = dnnl_version();
    return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
           std::to_string(v->patch) + " " + impl_;
  }

 private:
  Problem& p_;
  dnnl::engine engine_;
  dnnl::stream stream_;
  std::string impl_;
  std::vector<dnnl::memory> weights_;
  std::vector<dnnl::matmul> primitives_;
  std::vector<std::unordered_map<int, dnnl::memory>> args_;
};
#endif  // SLUICE_BENCH_ONEDNN

// ---- Eigen -------------------------------------------------------------------------------

#ifdef SLUICE_BENCH_EIGEN
class EigenRunner final : public Runner {
 public:
  using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using RowVector = Eigen::Matrix<float, 1, Eigen::Dynamic>;
  using ConstMatrixMap = Eigen::Map<const RowMatrix, Eigen::Aligned64>;
  using MatrixMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

  explicit EigenRunner(Problem& p) : p_(p) {}
  void Run() override {
    for (int l = 0; l < p_.layers; ++l) {
      const ConstMatrixMap a(p_.in[l].data(), p_.m, kK);
      const ConstMatrixMap w(p_.weights[l].data(), kK, kN);
      const Eigen::Map<const RowVector, Eigen::Aligned64> b(p_.bias[l].data(), kN);
      MatrixMap c(p_.dst(l), p_.m, kN, Eigen::OuterStride<>(p_.ldd(l)));
      c.rowwise() = b;
      c.noalias() += a * w;
      if (p_.relu) c = c.cwiseMax(0.0f);
    }
  }
  std::string Label() const override {
    std::string isa = Eigen::SimdInstructionSetsInUse();
#ifdef EIGEN_VECTORIZE_AVX2
    isa += " +AVX2";
#endif
#ifdef EIGEN_VECTORIZE_FMA
    isa += " +FMA";
#endif
    return "Eigen " + std::to_string(EIGEN_WORLD_VERSION) + "." +
           std::to_string(EIGEN_MAJOR_VERSION) + "." + std::to_string(EIGEN_MINOR_VERSION) + " (" +
           isa + ")";
  }

 private:
  Problem& p_;
};
#endif  // SLUICE_BENCH_EIGEN

// ---- benchmarks --------------------------------------------------------------------------

using RunnerFactory = std::function<std::unique_ptr<Runner>(Problem&)>;

// The reference: Gemm's dispatched kernel with fp32 weights, rounded to bf16 first for a library
// that runs bf16 weights (whose product then equals it up to summation order).
AlignedFloats Reference(int m, int layers, bool relu, Precision precision) {
  Problem p(m, layers, relu);
  if (precision == Precision::kBf16) {
    for (AlignedFloats& w : p.weights) {
      for (float& x : w) x = RoundToBf16(x);
    }
  }
  SluiceRunner(p, nullptr, "").Run();
  return p.out;
}

// Batch invariance: how many of the m output rows differ in any bit from the same row computed
// alone (m = 1) by the same library. `inputs` are the problem's windows before it ran.
int RowsDifferFromAlone(const RunnerFactory& factory, const Problem& p,
                        const std::vector<AlignedFloats>& inputs) {
  Problem alone(1, p.layers, p.relu);  // Same seeds: same weights and biases.
  std::unique_ptr<Runner> runner = factory(alone);
  int differ = 0;
  for (int i = 0; i < p.m; ++i) {
    for (int l = 0; l < p.layers; ++l) {
      std::copy_n(inputs[l].begin() + static_cast<size_t>(i) * kK, kK, alone.in[l].begin());
    }
    runner->Run();
    differ += std::memcmp(alone.out.data(), p.out.data() + static_cast<size_t>(i) * kN,
                          kN * sizeof(float)) != 0;
  }
  return differ;
}

void BM_Gemm(benchmark::State& state, const RunnerFactory& factory, Precision precision, int layers,
             bool relu) {
  const int m = static_cast<int>(state.range(0));
  Problem p(m, layers, relu);
  const std::vector<AlignedFloats> inputs = p.in;
  std::unique_ptr<Runner> runner = factory(p);
  // Same result as our kernel (up to rounding: the libraries sum in other orders).
  runner->Run();
  const AlignedFloats ref = Reference(m, layers, relu, precision);
  double max_ref = 0.0;
  double max_err = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
    max_err = std::max(max_err, std::fabs(static_cast<double>(ref[i]) - p.out[i]));
  }
  if (!(max_err <= 1e-4 * (1.0 + max_ref))) {
    state.SkipWithError(("wrong result: max |error| " + std::to_string(max_err)).c_str());
    return;
  }
  const int rows_differ = m > 1 ? RowsDifferFromAlone(factory, p, inputs) : 0;
  for (auto _ : state) {
    runner->Run();
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(p.out.data());
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * m * kK * kN * layers,
                                                 benchmark::Counter::kIsIterationInvariantRate);
  if (m > 1) state.counters["rows_differ"] = rows_differ;
  state.SetLabel(runner->Label());
}

// ---- FMA peak ----------------------------------------------------------------------------

constexpr int kFmaRepeats = 1024;

// `chains` independent accumulators, kFmaRepeats dependent FMAs each (acc = acc * x + y with
// x, y close to 1 and 0, so values stay finite). Returns their sum so nothing is dead.
template <int kChains>
__attribute__((target("avx2,fma"), noinline)) float FmaChainsAvx2(int64_t iterations) {
  __m256 acc[kChains];
#pragma GCC unroll 16
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(1.0f + 0.001f * c);
  const __m256 x = _mm256_set1_ps(0.999999f);
  const __m256 y = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int r = 0; r < kFmaRepeats; ++r) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], x, y);
    }
  }
  __m256 sum = acc[0];
#pragma GCC unroll 16
  for (int c = 1; c < kChains; ++c) sum = _mm256_add_ps(sum, acc[c]);
  return _mm256_cvtss_f32(sum);
}

template <int kChains>
__attribute__((target("avx512f"), noinline)) float FmaChainsAvx512(int64_t iterations) {
  __m512 acc[kChains];
#pragma GCC unroll 16
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(1.0f + 0.001f * c);
  const __m512 x = _mm512_set1_ps(0.999999f);
  const __m512 y = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iterations; ++it) {
    for (int r = 0; r < kFmaRepeats; ++r) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], x, y);
    }
  }
  __m512 sum = acc[0];
#pragma GCC unroll 16
  for (int c = 1; c < kChains; ++c) sum = _mm512_add_ps(sum, acc[c]);
  // (Not _mm512_reduce_add_ps: GCC 12 warns about its own header under -Werror.)
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.0f;
  for (float v : lanes) total += v;
  return total;
}

void BM_FmaPeak(benchmark::State& state, float (*fn)(int64_t), int lanes, int chains) {
  float sink = 0.0f;
  for (auto _ : state) sink += fn(1);
  benchmark::DoNotOptimize(sink);
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * lanes * chains * kFmaRepeats,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// ---- registration ------------------------------------------------------------------------

void RegisterAll() {
  // FMA peak: 8 chains just cover 2 pipes x 4 cycles of latency; 12 leave slack.
  if (internal::CpuHasAvx2()) {
    for (auto [chains, fn] : {std::pair{8, &FmaChainsAvx2<8>}, std::pair{12, &FmaChainsAvx2<12>}}) {
      benchmark::RegisterBenchmark(("BM_FmaPeak/avx2/" + std::to_string(chains)).c_str(),
                                   BM_FmaPeak, fn, 8, chains)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    for (auto [chains, fn] :
         {std::pair{8, &FmaChainsAvx512<8>}, std::pair{12, &FmaChainsAvx512<12>}}) {
      benchmark::RegisterBenchmark(("BM_FmaPeak/avx512/" + std::to_string(chains)).c_str(),
                                   BM_FmaPeak, fn, 16, chains)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
    }
  }

  struct Lib {
    std::string name;
    RunnerFactory factory;
    std::vector<int> sizes;
    Precision precision = Precision::kFp32;  // Of the weights the library runs.
  };
  const std::vector<int> all_sizes = {1, 8, 64, 256};
  std::vector<Lib> libs;
  const std::string dispatched = GemmKernelName();
  libs.push_back({"sluice",
                  [dispatched](Problem& p) {
                    return std::make_unique<SluiceRunner>(p, nullptr, "sluice " + dispatched);
                  },
                  all_sizes});
  // bf16 weights (half the bytes, widened in registers), fp32 arithmetic.
  libs.push_back({"sluice-bf16",
                  [](Problem& p) {
                    return std::make_unique<SluiceRunner>(p, nullptr, "sluice bf16 weights",
                                                          Precision::kBf16);
                  },
                  all_sizes, Precision::kBf16});
  auto add_kernel = [&](const std::string& isa, internal::GemmKernel fn, std::vector<int> sizes) {
    if (isa == dispatched) return;  // Already measured as `sluice`.
    libs.push_back({"sluice-" + isa,
                    [fn, isa](Problem& p) {
                      return std::make_unique<SluiceRunner>(p, fn, "sluice " + isa + " (forced)");
                    },
                    std::move(sizes)});
  };
  if (internal::CpuHasAvx512()) add_kernel("avx512", internal::GemmAvx512, all_sizes);
  if (internal::CpuHasAvx2()) add_kernel("avx2", internal::GemmAvx2, all_sizes);
  add_kernel("generic", internal::GemmGeneric, {1, 64});  // Slow: a libm fmaf per element.
#ifdef SLUICE_BENCH_ONEDNN
  libs.push_back(
      {"onednn", [](Problem& p) { return std::make_unique<OneDnnRunner>(p); }, all_sizes});
#endif
#ifdef SLUICE_BENCH_EIGEN
  libs.push_back({"eigen", [](Problem& p) { return std::make_unique<EigenRunner>(p); }, all_sizes});
#endif

  for (const auto& [bench, layers, relu] :
       {std::tuple{"BM_Layer/", 1, false}, std::tuple{"BM_Chain/", kChainLayers, true}}) {
    for (const Lib& lib : libs) {
      auto* b = benchmark::RegisterBenchmark((bench + lib.name).c_str(), BM_Gemm, lib.factory,
                                             lib.precision, layers, relu);
      for (int m : lib.sizes) b->Arg(m);
      b->UseRealTime()->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace sluice::cpu

int main(int argc, char** argv) {
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      --i;
    }
  }
#ifdef SLUICE_BENCH_OPENMP
  omp_set_num_threads(threads);
#endif
#ifdef SLUICE_BENCH_EIGEN
  Eigen::setNbThreads(threads);
#endif
  benchmark::AddCustomContext("library_threads", std::to_string(threads));
  sluice::cpu::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
