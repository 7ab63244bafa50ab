#include "runtime/streaming/sequence_runner.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/frame_layout.h"
#include "runtime/common/status_macros.h"

namespace sluice::streaming {
absl::StatusOr<std::vector<NpyArray>> RunSequences(Backend& backend, const NpyArray& x,
                                                   const SequenceRunOptions& options) {
  const Program* program = &backend.program();
  const StreamSpec& in = program->input;
  if (x.shape.size() != in.offline_shape.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input has rank ", x.shape.size(), "; the model takes [",
                     absl::StrJoin(in.offline_shape, ","), "] (-1 = time)"));
  }
  for (size_t d = 0; d < x.shape.size(); ++d) {
    if (static_cast<int>(d) == in.time_axis || static_cast<int>(d) == in.batch_axis) continue;
    if (x.shape[d] != in.offline_shape[d]) {
      return absl::InvalidArgumentError(absl::StrCat("input dim ", d, " is ", x.shape[d],
                                                     "; the model needs ", in.offline_shape[d]));
    }
  }
  const int64_t steps = x.shape[in.time_axis];
  const int64_t rows = in.batch_axis >= 0 ? x.shape[in.batch_axis] : 1;
  const int copies = options.copies;
  if (copies < 1) return absl::InvalidArgumentError("copies must be at least 1");
  if (options.batch < 1) return absl::InvalidArgumentError("batch must be at least 1");
  const int64_t sessions = rows * copies;
  std::vector<SlotId> slots;
  auto free_slots = [&]() {
    for (SlotId slot : slots) backend.FreeSlot(slot).IgnoreError();
  };
  for (int64_t s = 0; s < sessions; ++s) {
    auto slot = backend.AllocateSlot();
    if (!slot.ok()) {
      free_slots();
      return slot.status();
    }
    slots.push_back(*slot);
  }
  auto result = [&]() -> absl::StatusOr<std::vector<NpyArray>> {
    const size_t num_outputs = program->outputs.size();
    const int64_t out_steps = std::max<int64_t>(0, steps - program->warmup_frames);
    // Per output: [session][out_step][frame].
    std::vector<std::vector<float>> results(num_outputs);
    for (size_t j = 0; j < num_outputs; ++j) {
      results[j].assign(sessions * out_steps * program->outputs[j].frame_size, 0.f);
    }
    std::vector<std::vector<float>> frames(rows, std::vector<float>(in.frame_size));
    std::vector<std::vector<float>> step_out(num_outputs);
    for (size_t j = 0; j < num_outputs; ++j) {
      step_out[j].resize(options.batch * program->outputs[j].frame_size);
    }
    std::vector<uint8_t> ready(options.batch);
    std::vector<StepItem> batch;
    std::vector<float*> out_ptrs(num_outputs);
    for (int64_t t = 0; t < steps; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<int64_t> offsets =
            FrameOffsets(x.shape, in.time_axis, in.batch_axis, t, r);
        for (size_t i = 0; i < offsets.size(); ++i) frames[r][i] = x.data[offsets[i]];
      }
      // Session s streams row s % rows; consecutive sessions interleave rows and copies.
      for (int64_t first = 0; first < sessions; first += options.batch) {
        const int64_t count = std::min<int64_t>(options.batch, sessions - first);
        batch.clear();
        for (int64_t s = first; s < first + count; ++s) {
          batch.push_back(StepItem{slots[s], frames[s % rows].data()});
        }
        for (size_t j = 0; j < num_outputs; ++j) out_ptrs[j] = step_out[j].data();
        RETURN_IF_ERROR(backend.Step(batch, out_ptrs, absl::MakeSpan(ready.data(), count)));
        for (int64_t i = 0; i < count; ++i) {
          if (!ready[i]) continue;
          const int64_t out_t = t - program->warmup_frames;
          for (size_t j = 0; j < num_outputs; ++j) {
            const int64_t size = program->outputs[j].frame_size;
            std::copy(step_out[j].begin() + i * size, step_out[j].begin() + (i + 1) * size,
                      results[j].begin() + ((first + i) * out_steps + out_t) * size);
          }
        }
      }
    }

    std::vector<NpyArray> arrays;
    for (size_t j = 0; j < num_outputs; ++j) {
      const StreamSpec& spec = program->outputs[j];
      const int64_t size = spec.frame_size;
      for (int64_t s = rows; s < sessions; ++s) {
        if (!std::equal(results[j].begin() + s * out_steps * size,
                        results[j].begin() + (s + 1) * out_steps * size,
                        results[j].begin() + (s % rows) * out_steps * size)) {
          return absl::InternalError(absl::StrCat("session ", s, " (a copy of row ", s % rows,
                                                  ") produced different outputs"));
        }
      }
      if (rows > 1 && spec.batch_axis < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "output ", spec.name, " has no batch axis to stack ", rows, " input rows along"));
      }
      NpyArray y;
      y.shape = spec.offline_shape;
      y.shape[spec.time_axis] = out_steps;
      if (spec.batch_axis >= 0) y.shape[spec.batch_axis] = rows;
      y.data.assign(rows * out_steps * size, 0.f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t t = 0; t < out_steps; ++t) {
          const std::vector<int64_t> offsets =
              FrameOffsets(y.shape, spec.time_axis, spec.batch_axis, t, r);
          const float* src = results[j].data() + (r * out_steps + t) * size;
          for (int64_t i = 0; i < size; ++i) y.data[offsets[i]] = src[i];
        }
      }
      arrays.push_back(std::move(y));
    }
    return arrays;
  }();
  free_slots();
  return result;
}

}  // namespace sluice::streaming
