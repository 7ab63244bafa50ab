#include "server/api/oip_codec.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace sluice::server {
namespace {

constexpr char kSequenceId[] = "sequence_id";
constexpr char kSequenceStart[] = "sequence_start";
constexpr char kSequenceEnd[] = "sequence_end";
// The model format, as Triton names it for ONNX models.
constexpr char kPlatform[] = "onnxruntime_onnx";

template <typename Dims>
std::string ShapeString(const Dims& dims) {
  return absl::StrCat("[", absl::StrJoin(dims, ","), "]");
}

// Elements before and after the time axis of `shape` (the time dim itself excluded).
void SplitAtTime(const std::vector<int64_t>& shape, int time_axis, int64_t* outer, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (d < time_axis) *outer *= shape[d];
    if (d > time_axis) *inner *= shape[d];
  }
}

absl::StatusOr<bool> BoolParam(const std::string& name, const inference::InferParameter& param) {
  if (param.parameter_choice_case() != inference::InferParameter::kBoolParam) {
    return absl::InvalidArgumentError(absl::StrCat("parameter '", name, "' must be a bool"));
  }
  return param.bool_param();
}

std::string OutputNames(const streaming::Program& program) {
  std::vector<std::string> names;
  for (const auto& output : program.outputs) names.push_back(absl::StrCat("'", output.name, "'"));
  return absl::StrJoin(names, ", ");
}

inference::ModelMetadataResponse::TensorMetadata TensorMetadataOf(
    const streaming::StreamSpec& spec) {
  inference::ModelMetadataResponse::TensorMetadata tensor;
  tensor.set_name(spec.name);
  tensor.set_datatype(kOipFp32);
  for (int64_t d : spec.offline_shape) tensor.add_shape(d);
  return tensor;
}

}  // namespace

std::string OipSequenceParams::Key() const {
  return is_string ? absl::StrCat("s:", text) : absl::StrCat("u:", number);
}

std::string OipSequenceParams::Display() const {
  return is_string ? absl::StrCat("\"", text, "\"") : absl::StrCat(number);
}

inference::InferParameter OipSequenceParams::IdParameter() const {
  inference::InferParameter param;
  if (is_string) {
    param.set_string_param(text);
  } else if (number <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    param.set_int64_param(static_cast<int64_t>(number));
  } else {
    param.set_uint64_param(number);
  }
  return param;
}

absl::StatusOr<OipSequenceParams> ParseSequenceParams(const inference::ModelInferRequest& request) {
  OipSequenceParams params;
  for (const auto& [name, param] : request.parameters()) {
    if (name == kSequenceId) {
      switch (param.parameter_choice_case()) {
        case inference::InferParameter::kInt64Param:
          if (param.int64_param() < 0) {
            return absl::InvalidArgumentError(
                absl::StrCat("sequence_id ", param.int64_param(), " is negative"));
          }
          params.number = static_cast<uint64_t>(param.int64_param());
          params.has_id = params.number != 0;
          break;
        case inference::InferParameter::kUint64Param:
          params.number = param.uint64_param();
          params.has_id = params.number != 0;
          break;
        case inference::InferParameter::kStringParam:
          params.is_string = true;
          params.text = param.string_param();
          params.has_id = !params.text.empty();
          break;
        default:
          return absl::InvalidArgumentError(
              "parameter 'sequence_id' must be an unsigned integer or a string");
      }
    } else if (name == kSequenceStart) {
      absl::StatusOr<bool> value = BoolParam(name, param);
      if (!value.ok()) return value.status();
      params.start = *value;
    } else if (name == kSequenceEnd) {
      absl::StatusOr<bool> value = BoolParam(name, param);
      if (!value.ok()) return value.status();
      params.end = *value;
    }
  }
  if (!params.has_id && (params.start || params.end)) {
    return absl::InvalidArgumentError(
        "sequence_start and sequence_end need a non-zero sequence_id (or a non-empty string "
        "one)");
  }
  return params;
}

absl::StatusOr<OipDecoded> DecodeInferRequest(const inference::ModelInferRequest& request,
                                              const std::string& model,
                                              const streaming::Program& program) {
  const streaming::StreamSpec& spec = program.input;
  if (request.inputs_size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("model ", model, " takes 1 input ('", spec.name,
                                                   "'); the request has ", request.inputs_size()));
  }
  const auto& input = request.inputs(0);
  if (input.name() != spec.name) {
    return absl::InvalidArgumentError(absl::StrCat("model ", model, " has no input '", input.name(),
                                                   "'; its input is '", spec.name, "'"));
  }
  if (input.datatype() != kOipFp32) {
    return absl::InvalidArgumentError(absl::StrCat("input '", spec.name, "' has datatype ",
                                                   input.datatype(), "; model ", model,
                                                   " takes FP32"));
  }
  const auto& shape = input.shape();
  bool matches = shape.size() == static_cast<int>(spec.offline_shape.size());
  for (int d = 0; matches && d < shape.size(); ++d) {
    if (d == spec.time_axis ? shape[d] < 0 : shape[d] != spec.offline_shape[d]) matches = false;
  }
  if (!matches) {
    return absl::InvalidArgumentError(absl::StrCat(
        "input '", spec.name, "' has shape ", ShapeString(shape), "; model ", model, " takes ",
        ShapeString(spec.offline_shape), " (-1 = time: any number of frames; batch 1)"));
  }
  const int64_t count = shape[spec.time_axis];
  const int64_t frame_size = spec.frame_size;
  std::vector<float> data;
  if (request.raw_input_contents_size() > 0) {
    if (request.raw_input_contents_size() != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "raw_input_contents has ", request.raw_input_contents_size(), " entries for 1 input"));
    }
    if (input.contents().fp32_contents_size() > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "input '", spec.name, "' has both raw_input_contents and contents; send one"));
    }
    const std::string& raw = request.raw_input_contents(0);
    const int64_t bytes = static_cast<int64_t>(raw.size());
    const int64_t frame_bytes = frame_size * static_cast<int64_t>(sizeof(float));
    // Compare before multiplying: a forged time dim must not overflow.
    if (count > bytes / frame_bytes || bytes != count * frame_bytes) {
      return absl::InvalidArgumentError(absl::StrCat("input '", spec.name, "' holds ", bytes,
                                                     " bytes; shape ", ShapeString(shape),
                                                     " of FP32 needs ", count, " x ", frame_bytes));
    }
    data.resize(count * frame_size);
    if (bytes > 0) std::memcpy(data.data(), raw.data(), bytes);
  } else {
    const auto& values = input.contents().fp32_contents();
    const int64_t given = values.size();
    if (count > given / std::max<int64_t>(frame_size, 1) || given != count * frame_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("input '", spec.name, "' holds ", given, " fp32_contents values; shape ",
                       ShapeString(shape), " needs ", count, " x ", frame_size,
                       " (FP32 data goes in raw_input_contents or contents.fp32_contents)"));
    }
    data.assign(values.begin(), values.end());
  }

  OipDecoded decoded;
  int64_t outer, inner;
  SplitAtTime(spec.offline_shape, spec.time_axis, &outer, &inner);
  decoded.frames.assign(count, std::vector<float>(frame_size));
  for (int64_t t = 0; t < count; ++t) {
    float* frame = decoded.frames[t].data();
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(frame + o * inner, data.data() + (o * count + t) * inner, inner * sizeof(float));
    }
  }

  for (const auto& requested : request.outputs()) {
    int index = -1;
    for (int j = 0; j < static_cast<int>(program.outputs.size()); ++j) {
      if (program.outputs[j].name == requested.name()) index = j;
    }
    if (index < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", model, " has no output '", requested.name(),
                       "' (its outputs: ", OutputNames(program), ")"));
    }
    decoded.outputs.push_back(index);
  }
  if (decoded.outputs.empty()) {
    for (int j = 0; j < static_cast<int>(program.outputs.size()); ++j) {
      decoded.outputs.push_back(j);
    }
  }
  return decoded;
}

inference::ModelInferResponse MakeInferResponse(const std::string& model, const std::string& id,
                                                const streaming::Program& program,
                                                const std::vector<int>& outputs,
                                                const std::vector<std::vector<float>>& stacked,
                                                int64_t count, const OipSequenceParams* sequence) {
  inference::ModelInferResponse response;
  response.set_model_name(model);
  response.set_model_version(kOipModelVersion);
  response.set_id(id);
  if (sequence != nullptr && sequence->has_id) {
    (*response.mutable_parameters())[kSequenceId] = sequence->IdParameter();
  }
  for (size_t j = 0; j < outputs.size(); ++j) {
    const streaming::StreamSpec& spec = program.outputs[outputs[j]];
    auto* tensor = response.add_outputs();
    tensor->set_name(spec.name);
    tensor->set_datatype(kOipFp32);
    for (int d = 0; d < static_cast<int>(spec.offline_shape.size()); ++d) {
      tensor->add_shape(d == spec.time_axis ? count : spec.offline_shape[d]);
    }
    int64_t outer, inner;
    SplitAtTime(spec.offline_shape, spec.time_axis, &outer, &inner);
    std::string* raw = response.add_raw_output_contents();
    raw->resize(count * spec.frame_size * sizeof(float));
    auto* out = reinterpret_cast<float*>(raw->data());
    const float* in = stacked[j].data();
    for (int64_t t = 0; t < count; ++t) {
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(out + (o * count + t) * inner, in + t * spec.frame_size + o * inner,
                    inner * sizeof(float));
      }
    }
  }
  return response;
}

inference::ModelMetadataResponse ModelMetadataOf(const ServedModel& model) {
  inference::ModelMetadataResponse metadata;
  metadata.set_name(model.name);
  metadata.add_versions(std::string(kOipModelVersion));
  metadata.set_platform(kPlatform);
  if (model.ready()) {
    *metadata.add_inputs() = TensorMetadataOf(model.program->input);
    for (const auto& output : model.program->outputs) {
      *metadata.add_outputs() = TensorMetadataOf(output);
    }
  }
  return metadata;
}

inference::ModelConfig ModelConfigOf(const ServedModel& model) {
  inference::ModelConfig config;
  config.set_name(model.name);
  config.set_platform(kPlatform);
  config.set_backend("sluice");
  config.set_max_batch_size(0);
  if (model.ready()) {
    const streaming::Program& program = *model.program;
    auto* input = config.add_input();
    input->set_name(program.input.name);
    input->set_data_type(inference::TYPE_FP32);
    for (int64_t d : program.input.offline_shape) input->add_dims(d);
    for (const auto& spec : program.outputs) {
      auto* output = config.add_output();
      output->set_name(spec.name);
      output->set_data_type(inference::TYPE_FP32);
      for (int64_t d : spec.offline_shape) output->add_dims(d);
    }
  }
  auto* group = config.add_instance_group();
  group->set_name(model.name);
  group->set_count(static_cast<int32_t>(model.instances.size()));
  group->set_kind(model.backend == "cpu" ? inference::ModelInstanceGroup::KIND_CPU
                                         : inference::ModelInstanceGroup::KIND_MODEL);
  config.mutable_sequence_batching()->set_max_sequence_idle_microseconds(
      static_cast<uint64_t>(model.config.session_idle_timeout_ms()) * 1000);
  return config;
}

}  // namespace sluice::server
