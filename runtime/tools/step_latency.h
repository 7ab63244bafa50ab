// Step latency of a backend at one batch size on random frames (sluice-run --bench): the
// backend alone, without a server, scheduler or transport.
#ifndef SLUICE_RUNTIME_TOOLS_STEP_LATENCY_H_
#define SLUICE_RUNTIME_TOOLS_STEP_LATENCY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "runtime/backend.h"

namespace sluice::tools {

struct StepLatencyOptions {
  int steps = 1000;        // Timed steps.
  int warmup_steps = 100;  // Untimed steps first (caches, branch predictors, lazy pages).
  uint32_t seed = 1;       // Of the uniform [-1, 1) frames.
};

struct StepLatency {
  int batch = 0;
  int steps = 0;
  double p50_us = 0;
  double p99_us = 0;
  double mean_us = 0;
  double frames_per_s = 0;  // batch * steps / total step time.
  double gflops = 0;        // program().FlopsPerFrame() * batch / mean step time.
  // The process's CPU time over wall time across the timed steps (backend threads included,
  // e.g. PoCL's): about 1.0 for a run pinned to one core that no other process shared, lower
  // when others took it (a contended, unreliable run).
  double cpu_share = 0;
};

// Steps `batch` fresh sessions of `backend` together, one Step per frame, timing each Step.
// The sessions' slots are freed afterwards. InvalidArgument for a batch or step count below 1.
absl::StatusOr<StepLatency> MeasureStepLatency(Backend& backend, int batch,
                                               const StepLatencyOptions& options);

}  // namespace sluice::tools

#endif  // SLUICE_RUNTIME_TOOLS_STEP_LATENCY_H_
