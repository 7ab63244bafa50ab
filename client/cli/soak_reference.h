// The soak's local reference: a repository model loaded with the streaming transform the server
// uses (DIR/<model>/model.onnx, with config.pbtxt's time_axis), stepped on a CPU backend with one
// state slot per session, frame by frame, as the frames are sent.
#ifndef SLUICE_CLIENT_CLI_SOAK_REFERENCE_H_
#define SLUICE_CLIENT_CLI_SOAK_REFERENCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/backend.h"
#include "runtime/streaming/program.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::client {

// The streaming program of `repository`/`model`/model.onnx, built as the server builds it.
absl::StatusOr<std::shared_ptr<const streaming::Program>> LoadRepositoryProgram(
    const std::string& repository, const std::string& model);

// OK when the server's Opened describes the stream of `program` (input and output frame shapes,
// warm-up); FailedPrecondition naming the first difference.
absl::Status CheckOpenedMatches(const streaming::Program& program, const v1::Opened& opened);

// One model on the CPU backend for many sessions, a slot each. Thread-compatible.
class ReferenceModel {
 public:
  static absl::StatusOr<std::unique_ptr<ReferenceModel>> Create(
      std::shared_ptr<const streaming::Program> program);

  const streaming::Program& program() const { return backend_->program(); }
  // Floats of one output frame: every model output's frame, concatenated in output order.
  int64_t output_frame_size() const { return output_frame_size_; }

  absl::StatusOr<SlotId> AllocateSlot() { return backend_->AllocateSlot(); }
  absl::Status ResetSlot(SlotId slot) { return backend_->ResetSlot(slot); }
  absl::Status FreeSlot(SlotId slot) { return backend_->FreeSlot(slot); }
  // Advances `slot` by one frame (program().input.frame_size floats). True, with the output frame
  // in `*output`, when the frame completed an output; false during the warm-up.
  absl::StatusOr<bool> Step(SlotId slot, const float* frame, std::vector<float>* output);

 private:
  explicit ReferenceModel(std::unique_ptr<Backend> backend);

  std::unique_ptr<Backend> backend_;
  int64_t output_frame_size_ = 0;
  std::vector<std::vector<float>> outputs_;  // One frame per model output.
  std::vector<float*> output_ptrs_;
};

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_CLI_SOAK_REFERENCE_H_
