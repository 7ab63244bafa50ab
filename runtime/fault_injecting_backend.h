// A Backend decorator that fails like a lost device: from step N on, Step and ExportSlot
// return UNAVAILABLE. The server's --inject_device_fault_after_steps uses it to exercise the
// CPU fallback on any backend.
#ifndef SLUICE_RUNTIME_FAULT_INJECTING_BACKEND_H_
#define SLUICE_RUNTIME_FAULT_INJECTING_BACKEND_H_

#include <memory>

#include "runtime/backend.h"

namespace sluice {

// Thread-compatible, like the backend it wraps.
class FaultInjectingBackend : public Backend {
 public:
  // Steps 1..fail_at_step-1 pass through; step fail_at_step and later fail.
  FaultInjectingBackend(std::unique_ptr<Backend> inner, int64_t fail_at_step);

  std::string name() const override { return inner_->name(); }
  absl::Status Load(std::shared_ptr<const streaming::Program> program,
                    const BackendOptions& options) override;
  const streaming::Program& program() const override { return inner_->program(); }
  absl::StatusOr<SlotId> AllocateSlot() override;
  absl::Status ResetSlot(SlotId slot) override;
  absl::Status FreeSlot(SlotId slot) override;
  absl::StatusOr<std::vector<uint8_t>> ExportSlot(SlotId slot) override;
  absl::Status ImportSlot(SlotId slot, absl::Span<const uint8_t> state) override;
  absl::Status Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                    absl::Span<uint8_t> ready) override;

 private:
  absl::Status Dead() const;

  std::unique_ptr<Backend> inner_;
  const int64_t fail_at_step_;
  int64_t steps_ = 0;
  bool dead_ = false;
};

}  // namespace sluice

#endif  // SLUICE_RUNTIME_FAULT_INJECTING_BACKEND_H_
