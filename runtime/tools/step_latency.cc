#include "runtime/tools/step_latency.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/common/status_macros.h"

namespace sluice::tools {
namespace {

// Distinct random frame sets cycled through, so consecutive steps see different inputs
// without holding a frame per step in memory.
constexpr int kFrameSets = 8;

double ProcessCpuSeconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

double Percentile(const std::vector<double>& sorted, double q) {
  const size_t rank = static_cast<size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(rank, sorted.size() - 1)];
}

}  // namespace

absl::StatusOr<StepLatency> MeasureStepLatency(Backend& backend, int batch,
                                               const StepLatencyOptions& options) {
  if (batch < 1 || options.steps < 1 || options.warmup_steps < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch ", batch, " and steps ", options.steps, " must be at least 1"));
  }
  const streaming::Program& program = backend.program();
  const int64_t frame_size = program.input.frame_size;
  std::mt19937 rng(options.seed);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<float> frames(kFrameSets * batch * frame_size);
  for (float& v : frames) v = uniform(rng);

  std::vector<SlotId> slots;
  auto free_slots = [&] {
    for (SlotId slot : slots) backend.FreeSlot(slot).IgnoreError();
  };
  std::vector<std::vector<StepItem>> items(kFrameSets, std::vector<StepItem>(batch));
  for (int b = 0; b < batch; ++b) {
    auto slot = backend.AllocateSlot();
    if (!slot.ok()) {
      free_slots();
      return slot.status();
    }
    slots.push_back(*slot);
    for (int set = 0; set < kFrameSets; ++set) {
      items[set][b] = {*slot, frames.data() + (set * batch + b) * frame_size};
    }
  }
  std::vector<std::vector<float>> outputs;
  std::vector<float*> output_ptrs;
  for (const streaming::StreamSpec& spec : program.outputs) {
    outputs.emplace_back(batch * spec.frame_size);
    output_ptrs.push_back(outputs.back().data());
  }
  std::vector<uint8_t> ready(batch);

  std::vector<double> times_us;
  times_us.reserve(options.steps);
  absl::Status status;
  double cpu_start = 0;
  std::chrono::steady_clock::time_point wall_start;
  for (int step = 0; step < options.warmup_steps + options.steps && status.ok(); ++step) {
    if (step == options.warmup_steps) {
      cpu_start = ProcessCpuSeconds();
      wall_start = std::chrono::steady_clock::now();
    }
    const auto start = std::chrono::steady_clock::now();
    status = backend.Step(items[step % kFrameSets], output_ptrs, absl::MakeSpan(ready));
    const auto end = std::chrono::steady_clock::now();
    if (step >= options.warmup_steps) {
      times_us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
    }
  }
  const double cpu_seconds = ProcessCpuSeconds() - cpu_start;
  const double wall_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
  free_slots();
  RETURN_IF_ERROR(status);

  StepLatency result;
  result.batch = batch;
  result.steps = options.steps;
  double total_us = 0;
  for (double t : times_us) total_us += t;
  std::sort(times_us.begin(), times_us.end());
  result.p50_us = Percentile(times_us, 0.5);
  result.p99_us = Percentile(times_us, 0.99);
  result.mean_us = total_us / options.steps;
  result.frames_per_s = batch * options.steps / (total_us * 1e-6);
  result.gflops = static_cast<double>(program.FlopsPerFrame()) * batch / (result.mean_us * 1e3);
  result.cpu_share = cpu_seconds / wall_seconds;
  return result;
}

}  // namespace sluice::tools
