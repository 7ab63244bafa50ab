// The streaming transform's compute ops: each checks that its op is causal per frame, then
// emits the per-frame op (with its state region when it keeps a window or a recurrent state).
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/status_macros.h"
#include "runtime/onnx/folder.h"
#include "runtime/streaming/builder.h"

namespace sluice::streaming::internal {
namespace {

using ir::kSymbolicTime;

// For each element of a frame of a tensor shaped `out_shape` (time at `out_time`), the element
// of a frame of an operand shaped `op_shape` (time at `op_time`, or -1 for a constant, whose
// dim there must be 1) it reads under numpy broadcasting.
std::vector<int32_t> BroadcastIndex(const std::vector<int64_t>& out_shape, int out_time,
                                    const std::vector<int64_t>& op_shape, int op_time) {
  const int out_rank = static_cast<int>(out_shape.size());
  const int op_rank = static_cast<int>(op_shape.size());
  std::vector<int64_t> op_strides(op_rank, 0);
  int64_t stride = 1;
  for (int d = op_rank - 1; d >= 0; --d) {
    if (d == op_time) continue;
    op_strides[d] = op_shape[d] == 1 ? 0 : stride;
    stride *= op_shape[d];
  }
  int64_t frame = 1;
  for (int d = 0; d < out_rank; ++d) {
    if (d != out_time) frame *= out_shape[d];
  }
  std::vector<int32_t> index(frame);
  for (int64_t f = 0; f < frame; ++f) {
    int64_t rest = f;
    int64_t offset = 0;
    for (int d = out_rank - 1; d >= 0; --d) {
      if (d == out_time) continue;
      const int64_t coord = rest % out_shape[d];
      rest /= out_shape[d];
      const int od = d - (out_rank - op_rank);
      if (od >= 0) offset += coord * op_strides[od];
    }
    index[f] = static_cast<int32_t>(offset);
  }
  return index;
}

bool IsIdentity(const std::vector<int32_t>& index, int64_t size) {
  if (static_cast<int64_t>(index.size()) != size) return false;
  for (size_t i = 0; i < index.size(); ++i) {
    if (index[i] != static_cast<int32_t>(i)) return false;
  }
  return true;
}

// The axis of `out` that time occupies when `in` (time at in.time_axis) is right-aligned into
// a tensor of rank `out_rank`.
int AlignedAxis(int axis, int in_rank, int out_rank) {
  return axis < 0 ? -1 : axis + (out_rank - in_rank);
}

absl::StatusOr<std::vector<float>> ConstFloats(const ir::Node& node, const ir::Tensor& t,
                                               int64_t expected, const std::string& what) {
  if (!t.is_float()) return NodeError(node, absl::StrCat(what, " is not a float tensor"));
  if (expected >= 0 && t.NumElements() != expected) {
    return NodeError(node,
                     absl::StrCat(what, " has ", t.NumElements(), " values, expected ", expected));
  }
  return t.f32;
}

}  // namespace

absl::Status Builder::Conv(const ir::Node& node, const Stream& in) {
  if (in.rank() != 3) {
    return Unsupported(node, absl::StrCat("Conv over ", in.rank() - 2,
                                          " spatial axes; only 1-D convolutions stream"));
  }
  if (in.time_axis != 2) {
    return NodeError(node, absl::StrCat("Conv's spatial (last) axis must be time, but time is "
                                        "axis ",
                                        in.time_axis));
  }
  if (in.shape[0] != 1) return NodeError(node, "Conv batch must be 1 per session");
  ASSIGN_OR_RETURN(const ir::Tensor* w, RequireConst(node, 1, "weight"));
  if (w->rank() != 3 || !w->is_float())
    return NodeError(node, "weight must be [out, in/groups, k]");
  ConvOp conv;
  conv.in_channels = in.shape[1];
  conv.out_channels = w->shape[0];
  conv.kernel = w->shape[2];
  conv.groups = node.IntAttr("group", 1);
  const std::vector<int64_t> dilations = node.IntsAttr("dilations");
  conv.dilation = dilations.empty() ? 1 : dilations[0];
  if (conv.kernel < 1 || conv.dilation < 1) {
    return NodeError(node, absl::StrCat("kernel ", conv.kernel, " and dilation ", conv.dilation,
                                        " must be positive"));
  }
  // Bounds the window (and the state) before anything is sized by it.
  if (conv.dilation > kMaxTimeSpan || (conv.kernel - 1) * conv.dilation > kMaxTimeSpan) {
    return absl::ResourceExhaustedError(
        absl::StrCat("node ", node.name, " (Conv): a window of ", conv.kernel, " taps at dilation ",
                     conv.dilation, " spans more than ", kMaxTimeSpan, " frames, the limit"));
  }
  for (int64_t stride : node.IntsAttr("strides")) {
    if (stride != 1) {
      return NodeError(node, absl::StrCat("stride ", stride,
                                          " over time cannot stream (a stream "
                                          "gives one output per input frame)"));
    }
  }
  if (conv.groups <= 0 || conv.in_channels % conv.groups != 0 ||
      conv.out_channels % conv.groups != 0 || w->shape[1] * conv.groups != conv.in_channels) {
    return NodeError(node,
                     absl::StrCat("weight ", ir::ShapeToString(w->shape), " does not match ",
                                  conv.in_channels, " input channels in ", conv.groups, " groups"));
  }
  conv.weight = w->f32;
  conv.bias.assign(conv.out_channels, 0.f);
  if (!node.Input(2).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* b, RequireConst(node, 2, "bias"));
    ASSIGN_OR_RETURN(conv.bias, ConstFloats(node, *b, conv.out_channels, "bias"));
  }
  const int64_t receptive = (conv.kernel - 1) * conv.dilation;
  int64_t left = 0, right = 0;
  const std::string auto_pad = node.StringAttr("auto_pad", "NOTSET");
  if (auto_pad == "NOTSET") {
    const std::vector<int64_t> pads = node.IntsAttr("pads");
    if (pads.size() == 2) {
      left = pads[0];
      right = pads[1];
    }
    if (left < 0 || right < 0 || left > kMaxTimeSpan || right > kMaxTimeSpan) {
      return NodeError(node, absl::StrCat("pads [", left, ",", right, "] out of range"));
    }
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    left = auto_pad == "SAME_UPPER" ? receptive / 2 : receptive - receptive / 2;
    right = receptive - left;
  } else if (auto_pad != "VALID") {
    return Unsupported(node, absl::StrCat("auto_pad ", auto_pad));
  }
  left += in.pending_left_pad;
  if (left > receptive) {
    return NodeError(node, absl::StrCat("left padding ", left, " exceeds the receptive field ",
                                        receptive, " (outputs before the first input)"));
  }
  Stream out = in;
  out.pending_left_pad = 0;
  out.shape = {1, conv.out_channels, kSymbolicTime};
  out.batch_axis = 0;
  out.lag = in.lag + receptive - left;
  if (right > 0) {
    out.extra += right;
    out.right_pad_nodes.push_back(node.name);
  }
  ASSIGN_OR_RETURN(conv.state_offset, StateRegion(node, ConvStateBytes(conv)));
  Stream x = in;
  x.pending_left_pad = 0;
  streams_[node.outputs[0]] = Emit(node, {&x}, std::move(conv), out);
  return absl::OkStatus();
}

absl::Status Builder::BatchNorm(const ir::Node& node, const Stream& in) {
  if (in.rank() < 2 || in.time_axis == 1) {
    return NodeError(node, "BatchNormalization's channel axis must not be time");
  }
  const int64_t channels = in.shape[1];
  ASSIGN_OR_RETURN(const ir::Tensor* scale, RequireConst(node, 1, "scale"));
  ASSIGN_OR_RETURN(const ir::Tensor* bias, RequireConst(node, 2, "B"));
  ASSIGN_OR_RETURN(const ir::Tensor* mean, RequireConst(node, 3, "mean"));
  ASSIGN_OR_RETURN(const ir::Tensor* var, RequireConst(node, 4, "var"));
  for (const ir::Tensor* t : {scale, bias, mean, var}) {
    if (t->NumElements() != channels || !t->is_float()) {
      return NodeError(node, "parameters do not match the channel count");
    }
  }
  const float epsilon = node.FloatAttr("epsilon", 1e-5f);
  std::vector<float> a(channels), b(channels);
  for (int64_t c = 0; c < channels; ++c) {
    a[c] = scale->f32[c] / std::sqrt(var->f32[c] + epsilon);
    b[c] = bias->f32[c] - mean->f32[c] * a[c];
  }
  if (Op* producer = FusableProducer(node.Input(0), in.value)) {
    if (auto* conv = std::get_if<ConvOp>(&producer->params)) {
      const int64_t per_out = conv->weight.size() / conv->out_channels;
      for (int64_t o = 0; o < conv->out_channels; ++o) {
        for (int64_t i = 0; i < per_out; ++i) conv->weight[o * per_out + i] *= a[o];
        conv->bias[o] = conv->bias[o] * a[o] + b[o];
      }
      return Alias(node, in);
    }
  }
  std::vector<int64_t> shape(in.rank(), 1);
  shape[1] = channels;
  ASSIGN_OR_RETURN(Stream scaled, BinaryWithConst(node, in, ir::BinaryKind::kMul,
                                                  ir::Tensor::Float(shape, a), false));
  ASSIGN_OR_RETURN(Stream shifted, BinaryWithConst(node, scaled, ir::BinaryKind::kAdd,
                                                   ir::Tensor::Float(shape, b), false));
  streams_[node.outputs[0]] = shifted;
  return absl::OkStatus();
}

absl::Status Builder::Unary(const ir::Node& node, const Stream& in, ir::UnaryKind kind) {
  if (kind == ir::UnaryKind::kIdentity) return Alias(node, in);
  UnaryOp unary;
  unary.kind = kind;
  unary.params.alpha = node.FloatAttr("alpha", kind == ir::UnaryKind::kLeakyRelu ? 0.01f : 1.f);
  if (kind == ir::UnaryKind::kHardSigmoid) {
    unary.params.alpha = node.FloatAttr("alpha", 0.2f);
    unary.params.beta = node.FloatAttr("beta", 0.5f);
  }
  if (kind == ir::UnaryKind::kClip) {
    unary.params.lo = node.FloatAttr("min", -INFINITY);
    unary.params.hi = node.FloatAttr("max", INFINITY);
    if (!node.Input(1).empty()) {
      ASSIGN_OR_RETURN(const ir::Tensor* lo, RequireConst(node, 1, "min"));
      if (lo->NumElements() < 1) return NodeError(node, "min is empty");
      unary.params.lo = static_cast<float>(lo->AsDouble(0));
    }
    if (!node.Input(2).empty()) {
      ASSIGN_OR_RETURN(const ir::Tensor* hi, RequireConst(node, 2, "max"));
      if (hi->NumElements() < 1) return NodeError(node, "max is empty");
      unary.params.hi = static_cast<float>(hi->AsDouble(0));
    }
  }
  if (Op* producer = FusableProducer(node.Input(0), in.value)) {
    producer->activation = unary;
    return Alias(node, in);
  }
  streams_[node.outputs[0]] = Emit(node, {&in}, unary, in);
  return absl::OkStatus();
}

absl::StatusOr<Stream> Builder::BinaryWithConst(const ir::Node& node, const Stream& in,
                                                ir::BinaryKind kind, const ir::Tensor& constant,
                                                bool constant_is_lhs) {
  if (!constant.is_float()) return NodeError(node, "integer constant operand");
  std::vector<int64_t> out_shape;
  if (!ir::BroadcastShapes(in.shape, constant.shape, &out_shape)) {
    return NodeError(node, absl::StrCat("shapes ", ir::ShapeToString(in.shape), " and ",
                                        ir::ShapeToString(constant.shape), " do not broadcast"));
  }
  const int out_time = AlignedAxis(in.time_axis, in.rank(), static_cast<int>(out_shape.size()));
  const int const_time = out_time - (static_cast<int>(out_shape.size()) - constant.rank());
  if (const_time >= 0 && constant.shape[const_time] != 1) {
    return NodeError(node, "constant operand varies along time (needs the whole sequence)");
  }
  out_shape[out_time] = kSymbolicTime;
  RETURN_IF_ERROR(CheckFrameShape(node, out_shape, out_time));  // Before sizing the maps.
  Stream out = in;
  out.shape = out_shape;
  out.time_axis = out_time;
  out.batch_axis = AlignedAxis(in.batch_axis, in.rank(), static_cast<int>(out_shape.size()));
  const std::vector<int32_t> const_index = BroadcastIndex(out_shape, out_time, constant.shape, -1);
  std::vector<float> materialized(const_index.size());
  for (size_t i = 0; i < const_index.size(); ++i) materialized[i] = constant.f32[const_index[i]];

  // nn.Linear exports MatMul then Add(bias): fold a per-feature bias into the product.
  if (kind == ir::BinaryKind::kAdd && out.FrameSize() == in.FrameSize()) {
    if (Op* producer = FusableProducer(node.Input(constant_is_lhs ? 1 : 0), in.value)) {
      auto* linear = std::get_if<LinearOp>(&producer->params);
      if (linear != nullptr && linear->bias.empty()) {
        bool per_feature = true;
        for (size_t i = 0; i < materialized.size() && per_feature; ++i) {
          per_feature = materialized[i] == materialized[i % linear->out_features];
        }
        if (per_feature) {
          linear->bias.assign(materialized.begin(), materialized.begin() + linear->out_features);
          return in;
        }
      }
    }
  }
  BinaryOp binary;
  binary.kind = kind;
  binary.constant = std::move(materialized);
  binary.constant_is_lhs = constant_is_lhs;
  std::vector<int32_t> in_index = BroadcastIndex(out_shape, out_time, in.shape, in.time_axis);
  if (!IsIdentity(in_index, in.FrameSize())) {
    (constant_is_lhs ? binary.map_b : binary.map_a) = std::move(in_index);
  }
  return Emit(node, {&in}, std::move(binary), out);
}

absl::Status Builder::Binary(const ir::Node& node, ir::BinaryKind kind) {
  const Stream* a = StreamOf(node.Input(0));
  const Stream* b = StreamOf(node.Input(1));
  if (a == nullptr || b == nullptr) {
    const bool lhs_const = a == nullptr;
    ASSIGN_OR_RETURN(const ir::Tensor* constant,
                     RequireConst(node, lhs_const ? 0 : 1, "constant operand"));
    ASSIGN_OR_RETURN(Stream out,
                     BinaryWithConst(node, lhs_const ? *b : *a, kind, *constant, lhs_const));
    streams_[node.outputs[0]] = out;
    return absl::OkStatus();
  }
  RETURN_IF_ERROR(RequireAligned(node, *a, *b));
  if (a->rank() - a->time_axis != b->rank() - b->time_axis) {
    return NodeError(node, "operands have their time axes in different places");
  }
  std::vector<int64_t> out_shape;
  if (!ir::BroadcastShapes(a->shape, b->shape, &out_shape)) {
    return NodeError(node, absl::StrCat("shapes ", ir::ShapeToString(a->shape), " and ",
                                        ir::ShapeToString(b->shape), " do not broadcast"));
  }
  Stream out = a->rank() >= b->rank() ? *a : *b;
  RETURN_IF_ERROR(CheckFrameShape(node, out_shape, out.time_axis));  // Before sizing the maps.
  out.shape = out_shape;
  BinaryOp binary;
  binary.kind = kind;
  binary.map_a = BroadcastIndex(out_shape, out.time_axis, a->shape, a->time_axis);
  binary.map_b = BroadcastIndex(out_shape, out.time_axis, b->shape, b->time_axis);
  if (IsIdentity(binary.map_a, a->FrameSize())) binary.map_a.clear();
  if (IsIdentity(binary.map_b, b->FrameSize())) binary.map_b.clear();
  streams_[node.outputs[0]] = Emit(node, {a, b}, std::move(binary), out);
  return absl::OkStatus();
}

absl::Status Builder::MatMul(const ir::Node& node) {
  const Stream* a = StreamOf(node.Input(0));
  const Stream* b = StreamOf(node.Input(1));
  if (a != nullptr && b != nullptr) {
    return NodeError(node,
                     "MatMul of two streamed tensors mixes time steps (attention across "
                     "time needs the whole sequence)");
  }
  const Stream& in = a != nullptr ? *a : *b;
  ASSIGN_OR_RETURN(const ir::Tensor* w, RequireConst(node, a != nullptr ? 1 : 0, "weight"));
  if (w->rank() < 2 || !w->is_float()) return Unsupported(node, "MatMul with a 1-D weight");
  for (int d = 0; d + 2 < w->rank(); ++d) {
    if (w->shape[d] != 1) return Unsupported(node, "batched MatMul with a stacked weight");
  }
  const int64_t rows_w = w->shape[w->rank() - 2];
  const int64_t cols_w = w->shape[w->rank() - 1];
  LinearOp linear;
  Stream out = in;
  if (a != nullptr) {  // x[..., K] @ W[K, N]
    if (in.time_axis == in.rank() - 1) {
      return NodeError(node, "MatMul contracts over time (mixes time steps across time)");
    }
    if (in.shape.back() != rows_w) return NodeError(node, "inner dimensions differ");
    linear.in_features = rows_w;
    linear.out_features = cols_w;
    linear.weight = w->f32;
    out.shape.back() = cols_w;
  } else {  // W[N, K] @ x[..., K, T]
    if (in.rank() < 2 || in.time_axis != in.rank() - 1) {
      return NodeError(node, "MatMul contracts over time (mixes time steps across time)");
    }
    if (in.shape[in.rank() - 2] != cols_w) return NodeError(node, "inner dimensions differ");
    linear.in_features = cols_w;
    linear.out_features = rows_w;
    linear.weight.resize(rows_w * cols_w);
    for (int64_t n = 0; n < rows_w; ++n) {
      for (int64_t k = 0; k < cols_w; ++k) linear.weight[k * rows_w + n] = w->f32[n * cols_w + k];
    }
    out.shape[in.rank() - 2] = rows_w;
  }
  if (w->rank() > in.rank()) return Unsupported(node, "MatMul weight of higher rank than input");
  linear.rows = in.FrameSize() / linear.in_features;
  streams_[node.outputs[0]] = Emit(node, {&in}, std::move(linear), out);
  return absl::OkStatus();
}

absl::Status Builder::Gemm(const ir::Node& node, const Stream& in) {
  if (in.rank() != 2) return NodeError(node, "Gemm input must be 2-D");
  const bool trans_a = node.IntAttr("transA", 0) != 0;
  const bool trans_b = node.IntAttr("transB", 0) != 0;
  const int contract_axis = trans_a ? 0 : 1;
  if (in.time_axis == contract_axis) {
    return NodeError(node, "Gemm contracts over time (mixes time steps across time)");
  }
  ASSIGN_OR_RETURN(const ir::Tensor* w, RequireConst(node, 1, "B"));
  if (w->rank() != 2 || !w->is_float()) return NodeError(node, "B must be a 2-D float tensor");
  const float alpha = node.FloatAttr("alpha", 1.f);
  const float beta = node.FloatAttr("beta", 1.f);
  LinearOp linear;
  linear.in_features = in.shape[contract_axis];
  linear.out_features = trans_b ? w->shape[0] : w->shape[1];
  const int64_t k_dim = trans_b ? w->shape[1] : w->shape[0];
  if (k_dim != linear.in_features) return NodeError(node, "inner dimensions differ");
  linear.weight.resize(linear.in_features * linear.out_features);
  for (int64_t k = 0; k < linear.in_features; ++k) {
    for (int64_t n = 0; n < linear.out_features; ++n) {
      const float v =
          trans_b ? w->f32[n * linear.in_features + k] : w->f32[k * linear.out_features + n];
      linear.weight[k * linear.out_features + n] = alpha * v;
    }
  }
  if (!node.Input(2).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* c, RequireConst(node, 2, "C"));
    if (!c->is_float()) return NodeError(node, "C must be float");
    if (c->NumElements() == 1) {
      linear.bias.assign(linear.out_features, beta * c->f32[0]);
    } else if (c->NumElements() == linear.out_features) {
      linear.bias = c->f32;
      for (float& v : linear.bias) v *= beta;
    } else {
      return NodeError(node, "C varies along time (needs the whole sequence)");
    }
  }
  Stream out = in;
  out.shape = {kSymbolicTime, linear.out_features};
  out.time_axis = 0;
  out.batch_axis = -1;
  streams_[node.outputs[0]] = Emit(node, {&in}, std::move(linear), out);
  return absl::OkStatus();
}

absl::Status Builder::Reduce(const ir::Node& node, const Stream& in) {
  static const auto* kinds = new std::map<std::string, ReduceKind>{
      {"ReduceMean", ReduceKind::kMean}, {"ReduceSum", ReduceKind::kSum},
      {"ReduceMax", ReduceKind::kMax},   {"ReduceMin", ReduceKind::kMin},
      {"ReduceL2", ReduceKind::kL2},     {"ReduceSumSquare", ReduceKind::kSumSquare}};
  auto kind = kinds->find(node.op_type);
  if (kind == kinds->end()) return Unsupported(node, absl::StrCat("unsupported op ", node.op_type));
  std::vector<int64_t> axes = node.IntsAttr("axes");
  if (!node.HasAttr("axes") && !node.Input(1).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, 1, "axes"));
    axes = t->AsInts();
  }
  std::vector<int> sorted;
  for (int64_t axis : axes) {
    ASSIGN_OR_RETURN(int a, onnx_import::NormalizeAxis(axis, in.rank(), node));
    if (a == in.time_axis) {
      return NodeError(
          node, absl::StrCat(node.op_type, " over time (axis ", a, ") needs the whole sequence"));
    }
    sorted.push_back(a);
  }
  if (sorted.empty()) {
    if (node.IntAttr("noop_with_empty_axes", 0) != 0) return Alias(node, in);
    return NodeError(node, absl::StrCat(node.op_type, " over all axes reduces over time"));
  }
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) {
    for (int d = sorted[i - 1] + 1; d < sorted[i]; ++d) {
      if (d != in.time_axis && in.shape[d] != 1) {
        return Unsupported(node, "reduction over axes that are not adjacent");
      }
    }
  }
  ReduceOp reduce;
  reduce.kind = kind->second;
  ASSIGN_OR_RETURN(reduce.shape, ViewAround(node, in, sorted.front(), sorted.back()));
  Stream out = in;
  const bool keepdims = node.IntAttr("keepdims", 1) != 0;
  out.shape.clear();
  out.time_axis = -1;
  out.batch_axis = -1;
  for (int d = 0; d < in.rank(); ++d) {
    const bool reduced = std::find(sorted.begin(), sorted.end(), d) != sorted.end();
    if (reduced && !keepdims) continue;
    if (d == in.time_axis) out.time_axis = out.rank();
    if (d == in.batch_axis) out.batch_axis = out.rank();
    out.shape.push_back(reduced ? 1 : in.shape[d]);
  }
  streams_[node.outputs[0]] = Emit(node, {&in}, reduce, out);
  return absl::OkStatus();
}

absl::Status Builder::Softmax(const ir::Node& node, const Stream& in) {
  const int64_t default_axis = graph_.opset >= 13 ? -1 : 1;
  ASSIGN_OR_RETURN(int axis,
                   onnx_import::NormalizeAxis(node.IntAttr("axis", default_axis), in.rank(), node));
  const int last = graph_.opset >= 13 ? axis : in.rank() - 1;
  if (in.time_axis >= axis && in.time_axis <= last) {
    return NodeError(node, absl::StrCat(node.op_type, " over time needs the whole sequence"));
  }
  SoftmaxOp softmax;
  softmax.log = node.op_type == "LogSoftmax";
  ASSIGN_OR_RETURN(softmax.shape, ViewAround(node, in, axis, last));
  streams_[node.outputs[0]] = Emit(node, {&in}, softmax, in);
  return absl::OkStatus();
}

absl::Status Builder::LayerNorm(const ir::Node& node, const Stream& in) {
  ASSIGN_OR_RETURN(int axis, onnx_import::NormalizeAxis(node.IntAttr("axis", -1), in.rank(), node));
  if (in.time_axis >= axis) {
    return NodeError(node, "LayerNormalization over time needs the whole sequence");
  }
  for (size_t i = 1; i < node.outputs.size(); ++i) {
    if (!node.outputs[i].empty() && use_count_[node.outputs[i]] > 0) {
      return Unsupported(node, "LayerNormalization's Mean/InvStdDev outputs");
    }
  }
  LayerNormOp norm;
  ASSIGN_OR_RETURN(norm.shape, ViewAround(node, in, axis, in.rank() - 1));
  norm.epsilon = node.FloatAttr("epsilon", 1e-5f);
  auto tiled = [&](size_t input, float fallback) -> absl::StatusOr<std::vector<float>> {
    std::vector<float> values(norm.shape.axis, fallback);
    if (node.Input(input).empty()) return values;
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, input, "scale/bias"));
    if (!t->is_float() || t->NumElements() == 0 || norm.shape.axis % t->NumElements() != 0) {
      return NodeError(node, "scale/bias do not match the normalized shape");
    }
    for (int64_t i = 0; i < norm.shape.axis; ++i) values[i] = t->f32[i % t->NumElements()];
    return values;
  };
  ASSIGN_OR_RETURN(norm.scale, tiled(1, 1.f));
  ASSIGN_OR_RETURN(norm.bias, tiled(2, 0.f));
  streams_[node.outputs[0]] = Emit(node, {&in}, std::move(norm), in);
  return absl::OkStatus();
}

absl::Status Builder::Rnn(const ir::Node& node, const Stream& in) {
  const bool gru = node.op_type == "GRU";
  const std::string direction = node.StringAttr("direction", "forward");
  if (direction == "bidirectional") {
    return NodeError(node, "a bidirectional RNN reads the sequence backwards (needs the future)");
  }
  if (direction != "forward") {
    return NodeError(node, absl::StrCat("direction '", direction,
                                        "' reads the sequence "
                                        "backwards (needs the future)"));
  }
  for (size_t i = 1; i < node.outputs.size(); ++i) {
    if (node.outputs[i].empty() || use_count_[node.outputs[i]] == 0) continue;
    return NodeError(node, absl::StrCat(i == 1 ? "Y_h" : "Y_c",
                                        " (the state after the last "
                                        "step) is used, but a stream has no last step; use Y"));
  }
  const int64_t layout = node.IntAttr("layout", 0);
  if (in.rank() != 3 || in.time_axis != (layout == 0 ? 0 : 1)) {
    return NodeError(
        node, absl::StrCat("the sequence axis of X must be time (axis ", layout == 0 ? 0 : 1, ")"));
  }
  if (node.HasAttr("clip")) return Unsupported(node, "cell clipping");
  if (node.IntAttr("input_forget", 0) != 0) return Unsupported(node, "input_forget");
  if (node.HasAttr("activations")) {
    const std::vector<std::string> expected =
        gru ? std::vector<std::string>{"Sigmoid", "Tanh"}
            : std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"};
    if (node.attributes.at("activations").strings != expected) {
      return Unsupported(node, "non-default activations");
    }
  }
  if (!node.Input(4).empty()) return Unsupported(node, "sequence_lens");
  for (size_t input : {size_t{5}, size_t{6}, size_t{7}}) {
    if (node.Input(input).empty() || (gru && input > 5)) continue;
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, input, "initial state / peepholes"));
    for (int64_t i = 0; i < t->NumElements(); ++i) {
      if (t->AsDouble(i) != 0.0) {
        return Unsupported(node, "a non-zero initial state or peephole weights");
      }
    }
  }
  RnnOp rnn;
  rnn.gru = gru;
  rnn.linear_before_reset = node.IntAttr("linear_before_reset", 0) != 0;
  rnn.hidden = node.IntAttr("hidden_size", 0);
  rnn.input_size = in.FrameSize();
  // hidden_size is bounded first so that the products below cannot overflow.
  if (rnn.hidden <= 0 || rnn.hidden > kMaxFrameElements) {
    return NodeError(node, absl::StrCat("hidden_size ", rnn.hidden, " out of range"));
  }
  const int64_t gh = rnn.gates() * rnn.hidden;
  ASSIGN_OR_RETURN(const ir::Tensor* w, RequireConst(node, 1, "W"));
  ASSIGN_OR_RETURN(const ir::Tensor* r, RequireConst(node, 2, "R"));
  if (!w->is_float() || !r->is_float() || w->NumElements() != gh * rnn.input_size ||
      r->NumElements() != gh * rnn.hidden) {
    return NodeError(node, "W/R do not match hidden_size and the input frame");
  }
  rnn.w.resize(rnn.input_size * gh);
  rnn.r.resize(rnn.hidden * gh);
  for (int64_t g = 0; g < gh; ++g) {
    for (int64_t i = 0; i < rnn.input_size; ++i) rnn.w[i * gh + g] = w->f32[g * rnn.input_size + i];
    for (int64_t h = 0; h < rnn.hidden; ++h) rnn.r[h * gh + g] = r->f32[g * rnn.hidden + h];
  }
  rnn.w_bias.assign(gh, 0.f);
  rnn.r_bias.assign(gh, 0.f);
  if (!node.Input(3).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* b, RequireConst(node, 3, "B"));
    if (!b->is_float() || b->NumElements() != 2 * gh) {
      return NodeError(node, "B does not match hidden_size");
    }
    std::copy(b->f32.begin(), b->f32.begin() + gh, rnn.w_bias.begin());
    std::copy(b->f32.begin() + gh, b->f32.end(), rnn.r_bias.begin());
  }
  ASSIGN_OR_RETURN(rnn.state_offset, StateRegion(node, RnnStateBytes(rnn)));
  Stream out = in;
  // Y is [T, dirs, B, H] (layout 0) or [B, T, dirs, H] (layout 1).
  if (layout == 0) {
    out.shape = {kSymbolicTime, 1, 1, rnn.hidden};
    out.time_axis = 0;
    out.batch_axis = 2;
  } else {
    out.shape = {1, kSymbolicTime, 1, rnn.hidden};
    out.time_axis = 1;
    out.batch_axis = 0;
  }
  streams_[node.outputs[0]] = Emit(node, {&in}, std::move(rnn), out);
  return absl::OkStatus();
}

}  // namespace sluice::streaming::internal
