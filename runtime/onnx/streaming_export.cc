// Every program value becomes a [batch, size] float tensor named "%<id>"; each op reshapes its
// frames into the layout the matching ONNX op wants and back. Every name this file makes starts
// with '%', so none clashes with the model's own input and output names.
#include "runtime/onnx/streaming_export.h"

#include <cmath>
#include <fstream>
#include <utility>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "onnx/onnx_pb.h"
#include "runtime/common/status_macros.h"

namespace sluice::onnx_export {
namespace {

using ::onnx::TensorProto;
using streaming::Op;
using streaming::Program;
using streaming::StreamSpec;

constexpr int64_t kOpset = 17;     // The first with LayerNormalization.
constexpr int64_t kIrVersion = 8;  // What opset 17 requires.
constexpr char kStep[] = "%step";

struct Attr {
  std::string name;
  std::variant<int64_t, float, std::vector<int64_t>> value;
};

std::string V(int value) { return absl::StrCat("%", value); }
std::string Next(const std::string& state) { return absl::StrCat(state, ".next"); }

bool IsStateful(const Op& op) {
  return std::holds_alternative<streaming::ConvOp>(op.params) ||
         std::holds_alternative<streaming::RnnOp>(op.params);
}

class Exporter {
 public:
  Exporter(const Program& program, int64_t batch)
      : program_(program), n_(batch), graph_(model_.mutable_graph()) {}

  absl::StatusOr<std::string> Export();

 private:
  // Graph building. Add returns the output name (a fresh one when `output` is empty).
  void AddNode(const std::string& type, const std::vector<std::string>& inputs,
               const std::vector<std::string>& outputs, const std::vector<Attr>& attrs = {});
  std::string Add(const std::string& type, const std::vector<std::string>& inputs,
                  const std::vector<Attr>& attrs = {}, std::string output = "");
  std::string Temp() { return absl::StrCat("%t", temps_++); }
  std::string Floats(const std::vector<int64_t>& shape, const std::vector<float>& values);
  std::string Int64s(const std::vector<int64_t>& shape, const std::vector<int64_t>& values);
  std::string Reshape(const std::string& x, const std::vector<int64_t>& shape,
                      std::string output = "");
  static void Declare(::onnx::ValueInfoProto* info, const std::string& name, int elem_type,
                      const std::vector<int64_t>& shape, const std::string& doc);
  absl::StatusOr<std::vector<int64_t>> IoShape(const StreamSpec& spec) const;

  // State I/O. StateInput declares the input "%<op output>.<suffix>"; the op writes the state's
  // next value to NextTarget(), and CommitState declares the output, gating it first when the op
  // starts after a warm-up (the state then keeps its value while step < input_lag).
  std::string StateInput(const Op& op, const std::string& suffix, std::vector<int64_t> shape);
  std::string NextTarget(const Op& op, const std::string& state);
  void CommitState(const Op& op, const std::string& state, const std::string& next, int batch_axis);

  absl::Status EmitOp(const Op& op);
  absl::Status Emit(const Op& op, const streaming::ConvOp& conv, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::LinearOp& linear, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::UnaryOp& unary, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::BinaryOp& binary, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::ReduceOp& reduce, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::SoftmaxOp& softmax, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::LayerNormOp& norm, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::ConcatOp& concat, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::SliceOp& slice, const std::string& out);
  absl::Status Emit(const Op& op, const streaming::RnnOp& rnn, const std::string& out);
  void EmitUnary(const streaming::UnaryOp& unary, const std::string& in, const std::string& out);
  // `in` viewed as [batch, outer, axis, inner].
  std::string View4(const Op& op, const streaming::AxisShape& shape);
  int64_t Size(int value) const { return program_.values[value].size; }

  const Program& program_;
  const int64_t n_;
  ::onnx::ModelProto model_;
  ::onnx::GraphProto* graph_;
  int temps_ = 0;
  int constants_ = 0;
  // Declared after the model outputs, in the order of their inputs.
  std::vector<::onnx::ValueInfoProto> state_outputs_;
};

void Exporter::AddNode(const std::string& type, const std::vector<std::string>& inputs,
                       const std::vector<std::string>& outputs, const std::vector<Attr>& attrs) {
  ::onnx::NodeProto* node = graph_->add_node();
  node->set_op_type(type);
  node->set_name(absl::StrCat(type, "_", graph_->node_size()));
  for (const std::string& input : inputs) node->add_input(input);
  for (const std::string& output : outputs) node->add_output(output);
  for (const Attr& attr : attrs) {
    ::onnx::AttributeProto* a = node->add_attribute();
    a->set_name(attr.name);
    if (const auto* i = std::get_if<int64_t>(&attr.value)) {
      a->set_type(::onnx::AttributeProto::INT);
      a->set_i(*i);
    } else if (const auto* f = std::get_if<float>(&attr.value)) {
      a->set_type(::onnx::AttributeProto::FLOAT);
      a->set_f(*f);
    } else {
      a->set_type(::onnx::AttributeProto::INTS);
      for (int64_t v : std::get<std::vector<int64_t>>(attr.value)) a->add_ints(v);
    }
  }
}

std::string Exporter::Add(const std::string& type, const std::vector<std::string>& inputs,
                          const std::vector<Attr>& attrs, std::string output) {
  if (output.empty()) output = Temp();
  AddNode(type, inputs, {output}, attrs);
  return output;
}

std::string Exporter::Floats(const std::vector<int64_t>& shape, const std::vector<float>& values) {
  TensorProto* t = graph_->add_initializer();
  t->set_name(absl::StrCat("%c", constants_++));
  t->set_data_type(TensorProto::FLOAT);
  for (int64_t d : shape) t->add_dims(d);
  t->set_raw_data(values.data(), values.size() * sizeof(float));
  return t->name();
}

std::string Exporter::Int64s(const std::vector<int64_t>& shape,
                             const std::vector<int64_t>& values) {
  TensorProto* t = graph_->add_initializer();
  t->set_name(absl::StrCat("%c", constants_++));
  t->set_data_type(TensorProto::INT64);
  for (int64_t d : shape) t->add_dims(d);
  t->set_raw_data(values.data(), values.size() * sizeof(int64_t));
  return t->name();
}

std::string Exporter::Reshape(const std::string& x, const std::vector<int64_t>& shape,
                              std::string output) {
  return Add("Reshape", {x, Int64s({static_cast<int64_t>(shape.size())}, shape)}, {},
             std::move(output));
}

void Exporter::Declare(::onnx::ValueInfoProto* info, const std::string& name, int elem_type,
                       const std::vector<int64_t>& shape, const std::string& doc) {
  info->set_name(name);
  info->set_doc_string(doc);
  ::onnx::TypeProto::Tensor* tensor = info->mutable_type()->mutable_tensor_type();
  tensor->set_elem_type(elem_type);
  for (int64_t d : shape) tensor->mutable_shape()->add_dim()->set_dim_value(d);
}

absl::StatusOr<std::vector<int64_t>> Exporter::IoShape(const StreamSpec& spec) const {
  std::vector<int64_t> shape = spec.frame_shape;
  if (n_ == 1) return shape;
  const int frame_batch_axis =
      spec.batch_axis < 0 ? -1 : spec.batch_axis - (spec.batch_axis > spec.time_axis ? 1 : 0);
  if (frame_batch_axis != 0) {
    return absl::UnimplementedError(
        absl::StrCat("a batch above 1 needs the batch axis first in the frame of ", spec.name,
                     ", which is [", absl::StrJoin(spec.frame_shape, ","), "]"));
  }
  shape[0] = n_;
  return shape;
}

std::string Exporter::StateInput(const Op& op, const std::string& suffix,
                                 std::vector<int64_t> shape) {
  const std::string name = absl::StrCat(V(op.output), ".", suffix);
  const std::string doc = absl::StrCat(suffix, " state of ", op.KindName(), " ", op.node,
                                       "; zeros at the start of a stream");
  Declare(graph_->add_input(), name, TensorProto::FLOAT, shape, doc);
  ::onnx::ValueInfoProto next;
  Declare(&next, Next(name), TensorProto::FLOAT, shape, absl::StrCat("next ", doc));
  state_outputs_.push_back(std::move(next));
  return name;
}

std::string Exporter::NextTarget(const Op& op, const std::string& state) {
  return op.input_lag > 0 ? Temp() : Next(state);
}

void Exporter::CommitState(const Op& op, const std::string& state, const std::string& next,
                           int batch_axis) {
  if (op.input_lag == 0) return;
  const std::string started = Add("GreaterOrEqual", {kStep, Int64s({}, {op.input_lag})});
  std::vector<int64_t> shape(3, 1);
  shape[batch_axis] = n_;
  Add("Where", {Reshape(started, shape), next, state}, {}, Next(state));
}

absl::Status Exporter::EmitOp(const Op& op) {
  const std::string out = V(op.output);
  const std::string raw = op.activation ? Temp() : out;
  RETURN_IF_ERROR(std::visit([&](const auto& params) { return Emit(op, params, raw); }, op.params));
  if (op.activation) EmitUnary(*op.activation, raw, out);
  return absl::OkStatus();
}

// A causal conv step: Concat(window state, frame) -> one output frame; the window drops its
// oldest frame.
absl::Status Exporter::Emit(const Op& op, const streaming::ConvOp& conv, const std::string& out) {
  const int64_t taps = conv.taps();
  std::string window = Reshape(V(op.inputs[0]), {n_, conv.in_channels, 1});
  if (taps > 1) {
    const std::string state = StateInput(op, "window", {n_, conv.in_channels, taps - 1});
    window = Add("Concat", {state, window}, {{"axis", int64_t{2}}});
    const std::string next = NextTarget(op, state);
    Add("Slice", {window, Int64s({1}, {1}), Int64s({1}, {taps}), Int64s({1}, {2})}, {}, next);
    CommitState(op, state, next, 0);
  }
  const std::string bias = Floats({conv.out_channels}, conv.bias);
  if (conv.groups > 1) {
    const std::string weight =
        Floats({conv.out_channels, conv.in_channels / conv.groups, conv.kernel}, conv.weight);
    const std::string y = Add("Conv", {window, weight, bias},
                              {{"kernel_shape", std::vector<int64_t>{conv.kernel}},
                               {"dilations", std::vector<int64_t>{conv.dilation}},
                               {"group", conv.groups}});
    Reshape(y, {n_, conv.out_channels}, out);
    return absl::OkStatus();
  }
  // Ungrouped: one Gemm of the flattened windows by the weight as [out, in * kernel] (the same
  // values in the same order). ONNX Runtime's Conv multiplies each batch row on its own: ~10x
  // slower than this at batch 64 for cnn_tiny, and no faster at batch 1.
  if (conv.dilation > 1) {
    window = Add("Slice", {window, Int64s({1}, {0}), Int64s({1}, {taps}), Int64s({1}, {2}),
                           Int64s({1}, {conv.dilation})});
  }
  const int64_t k = conv.in_channels * conv.kernel;
  Add("Gemm", {Reshape(window, {n_, k}), Floats({conv.out_channels, k}, conv.weight), bias},
      {{"transB", int64_t{1}}}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::LinearOp& linear,
                            const std::string& out) {
  std::vector<std::string> inputs = {
      Reshape(V(op.inputs[0]), {n_ * linear.rows, linear.in_features}),
      Floats({linear.in_features, linear.out_features}, linear.weight)};
  if (!linear.bias.empty()) inputs.push_back(Floats({linear.out_features}, linear.bias));
  Reshape(Add("Gemm", inputs), {n_, linear.rows * linear.out_features}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::UnaryOp& unary, const std::string& out) {
  EmitUnary(unary, V(op.inputs[0]), out);
  return absl::OkStatus();
}

void Exporter::EmitUnary(const streaming::UnaryOp& unary, const std::string& in,
                         const std::string& out) {
  const ir::UnaryParams& p = unary.params;
  auto scalar = [this](float v) { return Floats({}, {v}); };
  switch (unary.kind) {
    case ir::UnaryKind::kGelu: {  // The erf form, as ir::ApplyUnary computes it.
      const std::string erf = Add("Erf", {Add("Mul", {in, scalar(0.70710678118654752f)})});
      Add("Mul", {Add("Mul", {in, Add("Add", {erf, scalar(1.f)})}), scalar(0.5f)}, {}, out);
      return;
    }
    case ir::UnaryKind::kSilu:
      Add("Mul", {in, Add("Sigmoid", {in})}, {}, out);
      return;
    case ir::UnaryKind::kClip:
      Add("Clip", {in, std::isinf(p.lo) ? "" : scalar(p.lo), std::isinf(p.hi) ? "" : scalar(p.hi)},
          {}, out);
      return;
    case ir::UnaryKind::kLeakyRelu:
    case ir::UnaryKind::kElu:
      Add(ir::UnaryName(unary.kind), {in}, {{"alpha", p.alpha}}, out);
      return;
    case ir::UnaryKind::kHardSigmoid:
      Add("HardSigmoid", {in}, {{"alpha", p.alpha}, {"beta", p.beta}}, out);
      return;
    default:  // The ONNX op of the same name, no attributes.
      Add(ir::UnaryName(unary.kind), {in}, {}, out);
      return;
  }
}

absl::Status Exporter::Emit(const Op& op, const streaming::BinaryOp& binary,
                            const std::string& out) {
  auto operand = [this](int value, const std::vector<int32_t>& map) {
    if (map.empty()) return V(value);
    const std::vector<int64_t> indices(map.begin(), map.end());
    return Add("Gather", {V(value), Int64s({static_cast<int64_t>(indices.size())}, indices)},
               {{"axis", int64_t{1}}});
  };
  std::string lhs, rhs;
  if (!binary.constant.empty()) {
    const std::string constant =
        Floats({1, static_cast<int64_t>(binary.constant.size())}, binary.constant);
    if (binary.constant_is_lhs) {
      lhs = constant;
      rhs = operand(op.inputs[0], binary.map_b);
    } else {
      lhs = operand(op.inputs[0], binary.map_a);
      rhs = constant;
    }
  } else {
    lhs = operand(op.inputs[0], binary.map_a);
    rhs = operand(op.inputs[1], binary.map_b);
  }
  Add(ir::BinaryName(binary.kind), {lhs, rhs}, {}, out);
  return absl::OkStatus();
}

std::string Exporter::View4(const Op& op, const streaming::AxisShape& shape) {
  return Reshape(V(op.inputs[0]), {n_, shape.outer, shape.axis, shape.inner});
}

absl::Status Exporter::Emit(const Op& op, const streaming::ReduceOp& reduce,
                            const std::string& out) {
  const std::string x = View4(op, reduce.shape);
  const std::vector<Attr> keep = {{"keepdims", int64_t{0}}};
  std::vector<Attr> attrs = keep;
  attrs.push_back({"axes", std::vector<int64_t>{2}});
  std::string y;
  switch (reduce.kind) {
    case streaming::ReduceKind::kSum:  // Takes its axes as an input since opset 13.
      y = Add("ReduceSum", {x, Int64s({1}, {2})}, keep);
      break;
    case streaming::ReduceKind::kMean:
      y = Add("ReduceMean", {x}, attrs);
      break;
    case streaming::ReduceKind::kMax:
      y = Add("ReduceMax", {x}, attrs);
      break;
    case streaming::ReduceKind::kMin:
      y = Add("ReduceMin", {x}, attrs);
      break;
    case streaming::ReduceKind::kL2:
      y = Add("ReduceL2", {x}, attrs);
      break;
    case streaming::ReduceKind::kSumSquare:
      y = Add("ReduceSumSquare", {x}, attrs);
      break;
  }
  Reshape(y, {n_, Size(op.output)}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::SoftmaxOp& softmax,
                            const std::string& out) {
  const std::string y = Add(softmax.log ? "LogSoftmax" : "Softmax", {View4(op, softmax.shape)},
                            {{"axis", int64_t{2}}});
  Reshape(y, {n_, Size(op.output)}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::LayerNormOp& norm,
                            const std::string& out) {
  const int64_t axis = norm.shape.axis;
  const std::string x = Reshape(V(op.inputs[0]), {n_, norm.shape.outer, axis});
  const std::string y =
      Add("LayerNormalization", {x, Floats({axis}, norm.scale), Floats({axis}, norm.bias)},
          {{"axis", int64_t{-1}}, {"epsilon", norm.epsilon}});
  Reshape(y, {n_, Size(op.output)}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::ConcatOp& concat,
                            const std::string& out) {
  std::vector<std::string> parts;
  for (size_t k = 0; k < op.inputs.size(); ++k) {
    parts.push_back(Reshape(V(op.inputs[k]), {n_, concat.outer, concat.parts[k]}));
  }
  Reshape(Add("Concat", parts, {{"axis", int64_t{2}}}), {n_, Size(op.output)}, out);
  return absl::OkStatus();
}

absl::Status Exporter::Emit(const Op& op, const streaming::SliceOp& slice, const std::string& out) {
  std::vector<int64_t> indices(slice.count);
  for (int64_t c = 0; c < slice.count; ++c) indices[c] = slice.start + c * slice.step;
  const std::string y = Add("Gather", {View4(op, slice.shape), Int64s({slice.count}, indices)},
                            {{"axis", int64_t{2}}});
  Reshape(y, {n_, Size(op.output)}, out);
  return absl::OkStatus();
}

// One LSTM/GRU time step with the state as initial_h (and initial_c); Y_h is the output frame.
absl::Status Exporter::Emit(const Op& op, const streaming::RnnOp& rnn, const std::string& out) {
  const int64_t hidden = rnn.hidden;
  const int64_t gh = rnn.gates() * hidden;
  // Back to ONNX's [gates * hidden][input] layout from the program's transposed one.
  auto untranspose = [gh](const std::vector<float>& m, int64_t rows) {
    std::vector<float> t(m.size());
    for (int64_t g = 0; g < gh; ++g) {
      for (int64_t i = 0; i < rows; ++i) t[g * rows + i] = m[i * gh + g];
    }
    return t;
  };
  std::vector<float> bias = rnn.w_bias;
  bias.insert(bias.end(), rnn.r_bias.begin(), rnn.r_bias.end());
  const std::vector<int64_t> state_shape = {1, n_, hidden};
  std::vector<std::string> inputs = {
      Reshape(V(op.inputs[0]), {1, n_, rnn.input_size}),
      Floats({1, gh, rnn.input_size}, untranspose(rnn.w, rnn.input_size)),
      Floats({1, gh, hidden}, untranspose(rnn.r, hidden)),
      Floats({1, 2 * gh}, bias),
      "",  // sequence_lens
  };
  std::vector<std::string> states = {StateInput(op, "h", state_shape)};
  if (!rnn.gru) states.push_back(StateInput(op, "c", state_shape));
  std::vector<std::string> outputs = {""};  // Y: Y_h is the same frame.
  for (const std::string& state : states) {
    inputs.push_back(state);
    outputs.push_back(NextTarget(op, state));
  }
  std::vector<Attr> attrs = {{"hidden_size", hidden}};
  if (rnn.gru) attrs.push_back({"linear_before_reset", int64_t{rnn.linear_before_reset}});
  AddNode(rnn.gru ? "GRU" : "LSTM", inputs, outputs, attrs);
  for (size_t k = 0; k < states.size(); ++k) CommitState(op, states[k], outputs[k + 1], 1);
  Reshape(outputs[1], {n_, hidden}, out);
  return absl::OkStatus();
}

absl::StatusOr<std::string> Exporter::Export() {
  if (n_ < 1) return absl::InvalidArgumentError(absl::StrCat("batch ", n_, " is below 1"));
  model_.set_ir_version(kIrVersion);
  model_.set_producer_name("sluice");
  model_.add_opset_import()->set_version(kOpset);
  graph_->set_name("sluice_streaming_step");
  graph_->set_doc_string(
      "One streaming step: the frame and every state in, the outputs and the next states out. "
      "States start at zeros; outputs of the first sluice.warmup_frames steps are to be "
      "ignored.");
  auto layout = [this](const StreamSpec& spec) {
    ::onnx::StringStringEntryProto* time = model_.add_metadata_props();
    time->set_key(absl::StrCat("sluice.time_axis.", spec.name));
    time->set_value(absl::StrCat(spec.time_axis));
    ::onnx::StringStringEntryProto* batch = model_.add_metadata_props();
    batch->set_key(absl::StrCat("sluice.batch_axis.", spec.name));
    batch->set_value(absl::StrCat(spec.batch_axis));
  };

  ASSIGN_OR_RETURN(const std::vector<int64_t> input_shape, IoShape(program_.input));
  Declare(graph_->add_input(), program_.input.name, TensorProto::FLOAT, input_shape,
          "one frame of the offline input");
  layout(program_.input);
  Reshape(program_.input.name, {n_, program_.input.frame_size}, V(program_.input_value));
  bool counts_steps = false;
  for (const Op& op : program_.ops) counts_steps |= IsStateful(op) && op.input_lag > 0;
  if (counts_steps) {
    const std::string doc = "frames this session has stepped; zeros at the start of a stream";
    Declare(graph_->add_input(), kStep, TensorProto::INT64, {n_}, doc);
    ::onnx::ValueInfoProto next;
    Declare(&next, Next(kStep), TensorProto::INT64, {n_}, absl::StrCat("next ", doc));
    state_outputs_.push_back(std::move(next));
    Add("Add", {kStep, Int64s({}, {1})}, {}, Next(kStep));
  }
  for (const Op& op : program_.ops) RETURN_IF_ERROR(EmitOp(op));
  for (size_t j = 0; j < program_.outputs.size(); ++j) {
    const StreamSpec& spec = program_.outputs[j];
    ASSIGN_OR_RETURN(const std::vector<int64_t> shape, IoShape(spec));
    Reshape(V(program_.output_values[j]), shape, spec.name);
    Declare(graph_->add_output(), spec.name, TensorProto::FLOAT, shape,
            "one frame of the offline output");
    layout(spec);
  }
  for (::onnx::ValueInfoProto& state : state_outputs_) graph_->add_output()->Swap(&state);
  for (const auto& [key, value] :
       {std::pair{"sluice.warmup_frames", program_.warmup_frames}, std::pair{"sluice.batch", n_},
        std::pair{"sluice.flops_per_frame", program_.FlopsPerFrame()}}) {
    ::onnx::StringStringEntryProto* prop = model_.add_metadata_props();
    prop->set_key(key);
    prop->set_value(absl::StrCat(value));
  }
  std::string bytes;
  if (!model_.SerializeToString(&bytes)) {
    return absl::InternalError("the streaming model does not serialize");
  }
  return bytes;
}

}  // namespace

absl::StatusOr<std::string> ExportStreamingModel(const streaming::Program& program,
                                                 const StreamingExportOptions& options) {
  return Exporter(program, options.batch).Export();
}

absl::Status WriteStreamingModel(const streaming::Program& program,
                                 const StreamingExportOptions& options, const std::string& path) {
  ASSIGN_OR_RETURN(const std::string bytes, ExportStreamingModel(program, options));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace sluice::onnx_export
