// Open Inference Protocol (KServe v2 / Triton) <-> sluice conversions: a ModelInferRequest's
// sequence parameters and tensors into frames, stacked outputs into a ModelInferResponse, and a
// served model's metadata and Triton-style config. No I/O, no threads.
#ifndef SLUICE_SERVER_API_OIP_CODEC_H_
#define SLUICE_SERVER_API_OIP_CODEC_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "inference/grpc_service.pb.h"
#include "runtime/streaming/program.h"
#include "server/repository/repository.h"

namespace sluice::server {

// The sequence parameters of a request ("sequence_id", "sequence_start", "sequence_end").
struct OipSequenceParams {
  bool has_id = false;  // A non-zero number or a non-empty string.
  bool is_string = false;
  uint64_t number = 0;
  std::string text;
  bool start = false;
  bool end = false;

  // Identifies the sequence among the model's sequences ("u:7", "s:abc").
  std::string Key() const;
  // How messages name it: 7, "abc".
  std::string Display() const;
  // The sequence_id as a parameter, to echo in responses.
  inference::InferParameter IdParameter() const;
};

// Reads the sequence parameters. InvalidArgument for a sequence_id that is not an int64 >= 0,
// uint64 or string, a sequence_start / sequence_end that is not a bool, or a start / end flag
// without a sequence_id.
absl::StatusOr<OipSequenceParams> ParseSequenceParams(const inference::ModelInferRequest& request);

// A request's tensors, checked against the model.
struct OipDecoded {
  // k frames in time order, each `program.input.frame_size` floats (k may be 0).
  std::vector<std::vector<float>> frames;
  // Indices into program.outputs of the outputs to return, in response order.
  std::vector<int> outputs;
};

// Checks and decodes a request for `model` (whose program is `program`): exactly one input,
// named as the ONNX input, datatype "FP32", shaped as the offline layout with any time dim k
// (batch 1); data from raw_input_contents (little-endian) or contents.fp32_contents; requested
// outputs named as the ONNX outputs. InvalidArgument names the mismatch.
absl::StatusOr<OipDecoded> DecodeInferRequest(const inference::ModelInferRequest& request,
                                              const std::string& model,
                                              const streaming::Program& program);

// Builds the response to a request: for each of `outputs` (indices into program.outputs) the
// output in the model's offline layout with T = `count`, from `stacked[j]` = [count][frame_size]
// of output outputs[j], as raw_output_contents. `sequence` (may be null) is echoed as the
// "sequence_id" parameter.
inference::ModelInferResponse MakeInferResponse(const std::string& model, const std::string& id,
                                                const streaming::Program& program,
                                                const std::vector<int>& outputs,
                                                const std::vector<std::vector<float>>& stacked,
                                                int64_t count, const OipSequenceParams* sequence);

// ModelMetadata for a served model (ready or not: a model that failed to load has no tensors).
inference::ModelMetadataResponse ModelMetadataOf(const ServedModel& model);
// The Triton model configuration clients read: max_batch_size 0, FP32 tensors with the offline
// shape (-1 = time), and sequence_batching (sluice models are stateful).
inference::ModelConfig ModelConfigOf(const ServedModel& model);

// "FP32" etc. for the tensor datatypes sluice serves.
inline constexpr char kOipFp32[] = "FP32";
// The one version of every model.
inline constexpr char kOipModelVersion[] = "1";

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_OIP_CODEC_H_
