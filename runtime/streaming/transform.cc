// The streaming transform's driver: walks the graph in order, folds what is constant, tracks
// where time lives in every streamed value, and emits per-frame ops. Layout-only ops (Reshape,
// Transpose, Squeeze...) and time-axis bookkeeping (Pad, Slice along time) live here; compute
// ops live in ops.cc.
#include "runtime/streaming/transform.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/status_macros.h"
#include "runtime/onnx/folder.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/builder.h"

namespace sluice::streaming {
namespace internal {

using ir::kSymbolicTime;

absl::Status NodeError(const ir::Node& node, const std::string& reason) {
  return absl::InvalidArgumentError(
      absl::StrCat("node ", node.name, " (", node.op_type, "): ", reason));
}

absl::Status Unsupported(const ir::Node& node, const std::string& reason) {
  return absl::UnimplementedError(
      absl::StrCat("node ", node.name, " (", node.op_type, "): ", reason));
}

std::vector<int64_t> Stream::FrameShape() const {
  std::vector<int64_t> frame;
  for (int d = 0; d < rank(); ++d) {
    if (d != time_axis) frame.push_back(shape[d]);
  }
  return frame;
}

int64_t Stream::FrameSize() const { return ir::NumElements(FrameShape()); }

absl::Status CheckFrameShape(const ir::Node& node, const std::vector<int64_t>& shape,
                             int time_axis) {
  std::vector<int64_t> frame;
  for (int d = 0; d < static_cast<int>(shape.size()); ++d) {
    if (d == time_axis) continue;
    if (shape[d] < 1) {
      return NodeError(node, absl::StrCat("streamed value of shape ", ir::ShapeToString(shape),
                                          " has an empty or negative dim"));
    }
    frame.push_back(shape[d]);
  }
  if (!ir::CheckedNumElements(frame, kMaxFrameElements)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "node ", node.name, " (", node.op_type, "): a frame of shape ", ir::ShapeToString(shape),
        " holds more than ", kMaxFrameElements, " floats, the limit"));
  }
  return absl::OkStatus();
}

absl::Status Builder::CheckStream(const ir::Node& node, const Stream& stream) const {
  if (stream.time_axis < 0 || stream.time_axis >= stream.rank() ||
      stream.shape[stream.time_axis] != kSymbolicTime || stream.batch_axis < -1 ||
      stream.batch_axis >= stream.rank()) {
    return absl::InternalError(absl::StrCat("node ", node.name, " (", node.op_type,
                                            "): lost track of the time axis of ",
                                            ir::ShapeToString(stream.shape)));
  }
  RETURN_IF_ERROR(CheckFrameShape(node, stream.shape, stream.time_axis));
  for (int64_t span : {stream.lag, stream.extra, stream.pending_left_pad}) {
    if (span < 0 || span > kMaxTimeSpan) {
      return absl::ResourceExhaustedError(
          absl::StrCat("node ", node.name, " (", node.op_type, "): spans ", span,
                       " frames of time; the limit is ", kMaxTimeSpan));
    }
  }
  return absl::OkStatus();
}

const ir::Tensor* Builder::Const(const std::string& name) const {
  auto it = consts_.find(name);
  if (it != consts_.end()) return &it->second;
  auto init = graph_.initializers.find(name);
  return init == graph_.initializers.end() ? nullptr : &init->second;
}

const Stream* Builder::StreamOf(const std::string& name) const {
  auto it = streams_.find(name);
  return it == streams_.end() ? nullptr : &it->second;
}

absl::StatusOr<const ir::Tensor*> Builder::RequireConst(const ir::Node& node, size_t input,
                                                        const std::string& what) const {
  const std::string& name = node.Input(input);
  if (name.empty()) return NodeError(node, absl::StrCat(what, " (input ", input, ") is missing"));
  const ir::Tensor* t = Const(name);
  if (t == nullptr) {
    auto poisoned = poisoned_.find(name);
    if (poisoned != poisoned_.end()) return poisoned->second;
    return Unsupported(node, absl::StrCat(what, " (input ", input,
                                          ") must be a constant, but it is computed at run time"));
  }
  return t;
}

int Builder::NewValue(const std::string& name, int64_t size) {
  program_.values.push_back(Value{name, size});
  return static_cast<int>(program_.values.size()) - 1;
}

Stream Builder::Emit(const ir::Node& node, const std::vector<const Stream*>& inputs,
                     OpParams params, Stream out) {
  Op op;
  op.node = node.name;
  for (const Stream* in : inputs) {
    op.inputs.push_back(in->value);
    op.input_lag = std::max(op.input_lag, in->lag);
  }
  op.params = std::move(params);
  out.value = NewValue(node.outputs.empty() ? node.name : node.outputs[0], out.FrameSize());
  op.output = out.value;
  producer_[out.value] = static_cast<int>(program_.ops.size());
  program_.ops.push_back(std::move(op));
  return out;
}

absl::StatusOr<int64_t> Builder::StateRegion(const ir::Node& node, int64_t bytes) {
  const int64_t offset = (program_.state_bytes + 63) / 64 * 64;
  if (bytes < 0 || bytes > kMaxStateBytes - offset) {
    return absl::ResourceExhaustedError(absl::StrCat("node ", node.name, " (", node.op_type,
                                                     "): per-session state would exceed ",
                                                     kMaxStateBytes, " bytes, the limit"));
  }
  program_.state_bytes = offset + bytes;
  return offset;
}

absl::StatusOr<AxisShape> Builder::ViewAround(const ir::Node& node, const Stream& in, int first,
                                              int last) const {
  AxisShape view;
  for (int d = 0; d < in.rank(); ++d) {
    if (d == in.time_axis) {
      if (d >= first && d <= last) return NodeError(node, "operates over time");
      continue;
    }
    if (d < first) {
      view.outer *= in.shape[d];
    } else if (d <= last) {
      view.axis *= in.shape[d];
    } else {
      view.inner *= in.shape[d];
    }
  }
  view.axis = std::max<int64_t>(view.axis, 1);
  return view;
}

absl::Status Builder::RequireAligned(const ir::Node& node, const Stream& a, const Stream& b) const {
  if (a.lag != b.lag || a.extra != b.extra) {
    return NodeError(node, absl::StrCat("operands are misaligned in time (one starts after ", a.lag,
                                        " warm-up frames, the other after ", b.lag,
                                        "; trailing future steps ", a.extra, " vs ", b.extra, ")"));
  }
  if (a.pending_left_pad != 0 || b.pending_left_pad != 0) {
    return NodeError(node, "a Pad along time must feed a Conv directly");
  }
  return absl::OkStatus();
}

Op* Builder::FusableProducer(const std::string& name, int value) {
  auto it = producer_.find(value);
  if (it == producer_.end() || use_count_[name] != 1) return nullptr;
  Op& op = program_.ops[it->second];
  if (op.output != value || op.activation.has_value()) return nullptr;
  if (!std::holds_alternative<ConvOp>(op.params) && !std::holds_alternative<LinearOp>(op.params)) {
    return nullptr;
  }
  return &op;
}

absl::Status Builder::Alias(const ir::Node& node, const Stream& in, int out_index) {
  if (static_cast<int>(node.outputs.size()) > out_index) streams_[node.outputs[out_index]] = in;
  return absl::OkStatus();
}

absl::Status Builder::Transpose(const ir::Node& node, const Stream& in) {
  std::vector<int64_t> perm = node.IntsAttr("perm");
  if (perm.empty()) {
    for (int d = in.rank() - 1; d >= 0; --d) perm.push_back(d);
  }
  if (static_cast<int>(perm.size()) != in.rank())
    return NodeError(node, "perm does not match rank");
  std::vector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= in.rank() || seen[p]) return NodeError(node, "perm is not a permutation");
    seen[p] = true;
  }
  Stream out = in;
  int last_feature = -1;
  for (int d = 0; d < in.rank(); ++d) {
    const int src = static_cast<int>(perm[d]);
    out.shape[d] = in.shape[src];
    if (src == in.time_axis) out.time_axis = d;
    if (src == in.batch_axis) out.batch_axis = d;
    if (src != in.time_axis && in.shape[src] != 1) {
      if (src < last_feature) {
        return Unsupported(node, "Transpose reorders feature axes within a frame");
      }
      last_feature = src;
    }
  }
  streams_[node.outputs[0]] = out;
  return absl::OkStatus();
}

absl::Status Builder::Reshape(const ir::Node& node, const Stream& in, std::vector<int64_t> target) {
  const bool allow_zero = node.IntAttr("allowzero", 0) != 0;
  int time_pos = -1;
  int infer_pos = -1;
  int batch_pos = -1;
  for (size_t d = 0; d < target.size(); ++d) {
    if (target[d] == 0 && !allow_zero) {
      if (static_cast<int>(d) >= in.rank()) return NodeError(node, "0 in shape past input rank");
      if (static_cast<int>(d) == in.batch_axis) batch_pos = static_cast<int>(d);
      target[d] = in.shape[d];
    }
    if (target[d] == kSymbolicTime) {
      if (time_pos >= 0) return NodeError(node, "shape names the time axis twice");
      time_pos = static_cast<int>(d);
    } else if (target[d] == -1) {
      if (infer_pos >= 0) return NodeError(node, "shape has more than one -1");
      infer_pos = static_cast<int>(d);
    } else if (target[d] < 1) {
      return NodeError(node, absl::StrCat("reshape to ", ir::ShapeToString(target),
                                          " has an empty or negative dim"));
    }
  }
  const int64_t frame = in.FrameSize();
  int64_t known = 1;
  for (size_t d = 0; d < target.size(); ++d) {
    if (static_cast<int>(d) == time_pos || static_cast<int>(d) == infer_pos) continue;
    // More than the frame already cannot match it; stopping there avoids overflow.
    if (target[d] > frame || (known *= target[d]) > frame) {
      return NodeError(node, absl::StrCat("reshape ", ir::ShapeToString(in.shape), " to ",
                                          ir::ShapeToString(target), " changes the frame size"));
    }
  }
  if (time_pos < 0 && infer_pos >= 0 && known == frame) {
    time_pos = infer_pos;  // The inferred dim is the sequence length.
    infer_pos = -1;
  }
  if (time_pos < 0) {
    return NodeError(node, absl::StrCat("reshape to ", ir::ShapeToString(target),
                                        " merges the time axis into feature axes"));
  }
  if (infer_pos >= 0) {
    if (known == 0 || frame % known != 0) return NodeError(node, "cannot infer the -1 dim");
    target[infer_pos] = frame / known;
    known *= target[infer_pos];
  }
  target[time_pos] = kSymbolicTime;
  int64_t after_in = 1, after_out = 1;
  for (int d = in.time_axis + 1; d < in.rank(); ++d) after_in *= in.shape[d];
  for (size_t d = time_pos + 1; d < target.size(); ++d) after_out *= target[d];
  if (known != frame || after_in != after_out) {
    return NodeError(
        node, absl::StrCat("reshape ", ir::ShapeToString(in.shape), " to ",
                           ir::ShapeToString(target), " mixes the time axis with feature axes"));
  }
  Stream out = in;
  out.shape = target;
  out.time_axis = time_pos;
  out.batch_axis = batch_pos;
  if (batch_pos < 0 && in.batch_axis >= 0 && in.batch_axis < static_cast<int>(target.size()) &&
      in.batch_axis != time_pos && target[in.batch_axis] == 1) {
    out.batch_axis = in.batch_axis;
  }
  streams_[node.outputs[0]] = out;
  return absl::OkStatus();
}

absl::Status Builder::SqueezeUnsqueeze(const ir::Node& node, const Stream& in) {
  std::vector<int64_t> axes = node.IntsAttr("axes");
  if (!node.HasAttr("axes") && !node.Input(1).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, 1, "axes"));
    axes = t->AsInts();
  }
  Stream out = in;
  out.shape.clear();
  out.time_axis = -1;
  out.batch_axis = -1;
  if (node.op_type == "Squeeze") {
    std::set<int> drop;
    for (int64_t axis : axes) {
      ASSIGN_OR_RETURN(int a, onnx_import::NormalizeAxis(axis, in.rank(), node));
      drop.insert(a);
    }
    for (int d = 0; d < in.rank(); ++d) {
      const bool dropped = axes.empty() ? (d != in.time_axis && in.shape[d] == 1) : drop.count(d);
      if (dropped && d == in.time_axis) return NodeError(node, "squeezes the time axis");
      if (dropped && in.shape[d] != 1) return NodeError(node, "squeezes a dim that is not 1");
      if (dropped) continue;
      if (d == in.time_axis) out.time_axis = out.rank();
      if (d == in.batch_axis) out.batch_axis = out.rank();
      out.shape.push_back(in.shape[d]);
    }
  } else {
    const int rank = in.rank() + static_cast<int>(axes.size());
    std::set<int> insert;
    for (int64_t axis : axes) {
      ASSIGN_OR_RETURN(int a, onnx_import::NormalizeAxis(axis, rank, node));
      if (!insert.insert(a).second) return NodeError(node, "axes repeat an axis");
    }
    int src = 0;
    for (int d = 0; d < rank; ++d) {
      if (insert.count(d)) {
        out.shape.push_back(1);
        continue;
      }
      if (src == in.time_axis) out.time_axis = d;
      if (src == in.batch_axis) out.batch_axis = d;
      out.shape.push_back(in.shape[src++]);
    }
  }
  streams_[node.outputs[0]] = out;
  return absl::OkStatus();
}

absl::Status Builder::Flatten(const ir::Node& node, const Stream& in) {
  ASSIGN_OR_RETURN(int axis,
                   onnx_import::NormalizeAxis(node.IntAttr("axis", 1), in.rank() + 1, node));
  std::vector<int64_t> target(2, 1);
  int group_of_time = in.time_axis < axis ? 0 : 1;
  for (int d = 0; d < in.rank(); ++d) {
    if (d == in.time_axis) continue;
    const int group = d < axis ? 0 : 1;
    if (group == group_of_time && in.shape[d] != 1) {
      return NodeError(node, "Flatten merges the time axis with feature axes");
    }
    target[group] *= in.shape[d];
  }
  target[group_of_time] = kSymbolicTime;
  return Reshape(node, in, target);
}

absl::Status Builder::Pad(const ir::Node& node, const Stream& in) {
  const std::string mode = node.StringAttr("mode", "constant");
  if (mode != "constant") {
    return Unsupported(node, absl::StrCat("Pad mode '", mode, "' (only constant zeros stream)"));
  }
  std::vector<int64_t> pads = node.IntsAttr("pads");
  float value = node.FloatAttr("value", 0.f);
  if (graph_.opset >= 11) {
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, 1, "pads"));
    pads = t->AsInts();
    if (!node.Input(2).empty()) {
      ASSIGN_OR_RETURN(const ir::Tensor* v, RequireConst(node, 2, "constant_value"));
      if (v->NumElements() > 0) value = static_cast<float>(v->AsDouble(0));
    }
  }
  std::vector<int> axes;
  if (!node.Input(3).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, 3, "axes"));
    for (int64_t a : t->AsInts()) {
      ASSIGN_OR_RETURN(int axis, onnx_import::NormalizeAxis(a, in.rank(), node));
      axes.push_back(axis);
    }
  } else {
    for (int d = 0; d < in.rank(); ++d) axes.push_back(d);
  }
  if (pads.size() != 2 * axes.size()) return NodeError(node, "pads has the wrong length");
  if (value != 0.f) return Unsupported(node, "Pad with a non-zero constant");
  Stream out = in;
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t left = pads[i];
    const int64_t right = pads[i + axes.size()];
    if (left == 0 && right == 0) continue;
    if (left < 0 || right < 0) return Unsupported(node, "negative Pad (cropping)");
    if (left > kMaxTimeSpan || right > kMaxTimeSpan) {
      return absl::ResourceExhaustedError(
          absl::StrCat("node ", node.name, " (Pad): pads past the limit of ", kMaxTimeSpan));
    }
    if (axes[i] != in.time_axis) return Unsupported(node, "Pad along a feature axis");
    out.pending_left_pad += left;
    out.pad_node = node.name;
    if (right > 0) {
      out.extra += right;
      out.right_pad_nodes.push_back(node.name);
    }
  }
  streams_[node.outputs[0]] = out;
  return absl::OkStatus();
}

absl::Status Builder::Slice(const ir::Node& node, const Stream& in) {
  std::vector<int64_t> starts, ends, axes, steps;
  if (graph_.opset < 10) {
    starts = node.IntsAttr("starts");
    ends = node.IntsAttr("ends");
    axes = node.IntsAttr("axes");
  } else {
    ASSIGN_OR_RETURN(const ir::Tensor* s, RequireConst(node, 1, "starts"));
    ASSIGN_OR_RETURN(const ir::Tensor* e, RequireConst(node, 2, "ends"));
    starts = s->AsInts();
    ends = e->AsInts();
    if (!node.Input(3).empty()) {
      ASSIGN_OR_RETURN(const ir::Tensor* a, RequireConst(node, 3, "axes"));
      axes = a->AsInts();
    }
    if (!node.Input(4).empty()) {
      ASSIGN_OR_RETURN(const ir::Tensor* st, RequireConst(node, 4, "steps"));
      steps = st->AsInts();
    }
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (starts.size() != ends.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return NodeError(node, "starts/ends/axes/steps lengths differ");
  }
  constexpr int64_t kOpenEnd = int64_t{1} << 30;
  Stream cur = in;
  for (size_t i = 0; i < axes.size(); ++i) {
    ASSIGN_OR_RETURN(int axis, onnx_import::NormalizeAxis(axes[i], in.rank(), node));
    if (axis == cur.time_axis) {
      if (steps[i] != 1) return NodeError(node, "Slice with a stride along time cannot stream");
      if (starts[i] < 0) {
        return NodeError(node, "Slice start along time counts from the end of the sequence");
      }
      if (cur.pending_left_pad != 0) return NodeError(node, "Slice after a Pad along time");
      if (starts[i] > kMaxTimeSpan) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "node ", node.name, " (Slice): starts ", starts[i], " frames late, past the limit"));
      }
      cur.lag += starts[i];
      if (ends[i] < 0) {
        if (ends[i] < -cur.extra) {  // Compared this way round: -ends[i] may overflow.
          return NodeError(
              node, absl::StrCat("Slice drops the last ", -ends[i], " steps, but only ", cur.extra,
                                 " of them come from right padding; the rest are "
                                 "real outputs a stream cannot hold back"));
        }
        cur.extra += ends[i];
        if (cur.extra == 0) cur.right_pad_nodes.clear();
      } else if (ends[i] < kOpenEnd) {
        return NodeError(node,
                         "Slice keeps a fixed number of time steps (needs the whole sequence)");
      }
      continue;
    }
    const int64_t dim = cur.shape[axis];
    int64_t start = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t end = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (steps[i] <= 0) return Unsupported(node, "Slice with a negative step along a feature axis");
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    SliceOp slice;
    ASSIGN_OR_RETURN(slice.shape, ViewAround(node, cur, axis, axis));
    slice.start = start;
    slice.step = steps[i];
    slice.count = end > start ? (end - start - 1) / steps[i] + 1 : 0;  // No overflow.
    if (slice.start == 0 && slice.count == dim) continue;
    Stream out = cur;
    out.shape[axis] = slice.count;
    cur = Emit(node, {&cur}, slice, out);
  }
  streams_[node.outputs[0]] = cur;
  return absl::OkStatus();
}

absl::Status Builder::Split(const ir::Node& node, const Stream& in) {
  ASSIGN_OR_RETURN(int axis, onnx_import::NormalizeAxis(node.IntAttr("axis", 0), in.rank(), node));
  if (axis == in.time_axis) return NodeError(node, "Split along time needs the whole sequence");
  std::vector<int64_t> sizes = node.IntsAttr("split");
  if (!node.Input(1).empty()) {
    ASSIGN_OR_RETURN(const ir::Tensor* t, RequireConst(node, 1, "split"));
    sizes = t->AsInts();
  }
  const int64_t parts = static_cast<int64_t>(node.outputs.size());
  if (sizes.empty()) sizes.assign(parts, (in.shape[axis] + parts - 1) / parts);
  if (static_cast<int64_t>(sizes.size()) != parts) return NodeError(node, "split sizes mismatch");
  for (int64_t size : sizes) {
    if (size < 0 || size > in.shape[axis]) {
      return NodeError(node, absl::StrCat("split size ", size, " of a dim of ", in.shape[axis]));
    }
  }
  int64_t start = 0;
  for (int64_t i = 0; i < parts; ++i) {
    SliceOp slice;
    ASSIGN_OR_RETURN(slice.shape, ViewAround(node, in, axis, axis));
    slice.start = start;
    slice.count = std::max<int64_t>(0, std::min(sizes[i], in.shape[axis] - start));
    start += sizes[i];
    Stream out = in;
    out.shape[axis] = slice.count;
    ir::Node part = node;
    part.outputs = {node.outputs[i]};
    streams_[node.outputs[i]] = Emit(part, {&in}, slice, out);
  }
  return absl::OkStatus();
}

absl::Status Builder::Concat(const ir::Node& node) {
  std::vector<const Stream*> ins;
  for (const std::string& name : node.inputs) {
    const Stream* s = StreamOf(name);
    if (s == nullptr) return Unsupported(node, "Concat of a streamed tensor with a constant");
    ins.push_back(s);
  }
  const Stream& first = *ins[0];
  ASSIGN_OR_RETURN(int axis,
                   onnx_import::NormalizeAxis(node.IntAttr("axis", 0), first.rank(), node));
  if (axis == first.time_axis) return NodeError(node, "Concat along time needs the whole sequence");
  ConcatOp concat;
  Stream out = first;
  out.shape[axis] = 0;
  for (const Stream* s : ins) {
    RETURN_IF_ERROR(RequireAligned(node, first, *s));
    if (s->rank() != first.rank() || s->time_axis != first.time_axis) {
      return NodeError(node, "inputs differ in rank or time axis");
    }
    ASSIGN_OR_RETURN(AxisShape view, ViewAround(node, *s, axis, s->rank() - 1));
    if (concat.parts.empty()) concat.outer = view.outer;
    if (view.outer != concat.outer) return NodeError(node, "inputs differ outside the axis");
    concat.parts.push_back(view.axis * view.inner);
    out.shape[axis] += s->shape[axis];
  }
  streams_[node.outputs[0]] = Emit(node, ins, concat, out);
  return absl::OkStatus();
}

absl::Status Builder::VisitConstant(const ir::Node& node) {
  std::vector<const ir::Tensor*> inputs;
  for (const std::string& name : node.inputs) {
    if (name.empty()) {
      inputs.push_back(nullptr);
      continue;
    }
    auto poisoned = poisoned_.find(name);
    if (poisoned != poisoned_.end()) {
      for (const std::string& out : node.outputs) poisoned_[out] = poisoned->second;
      return absl::OkStatus();
    }
    const ir::Tensor* t = Const(name);
    if (t == nullptr) return NodeError(node, absl::StrCat("input '", name, "' is undefined"));
    inputs.push_back(t);
  }
  if (!onnx_import::IsFoldable(node.op_type)) {
    return Unsupported(node, absl::StrCat("unsupported op ", node.op_type, " on constant inputs"));
  }
  auto result = onnx_import::EvaluateConstant(node, inputs, graph_.opset, fold_budget_);
  if (result.ok()) {
    // Folding may amplify a small model into huge constants: it has a budget.
    for (const ir::Tensor& t : *result) fold_budget_ -= t.NumElements();
    if (fold_budget_ < 0) {
      result = absl::ResourceExhaustedError(
          absl::StrCat("node ", node.name, " (", node.op_type,
                       "): constant folding would create more elements than the limit"));
    }
  }
  if (!result.ok()) {
    // Keep going: the value may never reach anything that needs it.
    const absl::StatusCode code = result.status().code() == absl::StatusCode::kResourceExhausted
                                      ? absl::StatusCode::kResourceExhausted
                                      : absl::StatusCode::kInvalidArgument;
    for (const std::string& out : node.outputs) {
      poisoned_[out] = absl::Status(code, result.status().message());
    }
    return absl::OkStatus();
  }
  for (size_t i = 0; i < node.outputs.size() && i < result->size(); ++i) {
    consts_[node.outputs[i]] = std::move((*result)[i]);
  }
  return absl::OkStatus();
}

absl::Status Builder::Visit(const ir::Node& node) {
  if (node.outputs.empty()) return NodeError(node, "the node has no outputs");
  const Stream* in = nullptr;
  for (const std::string& name : node.inputs) {
    if (const Stream* s = StreamOf(name)) {
      in = s;
      break;
    }
  }
  if (in == nullptr) return VisitConstant(node);
  const Stream x = *in;  // Copy: handlers insert into streams_.
  const std::string& op = node.op_type;
  if (StreamOf(node.Input(0)) == nullptr && op != "MatMul" && ir::ParseBinary(op) == std::nullopt &&
      op != "Concat") {
    return Unsupported(node, "streamed tensor in a position that must be constant");
  }
  if (op == "Shape") {
    std::vector<int64_t> dims = x.shape;
    int64_t start = node.IntAttr("start", 0), end = node.IntAttr("end", x.rank());
    if (start < 0) start += x.rank();
    if (end < 0) end += x.rank();
    start = std::clamp<int64_t>(start, 0, x.rank());
    end = std::clamp<int64_t>(end, start, x.rank());
    std::vector<int64_t> part(dims.begin() + start, dims.begin() + end);
    consts_[node.outputs[0]] = ir::Tensor::Int64({static_cast<int64_t>(part.size())}, part);
    return absl::OkStatus();
  }
  if (op == "Identity" || op == "Dropout") return Alias(node, x);
  if (op == "Cast") {
    const int64_t to = node.IntAttr("to", 1);
    if (to != 1) return Unsupported(node, "Cast of a streamed tensor to a non-float type");
    return Alias(node, x);
  }
  if (op == "Transpose") return Transpose(node, x);
  if (op == "Reshape") {
    ASSIGN_OR_RETURN(const ir::Tensor* shape, RequireConst(node, 1, "shape"));
    return Reshape(node, x, shape->AsInts());
  }
  if (op == "Squeeze" || op == "Unsqueeze") return SqueezeUnsqueeze(node, x);
  if (op == "Flatten") return Flatten(node, x);
  if (op == "Pad") return Pad(node, x);
  if (op == "Slice") return Slice(node, x);
  if (op == "Split") return Split(node, x);
  if (op == "Concat") return Concat(node);
  if (op == "Conv") return Conv(node, x);
  if (op == "BatchNormalization") return BatchNorm(node, x);
  if (op == "MatMul") return MatMul(node);
  if (op == "Gemm") return Gemm(node, x);
  if (op.rfind("Reduce", 0) == 0) return Reduce(node, x);
  if (op == "Softmax" || op == "LogSoftmax") return Softmax(node, x);
  if (op == "LayerNormalization") return LayerNorm(node, x);
  if (op == "LSTM" || op == "GRU") return Rnn(node, x);
  if (auto unary = ir::ParseUnary(op)) return Unary(node, x, *unary);
  if (auto binary = ir::ParseBinary(op)) return Binary(node, *binary);
  static const auto* over_time = new std::set<std::string>{"InstanceNormalization",
                                                           "GlobalAveragePool",
                                                           "GlobalMaxPool",
                                                           "GlobalLpPool",
                                                           "MeanVarianceNormalization",
                                                           "GroupNormalization",
                                                           "AveragePool",
                                                           "MaxPool",
                                                           "LpPool",
                                                           "CumSum"};
  if (over_time->count(op)) {
    return NodeError(node, absl::StrCat(op,
                                        " pools or normalises over time (needs the whole "
                                        "sequence)"));
  }
  return Unsupported(node, absl::StrCat("unsupported op ", op));
}

absl::StatusOr<Program> Builder::Build(int time_axis) {
  if (graph_.inputs.size() != 1) {
    return absl::UnimplementedError(absl::StrCat("the model has ", graph_.inputs.size(),
                                                 " inputs; sluice streams models with one input"));
  }
  int64_t weights = 0;
  for (const auto& [name, tensor] : graph_.initializers) weights += tensor.NumElements();
  fold_budget_ = std::max<int64_t>(int64_t{1} << 22, 4 * weights);
  for (const ir::Node& node : graph_.nodes) {
    for (const std::string& name : node.inputs) ++use_count_[name];
  }
  for (const ir::ValueInfo& output : graph_.outputs) ++use_count_[output.name];

  const ir::ValueInfo& input = graph_.inputs[0];
  if (!input.is_float32) {
    return absl::InvalidArgumentError(absl::StrCat("input ", input.name, " has element type ",
                                                   input.elem_type_name, "; float32 is required"));
  }
  const int rank = static_cast<int>(input.dims.size());
  if (time_axis < 0 || time_axis >= rank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time axis ", time_axis, " is out of range for input ", input.name, " of rank ", rank));
  }
  Stream in;
  in.time_axis = time_axis;
  for (int d = 0; d < rank; ++d) {
    if (d == time_axis) {
      in.shape.push_back(kSymbolicTime);
    } else if (input.dims[d] == ir::kUnknownDim) {
      in.shape.push_back(1);  // A session streams batch 1.
      if (in.batch_axis < 0) in.batch_axis = d;
    } else {
      in.shape.push_back(input.dims[d]);
    }
  }
  if (in.batch_axis < 0 && rank >= 2) {
    const int first = time_axis == 0 ? 1 : 0;
    if (in.shape[first] == 1) in.batch_axis = first;
  }
  ir::Node input_node;
  input_node.name = input.name;
  input_node.op_type = "input";
  RETURN_IF_ERROR(CheckFrameShape(input_node, in.shape, in.time_axis));
  in.value = NewValue(input.name, in.FrameSize());
  streams_[input.name] = in;
  program_.input_value = in.value;
  program_.state_bytes = sizeof(int64_t);  // The step counter.

  size_t counted_values = 0;
  int64_t frame_elements = 0;
  for (const ir::Node& node : graph_.nodes) {
    RETURN_IF_ERROR(Visit(node));
    for (const std::string& name : node.outputs) {
      if (const Stream* s = StreamOf(name)) RETURN_IF_ERROR(CheckStream(node, *s));
    }
    for (; counted_values < program_.values.size(); ++counted_values) {
      frame_elements +=
          std::clamp<int64_t>(program_.values[counted_values].size, 0, kMaxFrameElements + 1);
    }
    if (frame_elements > kMaxProgramFrameElements) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "node ", node.name, " (", node.op_type, "): the frames of all values hold more than ",
          kMaxProgramFrameElements, " floats per session, the limit"));
    }
    ++visited_;
  }

  auto spec_of = [&](const std::string& name, const Stream& s,
                     const std::vector<std::string>& dim_params) {
    StreamSpec spec;
    spec.name = name;
    spec.time_axis = s.time_axis;
    spec.batch_axis = s.batch_axis;
    const std::string batch_param =
        in.batch_axis >= 0 ? input.dim_params[in.batch_axis] : std::string();
    for (int d = 0; d < s.rank(); ++d) {
      spec.offline_shape.push_back(d == s.time_axis ? -1 : s.shape[d]);
      if (spec.batch_axis < 0 && d != s.time_axis && !batch_param.empty() &&
          d < static_cast<int>(dim_params.size()) && dim_params[d] == batch_param) {
        spec.batch_axis = d;
      }
    }
    spec.frame_shape = s.FrameShape();
    spec.frame_size = s.FrameSize();
    return spec;
  };
  program_.input = spec_of(input.name, in, input.dim_params);

  for (const ir::ValueInfo& output : graph_.outputs) {
    const Stream* s = StreamOf(output.name);
    if (s == nullptr) {
      auto poisoned = poisoned_.find(output.name);
      if (poisoned != poisoned_.end()) return poisoned->second;
      return absl::UnimplementedError(absl::StrCat(
          "output ", output.name, " does not depend on the input (a constant output)"));
    }
    if (s->extra > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node ", absl::StrJoin(s->right_pad_nodes, ", "),
          ": right padding is not chomped "
          "away: the last ",
          s->extra, " steps of output ", output.name,
          " depend on inputs after them (the future); slice them off or pad on the left only"));
    }
    if (s->pending_left_pad != 0) {
      return absl::UnimplementedError(
          absl::StrCat("node ", s->pad_node, ": Pad along time must feed a Conv"));
    }
    if (!program_.outputs.empty() && s->lag != program_.warmup_frames) {
      return absl::UnimplementedError(absl::StrCat("outputs have different warm-up lengths (",
                                                   program_.warmup_frames, " and ", s->lag,
                                                   " frames)"));
    }
    program_.warmup_frames = s->lag;
    program_.output_values.push_back(s->value);
    program_.outputs.push_back(spec_of(output.name, *s, output.dim_params));
  }
  program_.state_bytes = (program_.state_bytes + 63) / 64 * 64;
  return std::move(program_);
}

}  // namespace internal

absl::StatusOr<Program> BuildProgram(const ir::Graph& graph, const TransformOptions& options) {
  if (graph.inputs.size() != 1) {
    return absl::UnimplementedError(absl::StrCat("the model has ", graph.inputs.size(),
                                                 " inputs; sluice streams models with one input"));
  }
  if (options.time_axis) return internal::Builder(graph).Build(*options.time_axis);
  const ir::ValueInfo& input = graph.inputs[0];
  std::vector<int> candidates;
  for (size_t d = 0; d < input.dims.size(); ++d) {
    if (input.dims[d] == ir::kUnknownDim) candidates.push_back(static_cast<int>(d));
  }
  if (candidates.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("input ", input.name,
                     " has no symbolic dim, so its time axis is unknown; export with a "
                     "dynamic time axis or set time_axis in the model config"));
  }
  if (candidates.size() == 1) return internal::Builder(graph).Build(candidates[0]);
  // Several symbolic dims (batch and time): the time axis is the one the model streams over.
  std::vector<int> successes;
  absl::StatusOr<Program> chosen = absl::UnknownError("no candidate");
  absl::Status furthest_error;
  int furthest = -1;
  for (int axis : candidates) {
    internal::Builder builder(graph);
    auto program = builder.Build(axis);
    if (program.ok()) {
      successes.push_back(axis);
      chosen = std::move(program);
    } else if (builder.visited() > furthest) {
      furthest = builder.visited();
      furthest_error = program.status();
    }
  }
  if (successes.size() == 1) return chosen;
  if (successes.empty()) return furthest_error;
  return absl::InvalidArgumentError(
      absl::StrCat("input ", input.name, " could stream over any of axes ",
                   absl::StrJoin(successes, ", "), "; set time_axis in the model config"));
}

absl::StatusOr<Program> LoadProgram(const std::string& onnx_path, const TransformOptions& options) {
  ASSIGN_OR_RETURN(ir::Graph graph, onnx_import::ImportModelFile(onnx_path));
  return BuildProgram(graph, options);
}

}  // namespace sluice::streaming
