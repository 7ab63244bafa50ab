// Internal to the streaming transform: the state of one pass over the graph. Every ONNX value
// is either a known constant tensor or a streamed tensor described by a Stream.
#ifndef SLUICE_RUNTIME_STREAMING_BUILDER_H_
#define SLUICE_RUNTIME_STREAMING_BUILDER_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/ir/graph.h"
#include "runtime/streaming/program.h"

namespace sluice::streaming::internal {

// A streamed value: its offline shape (time dim = ir::kSymbolicTime, batch dim = 1) and where
// step t's frame sits in the offline sequence.
struct Stream {
  int value = -1;  // Program value holding its frame.
  std::vector<int64_t> shape;
  int time_axis = 0;
  int batch_axis = -1;
  // At step t the frame is offline element t - lag (none while t < lag: warm-up).
  int64_t lag = 0;
  // Offline elements after the last producible one: they depend on right padding (future).
  int64_t extra = 0;
  std::vector<std::string> right_pad_nodes;  // Nodes that introduced `extra`.
  int64_t pending_left_pad = 0;              // Zeros a Pad put in front, for the next Conv.
  std::string pad_node;

  int rank() const { return static_cast<int>(shape.size()); }
  // The frame's shape: `shape` without the time axis.
  std::vector<int64_t> FrameShape() const;
  int64_t FrameSize() const;
};

class Builder {
 public:
  explicit Builder(const ir::Graph& graph) : graph_(graph) {}

  absl::StatusOr<Program> Build(int time_axis);
  // Nodes visited before Build stopped (to pick the most plausible of several failures).
  int visited() const { return visited_; }

 private:
  absl::Status Visit(const ir::Node& node);
  absl::Status VisitConstant(const ir::Node& node);
  // The program's size limits (program.h) on a streamed value the node produced.
  absl::Status CheckStream(const ir::Node& node, const Stream& stream) const;

  // Layout and time-axis ops (transform.cc).
  absl::Status Alias(const ir::Node& node, const Stream& in, int out_index = 0);
  absl::Status Transpose(const ir::Node& node, const Stream& in);
  absl::Status Reshape(const ir::Node& node, const Stream& in, std::vector<int64_t> target);
  absl::Status SqueezeUnsqueeze(const ir::Node& node, const Stream& in);
  absl::Status Flatten(const ir::Node& node, const Stream& in);
  absl::Status Pad(const ir::Node& node, const Stream& in);
  absl::Status Slice(const ir::Node& node, const Stream& in);
  absl::Status Split(const ir::Node& node, const Stream& in);
  absl::Status Concat(const ir::Node& node);

  // Compute ops (ops.cc).
  absl::Status Conv(const ir::Node& node, const Stream& in);
  absl::Status BatchNorm(const ir::Node& node, const Stream& in);
  absl::Status Unary(const ir::Node& node, const Stream& in, ir::UnaryKind kind);
  absl::Status Binary(const ir::Node& node, ir::BinaryKind kind);
  // Emits `in` (op) constant, or constant (op) `in`; returns the result (not registered).
  absl::StatusOr<Stream> BinaryWithConst(const ir::Node& node, const Stream& in,
                                         ir::BinaryKind kind, const ir::Tensor& constant,
                                         bool constant_is_lhs);
  absl::Status MatMul(const ir::Node& node);
  absl::Status Gemm(const ir::Node& node, const Stream& in);
  absl::Status Reduce(const ir::Node& node, const Stream& in);
  absl::Status Softmax(const ir::Node& node, const Stream& in);
  absl::Status LayerNorm(const ir::Node& node, const Stream& in);
  absl::Status Rnn(const ir::Node& node, const Stream& in);

  // Helpers.
  const ir::Tensor* Const(const std::string& name) const;
  const Stream* StreamOf(const std::string& name) const;
  absl::StatusOr<const ir::Tensor*> RequireConst(const ir::Node& node, size_t input,
                                                 const std::string& what) const;
  int NewValue(const std::string& name, int64_t size);
  // Appends an op reading `inputs` and returns `out` bound to the op's new output value.
  Stream Emit(const ir::Node& node, const std::vector<const Stream*>& inputs, OpParams params,
              Stream out);
  // A new state region of `bytes`; ResourceExhausted past kMaxStateBytes per session.
  absl::StatusOr<int64_t> StateRegion(const ir::Node& node, int64_t bytes);
  // A per-frame view [outer][axis range][inner] of `in` for axes [first, last] (no time).
  absl::StatusOr<AxisShape> ViewAround(const ir::Node& node, const Stream& in, int first,
                                       int last) const;
  absl::Status RequireAligned(const ir::Node& node, const Stream& a, const Stream& b) const;
  // The op producing value `value` if it is the sole use of node output `name`.
  Op* FusableProducer(const std::string& name, int value);

  const ir::Graph& graph_;
  Program program_;
  std::map<std::string, ir::Tensor> consts_;
  std::map<std::string, Stream> streams_;
  std::map<std::string, int> use_count_;
  std::map<int, int> producer_;  // value id -> op index
  // Constants whose folding failed (e.g. arithmetic on the sequence length): an error only
  // if something needs them.
  std::map<std::string, absl::Status> poisoned_;
  int visited_ = 0;
  // Elements constant folding may still create (see BuildProgram).
  int64_t fold_budget_ = 0;
};

// The frame of a value shaped `shape` (time at `time_axis`): every other dim at least 1 and at
// most kMaxFrameElements floats in all. InvalidArgument / ResourceExhausted naming the node.
absl::Status CheckFrameShape(const ir::Node& node, const std::vector<int64_t>& shape,
                             int time_axis);

absl::Status NodeError(const ir::Node& node, const std::string& reason);
absl::Status Unsupported(const ir::Node& node, const std::string& reason);

}  // namespace sluice::streaming::internal

#endif  // SLUICE_RUNTIME_STREAMING_BUILDER_H_
