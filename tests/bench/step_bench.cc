// Google Benchmark of one backend Step of a streaming program over a batch of sessions:
// µs per step, per-session µs and GFLOP/s at batch 1, 64 and 256.
//   build/bin/sluice-step-bench [--model=PATH.onnx] [benchmark flags]
#include <benchmark/benchmark.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/gemm.h"
#include "runtime/streaming/transform.h"

namespace {

std::string g_model = SLUICE_SOURCE_DIR "/models/cnn_tiny/model.onnx";

void BM_Step(benchmark::State& state) {
  const int batch = static_cast<int>(state.range(0));
  auto program = sluice::streaming::LoadProgram(g_model, {});
  if (!program.ok()) {
    state.SkipWithError(program.status().ToString().c_str());
    return;
  }
  auto shared = std::make_shared<const sluice::streaming::Program>(*std::move(program));
  sluice::BackendOptions options;
  options.max_batch = batch;
  auto backend = sluice::cpu::CpuBackend::Create(shared, options);
  if (!backend.ok()) {
    state.SkipWithError(backend.status().ToString().c_str());
    return;
  }
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> frames(batch, std::vector<float>(shared->input.frame_size));
  std::vector<sluice::StepItem> items;
  for (int b = 0; b < batch; ++b) {
    for (float& v : frames[b]) v = normal(rng);
    items.push_back({*(*backend)->AllocateSlot(), frames[b].data()});
  }
  std::vector<std::vector<float>> outputs;
  std::vector<float*> output_ptrs;
  for (const auto& spec : shared->outputs) outputs.emplace_back(batch * spec.frame_size);
  for (auto& output : outputs) output_ptrs.push_back(output.data());
  std::vector<uint8_t> ready(batch);
  for (auto _ : state) {
    auto status = (*backend)->Step(items, output_ptrs, absl::MakeSpan(ready));
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(outputs[0].data());
  }
  const double flops = static_cast<double>(shared->FlopsPerFrame()) * batch;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  // Seconds per session-step (printed with an SI prefix, e.g. 2.1u = 2.1 µs).
  state.counters["per_session"] = benchmark::Counter(
      batch, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.SetLabel(sluice::cpu::GemmKernelName());
}
BENCHMARK(BM_Step)->Arg(1)->Arg(64)->Arg(256)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--model=", 8) == 0) g_model = argv[i] + 8;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
