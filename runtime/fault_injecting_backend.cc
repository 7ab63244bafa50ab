#include "runtime/fault_injecting_backend.h"

#include "absl/strings/str_cat.h"

namespace sluice {

FaultInjectingBackend::FaultInjectingBackend(std::unique_ptr<Backend> inner, int64_t fail_at_step)
    : inner_(std::move(inner)), fail_at_step_(fail_at_step) {}

absl::Status FaultInjectingBackend::Dead() const {
  return absl::UnavailableError(absl::StrCat("injected device fault at step ", fail_at_step_,
                                             ": the ", inner_->name(),
                                             " device no longer answers"));
}

absl::Status FaultInjectingBackend::Load(std::shared_ptr<const streaming::Program> program,
                                         const BackendOptions& options) {
  return inner_->Load(std::move(program), options);
}

absl::StatusOr<SlotId> FaultInjectingBackend::AllocateSlot() {
  if (dead_) return Dead();
  return inner_->AllocateSlot();
}

absl::Status FaultInjectingBackend::ResetSlot(SlotId slot) {
  if (dead_) return Dead();
  return inner_->ResetSlot(slot);
}

absl::Status FaultInjectingBackend::FreeSlot(SlotId slot) { return inner_->FreeSlot(slot); }

absl::StatusOr<std::vector<uint8_t>> FaultInjectingBackend::ExportSlot(SlotId slot) {
  if (dead_) return Dead();
  return inner_->ExportSlot(slot);
}

absl::Status FaultInjectingBackend::ImportSlot(SlotId slot, absl::Span<const uint8_t> state) {
  if (dead_) return Dead();
  return inner_->ImportSlot(slot, state);
}

absl::Status FaultInjectingBackend::Step(absl::Span<const StepItem> batch,
                                         absl::Span<float* const> outputs,
                                         absl::Span<uint8_t> ready) {
  if (!dead_ && ++steps_ >= fail_at_step_) dead_ = true;
  if (dead_) return Dead();
  return inner_->Step(batch, outputs, ready);
}

}  // namespace sluice
