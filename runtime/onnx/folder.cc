#include "runtime/onnx/folder.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "runtime/common/status_macros.h"
#include "runtime/ir/elementwise.h"

namespace sluice::onnx_import {
namespace {

using ir::Tensor;
using Inputs = std::vector<const Tensor*>;
using Result = absl::StatusOr<std::vector<Tensor>>;

absl::Status Error(const ir::Node& node, const std::string& message) {
  return absl::InvalidArgumentError(
      absl::StrCat("node ", node.name, " (", node.op_type, "): ", message));
}

absl::Status NeedsInputs(const ir::Node& node, const Inputs& in, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (i >= in.size() || in[i] == nullptr) {
      return Error(node, absl::StrCat("input ", i, " is missing"));
    }
  }
  return absl::OkStatus();
}

absl::Status NoSymbolic(const ir::Node& node, const Inputs& in) {
  for (const Tensor* t : in) {
    if (t != nullptr && t->ContainsSymbolicTime()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "node ", node.name, " (", node.op_type,
          "): computes with the sequence length, which a streaming program does not know"));
    }
  }
  return absl::OkStatus();
}

// Copies element `src_index` of `src` into element `dst_index` of `dst` (same dtype).
void CopyElement(const Tensor& src, int64_t src_index, Tensor* dst, int64_t dst_index) {
  if (src.is_float()) {
    dst->f32[dst_index] = src.f32[src_index];
  } else {
    dst->i64[dst_index] = src.i64[src_index];
  }
}

// The most elements a result of the node being evaluated may hold: EvaluateConstant's
// max_result_elements for the duration of the call (one thread folds one node at a time).
thread_local int64_t result_limit = ir::kMaxTensorElements;

// A zeroed result tensor. Result shapes come from the model's own values (Expand,
// ConstantOfShape, Range...), so they are checked before anything is allocated.
absl::StatusOr<Tensor> EmptyLike(const ir::Node& node, ir::DataType dtype,
                                 std::vector<int64_t> shape) {
  for (int64_t d : shape) {
    if (d < 0)
      return Error(node,
                   absl::StrCat("result shape ", ir::ShapeToString(shape), " has a negative dim"));
  }
  const std::optional<int64_t> count = ir::CheckedNumElements(shape, result_limit);
  if (!count) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "node ", node.name, " (", node.op_type, "): result shape ", ir::ShapeToString(shape),
        " has more than ", result_limit, " elements, the limit"));
  }
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  if (t.is_float()) {
    t.f32.resize(*count);
  } else {
    t.i64.resize(*count);
  }
  return t;
}

// Every tensor of `in` (present ones) holds at least one element.
absl::Status NeedsScalars(const ir::Node& node, const Inputs& in, size_t first) {
  for (size_t i = first; i < in.size(); ++i) {
    if (in[i] != nullptr && in[i]->NumElements() < 1) {
      return Error(node, absl::StrCat("input ", i, " is empty"));
    }
  }
  return absl::OkStatus();
}

// Offset of output index `flat` into an input broadcast to `out_shape`.
int64_t BroadcastOffset(int64_t flat, const std::vector<int64_t>& out_shape,
                        const std::vector<int64_t>& in_shape) {
  int64_t offset = 0;
  int64_t in_stride = 1;
  for (int d = static_cast<int>(out_shape.size()) - 1, e = static_cast<int>(in_shape.size()) - 1;
       d >= 0; --d, --e) {
    const int64_t coord = flat % out_shape[d];
    flat /= out_shape[d];
    if (e >= 0) {
      if (in_shape[e] != 1) offset += coord * in_stride;
      in_stride *= in_shape[e];
    }
  }
  return offset;
}

// Elementwise op over numpy-broadcast inputs. Float if any input is float.
Result Elementwise(const ir::Node& node, const Inputs& in,
                   const std::function<double(const std::vector<double>&)>& fn,
                   bool force_int_result = false) {
  RETURN_IF_ERROR(NoSymbolic(node, in));
  std::vector<int64_t> shape;
  bool any_float = false;
  for (const Tensor* t : in) {
    if (t == nullptr) return Error(node, "missing input");
    std::vector<int64_t> next;
    if (!ir::BroadcastShapes(shape, t->shape, &next)) {
      return Error(node, absl::StrCat("shapes ", ir::ShapeToString(shape), " and ",
                                      ir::ShapeToString(t->shape), " do not broadcast"));
    }
    shape = next;
    any_float |= t->is_float();
  }
  const bool is_float = any_float && !force_int_result;
  ASSIGN_OR_RETURN(
      Tensor out, EmptyLike(node, is_float ? ir::DataType::kFloat32 : ir::DataType::kInt64, shape));
  std::vector<double> args(in.size());
  for (int64_t i = 0, n = out.NumElements(); i < n; ++i) {
    for (size_t j = 0; j < in.size(); ++j) {
      args[j] = in[j]->AsDouble(BroadcastOffset(i, shape, in[j]->shape));
    }
    const double v = fn(args);
    if (is_float) {
      out.f32[i] = static_cast<float>(v);
    } else {
      out.i64[i] = ir::SaturatingToInt64(v);
    }
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Unary(const ir::Node& node, const Inputs& in, ir::UnaryKind kind) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  ir::UnaryParams params;
  params.alpha = node.FloatAttr("alpha", kind == ir::UnaryKind::kLeakyRelu ? 0.01f : 1.f);
  if (kind == ir::UnaryKind::kHardSigmoid) {
    params.alpha = node.FloatAttr("alpha", 0.2f);
    params.beta = node.FloatAttr("beta", 0.5f);
  }
  if (kind == ir::UnaryKind::kClip) {
    RETURN_IF_ERROR(NeedsScalars(node, in, 1));
    if (in.size() > 1 && in[1] != nullptr) params.lo = in[1]->AsDouble(0);
    if (in.size() > 2 && in[2] != nullptr) params.hi = in[2]->AsDouble(0);
    params.lo = node.FloatAttr("min", params.lo);
    params.hi = node.FloatAttr("max", params.hi);
  }
  if (!in[0]->is_float()) {
    // Integer Neg/Abs/Identity/Clip appear in shape arithmetic.
    return Elementwise(node, {in[0]}, [&](const std::vector<double>& a) {
      return ir::ApplyUnary(kind, params, static_cast<float>(a[0]));
    });
  }
  RETURN_IF_ERROR(NoSymbolic(node, in));
  Tensor out = *in[0];
  for (float& v : out.f32) v = ir::ApplyUnary(kind, params, v);
  return std::vector<Tensor>{std::move(out)};
}

Result Binary(const ir::Node& node, const Inputs& in, ir::BinaryKind kind) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 2));
  const bool integer = !in[0]->is_float() && !in[1]->is_float();
  if (integer && kind == ir::BinaryKind::kDiv &&
      std::find(in[1]->i64.begin(), in[1]->i64.end(), 0) != in[1]->i64.end()) {
    return Error(node, "integer division by zero");
  }
  return Elementwise(node, {in[0], in[1]}, [&](const std::vector<double>& a) -> double {
    if (integer && kind == ir::BinaryKind::kDiv) {
      const int64_t n = ir::SaturatingToInt64(a[0]);
      const int64_t d = ir::SaturatingToInt64(a[1]);
      if (d == -1) return -static_cast<double>(n);  // INT64_MIN / -1 overflows.
      return static_cast<double>(n / d);
    }
    if (integer) {
      switch (kind) {
        case ir::BinaryKind::kAdd:
          return a[0] + a[1];
        case ir::BinaryKind::kSub:
          return a[0] - a[1];
        case ir::BinaryKind::kMul:
          return a[0] * a[1];
        case ir::BinaryKind::kPow:
          return std::pow(a[0], a[1]);
        case ir::BinaryKind::kMin:
          return std::min(a[0], a[1]);
        case ir::BinaryKind::kMax:
          return std::max(a[0], a[1]);
        case ir::BinaryKind::kDiv:
          break;
      }
    }
    return ir::ApplyBinary(kind, static_cast<float>(a[0]), static_cast<float>(a[1]));
  });
}

// Axes of a Reduce*/Squeeze/Unsqueeze node: attribute before opset 13/18, else input 1.
std::vector<int64_t> AxesOf(const ir::Node& node, const Inputs& in) {
  if (node.HasAttr("axes")) return node.IntsAttr("axes");
  if (in.size() > 1 && in[1] != nullptr) return in[1]->AsInts();
  return {};
}

Result Reduce(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  RETURN_IF_ERROR(NoSymbolic(node, in));
  const Tensor& x = *in[0];
  const int rank = x.rank();
  std::vector<int64_t> axes = AxesOf(node, in);
  std::vector<bool> reduced(rank, axes.empty() && node.IntAttr("noop_with_empty_axes", 0) == 0);
  for (int64_t axis : axes) {
    ASSIGN_OR_RETURN(int a, NormalizeAxis(axis, rank, node));
    reduced[a] = true;
  }
  const bool keepdims = node.IntAttr("keepdims", 1) != 0;
  std::vector<int64_t> kept_shape(rank);
  std::vector<int64_t> out_shape;
  for (int d = 0; d < rank; ++d) {
    kept_shape[d] = reduced[d] ? 1 : x.shape[d];
    if (!reduced[d] || keepdims) out_shape.push_back(kept_shape[d]);
  }
  const int64_t out_count = ir::NumElements(kept_shape);
  const std::string& op = node.op_type;
  std::vector<double> acc(out_count, op == "ReduceMax"    ? -INFINITY
                                     : op == "ReduceMin"  ? INFINITY
                                     : op == "ReduceProd" ? 1.0
                                                          : 0.0);
  const std::vector<int64_t> kept_strides = ir::Strides(kept_shape);
  std::vector<int64_t> coord(rank, 0);
  for (int64_t i = 0, n = x.NumElements(); i < n; ++i) {
    int64_t flat = i;
    int64_t o = 0;
    for (int d = rank - 1; d >= 0; --d) {
      coord[d] = flat % x.shape[d];
      flat /= x.shape[d];
      if (!reduced[d]) o += coord[d] * kept_strides[d];
    }
    const double v = x.AsDouble(i);
    if (op == "ReduceSum" || op == "ReduceMean")
      acc[o] += v;
    else if (op == "ReduceSumSquare" || op == "ReduceL2")
      acc[o] += v * v;
    else if (op == "ReduceL1")
      acc[o] += std::fabs(v);
    else if (op == "ReduceMax")
      acc[o] = std::max(acc[o], v);
    else if (op == "ReduceMin")
      acc[o] = std::min(acc[o], v);
    else if (op == "ReduceProd")
      acc[o] *= v;
  }
  const double count = static_cast<double>(x.NumElements()) / std::max<int64_t>(out_count, 1);
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, x.dtype, out_shape));
  for (int64_t o = 0; o < out_count; ++o) {
    double v = acc[o];
    if (op == "ReduceMean") v /= count;
    if (op == "ReduceL2") v = std::sqrt(v);
    if (out.is_float()) {
      out.f32[o] = static_cast<float>(v);
    } else {
      out.i64[o] = ir::SaturatingToInt64(v);
    }
  }
  return std::vector<Tensor>{std::move(out)};
}

bool IsPermutation(const std::vector<int64_t>& perm) {
  std::vector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(perm.size()) || seen[p]) return false;
    seen[p] = true;
  }
  return true;
}

Result Transpose(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  const Tensor& x = *in[0];
  std::vector<int64_t> perm = node.IntsAttr("perm");
  if (perm.empty()) {
    for (int d = x.rank() - 1; d >= 0; --d) perm.push_back(d);
  }
  if (static_cast<int>(perm.size()) != x.rank()) return Error(node, "perm does not match rank");
  if (!IsPermutation(perm)) return Error(node, "perm is not a permutation of the axes");
  std::vector<int64_t> out_shape(x.rank());
  for (int d = 0; d < x.rank(); ++d) out_shape[d] = x.shape[perm[d]];
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, x.dtype, out_shape));
  const std::vector<int64_t> in_strides = ir::Strides(x.shape);
  for (int64_t i = 0, n = out.NumElements(); i < n; ++i) {
    int64_t flat = i;
    int64_t src = 0;
    for (int d = x.rank() - 1; d >= 0; --d) {
      src += (flat % out_shape[d]) * in_strides[perm[d]];
      flat /= out_shape[d];
    }
    CopyElement(x, src, &out, i);
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Gather(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 2));
  const Tensor& data = *in[0];
  const Tensor& indices = *in[1];
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(node.IntAttr("axis", 0), data.rank(), node));
  std::vector<int64_t> out_shape(data.shape.begin(), data.shape.begin() + axis);
  out_shape.insert(out_shape.end(), indices.shape.begin(), indices.shape.end());
  out_shape.insert(out_shape.end(), data.shape.begin() + axis + 1, data.shape.end());
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= data.shape[d];
  for (int d = axis + 1; d < data.rank(); ++d) inner *= data.shape[d];
  const int64_t dim = data.shape[axis];
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, data.dtype, out_shape));
  const std::vector<int64_t> idx = indices.AsInts();
  for (int64_t o = 0; o < outer; ++o) {
    for (size_t j = 0; j < idx.size(); ++j) {
      int64_t k = idx[j] < 0 ? idx[j] + dim : idx[j];
      if (k < 0 || k >= dim) return Error(node, absl::StrCat("index ", idx[j], " out of range"));
      for (int64_t i = 0; i < inner; ++i) {
        CopyElement(data, (o * dim + k) * inner + i, &out, (o * idx.size() + j) * inner + i);
      }
    }
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Concat(const ir::Node& node, const Inputs& in) {
  if (in.empty()) return Error(node, "no inputs");
  RETURN_IF_ERROR(NeedsInputs(node, in, in.size()));
  const int rank = in[0]->rank();
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(node.IntAttr("axis", 0), rank, node));
  std::vector<int64_t> out_shape = in[0]->shape;
  out_shape[axis] = 0;
  bool any_float = false;
  for (const Tensor* t : in) {
    if (t->rank() != rank) return Error(node, "inputs differ in rank");
    for (int d = 0; d < rank; ++d) {
      if (d != axis && t->shape[d] != in[0]->shape[d]) {
        return Error(node, "inputs differ in a dim other than the axis");
      }
    }
    out_shape[axis] += t->shape[axis];
    any_float |= t->is_float();
  }
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= out_shape[d];
  for (int d = axis + 1; d < rank; ++d) inner *= out_shape[d];
  ASSIGN_OR_RETURN(
      Tensor out,
      EmptyLike(node, any_float ? ir::DataType::kFloat32 : ir::DataType::kInt64, out_shape));
  int64_t offset = 0;
  for (const Tensor* t : in) {
    const int64_t chunk = t->shape[axis] * inner;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < chunk; ++i) {
        const int64_t dst = o * out_shape[axis] * inner + offset + i;
        if (out.is_float()) {
          out.f32[dst] = static_cast<float>(t->AsDouble(o * chunk + i));
        } else {
          out.i64[dst] = t->i64[o * chunk + i];
        }
      }
    }
    offset += chunk;
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Reshape(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 2));
  RETURN_IF_ERROR(NoSymbolic(node, {in[1]}));
  std::vector<int64_t> target = in[1]->AsInts();
  const bool allow_zero = node.IntAttr("allowzero", 0) != 0;
  int infer = -1;
  for (size_t d = 0; d < target.size(); ++d) {
    if (target[d] == 0 && !allow_zero) {
      if (d >= in[0]->shape.size()) return Error(node, "0 in shape past the input's rank");
      target[d] = in[0]->shape[d];
    }
    if (target[d] == -1) {
      if (infer >= 0) return Error(node, "shape has more than one -1");
      infer = static_cast<int>(d);
    } else if (target[d] < 0) {
      return Error(node, absl::StrCat("shape has the negative dim ", target[d]));
    }
  }
  if (infer >= 0) {
    target[infer] = 1;
    const std::optional<int64_t> known = ir::CheckedNumElements(target, ir::kMaxTensorElements);
    if (!known) return Error(node, "shape has too many elements");
    target[infer] = *known == 0 ? 0 : in[0]->NumElements() / *known;
  }
  if (ir::NumElements(target) != in[0]->NumElements()) {
    return Error(node, absl::StrCat("cannot reshape ", ir::ShapeToString(in[0]->shape), " to ",
                                    ir::ShapeToString(target)));
  }
  Tensor out = *in[0];
  out.shape = target;
  return std::vector<Tensor>{std::move(out)};
}

Result SqueezeOrUnsqueeze(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  Tensor out = *in[0];
  const std::vector<int64_t> axes = AxesOf(node, in);
  if (node.op_type == "Unsqueeze") {
    const int rank = in[0]->rank() + static_cast<int>(axes.size());
    std::set<int> positions;
    for (int64_t axis : axes) {
      ASSIGN_OR_RETURN(int a, NormalizeAxis(axis, rank, node));
      positions.insert(a);
    }
    if (positions.size() != axes.size()) return Error(node, "axes repeat an axis");
    std::vector<int64_t> shape;
    size_t src = 0;
    for (int d = 0; d < rank; ++d) {
      shape.push_back(positions.count(d) ? 1 : in[0]->shape[src++]);
    }
    out.shape = shape;
  } else {
    std::set<int> positions;
    for (int64_t axis : axes) {
      ASSIGN_OR_RETURN(int a, NormalizeAxis(axis, in[0]->rank(), node));
      positions.insert(a);
    }
    std::vector<int64_t> shape;
    for (int d = 0; d < in[0]->rank(); ++d) {
      const bool drop = axes.empty() ? in[0]->shape[d] == 1 : positions.count(d) > 0;
      // Dropping a dim other than 1 would change the element count under the same data.
      if (drop && in[0]->shape[d] != 1) return Error(node, "squeezes a dim that is not 1");
      if (!drop) shape.push_back(in[0]->shape[d]);
    }
    out.shape = shape;
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Slice(const ir::Node& node, const Inputs& in, int64_t opset) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  const Tensor& x = *in[0];
  std::vector<int64_t> starts, ends, axes, steps;
  if (opset < 10) {
    starts = node.IntsAttr("starts");
    ends = node.IntsAttr("ends");
    axes = node.IntsAttr("axes");
  } else {
    RETURN_IF_ERROR(NeedsInputs(node, in, 3));
    // Slicing by the sequence length is arithmetic on it (e.g. pe[:T]).
    RETURN_IF_ERROR(NoSymbolic(node, Inputs(in.begin() + 1, in.end())));
    starts = in[1]->AsInts();
    ends = in[2]->AsInts();
    if (in.size() > 3 && in[3] != nullptr) axes = in[3]->AsInts();
    if (in.size() > 4 && in[4] != nullptr) steps = in[4]->AsInts();
  }
  if (axes.empty()) {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size()) {
    return Error(node, "starts/ends/axes/steps lengths differ");
  }
  std::vector<int64_t> begin(x.rank(), 0), step(x.rank(), 1), out_shape = x.shape;
  for (size_t i = 0; i < axes.size(); ++i) {
    ASSIGN_OR_RETURN(int a, NormalizeAxis(axes[i], x.rank(), node));
    const int64_t dim = x.shape[a];
    if (steps[i] == 0) return Error(node, "step 0");
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    // Counted without adding the step: a huge step must not overflow.
    if (steps[i] > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      out_shape[a] = e > s ? (e - s - 1) / steps[i] + 1 : 0;
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      const int64_t stride = steps[i] == INT64_MIN ? INT64_MAX : -steps[i];
      out_shape[a] = s > e ? (s - e - 1) / stride + 1 : 0;
    }
    begin[a] = s;
    step[a] = steps[i];
  }
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, x.dtype, out_shape));
  const std::vector<int64_t> strides = ir::Strides(x.shape);
  for (int64_t i = 0, n = out.NumElements(); i < n; ++i) {
    int64_t flat = i;
    int64_t src = 0;
    for (int d = x.rank() - 1; d >= 0; --d) {
      src += (begin[d] + (flat % out_shape[d]) * step[d]) * strides[d];
      flat /= out_shape[d];
    }
    CopyElement(x, src, &out, i);
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Split(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  const Tensor& x = *in[0];
  ASSIGN_OR_RETURN(int axis, NormalizeAxis(node.IntAttr("axis", 0), x.rank(), node));
  std::vector<int64_t> sizes = node.IntsAttr("split");
  if (in.size() > 1 && in[1] != nullptr) {
    RETURN_IF_ERROR(NoSymbolic(node, {in[1]}));
    sizes = in[1]->AsInts();
  }
  const int64_t parts = static_cast<int64_t>(node.outputs.size());
  if (parts == 0) return Error(node, "no outputs");
  if (sizes.empty()) sizes.assign(parts, (x.shape[axis] + parts - 1) / parts);
  for (int64_t size : sizes) {
    if (size < 0 || size > x.shape[axis]) return Error(node, absl::StrCat("split size ", size));
  }
  std::vector<Tensor> outs;
  int64_t start = 0;
  for (int64_t size : sizes) {
    Tensor s = Tensor::Int64({1}, {start});
    Tensor e = Tensor::Int64({1}, {start + size});
    Tensor a = Tensor::Int64({1}, {axis});
    ir::Node slice = node;
    slice.op_type = "Slice";
    ASSIGN_OR_RETURN(auto piece, Slice(slice, {&x, &s, &e, &a}, 13));
    outs.push_back(std::move(piece[0]));
    start += size;
  }
  return outs;
}

Result Range(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 3));
  RETURN_IF_ERROR(NoSymbolic(node, in));
  RETURN_IF_ERROR(NeedsScalars(node, in, 0));
  const double start = in[0]->AsDouble(0), limit = in[1]->AsDouble(0), delta = in[2]->AsDouble(0);
  if (delta == 0) return Error(node, "delta 0");
  // Saturates NaN and infinities; EmptyLike bounds the count.
  const int64_t n = std::max<int64_t>(0, ir::SaturatingToInt64(std::ceil((limit - start) / delta)));
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, in[0]->dtype, {n}));
  for (int64_t i = 0; i < n; ++i) {
    if (out.is_float()) {
      out.f32[i] = static_cast<float>(start + i * delta);
    } else {
      out.i64[i] = ir::SaturatingToInt64(start + i * delta);
    }
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Expand(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 2));
  RETURN_IF_ERROR(NoSymbolic(node, {in[1]}));
  std::vector<int64_t> shape;
  if (!ir::BroadcastShapes(in[0]->shape, in[1]->AsInts(), &shape)) {
    return Error(node, "shape does not broadcast");
  }
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, in[0]->dtype, shape));
  for (int64_t i = 0, n = out.NumElements(); i < n; ++i) {
    CopyElement(*in[0], BroadcastOffset(i, shape, in[0]->shape), &out, i);
  }
  return std::vector<Tensor>{std::move(out)};
}

// The tensor attribute `key`; an attribute of another kind (an int named "value") has no tensor.
absl::StatusOr<const Tensor*> TensorAttr(const ir::Node& node, const std::string& key) {
  const ir::Attribute& attr = node.attributes.at(key);
  if (attr.kind != ir::Attribute::Kind::kTensor) {
    return Error(node, absl::StrCat("attribute ", key, " is not a tensor"));
  }
  return &attr.t;
}

Result ConstantOfShape(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  RETURN_IF_ERROR(NoSymbolic(node, in));
  Tensor value = Tensor::ScalarFloat(0.f);
  if (node.HasAttr("value")) {
    ASSIGN_OR_RETURN(const Tensor* attr, TensorAttr(node, "value"));
    value = *attr;
  }
  if (value.NumElements() != 1) return Error(node, "value must hold one element");
  ASSIGN_OR_RETURN(Tensor out, EmptyLike(node, value.dtype, in[0]->AsInts()));
  for (int64_t i = 0, n = out.NumElements(); i < n; ++i) CopyElement(value, 0, &out, i);
  return std::vector<Tensor>{std::move(out)};
}

Result Constant(const ir::Node& node) {
  if (node.HasAttr("value")) {
    ASSIGN_OR_RETURN(const Tensor* value, TensorAttr(node, "value"));
    return std::vector<Tensor>{*value};
  }
  if (node.HasAttr("value_float")) {
    return std::vector<Tensor>{Tensor::ScalarFloat(node.FloatAttr("value_float", 0))};
  }
  if (node.HasAttr("value_floats")) {
    const auto& v = node.attributes.at("value_floats").floats;
    return std::vector<Tensor>{Tensor::Float({static_cast<int64_t>(v.size())}, v)};
  }
  if (node.HasAttr("value_int")) {
    return std::vector<Tensor>{Tensor::Int64({}, {node.IntAttr("value_int", 0)})};
  }
  if (node.HasAttr("value_ints")) {
    const auto v = node.IntsAttr("value_ints");
    return std::vector<Tensor>{Tensor::Int64({static_cast<int64_t>(v.size())}, v)};
  }
  return Error(node, "Constant without a supported value attribute");
}

Result Cast(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 1));
  const int64_t to = node.IntAttr("to", 1);
  const bool to_float = to == 1 || to == 10 || to == 11 || to == 16;
  Tensor out = *in[0];
  if (to_float && !out.is_float()) {
    RETURN_IF_ERROR(NoSymbolic(node, in));
    ASSIGN_OR_RETURN(out, EmptyLike(node, ir::DataType::kFloat32, in[0]->shape));
    for (int64_t i = 0, n = out.NumElements(); i < n; ++i)
      out.f32[i] = static_cast<float>(in[0]->i64[i]);
  } else if (!to_float && out.is_float()) {
    ASSIGN_OR_RETURN(out, EmptyLike(node, ir::DataType::kInt64, in[0]->shape));
    for (int64_t i = 0, n = out.NumElements(); i < n; ++i) {
      out.i64[i] = to == 9 ? (in[0]->f32[i] != 0.f) : ir::SaturatingToInt64(in[0]->f32[i]);
    }
  }
  return std::vector<Tensor>{std::move(out)};
}

Result Where(const ir::Node& node, const Inputs& in) {
  RETURN_IF_ERROR(NeedsInputs(node, in, 3));
  return Elementwise(
      node, {in[0], in[1], in[2]},
      [](const std::vector<double>& a) { return a[0] != 0 ? a[1] : a[2]; },
      !in[1]->is_float() && !in[2]->is_float());
}

Result Compare(const ir::Node& node, const Inputs& in) {
  const std::string& op = node.op_type;
  if (op == "Not") {
    RETURN_IF_ERROR(NeedsInputs(node, in, 1));
    return Elementwise(
        node, {in[0]}, [](const std::vector<double>& a) { return a[0] == 0; }, true);
  }
  RETURN_IF_ERROR(NeedsInputs(node, in, 2));
  return Elementwise(
      node, {in[0], in[1]},
      [&op](const std::vector<double>& a) -> double {
        if (op == "Equal") return a[0] == a[1];
        if (op == "Less") return a[0] < a[1];
        if (op == "LessOrEqual") return a[0] <= a[1];
        if (op == "Greater") return a[0] > a[1];
        if (op == "GreaterOrEqual") return a[0] >= a[1];
        if (op == "And") return a[0] != 0 && a[1] != 0;
        if (op == "Or") return a[0] != 0 || a[1] != 0;
        return 0;
      },
      true);
}

const std::set<std::string>& StructuralOps() {
  static const auto* ops = new std::set<std::string>{"Constant",
                                                     "Identity",
                                                     "Dropout",
                                                     "Cast",
                                                     "Shape",
                                                     "Size",
                                                     "Gather",
                                                     "Unsqueeze",
                                                     "Squeeze",
                                                     "Concat",
                                                     "Reshape",
                                                     "Flatten",
                                                     "Slice",
                                                     "Split",
                                                     "Range",
                                                     "Expand",
                                                     "ConstantOfShape",
                                                     "Transpose",
                                                     "ReduceSum",
                                                     "ReduceMean",
                                                     "ReduceL2",
                                                     "ReduceL1",
                                                     "ReduceMax",
                                                     "ReduceMin",
                                                     "ReduceProd",
                                                     "ReduceSumSquare",
                                                     "Where",
                                                     "Equal",
                                                     "Less",
                                                     "LessOrEqual",
                                                     "Greater",
                                                     "GreaterOrEqual",
                                                     "Not",
                                                     "And",
                                                     "Or"};
  return *ops;
}

}  // namespace

absl::StatusOr<int> NormalizeAxis(int64_t axis, int rank, const ir::Node& node) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) {
    return Error(node, absl::StrCat("axis ", axis, " is out of range for rank ", rank));
  }
  return static_cast<int>(a);
}

bool IsFoldable(const std::string& op_type) {
  return StructuralOps().count(op_type) > 0 || ir::ParseUnary(op_type).has_value() ||
         ir::ParseBinary(op_type).has_value();
}

namespace {

absl::StatusOr<std::vector<Tensor>> Evaluate(const ir::Node& node, const Inputs& in,
                                             int64_t opset) {
  const std::string& op = node.op_type;
  if (op == "Constant") return Constant(node);
  if (op == "Identity" || op == "Dropout") {
    RETURN_IF_ERROR(NeedsInputs(node, in, 1));
    std::vector<Tensor> outs{*in[0]};
    if (node.outputs.size() > 1) {
      outs.push_back(Tensor::Int64(in[0]->shape, std::vector<int64_t>(in[0]->NumElements(), 1)));
    }
    return outs;
  }
  if (op == "Shape") {
    RETURN_IF_ERROR(NeedsInputs(node, in, 1));
    return std::vector<Tensor>{Tensor::Int64({static_cast<int64_t>(in[0]->rank())}, in[0]->shape)};
  }
  if (op == "Size") {
    RETURN_IF_ERROR(NeedsInputs(node, in, 1));
    return std::vector<Tensor>{Tensor::Int64({}, {in[0]->NumElements()})};
  }
  if (op == "Flatten") {
    RETURN_IF_ERROR(NeedsInputs(node, in, 1));
    ASSIGN_OR_RETURN(int axis, NormalizeAxis(node.IntAttr("axis", 1), in[0]->rank() + 1, node));
    Tensor out = *in[0];
    int64_t outer = 1;
    for (int d = 0; d < axis; ++d) outer *= in[0]->shape[d];
    out.shape = {outer, in[0]->NumElements() / std::max<int64_t>(outer, 1)};
    return std::vector<Tensor>{std::move(out)};
  }
  if (op == "Cast") return Cast(node, in);
  if (op == "Gather") return Gather(node, in);
  if (op == "Unsqueeze" || op == "Squeeze") return SqueezeOrUnsqueeze(node, in);
  if (op == "Concat") return Concat(node, in);
  if (op == "Reshape") return Reshape(node, in);
  if (op == "Slice") return Slice(node, in, opset);
  if (op == "Split") return Split(node, in);
  if (op == "Range") return Range(node, in);
  if (op == "Expand") return Expand(node, in);
  if (op == "ConstantOfShape") return ConstantOfShape(node, in);
  if (op == "Transpose") return Transpose(node, in);
  if (op.rfind("Reduce", 0) == 0) return Reduce(node, in);
  if (op == "Where") return Where(node, in);
  if (StructuralOps().count(op)) return Compare(node, in);
  if (auto unary = ir::ParseUnary(op)) return Unary(node, in, *unary);
  if (auto binary = ir::ParseBinary(op)) return Binary(node, in, *binary);
  return absl::UnimplementedError(
      absl::StrCat("node ", node.name, ": op ", op, " cannot be constant-folded"));
}

}  // namespace

absl::StatusOr<std::vector<Tensor>> EvaluateConstant(const ir::Node& node, const Inputs& in,
                                                     int64_t opset, int64_t max_result_elements) {
  struct LimitScope {
    int64_t saved = result_limit;
    ~LimitScope() { result_limit = saved; }
  } scope;
  result_limit = std::clamp<int64_t>(max_result_elements, 0, ir::kMaxTensorElements);
  return Evaluate(node, in, opset);
}

}  // namespace sluice::onnx_import
