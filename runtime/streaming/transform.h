// The streaming transform: turns an offline ONNX graph (whole sequences in, whole sequences
// out) into a per-step Program, or refuses it with an error naming the node and the reason.
#ifndef SLUICE_RUNTIME_STREAMING_TRANSFORM_H_
#define SLUICE_RUNTIME_STREAMING_TRANSFORM_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/ir/graph.h"
#include "runtime/streaming/program.h"

namespace sluice::streaming {

struct TransformOptions {
  // The input's time axis. When unset: the input's only symbolic dim, or, when several are
  // symbolic, the one the model uses as time (a conv's last axis, an RNN's sequence axis).
  std::optional<int> time_axis;
};

// Errors: InvalidArgument for a model that cannot stream (non-causal, time axis unclear) and
// Unimplemented for an op sluice does not support; both name the node and the reason.
// ResourceExhausted for a model past a size limit (program.h's kMax*, ir::kMaxTensorElements,
// or constant folding that would create more elements than 4 times the model's own weights,
// and at least 2^22).
absl::StatusOr<Program> BuildProgram(const ir::Graph& graph, const TransformOptions& options);

// ImportModelFile + BuildProgram.
absl::StatusOr<Program> LoadProgram(const std::string& onnx_path, const TransformOptions& options);

}  // namespace sluice::streaming

#endif  // SLUICE_RUNTIME_STREAMING_TRANSFORM_H_
