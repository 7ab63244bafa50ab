// OpenCL backend benchmarks on the selected OpenCL device (PoCL's CPU device by default):
//   BM_LaunchOverhead   an empty kernel + clFinish: the floor of one device round trip.
//   BM_CnnTinyStep      one Step of models/cnn_tiny (3 causal convs, 128 ch, kernel 8) for a batch
//                       of sessions, OpenCL (both kernel variants) against the CPU backend.
// Set POCL_CACHE_DIR (default here: /tmp/sluice-bench-pocl) and optionally SLUICE_BENCH_DEVICE.
// POCL_MAX_PTHREAD_COUNT / POCL_DEVICES change PoCL's driver (see ../shared/NOTES.md).
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/opencl/device.h"
#include "runtime/opencl/opencl_backend.h"
#include "runtime/streaming/transform.h"

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the repository root"
#endif

namespace sluice {
namespace {

using opencl::KernelVariant;

const char* BenchDevice() {
  const char* device = std::getenv("SLUICE_BENCH_DEVICE");
  return device != nullptr && device[0] != '\0' ? device : "cpu";
}

void BM_LaunchOverhead(benchmark::State& state) {
  auto device = opencl::SelectDevice("", BenchDevice());
  if (!device.ok()) {
    state.SkipWithError(std::string(device.status().message()).c_str());
    return;
  }
  cl_int code = CL_SUCCESS;
  opencl::ClContext context(clCreateContext(nullptr, 1, &device->device, nullptr, nullptr, &code));
  opencl::ClQueue queue(clCreateCommandQueue(context.get(), device->device, 0, &code));
  const char* source = "__kernel void empty(__global float* x) {}";
  opencl::ClProgram program(clCreateProgramWithSource(context.get(), 1, &source, nullptr, &code));
  code = clBuildProgram(program.get(), 1, &device->device, "-cl-std=CL1.2", nullptr, nullptr);
  opencl::ClKernel kernel(clCreateKernel(program.get(), "empty", &code));
  opencl::ClMem buffer(clCreateBuffer(context.get(), CL_MEM_READ_WRITE, 64, nullptr, &code));
  const cl_mem mem = buffer.get();
  clSetKernelArg(kernel.get(), 0, sizeof(mem), &mem);
  const size_t global = 1;
  const size_t local = 1;
  for (int i = 0; i < 10; ++i) {  // Compile for this work-group size first.
    clEnqueueNDRangeKernel(queue.get(), kernel.get(), 1, nullptr, &global, &local, 0, nullptr,
                           nullptr);
    clFinish(queue.get());
  }
  for (auto _ : state) {
    clEnqueueNDRangeKernel(queue.get(), kernel.get(), 1, nullptr, &global, &local, 0, nullptr,
                           nullptr);
    clFinish(queue.get());
  }
  state.SetLabel(device->name);
}
BENCHMARK(BM_LaunchOverhead)->UseRealTime();

std::shared_ptr<const streaming::Program> CnnTiny() {
  static auto* program = [] {
    auto loaded =
        streaming::LoadProgram(absl::StrCat(SLUICE_SOURCE_DIR, "/models/cnn_tiny/model.onnx"), {});
    return loaded.ok() ? new std::shared_ptr<const streaming::Program>(
                             std::make_shared<const streaming::Program>(*std::move(loaded)))
                       : new std::shared_ptr<const streaming::Program>();
  }();
  return *program;
}

// Steps `batch` sessions of cnn_tiny per iteration; backend 0 = CPU, 1 = OpenCL NDRange,
// 2 = OpenCL single work-item.
void BM_CnnTinyStep(benchmark::State& state) {
  const int backend_kind = static_cast<int>(state.range(0));
  const int batch = static_cast<int>(state.range(1));
  auto program = CnnTiny();
  if (program == nullptr) {
    state.SkipWithError("cannot load models/cnn_tiny/model.onnx");
    return;
  }
  BackendOptions options;
  options.max_batch = batch;
  std::unique_ptr<Backend> backend;
  if (backend_kind == 0) {
    auto cpu = cpu::CpuBackend::Create(program, options);
    if (!cpu.ok()) return state.SkipWithError(std::string(cpu.status().message()).c_str());
    backend = *std::move(cpu);
  } else {
    opencl::OpenClOptions opencl_options;
    opencl_options.device = BenchDevice();
    opencl_options.variant =
        backend_kind == 1 ? KernelVariant::kNdRange : KernelVariant::kSingleWorkItem;
    auto cl = opencl::OpenClBackend::Create(program, options, opencl_options);
    if (!cl.ok()) return state.SkipWithError(std::string(cl.status().message()).c_str());
    backend = *std::move(cl);
  }
  std::vector<SlotId> slots;
  for (int i = 0; i < batch; ++i) slots.push_back(*backend->AllocateSlot());
  const int64_t in_size = program->input.frame_size;
  const int64_t out_size = program->outputs[0].frame_size;
  std::vector<float> frames(batch * in_size);
  std::mt19937 rng(1);
  std::normal_distribution<float> dist;
  for (float& x : frames) x = dist(rng);
  std::vector<StepItem> items;
  for (int i = 0; i < batch; ++i) items.push_back({slots[i], frames.data() + i * in_size});
  std::vector<float> out(batch * out_size);
  float* out_ptr = out.data();
  std::vector<uint8_t> ready(batch);
  for (int i = 0; i < 3; ++i) (void)backend->Step(items, {&out_ptr, 1}, absl::MakeSpan(ready));
  for (auto _ : state) {
    const absl::Status status = backend->Step(items, {&out_ptr, 1}, absl::MakeSpan(ready));
    if (!status.ok()) return state.SkipWithError(std::string(status.message()).c_str());
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * batch);  // Session-steps.
  state.counters["us_per_session_step"] = benchmark::Counter(
      static_cast<double>(batch) * 1e-6,
      benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  state.counters["GFLOP/s"] =
      benchmark::Counter(static_cast<double>(program->FlopsPerFrame()) * batch * 1e-9,
                         benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(backend_kind == 0 ? "cpu" : (backend_kind == 1 ? "opencl-ndrange" : "opencl-swi"));
}
BENCHMARK(BM_CnnTinyStep)
    ->ArgNames({"backend", "batch"})
    ->ArgsProduct({{0, 1}, {1, 64, 256}})
    ->UseRealTime();
BENCHMARK(BM_CnnTinyStep)
    ->ArgNames({"backend", "batch"})
    ->Args({2, 1})
    ->Args({2, 64})
    ->UseRealTime();

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  if (std::getenv("POCL_CACHE_DIR") == nullptr) {
    std::filesystem::create_directories("/tmp/sluice-bench-pocl");
    setenv("POCL_CACHE_DIR", "/tmp/sluice-bench-pocl", 0);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
