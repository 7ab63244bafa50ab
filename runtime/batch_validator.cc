#include "runtime/batch_validator.h"

#include "absl/strings/str_cat.h"

namespace sluice {

absl::Status BatchValidator::Validate(absl::Span<const StepItem> batch,
                                      const std::function<absl::Status(SlotId)>& check_slot) {
  ++stamp_;
  for (const StepItem& item : batch) {
    if (absl::Status status = check_slot(item.slot); !status.ok()) return status;
    if (stamps_[item.slot] == stamp_) {
      return absl::InvalidArgumentError(
          absl::StrCat("slot ", item.slot, " appears twice in one batch"));
    }
    stamps_[item.slot] = stamp_;
    if (item.frame == nullptr) return absl::InvalidArgumentError("null frame");
  }
  return absl::OkStatus();
}

}  // namespace sluice
