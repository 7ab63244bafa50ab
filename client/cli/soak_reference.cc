#include "client/cli/soak_reference.h"

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/streaming/transform.h"
#include "sluice/v1/model_config.pb.h"

namespace sluice::client {
namespace {

std::string Shape(const google::protobuf::RepeatedField<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

std::string Shape(const std::vector<int64_t>& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

bool SameShape(const google::protobuf::RepeatedField<int64_t>& a, const std::vector<int64_t>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const streaming::Program>> LoadRepositoryProgram(
    const std::string& repository, const std::string& model) {
  const std::filesystem::path dir = std::filesystem::path(repository) / model;
  streaming::TransformOptions transform;
  // The server reads config.pbtxt the same way; only the time axis changes the program.
  if (std::ifstream file(dir / "config.pbtxt"); file) {
    std::stringstream text;
    text << file.rdbuf();
    v1::ModelConfig config;
    if (!google::protobuf::TextFormat::ParseFromString(text.str(), &config)) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", model, ": cannot parse ", (dir / "config.pbtxt").string()));
    }
    if (config.has_time_axis()) transform.time_axis = config.time_axis();
  }
  absl::StatusOr<streaming::Program> program =
      streaming::LoadProgram((dir / "model.onnx").string(), transform);
  if (!program.ok()) {
    return absl::Status(program.status().code(),
                        absl::StrCat("model ", model, ": ", program.status().message()));
  }
  return std::make_shared<const streaming::Program>(*std::move(program));
}

absl::Status CheckOpenedMatches(const streaming::Program& program, const v1::Opened& opened) {
  auto differs = [&](const std::string& what) {
    return absl::FailedPreconditionError(absl::StrCat("the server's model ", opened.model(),
                                                      " differs from the local reference: ", what));
  };
  if (!SameShape(opened.input().frame_shape(), program.input.frame_shape)) {
    return differs(absl::StrCat("input frame ", Shape(opened.input().frame_shape()), " vs ",
                                Shape(program.input.frame_shape)));
  }
  if (opened.outputs_size() != static_cast<int>(program.outputs.size())) {
    return differs(absl::StrCat(opened.outputs_size(), " outputs vs ", program.outputs.size()));
  }
  for (int j = 0; j < opened.outputs_size(); ++j) {
    if (!SameShape(opened.outputs(j).frame_shape(), program.outputs[j].frame_shape)) {
      return differs(absl::StrCat("output ", j, " frame ", Shape(opened.outputs(j).frame_shape()),
                                  " vs ", Shape(program.outputs[j].frame_shape)));
    }
  }
  if (opened.warmup_frames() != program.warmup_frames) {
    return differs(
        absl::StrCat("warm-up ", opened.warmup_frames(), " vs ", program.warmup_frames, " frames"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ReferenceModel>> ReferenceModel::Create(
    std::shared_ptr<const streaming::Program> program) {
  BackendOptions options;
  options.max_batch = 1;
  absl::StatusOr<std::unique_ptr<cpu::CpuBackend>> backend =
      cpu::CpuBackend::Create(std::move(program), options);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<ReferenceModel>(new ReferenceModel(*std::move(backend)));
}

ReferenceModel::ReferenceModel(std::unique_ptr<Backend> backend) : backend_(std::move(backend)) {
  for (const streaming::StreamSpec& spec : backend_->program().outputs) {
    outputs_.emplace_back(spec.frame_size);
    output_ptrs_.push_back(outputs_.back().data());
    output_frame_size_ += spec.frame_size;
  }
}

absl::StatusOr<bool> ReferenceModel::Step(SlotId slot, const float* frame,
                                          std::vector<float>* output) {
  const StepItem item{slot, frame};
  uint8_t ready = 0;
  if (absl::Status status =
          backend_->Step(absl::MakeConstSpan(&item, 1), output_ptrs_, absl::MakeSpan(&ready, 1));
      !status.ok()) {
    return status;
  }
  if (ready == 0) return false;
  output->clear();
  output->reserve(output_frame_size_);
  for (const std::vector<float>& out : outputs_)
    output->insert(output->end(), out.begin(), out.end());
  return true;
}

}  // namespace sluice::client
