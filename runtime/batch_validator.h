// Checks a Step batch the same way on every backend: each slot valid, none twice, no null
// frame. Thread-compatible.
#ifndef SLUICE_RUNTIME_BATCH_VALIDATOR_H_
#define SLUICE_RUNTIME_BATCH_VALIDATOR_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "runtime/backend.h"

namespace sluice {

class BatchValidator {
 public:
  // Slots are ids in [0, slots).
  void Resize(size_t slots) { stamps_.resize(slots, 0); }

  // InvalidArgument for a slot `check_slot` rejects, a slot twice, or a null frame.
  absl::Status Validate(absl::Span<const StepItem> batch,
                        const std::function<absl::Status(SlotId)>& check_slot);

 private:
  // 64 bits: a 32-bit stamp wraps after 2^32 steps and flags slots idle since as duplicates.
  uint64_t stamp_ = 0;
  std::vector<uint64_t> stamps_;
};

}  // namespace sluice

#endif  // SLUICE_RUNTIME_BATCH_VALIDATOR_H_
