// sluice-run: streams an offline input sequence through a model frame by frame and writes the
// outputs in the model's offline layout, so they can be compared with the offline model.
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/npy.h"
#include "runtime/common/status_macros.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/streaming/transform.h"

ABSL_FLAG(std::string, model, "", "ONNX model file (offline model, exported from PyTorch).");
ABSL_FLAG(std::string, input, "",
          "float32 .npy input in the model's offline layout; each "
          "batch row is streamed as its own session.");
ABSL_FLAG(std::string, output, "",
          "Where to write the outputs (.npy, offline layout). With "
          "several model outputs, output k>0 goes to <stem>_<k>.npy.");
ABSL_FLAG(std::string, backend, "cpu", "Backend to run on: cpu.");
ABSL_FLAG(int, sessions, 1,
          "Copies of each input row, all interleaved frame by frame; the "
          "run fails if any copy's outputs differ.");
ABSL_FLAG(int, time_axis, -1, "The input's time axis (default: detected from the model).");
ABSL_FLAG(int, max_batch, 256, "Largest batch of sessions stepped in one call.");
ABSL_FLAG(bool, describe, false, "Print the streaming program (ops, state bytes per session).");

namespace sluice {
namespace {

constexpr int kExitUnsupported = 2;

// Element offsets of one frame (time index t, batch row r) inside an offline tensor.
std::vector<int64_t> FrameOffsets(const std::vector<int64_t>& shape, int time_axis, int batch_axis,
                                  int64_t t, int64_t r) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d) {
    strides[d] = strides[d + 1] * shape[d + 1];
  }
  std::vector<int64_t> offsets{0};
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (d == time_axis || d == batch_axis) {
      const int64_t index = d == time_axis ? t : r;
      for (int64_t& o : offsets) o += index * strides[d];
      continue;
    }
    std::vector<int64_t> next;
    next.reserve(offsets.size() * shape[d]);
    for (int64_t o : offsets) {
      for (int64_t i = 0; i < shape[d]; ++i) next.push_back(o + i * strides[d]);
    }
    offsets = std::move(next);
  }
  return offsets;
}

std::string OutputPath(const std::string& base, size_t index) {
  if (index == 0) return base;
  std::string stem = base;
  if (stem.size() > 4 && stem.substr(stem.size() - 4) == ".npy") stem.resize(stem.size() - 4);
  return absl::StrCat(stem, "_", index, ".npy");
}

absl::Status Run(std::shared_ptr<const streaming::Program> program) {
  const streaming::StreamSpec& in = program->input;
  ASSIGN_OR_RETURN(NpyArray x, ReadNpy(absl::GetFlag(FLAGS_input)));
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
  const int copies = absl::GetFlag(FLAGS_sessions);
  if (copies < 1) return absl::InvalidArgumentError("--sessions must be at least 1");
  const int64_t sessions = rows * copies;

  BackendOptions options;
  options.max_batch = absl::GetFlag(FLAGS_max_batch);
  if (absl::GetFlag(FLAGS_backend) != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown backend '", absl::GetFlag(FLAGS_backend), "'"));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<cpu::CpuBackend> backend,
                   cpu::CpuBackend::Create(program, options));
  std::vector<SlotId> slots;
  for (int64_t s = 0; s < sessions; ++s) {
    ASSIGN_OR_RETURN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }

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
    step_out[j].resize(options.max_batch * program->outputs[j].frame_size);
  }
  std::vector<uint8_t> ready(options.max_batch);
  std::vector<StepItem> batch;
  std::vector<float*> out_ptrs(num_outputs);
  for (int64_t t = 0; t < steps; ++t) {
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<int64_t> offsets = FrameOffsets(x.shape, in.time_axis, in.batch_axis, t, r);
      for (size_t i = 0; i < offsets.size(); ++i) frames[r][i] = x.data[offsets[i]];
    }
    // Session s streams row s % rows; consecutive sessions interleave rows and copies.
    for (int64_t first = 0; first < sessions; first += options.max_batch) {
      const int64_t count = std::min<int64_t>(options.max_batch, sessions - first);
      batch.clear();
      for (int64_t s = first; s < first + count; ++s) {
        batch.push_back(StepItem{slots[s], frames[s % rows].data()});
      }
      for (size_t j = 0; j < num_outputs; ++j) out_ptrs[j] = step_out[j].data();
      RETURN_IF_ERROR(backend->Step(batch, out_ptrs, absl::MakeSpan(ready.data(), count)));
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

  for (size_t j = 0; j < num_outputs; ++j) {
    const streaming::StreamSpec& spec = program->outputs[j];
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
    RETURN_IF_ERROR(WriteNpy(OutputPath(absl::GetFlag(FLAGS_output), j), y));
  }
  std::cerr << "sluice-run: " << sessions << " sessions x " << steps << " frames, " << out_steps
            << " outputs each (warm-up " << program->warmup_frames << ")\n";
  return absl::OkStatus();
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Streams an input sequence through an ONNX model frame by frame.\n"
      "  sluice-run --model M.onnx --input X.npy --output Y.npy [--sessions N]\n"
      "  sluice-run --model M.onnx --describe\n"
      "Exit codes: 0 ok, 1 error, 2 the model cannot stream (the reason names the node).");
  absl::ParseCommandLine(argc, argv);
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) {
    std::cerr << "sluice-run: --model is required (see --help)\n";
    return 1;
  }
  sluice::streaming::TransformOptions options;
  if (absl::GetFlag(FLAGS_time_axis) >= 0) options.time_axis = absl::GetFlag(FLAGS_time_axis);
  auto program = sluice::streaming::LoadProgram(model, options);
  if (!program.ok()) {
    std::cerr << "sluice-run: " << program.status() << "\n";
    const auto code = program.status().code();
    return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kUnimplemented
               ? sluice::kExitUnsupported
               : 1;
  }
  auto shared = std::make_shared<sluice::streaming::Program>(*std::move(program));
  if (absl::GetFlag(FLAGS_describe)) {
    std::cout << shared->Describe();
    if (absl::GetFlag(FLAGS_input).empty()) return 0;
  }
  if (absl::GetFlag(FLAGS_input).empty() || absl::GetFlag(FLAGS_output).empty()) {
    std::cerr << "sluice-run: --input and --output are required (see --help)\n";
    return 1;
  }
  const absl::Status status = sluice::Run(shared);
  if (!status.ok()) {
    std::cerr << "sluice-run: " << status << "\n";
    return 1;
  }
  return 0;
}
