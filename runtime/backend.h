// The Backend interface: where a streaming program runs. A backend owns a pool of per-session
// state slots and steps a batch of (slot, frame) pairs at a time. Implementations: cpu/
// (default and fallback) and opencl/.
#ifndef SLUICE_RUNTIME_BACKEND_H_
#define SLUICE_RUNTIME_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/common/precision.h"
#include "runtime/streaming/program.h"

namespace sluice {

// Identifies one session's state slot inside a backend.
using SlotId = int32_t;

// One session's frame in a batch: `frame` points at program().input.frame_size floats, valid
// for the duration of the Step call.
struct StepItem {
  SlotId slot = -1;
  const float* frame = nullptr;
};

struct BackendOptions {
  int max_batch = 256;  // Largest batch Step accepts; scratch is sized for it at Load.
  int max_slots = 0;    // Sessions the backend holds at once; 0 means memory is the limit.
  // kBf16: the backend runs streaming::RoundWeightsToBf16(program); program() returns that.
  Precision precision = Precision::kFp32;
};

// Thread-compatible: callers serialize all calls on one instance (the server's scheduler
// thread owns it). Errors are Status, never exceptions or aborts.
class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;

  // Prepares `program` (packs weights, sizes scratch). Called once before anything else.
  virtual absl::Status Load(std::shared_ptr<const streaming::Program> program,
                            const BackendOptions& options) = 0;
  virtual const streaming::Program& program() const = 0;

  // A fresh slot in its initial state (zero windows and recurrent state, step 0).
  // RESOURCE_EXHAUSTED when the backend cannot hold another session.
  virtual absl::StatusOr<SlotId> AllocateSlot() = 0;
  // Back to the initial state, as if newly allocated.
  virtual absl::Status ResetSlot(SlotId slot) = 0;
  virtual absl::Status FreeSlot(SlotId slot) = 0;
  // The slot's state, program().state_bytes bytes in the layout program.h defines, so that
  // any backend can import what another exported.
  virtual absl::StatusOr<std::vector<uint8_t>> ExportSlot(SlotId slot) = 0;
  virtual absl::Status ImportSlot(SlotId slot, absl::Span<const uint8_t> state) = 0;

  // Advances every item's session by one frame. For output j, item i's frame is written to
  // outputs[j] + i * program().outputs[j].frame_size; ready[i] is 1 when the session produced
  // an output this step, 0 during its warm-up. A slot may appear at most once per batch.
  virtual absl::Status Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                            absl::Span<uint8_t> ready) = 0;
};

}  // namespace sluice

#endif  // SLUICE_RUNTIME_BACKEND_H_
