// Gemm speed on the cnn_tiny layer shape (K = 8 frames x 128 channels, N = 128), alone and as
// the 3-layer chain of one step, for each kernel this CPU can run.
//
//   sluice-gemm-bench --benchmark_min_time=0.2
//
// Time columns are microseconds per call (per chain for Chain/*); GFLOP/s counts 2 per
// multiply-add.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "runtime/cpu/gemm.h"
#include "runtime/cpu/gemm_internal.h"

namespace sluice::cpu {
namespace {

constexpr int kFrames = 8;
constexpr int kChannels = 128;
constexpr int kK = kFrames * kChannels;
constexpr int kN = kChannels;
constexpr int kLayers = 3;

std::vector<float> RandomVector(size_t size, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(size);
  for (float& x : v) x = dist(rng);
  return v;
}

PackedWeights RandomLayer(uint32_t seed) {
  const std::vector<float> w = RandomVector(static_cast<size_t>(kK) * kN, seed);
  const std::vector<float> bias = RandomVector(kN, seed + 1);
  return PackedWeights(kK, kN, w.data(), bias.data());
}

void RunKernel(internal::GemmKernel kernel, const PackedWeights& w, int m, const float* const* rows,
               float* out, Epilogue epilogue) {
  if (kernel == nullptr) {
    Gemm(w, m, rows, out, kN, epilogue);
  } else {
    kernel(internal::MakeGemmArgs(w, m, rows, out, kN, epilogue));
  }
}

void SetCounters(benchmark::State& state, int m, int layers) {
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * m * kK * kN * layers,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

// One layer: m independent windows.
void BM_Layer(benchmark::State& state, internal::GemmKernel kernel) {
  const int m = static_cast<int>(state.range(0));
  const PackedWeights w = RandomLayer(1);
  const std::vector<float> input = RandomVector(static_cast<size_t>(m) * kK, 2);
  std::vector<const float*> rows(m);
  for (int i = 0; i < m; ++i) rows[i] = input.data() + static_cast<size_t>(i) * kK;
  std::vector<float> out(static_cast<size_t>(m) * kN);
  for (auto _ : state) {
    RunKernel(kernel, w, m, rows.data(), out.data(), Epilogue::kNone);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, m, 1);
}

// One step of three stacked layers (3 x 512 KB of weights, more than L2 holds). As in a
// streaming convolution, row i of a layer reads frames i .. i+7 of the previous layer's output,
// whose first 7 frames are history.
void BM_Chain(benchmark::State& state, internal::GemmKernel kernel) {
  const int m = static_cast<int>(state.range(0));
  std::vector<PackedWeights> layers;
  for (int l = 0; l < kLayers; ++l) layers.push_back(RandomLayer(10 + l));
  std::vector<std::vector<float>> frames;
  for (int l = 0; l <= kLayers; ++l) {
    frames.push_back(RandomVector(static_cast<size_t>(m + kFrames - 1) * kChannels, 20 + l));
  }
  std::vector<std::vector<const float*>> rows(kLayers, std::vector<const float*>(m));
  for (int l = 0; l < kLayers; ++l) {
    for (int i = 0; i < m; ++i) rows[l][i] = frames[l].data() + static_cast<size_t>(i) * kChannels;
  }
  for (auto _ : state) {
    for (int l = 0; l < kLayers; ++l) {
      float* out = frames[l + 1].data() + (kFrames - 1) * kChannels;
      RunKernel(kernel, layers[l], m, rows[l].data(), out, Epilogue::kRelu);
    }
    benchmark::ClobberMemory();
  }
  SetCounters(state, m, kLayers);
}

void RegisterAll() {
  struct Named {
    std::string name;
    internal::GemmKernel fn;
  };
  std::vector<Named> kernels = {{std::string("dispatch:") + GemmKernelName(), nullptr}};
  if (internal::CpuHasAvx512()) kernels.push_back({"avx512", internal::GemmAvx512});
  if (internal::CpuHasAvx2()) kernels.push_back({"avx2", internal::GemmAvx2});
  kernels.push_back({"generic", internal::GemmGeneric});
  for (const Named& k : kernels) {
    for (auto [name, fn] : {std::pair{"Layer/", &BM_Layer}, std::pair{"Chain/", &BM_Chain}}) {
      benchmark::RegisterBenchmark((name + k.name).c_str(), fn, k.fn)
          ->ArgName("m")
          ->Arg(1)
          ->Arg(8)
          ->Arg(64)
          ->Arg(256)
          ->Unit(benchmark::kMicrosecond);
    }
  }
}

}  // namespace
}  // namespace sluice::cpu

int main(int argc, char** argv) {
  sluice::cpu::RegisterAll();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
