// The streaming program: what one step of a session computes from one input frame, derived
// from an offline ONNX graph by the streaming transform. Backend-neutral and immutable once
// built; backends compile it into their own form.
#ifndef SLUICE_RUNTIME_STREAMING_PROGRAM_H_
#define SLUICE_RUNTIME_STREAMING_PROGRAM_H_

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "runtime/ir/elementwise.h"

namespace sluice::streaming {

// Causal 1-D convolution over a per-session window. Input frame [in_channels], output frame
// [out_channels]. State: a mirrored ring of the last taps() input frames (see StateLayout).
struct ConvOp {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t kernel = 1;
  int64_t dilation = 1;
  int64_t groups = 1;
  std::vector<float> weight;  // ONNX layout [out][in/groups][kernel]; tap 0 is the oldest.
  std::vector<float> bias;    // [out]
  int64_t state_offset = 0;   // Bytes into the session slot.
  int64_t taps() const { return (kernel - 1) * dilation + 1; }
};

// Per-frame matrix product: each of `rows` rows of in_features becomes out_features.
struct LinearOp {
  int64_t rows = 1;
  int64_t in_features = 0;
  int64_t out_features = 0;
  std::vector<float> weight;  // [in_features][out_features]
  std::vector<float> bias;    // [out_features] or empty.
};

struct UnaryOp {
  ir::UnaryKind kind = ir::UnaryKind::kIdentity;
  ir::UnaryParams params;
};

// out[i] = a[map_a[i]] (op) b[map_b[i]]. An empty map is the identity. When the op has one
// input, operand b (or a, if constant_is_lhs) is `constant` (one value per output element).
struct BinaryOp {
  ir::BinaryKind kind = ir::BinaryKind::kAdd;
  std::vector<int32_t> map_a;
  std::vector<int32_t> map_b;
  std::vector<float> constant;
  bool constant_is_lhs = false;
};

// A frame viewed as [outer][axis][inner]; reduces/normalizes along `axis`.
struct AxisShape {
  int64_t outer = 1;
  int64_t axis = 1;
  int64_t inner = 1;
};

enum class ReduceKind { kSum, kMean, kMax, kMin, kL2, kSumSquare };
struct ReduceOp {
  ReduceKind kind = ReduceKind::kMean;
  AxisShape shape;  // Output frame is [outer][inner].
};

struct SoftmaxOp {
  AxisShape shape;
  bool log = false;
};

// (x - mean) / sqrt(var + epsilon) * scale + bias along `axis` (inner == 1).
struct LayerNormOp {
  AxisShape shape;
  float epsilon = 1e-5f;
  std::vector<float> scale;  // [axis]
  std::vector<float> bias;   // [axis]
};

// Each input frame viewed as [outer][part]; the output is [outer][sum of parts].
struct ConcatOp {
  int64_t outer = 1;
  std::vector<int64_t> parts;
};

// Input viewed as [outer][axis][inner]; keeps `count` entries from `start` by `step`.
struct SliceOp {
  AxisShape shape;
  int64_t start = 0;
  int64_t step = 1;
  int64_t count = 0;
};

// One forward LSTM (gates i, o, f, c) or GRU (gates z, r, h) layer step. Input [input_size],
// output [hidden]. State: h (and c for LSTM), each [hidden] floats.
struct RnnOp {
  bool gru = false;
  bool linear_before_reset = false;
  int64_t input_size = 0;
  int64_t hidden = 0;
  std::vector<float> w;       // [input_size][gates * hidden]  (transposed ONNX W)
  std::vector<float> r;       // [hidden][gates * hidden]      (transposed ONNX R)
  std::vector<float> w_bias;  // [gates * hidden]
  std::vector<float> r_bias;  // [gates * hidden]
  int64_t state_offset = 0;
  int gates() const { return gru ? 3 : 4; }
};

using OpParams = std::variant<ConvOp, LinearOp, UnaryOp, BinaryOp, ReduceOp, SoftmaxOp, LayerNormOp,
                              ConcatOp, SliceOp, RnnOp>;

struct Op {
  std::string node;         // The ONNX node this op came from (for errors and --describe).
  std::vector<int> inputs;  // Value ids.
  int output = -1;          // Value id.
  // The step from which this op's inputs are valid (warm-up of valid convs upstream).
  // Stateful ops leave their state untouched on earlier steps.
  int64_t input_lag = 0;
  std::optional<UnaryOp> activation;  // Applied to the output (fused ReLU and friends).
  OpParams params;

  const char* KindName() const;
};

// One session's frame of a value: `size` floats.
struct Value {
  std::string name;  // The ONNX value name.
  int64_t size = 0;
};

// A streamed tensor at the model boundary.
struct StreamSpec {
  std::string name;
  // The ONNX offline shape with the time dim as -1 and the batch dim as 1.
  std::vector<int64_t> offline_shape;
  int time_axis = 0;
  int batch_axis = -1;               // -1 when the tensor has no batch axis.
  std::vector<int64_t> frame_shape;  // offline_shape without the time axis.
  int64_t frame_size = 0;            // Floats per frame.
};

// Limits on the programs the transform builds (past them it fails with ResourceExhausted), so
// that a hostile or broken model cannot make it or a backend size buffers without bound:
// floats in one session's frame of any value (16 MiB) and of all values together (64 MiB),
// bytes of one session's state, and the frames a program may span (warm-up, a conv's window,
// padding along time).
inline constexpr int64_t kMaxFrameElements = int64_t{1} << 22;
inline constexpr int64_t kMaxProgramFrameElements = int64_t{1} << 24;
inline constexpr int64_t kMaxStateBytes = int64_t{1} << 30;
inline constexpr int64_t kMaxTimeSpan = int64_t{1} << 24;

struct Program {
  std::vector<Value> values;
  std::vector<Op> ops;  // In execution order.
  int input_value = -1;
  StreamSpec input;
  std::vector<int> output_values;
  std::vector<StreamSpec> outputs;
  // Frames consumed before the first output (valid convs); output k completes at frame
  // k + warmup_frames.
  int64_t warmup_frames = 0;
  // Per-session state: an int64 step counter at offset 0, then each stateful op's region.
  int64_t state_bytes = 0;

  // Human-readable listing: ops, shapes, state bytes per session.
  std::string Describe() const;
  // Multiply-adds x2 per frame.
  int64_t FlopsPerFrame() const;
};

// `program` with its matrix weights (conv weights, linear weights, recurrent W and R) rounded to
// the nearest bf16 (Precision::kBf16); biases and every other constant unchanged. Backends run
// the result in fp32 arithmetic (or, on the CPU, from packed bf16, which holds it exactly), so
// every backend computes the same bf16 model.
Program RoundWeightsToBf16(const Program& program);

// Byte layout of a conv op's state region: an int64 head index, then 2 * taps() frames of
// in_channels floats. Frame h is stored twice (at h and h + taps) so the taps() newest frames
// are always contiguous, oldest first, starting at frame (head + 1).
inline constexpr int64_t kConvStateHeader = 64;
inline int64_t ConvStateBytes(const ConvOp& conv) {
  return kConvStateHeader +
         2 * conv.taps() * conv.in_channels * static_cast<int64_t>(sizeof(float));
}
inline int64_t RnnStateBytes(const RnnOp& rnn) {
  return (rnn.gru ? 1 : 2) * rnn.hidden * static_cast<int64_t>(sizeof(float));
}

}  // namespace sluice::streaming

#endif  // SLUICE_RUNTIME_STREAMING_PROGRAM_H_
