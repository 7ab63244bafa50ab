#include "runtime/opencl/kernel_source.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/common/status_macros.h"
#include "runtime/opencl/kernel_library.h"

namespace sluice::opencl {
namespace {

using streaming::ConcatOp;
using streaming::ConvOp;
using streaming::LayerNormOp;
using streaming::LinearOp;
using streaming::Op;
using streaming::Program;
using streaming::ReduceKind;
using streaming::ReduceOp;
using streaming::RnnOp;
using streaming::SliceOp;
using streaming::SoftmaxOp;
using Kind = KernelArg::Kind;

// Largest work-group of the vectorised GEMM-like kernels.
constexpr size_t kMaxGemmLocal = 64;
// Conv / Linear ops with at least this many multiply-adds per row also get a kernel computing
// kSessionBlock rows per work-item, which reuses each loaded weight vector kSessionBlock times.
constexpr int64_t kSessionBlockMinMacs = 4096;
constexpr int kSessionBlock = 4;
// Work-group size of the one-row-per-item variant of those ops.
constexpr size_t kSmallBatchLocal = 2;
// Widest unrolled output block of the single-work-item kernels.
constexpr int kSwiMaxVec = 8;

using Defines = std::vector<std::pair<std::string, std::string>>;

int VectorWidth(int64_t n, int max_width) {
  for (int width : {16, 8, 4, 2}) {
    if (width <= max_width && n % width == 0) return width;
  }
  return 1;
}

size_t LargestDivisorAtMost(size_t n, size_t cap) {
  for (size_t d = std::min(n, cap); d > 1; --d) {
    if (n % d == 0) return d;
  }
  return 1;
}

size_t RoundUp(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// A float as an OpenCL C literal that reads back bit-exactly.
std::string FloatLiteral(float x) {
  if (std::isnan(x)) return "NAN";
  if (std::isinf(x)) return x > 0 ? "INFINITY" : "(-INFINITY)";
  std::string text = absl::StrFormat("%.9g", x);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return absl::StrCat("(", text, "f)");
}

// The scalar math of runtime/ir/elementwise.h as an OpenCL C expression in `x` of type `type`
// (float or floatN).
std::string UnaryExpr(ir::UnaryKind kind, const ir::UnaryParams& p, const std::string& type) {
  const auto c = [&](float v) { return absl::StrCat("((", type, ")", FloatLiteral(v), ")"); };
  const std::string one = c(1.f);
  const std::string zero = c(0.f);
  switch (kind) {
    case ir::UnaryKind::kRelu:
      return absl::StrCat("select(", zero, ", x, x > ", zero, ")");
    case ir::UnaryKind::kLeakyRelu:
      return absl::StrCat("select(", c(p.alpha), " * x, x, x >= ", zero, ")");
    case ir::UnaryKind::kSigmoid:
      return absl::StrCat(one, " / (", one, " + exp(-x))");
    case ir::UnaryKind::kTanh:
      return "tanh(x)";
    case ir::UnaryKind::kGelu:
      return absl::StrCat(c(0.5f), " * x * (", one, " + erf(x * ", c(0.70710678118654752f), "))");
    case ir::UnaryKind::kErf:
      return "erf(x)";
    case ir::UnaryKind::kSilu:
      return absl::StrCat("x * (", one, " / (", one, " + exp(-x)))");
    case ir::UnaryKind::kSoftplus:
      return absl::StrCat("select(log1p(exp(x)), x, x > ", c(20.f), ")");
    case ir::UnaryKind::kClip:
      return absl::StrCat("select(select(x, ", c(p.hi), ", x > ", c(p.hi), "), ", c(p.lo), ", x < ",
                          c(p.lo), ")");
    case ir::UnaryKind::kExp:
      return "exp(x)";
    case ir::UnaryKind::kLog:
      return "log(x)";
    case ir::UnaryKind::kSqrt:
      return "sqrt(x)";
    case ir::UnaryKind::kNeg:
      return "-x";
    case ir::UnaryKind::kAbs:
      return "fabs(x)";
    case ir::UnaryKind::kReciprocal:
      return absl::StrCat(one, " / x");
    case ir::UnaryKind::kElu:
      return absl::StrCat("select(", c(p.alpha), " * (exp(x) - ", one, "), x, x >= ", zero, ")");
    case ir::UnaryKind::kHardSigmoid: {
      const std::string y = absl::StrCat("(", c(p.alpha), " * x + ", c(p.beta), ")");
      return absl::StrCat("select(select(", y, ", ", one, ", ", y, " > ", one, "), ", zero, ", ", y,
                          " < ", zero, ")");
    }
    case ir::UnaryKind::kFloor:
      return "floor(x)";
    case ir::UnaryKind::kCeil:
      return "ceil(x)";
    case ir::UnaryKind::kSign:
      return "sign(x)";
    case ir::UnaryKind::kIdentity:
      return "x";
  }
  return "x";
}

const char* BinaryFunction(ir::BinaryKind kind) {
  switch (kind) {
    case ir::BinaryKind::kAdd:
      return "sl_add";
    case ir::BinaryKind::kSub:
      return "sl_sub";
    case ir::BinaryKind::kMul:
      return "sl_mul";
    case ir::BinaryKind::kDiv:
      return "sl_div";
    case ir::BinaryKind::kPow:
      return "sl_pow";
    case ir::BinaryKind::kMin:
      return "sl_min";
    case ir::BinaryKind::kMax:
      return "sl_max";
  }
  return "sl_add";
}

KernelArg Value(int v) { return {Kind::kValue, v}; }
KernelArg Const(int c) { return {Kind::kConst, c}; }
KernelArg Arg(Kind kind) { return {kind, -1}; }

// Sizes the kernels index with must agree with the program's values: a mismatch would read or
// write outside a device buffer, which no driver reports reliably. Programs from the streaming
// transform always pass; this guards hand-built or corrupted ones.
absl::Status CheckShapes(const Program& p, const Op& op) {
  const auto size = [&](int value) { return p.values[value].size; };
  const auto fail = [&](const std::string& what) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed program: ", op.KindName(), " ", op.node, ": ", what));
  };
  const int64_t out = size(op.output);
  const int64_t in = op.inputs.empty() ? 0 : size(op.inputs[0]);
  if (op.inputs.empty() && !std::holds_alternative<streaming::BinaryOp>(op.params)) {
    return fail("no input");
  }
  if (const auto* conv = std::get_if<ConvOp>(&op.params)) {
    if (conv->groups <= 0 || conv->kernel <= 0 || conv->dilation <= 0 ||
        conv->in_channels % conv->groups != 0 || conv->out_channels % conv->groups != 0 ||
        in != conv->in_channels || out != conv->out_channels ||
        static_cast<int64_t>(conv->weight.size()) !=
            conv->out_channels * (conv->in_channels / conv->groups) * conv->kernel ||
        conv->state_offset % 8 != 0 || conv->state_offset < 8 ||
        conv->state_offset + streaming::ConvStateBytes(*conv) > p.state_bytes) {
      return fail("conv sizes, weights or state region do not match");
    }
  } else if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
    if (linear->rows <= 0 || in != linear->rows * linear->in_features ||
        out != linear->rows * linear->out_features ||
        static_cast<int64_t>(linear->weight.size()) != linear->in_features * linear->out_features ||
        (!linear->bias.empty() &&
         static_cast<int64_t>(linear->bias.size()) != linear->out_features)) {
      return fail("linear sizes or weights do not match");
    }
  } else if (const auto* rnn = std::get_if<RnnOp>(&op.params)) {
    const int64_t gh = rnn->gates() * rnn->hidden;
    if (in != rnn->input_size || out != rnn->hidden ||
        static_cast<int64_t>(rnn->w.size()) != rnn->input_size * gh ||
        static_cast<int64_t>(rnn->r.size()) != rnn->hidden * gh ||
        static_cast<int64_t>(rnn->w_bias.size()) != gh ||
        static_cast<int64_t>(rnn->r_bias.size()) != gh || rnn->state_offset % 8 != 0 ||
        rnn->state_offset < 8 ||
        rnn->state_offset + streaming::RnnStateBytes(*rnn) > p.state_bytes) {
      return fail("recurrent sizes, weights or state region do not match");
    }
  } else if (std::holds_alternative<streaming::UnaryOp>(op.params)) {
    if (in != out) return fail("input and output sizes differ");
  } else if (const auto* binary = std::get_if<streaming::BinaryOp>(&op.params)) {
    if (op.inputs.empty() || op.inputs.size() > 2) return fail("needs one or two inputs");
    const bool two = op.inputs.size() == 2;
    const int64_t b_size = two ? size(op.inputs[1]) : in;
    const auto map_ok = [&](const std::vector<int32_t>& map, int64_t bound) {
      if (map.empty()) return bound >= out;
      if (static_cast<int64_t>(map.size()) != out) return false;
      for (int32_t i : map) {
        if (i < 0 || i >= bound) return false;
      }
      return true;
    };
    const bool ok =
        two ? binary->constant.empty() && map_ok(binary->map_a, in) && map_ok(binary->map_b, b_size)
            : static_cast<int64_t>(binary->constant.size()) == out &&
                  (binary->constant_is_lhs ? map_ok(binary->map_b, in) : map_ok(binary->map_a, in));
    if (!ok) return fail("operand sizes, maps or constant do not match the output");
  } else if (const auto* reduce = std::get_if<ReduceOp>(&op.params)) {
    const auto& v = reduce->shape;
    if (in != v.outer * v.axis * v.inner || out != v.outer * v.inner) return fail("shape");
  } else if (const auto* softmax = std::get_if<SoftmaxOp>(&op.params)) {
    const auto& v = softmax->shape;
    if (in != v.outer * v.axis * v.inner || out != in) return fail("shape");
  } else if (const auto* norm = std::get_if<LayerNormOp>(&op.params)) {
    const auto& v = norm->shape;
    if (v.inner != 1 || in != v.outer * v.axis || out != in ||
        static_cast<int64_t>(norm->scale.size()) != v.axis ||
        static_cast<int64_t>(norm->bias.size()) != v.axis) {
      return fail("shape, scale or bias");
    }
  } else if (const auto* concat = std::get_if<ConcatOp>(&op.params)) {
    if (concat->parts.size() != op.inputs.size() || concat->parts.empty()) {
      return fail("parts do not match the inputs");
    }
    int64_t total = 0;
    for (size_t i = 0; i < concat->parts.size(); ++i) {
      if (size(op.inputs[i]) != concat->outer * concat->parts[i]) return fail("part size");
      total += concat->parts[i];
    }
    if (out != concat->outer * total) return fail("output size");
  } else if (const auto* slice = std::get_if<SliceOp>(&op.params)) {
    const auto& v = slice->shape;
    const int64_t last = slice->start + (slice->count - 1) * slice->step;
    if (in != v.outer * v.axis * v.inner || out != v.outer * slice->count * v.inner ||
        slice->count <= 0 || slice->start < 0 || slice->start >= v.axis || last < 0 ||
        last >= v.axis) {
      return fail("shape or range");
    }
  }
  return absl::OkStatus();
}

class Generator {
 public:
  Generator(const Program& program, const KernelOptions& options)
      : program_(program),
        swi_(options.variant == KernelVariant::kSingleWorkItem),
        fused_local_(static_cast<size_t>(std::max(1, options.fused_local_size))),
        mirror_(options.mirror_recurrent_state) {
    out_.variant = options.variant;
  }

  absl::StatusOr<KernelProgram> Run();

 private:
  // Where the kernel templates of this variant live (kernels/ndrange or kernels/fpga).
  std::string Dir() const { return swi_ ? "fpga/" : "ndrange/"; }
  int64_t Size(int value) const { return program_.values[value].size; }

  // Appends `defines`, kernels/<path>, and the matching #undefs.
  absl::Status Instantiate(const std::string& path, const std::string& what,
                           const Defines& defines);
  int AddFloats(std::string name, const std::vector<float>& data);
  int AddInts(std::string name, const std::vector<int32_t>& data);
  // The POST(x) define of op `k`: its fused activation for `type`, or identity.
  std::string Post(int k, const Op& op, const std::string& type);
  static void VectorDefines(int vec, Defines* defines);

  // A single-work-item launch, or an NDRange one over (global_x, rows).
  Launch Task(std::string kernel, std::vector<KernelArg> args) const;
  Launch Range(std::string kernel, std::vector<KernelArg> args, size_t global_x,
               size_t local_x) const;
  void AddStage(int k, const Op& op, std::vector<Launch> alternatives);

  absl::Status EmitConv(int k, const Op& op, const ConvOp& conv);
  absl::Status EmitLinear(int k, const Op& op, const LinearOp& linear);
  absl::Status EmitRnn(int k, const Op& op, const RnnOp& rnn);
  absl::Status EmitUnary(int k, const Op& op, const streaming::UnaryOp& unary);
  absl::Status EmitBinary(int k, const Op& op, const streaming::BinaryOp& binary);
  absl::Status EmitReduce(int k, const Op& op, const ReduceOp& reduce);
  absl::Status EmitSoftmax(int k, const Op& op, const SoftmaxOp& softmax);
  absl::Status EmitLayerNorm(int k, const Op& op, const LayerNormOp& norm);
  absl::Status EmitConcat(int k, const Op& op, const ConcatOp& concat);
  absl::Status EmitSlice(int k, const Op& op, const SliceOp& slice);
  // Instantiates kernels/session/<file> as function `function` and appends its call (with
  // `args`, then the row) to the current fused run.
  absl::Status EmitSessionOp(const std::string& file, const std::string& function,
                             const std::string& what, Defines defines,
                             const std::vector<KernelArg>& args);
  absl::Status EmitCopy(int output, int value);
  absl::Status EmitCommit();
  // Turns the current run of per-session calls into one kernel (a stage); no-op when empty.
  absl::Status FlushRun();

  const Program& program_;
  const bool swi_;
  const size_t fused_local_;  // Fixed, so a kernel compiles for one local size per bucket.
  const bool mirror_;
  KernelProgram out_;
  std::string body_;
  std::vector<std::string> commit_heads_;
  // The fused run being collected: its kernel parameters (distinct arguments) and calls.
  std::vector<KernelArg> run_params_;
  std::vector<std::string> run_calls_;
  std::vector<std::string> run_what_;
  int run_count_ = 0;
  int post_count_ = 0;  // Keeps activation function names unique within the source.
};

absl::Status Generator::Instantiate(const std::string& path, const std::string& what,
                                    const Defines& defines) {
  const std::optional<std::string_view> text = KernelFileText(path);
  if (!text) return absl::InternalError(absl::StrCat("kernels/", path, " is not embedded"));
  absl::StrAppend(&body_, "\n// ---- ", what, " (kernels/", path, ")\n");
  for (const auto& [name, value] : defines)
    absl::StrAppend(&body_, "#define ", name, " ", value, "\n");
  absl::StrAppend(&body_, std::string(*text));
  for (const auto& define : defines) {
    absl::StrAppend(&body_, "#undef ", define.first.substr(0, define.first.find('(')), "\n");
  }
  return absl::OkStatus();
}

int Generator::AddFloats(std::string name, const std::vector<float>& data) {
  ConstTensor tensor;
  tensor.name = std::move(name);
  tensor.bytes.resize(std::max<size_t>(1, data.size()) * sizeof(float), 0);
  if (!data.empty()) std::memcpy(tensor.bytes.data(), data.data(), data.size() * sizeof(float));
  out_.consts.push_back(std::move(tensor));
  return static_cast<int>(out_.consts.size()) - 1;
}

int Generator::AddInts(std::string name, const std::vector<int32_t>& data) {
  ConstTensor tensor;
  tensor.name = std::move(name);
  tensor.bytes.resize(std::max<size_t>(1, data.size()) * sizeof(int32_t), 0);
  tensor.is_int = true;
  if (!data.empty()) std::memcpy(tensor.bytes.data(), data.data(), data.size() * sizeof(int32_t));
  out_.consts.push_back(std::move(tensor));
  return static_cast<int>(out_.consts.size()) - 1;
}

std::string Generator::Post(int k, const Op& op, const std::string& type) {
  if (!op.activation) return "(x)";
  const std::string name = absl::StrCat("sl_post_", k, "_", type, "_", post_count_++);
  absl::StrAppend(&body_, "static inline ", type, " ", name, "(", type, " x) { return ",
                  UnaryExpr(op.activation->kind, op.activation->params, type), "; }\n");
  return absl::StrCat(name, "(x)");
}

void Generator::VectorDefines(int vec, Defines* defines) {
  defines->emplace_back("VEC", absl::StrCat(vec));
  if (vec == 1) {
    defines->emplace_back("VTYPE", "float");
    defines->emplace_back("VLOAD(i, p)", "((p)[i])");
    defines->emplace_back("VSTORE(v, i, p)", "((p)[i] = (v))");
  } else {
    defines->emplace_back("VTYPE", absl::StrCat("float", vec));
    defines->emplace_back("VLOAD(i, p)", absl::StrCat("vload", vec, "(i, p)"));
    defines->emplace_back("VSTORE(v, i, p)", absl::StrCat("vstore", vec, "(v, i, p)"));
  }
}

Launch Generator::Task(std::string kernel, std::vector<KernelArg> args) const {
  Launch launch;
  launch.kernel = std::move(kernel);
  launch.args = std::move(args);
  launch.task = true;
  return launch;
}

Launch Generator::Range(std::string kernel, std::vector<KernelArg> args, size_t global_x,
                        size_t local_x) const {
  Launch launch;
  launch.kernel = std::move(kernel);
  launch.args = std::move(args);
  launch.global_x = global_x;
  launch.local_x = local_x;
  return launch;
}

void Generator::AddStage(int k, const Op& op, std::vector<Launch> alternatives) {
  Stage stage;
  stage.what = absl::StrCat("op ", k, " ", op.KindName(), " ", op.node);
  stage.alternatives = std::move(alternatives);
  out_.stages.push_back(std::move(stage));
}

absl::Status Generator::EmitConv(int k, const Op& op, const ConvOp& conv) {
  const int64_t cin = conv.in_channels;
  const int64_t cout = conv.out_channels;
  const int64_t cin_g = cin / conv.groups;
  const int64_t cout_g = cout / conv.groups;
  const bool depthwise = conv.groups > 1 && cin_g == 1 && cout_g == 1;
  std::vector<float> bias = conv.bias;
  bias.resize(cout, 0.f);
  std::vector<float> packed(conv.kernel * cin_g * cout);
  if (depthwise) {  // [kernel][channel]
    for (int64_t c = 0; c < cin; ++c) {
      for (int64_t i = 0; i < conv.kernel; ++i) {
        packed[i * cin + c] = conv.weight[c * conv.kernel + i];
      }
    }
  } else {  // [group][kernel][in per group][out per group]
    for (int64_t g = 0; g < conv.groups; ++g) {
      for (int64_t o = 0; o < cout_g; ++o) {
        for (int64_t c = 0; c < cin_g; ++c) {
          for (int64_t i = 0; i < conv.kernel; ++i) {
            packed[((g * conv.kernel + i) * cin_g + c) * cout_g + o] =
                conv.weight[((g * cout_g + o) * cin_g + c) * conv.kernel + i];
          }
        }
      }
    }
  }
  const int weight = AddFloats(absl::StrCat(op.node, " weight"), packed);
  const int bias_index = AddFloats(absl::StrCat(op.node, " bias"), bias);
  commit_heads_.push_back(absl::StrFormat("if ((step) >= %d) sl_advance_head((slot) + %d, %d);",
                                          op.input_lag, conv.state_offset, conv.taps()));
  const std::vector<KernelArg> args = {Value(op.inputs[0]), Value(op.output), Const(weight),
                                       Const(bias_index),   Arg(Kind::kPool), Arg(Kind::kSlots),
                                       Arg(Kind::kBatch)};
  Defines common = {{"KERNEL", absl::StrCat(conv.kernel)},
                    {"DIL", absl::StrCat(conv.dilation)},
                    {"TAPS", absl::StrCat(conv.taps())},
                    {"LAG", absl::StrCat(op.input_lag)},
                    {"STATE_OFFSET", absl::StrCat(conv.state_offset)}};
  const std::string what = absl::StrCat("op ", k, " Conv ", op.node);
  std::vector<Launch> launches;
  if (depthwise) {
    const int vec = VectorWidth(cin, swi_ ? kSwiMaxVec : 16);
    const std::string name = absl::StrCat("sl_op", k, "_depthwise");
    Defines defines = common;
    defines.emplace_back("KNAME", name);
    defines.emplace_back("C", absl::StrCat(cin));
    const size_t blocks = cin / vec;
    const size_t local = LargestDivisorAtMost(blocks, kMaxGemmLocal);
    if (swi_) {
      defines.emplace_back("VEC", absl::StrCat(vec));
      defines.emplace_back("POST(x)", Post(k, op, "float"));
      launches.push_back(Task(name, args));
    } else {
      VectorDefines(vec, &defines);
      defines.emplace_back("LOCAL_X", absl::StrCat(local));
      defines.emplace_back("POST(x)", Post(k, op, vec == 1 ? "float" : absl::StrCat("float", vec)));
      launches.push_back(Range(name, args, blocks, local));
    }
    RETURN_IF_ERROR(Instantiate(Dir() + "depthwise.cl", what, defines));
    AddStage(k, op, std::move(launches));
    return absl::OkStatus();
  }
  common.insert(common.end(), {{"CIN", absl::StrCat(cin)},
                               {"COUT", absl::StrCat(cout)},
                               {"GROUPS", absl::StrCat(conv.groups)},
                               {"CIN_G", absl::StrCat(cin_g)},
                               {"COUT_G", absl::StrCat(cout_g)}});
  if (swi_) {
    const int vec = VectorWidth(cout_g, kSwiMaxVec);
    const std::string name = absl::StrCat("sl_op", k, "_conv");
    Defines defines = common;
    defines.emplace_back("KNAME", name);
    defines.emplace_back("VEC", absl::StrCat(vec));
    defines.emplace_back("POST(x)", Post(k, op, "float"));
    RETURN_IF_ERROR(Instantiate(Dir() + "conv.cl", what, defines));
    launches.push_back(Task(name, args));
  } else {
    const int vec = VectorWidth(cout_g, 16);
    const size_t blocks = cout / vec;
    const size_t local = LargestDivisorAtMost(blocks, kMaxGemmLocal);
    const std::string type = vec == 1 ? "float" : absl::StrCat("float", vec);
    const std::string post = Post(k, op, type);
    std::vector<int> session_blocks = {1};
    if (conv.kernel * cin_g * cout >= kSessionBlockMinMacs) session_blocks = {kSessionBlock, 1};
    for (int sb : session_blocks) {
      const std::string name = absl::StrCat("sl_op", k, "_conv_s", sb);
      // Small batches (one row per work-item) split the outputs over several work-groups so
      // that a single session still spreads over the compute units.
      const size_t group = sb == 1 && session_blocks.size() > 1
                               ? LargestDivisorAtMost(blocks, kSmallBatchLocal)
                               : local;
      Defines defines = common;
      defines.emplace_back("KNAME", name);
      VectorDefines(vec, &defines);
      defines.emplace_back("SB", absl::StrCat(sb));
      defines.emplace_back("LOCAL_X", absl::StrCat(group));
      defines.emplace_back("POST(x)", post);
      RETURN_IF_ERROR(Instantiate(Dir() + "conv.cl", what, defines));
      Launch launch = Range(name, args, blocks, group);
      launch.rows_per_item = sb;
      launches.push_back(std::move(launch));
    }
  }
  AddStage(k, op, std::move(launches));
  return absl::OkStatus();
}

absl::Status Generator::EmitLinear(int k, const Op& op, const LinearOp& linear) {
  const bool has_bias = !linear.bias.empty();
  const int weight = AddFloats(absl::StrCat(op.node, " weight"), linear.weight);
  const KernelArg bias =
      has_bias ? Const(AddFloats(absl::StrCat(op.node, " bias"), linear.bias)) : Arg(Kind::kUnused);
  const std::vector<KernelArg> args = {Value(op.inputs[0]), Value(op.output), Const(weight), bias,
                                       Arg(Kind::kBatch)};
  Defines common = {{"ROWS", absl::StrCat(linear.rows)},
                    {"IN", absl::StrCat(linear.in_features)},
                    {"OUT", absl::StrCat(linear.out_features)},
                    {"HAS_BIAS", has_bias ? "1" : "0"}};
  const std::string what = absl::StrCat("op ", k, " Linear ", op.node);
  std::vector<Launch> launches;
  if (swi_) {
    const std::string name = absl::StrCat("sl_op", k, "_linear");
    Defines defines = common;
    defines.emplace_back("KNAME", name);
    defines.emplace_back("VEC", absl::StrCat(VectorWidth(linear.out_features, kSwiMaxVec)));
    defines.emplace_back("POST(x)", Post(k, op, "float"));
    RETURN_IF_ERROR(Instantiate(Dir() + "linear.cl", what, defines));
    launches.push_back(Task(name, args));
  } else {
    const int vec = VectorWidth(linear.out_features, 16);
    const size_t blocks = linear.out_features / vec;
    const size_t local = LargestDivisorAtMost(blocks, kMaxGemmLocal);
    const std::string post = Post(k, op, vec == 1 ? "float" : absl::StrCat("float", vec));
    std::vector<int> session_blocks = {1};
    if (linear.in_features * linear.out_features >= kSessionBlockMinMacs) {
      session_blocks = {kSessionBlock, 1};
    }
    for (int sb : session_blocks) {
      const std::string name = absl::StrCat("sl_op", k, "_linear_s", sb);
      Defines defines = common;
      defines.emplace_back("KNAME", name);
      VectorDefines(vec, &defines);
      defines.emplace_back("SB", absl::StrCat(sb));
      defines.emplace_back("LOCAL_X", absl::StrCat(local));
      defines.emplace_back("POST(x)", post);
      RETURN_IF_ERROR(Instantiate(Dir() + "linear.cl", what, defines));
      Launch launch = Range(name, args, blocks, local);
      launch.rows_per_session = static_cast<int>(linear.rows);
      launch.rows_per_item = sb;
      launches.push_back(std::move(launch));
    }
  }
  AddStage(k, op, std::move(launches));
  return absl::OkStatus();
}

absl::Status Generator::EmitRnn(int k, const Op& op, const RnnOp& rnn) {
  const int w = AddFloats(absl::StrCat(op.node, " W"), rnn.w);
  const int r = AddFloats(absl::StrCat(op.node, " R"), rnn.r);
  const int wb = AddFloats(absl::StrCat(op.node, " W bias"), rnn.w_bias);
  const int rb = AddFloats(absl::StrCat(op.node, " R bias"), rnn.r_bias);
  const std::vector<KernelArg> args = {
      Value(op.inputs[0]), Value(op.output), Const(w),          Const(r),         Const(wb),
      Const(rb),           Arg(Kind::kPool), Arg(Kind::kSlots), Arg(Kind::kBatch)};
  const std::string name = absl::StrCat("sl_op", k, rnn.gru ? "_gru" : "_lstm");
  Defines defines = {{"KNAME", name},
                     {"INPUT", absl::StrCat(rnn.input_size)},
                     {"HIDDEN", absl::StrCat(rnn.hidden)},
                     {"GATES", absl::StrCat(rnn.gates())},
                     {"GRU", rnn.gru ? "1" : "0"},
                     {"LBR", rnn.linear_before_reset ? "1" : "0"},
                     {"LAG", absl::StrCat(op.input_lag)},
                     {"STATE_OFFSET", absl::StrCat(rnn.state_offset)}};
  std::vector<Launch> launches;
  if (swi_) {
    defines.emplace_back("POST(x)", Post(k, op, "float"));
    launches.push_back(Task(name, args));
  } else {
    const int vec = VectorWidth(rnn.hidden, 16);
    const size_t local = rnn.hidden / vec;  // One work-group per session.
    VectorDefines(vec, &defines);
    defines.emplace_back("LOCAL_X", absl::StrCat(local));
    defines.emplace_back("POST(x)", Post(k, op, vec == 1 ? "float" : absl::StrCat("float", vec)));
    launches.push_back(Range(name, args, local, local));
  }
  RETURN_IF_ERROR(Instantiate(Dir() + "rnn.cl",
                              absl::StrCat("op ", k, " ", op.KindName(), " ", op.node), defines));
  AddStage(k, op, std::move(launches));
  return absl::OkStatus();
}

absl::Status Generator::EmitSessionOp(const std::string& file, const std::string& function,
                                      const std::string& what, Defines defines,
                                      const std::vector<KernelArg>& args) {
  defines.emplace_back("KNAME", function);
  RETURN_IF_ERROR(Instantiate("session/" + file, what, defines));
  std::vector<std::string> call_args;
  for (const KernelArg& arg : args) {
    if (arg.kind == Kind::kUnused) {
      call_args.push_back("0");  // A null pointer: the function does not read it.
      continue;
    }
    auto it = std::find_if(run_params_.begin(), run_params_.end(), [&](const KernelArg& p) {
      return p.kind == arg.kind && p.index == arg.index;
    });
    if (it == run_params_.end()) it = run_params_.insert(run_params_.end(), arg);
    call_args.push_back(absl::StrCat("p", it - run_params_.begin()));
  }
  call_args.push_back("(b)");
  run_calls_.push_back(absl::StrCat(function, "(", absl::StrJoin(call_args, ", "), ");"));
  run_what_.push_back(what);
  return absl::OkStatus();
}

absl::Status Generator::FlushRun() {
  if (run_calls_.empty()) return absl::OkStatus();
  std::string params;
  for (size_t i = 0; i < run_params_.size(); ++i) {
    const KernelArg& arg = run_params_[i];
    const char* type = "__global float*";
    if (arg.kind == Kind::kPool) {
      type = "__global uchar*";
    } else if (arg.kind == Kind::kSlots ||
               (arg.kind == Kind::kConst && out_.consts[arg.index].is_int)) {
      type = "__global const int*";
    } else if (arg.kind == Kind::kReady) {
      type = "__global int*";
    } else if (arg.kind == Kind::kMirror) {
      type = "__global uint*";
    }
    absl::StrAppend(&params, type, " p", i, ", ");
  }
  const std::string name = absl::StrCat("sl_fused_", run_count_++);
  Defines defines = {
      {"KNAME", name}, {"FUSED_PARAMS", params}, {"FUSED_BODY(b)", absl::StrJoin(run_calls_, " ")}};
  std::vector<KernelArg> args = run_params_;
  args.push_back(Arg(Kind::kBatch));
  Launch launch;
  if (swi_) {
    launch = Task(name, std::move(args));
  } else {
    defines.emplace_back("LOCAL_X", absl::StrCat(fused_local_));
    launch = Range(name, std::move(args), fused_local_, fused_local_);
    launch.sessions_on_x = true;
  }
  const std::string what = absl::StrCat("fused ", absl::StrJoin(run_what_, ", "));
  RETURN_IF_ERROR(Instantiate(Dir() + "fused.cl", what, defines));
  Stage stage;
  stage.what = what;
  stage.alternatives.push_back(std::move(launch));
  out_.stages.push_back(std::move(stage));
  run_params_.clear();
  run_calls_.clear();
  run_what_.clear();
  return absl::OkStatus();
}

absl::Status Generator::EmitUnary(int k, const Op& op, const streaming::UnaryOp& unary) {
  const std::string fn = absl::StrCat("sl_unary_", k);
  absl::StrAppend(&body_, "static inline float ", fn, "(float x) { return ",
                  UnaryExpr(unary.kind, unary.params, "float"), "; }\n");
  RETURN_IF_ERROR(EmitSessionOp("unary.cl", absl::StrCat("sl_op", k, "_unary"),
                                absl::StrCat("op ", k, " ", op.KindName(), " ", op.node),
                                {{"SIZE", absl::StrCat(Size(op.output))},
                                 {"UNARY(x)", absl::StrCat(fn, "(x)")},
                                 {"POST(x)", Post(k, op, "float")}},
                                {Value(op.inputs[0]), Value(op.output)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitBinary(int k, const Op& op, const streaming::BinaryOp& binary) {
  const int64_t size = Size(op.output);
  const int64_t a_size = Size(op.inputs[0]);
  const bool two = op.inputs.size() > 1;
  const auto map_arg = [&](const std::vector<int32_t>& map, const char* which) {
    return map.empty() ? Arg(Kind::kUnused)
                       : Const(AddInts(absl::StrCat(op.node, " map ", which), map));
  };
  const auto index = [](const std::vector<int32_t>& map, const char* name) {
    return map.empty() ? std::string("i") : absl::StrCat(name, "[i]");
  };
  KernelArg in1 = Arg(Kind::kUnused);
  KernelArg map_a = Arg(Kind::kUnused);
  KernelArg map_b = Arg(Kind::kUnused);
  KernelArg cst = Arg(Kind::kUnused);
  std::string lhs;
  std::string rhs;
  if (two) {
    in1 = Value(op.inputs[1]);
    map_a = map_arg(binary.map_a, "a");
    map_b = map_arg(binary.map_b, "b");
    lhs = absl::StrCat("in0[b * ", a_size, " + ", index(binary.map_a, "map_a"), "]");
    rhs = absl::StrCat("in1[b * ", Size(op.inputs[1]), " + ", index(binary.map_b, "map_b"), "]");
  } else {
    cst = Const(AddFloats(absl::StrCat(op.node, " constant"), binary.constant));
    if (binary.constant_is_lhs) {  // The streamed operand is the right-hand side.
      map_b = map_arg(binary.map_b, "b");
      lhs = "cst[i]";
      rhs = absl::StrCat("in0[b * ", a_size, " + ", index(binary.map_b, "map_b"), "]");
    } else {
      map_a = map_arg(binary.map_a, "a");
      lhs = absl::StrCat("in0[b * ", a_size, " + ", index(binary.map_a, "map_a"), "]");
      rhs = "cst[i]";
    }
  }
  RETURN_IF_ERROR(EmitSessionOp("binary.cl", absl::StrCat("sl_op", k, "_binary"),
                                absl::StrCat("op ", k, " ", op.KindName(), " ", op.node),
                                {{"SIZE", absl::StrCat(size)},
                                 {"BINOP", BinaryFunction(binary.kind)},
                                 {"LHS", lhs},
                                 {"RHS", rhs},
                                 {"POST(x)", Post(k, op, "float")}},
                                {Value(op.inputs[0]), in1, map_a, map_b, cst, Value(op.output)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitReduce(int k, const Op& op, const ReduceOp& reduce) {
  const auto& v = reduce.shape;
  std::string init = "0.0f";
  std::string step = "acc += x";
  std::string final_value = "(acc)";
  switch (reduce.kind) {
    case ReduceKind::kSum:
      break;
    case ReduceKind::kMean:
      final_value = absl::StrCat("((acc) / (float)", v.axis, ")");
      break;
    case ReduceKind::kMax:  // std::max(acc, x)
      init = "(-INFINITY)";
      step = "acc = (acc < x) ? x : acc";
      break;
    case ReduceKind::kMin:  // std::min(acc, x)
      init = "INFINITY";
      step = "acc = (x < acc) ? x : acc";
      break;
    case ReduceKind::kL2:
      step = "acc += x * x";
      final_value = "sqrt(acc)";
      break;
    case ReduceKind::kSumSquare:
      step = "acc += x * x";
      break;
  }
  RETURN_IF_ERROR(EmitSessionOp("reduce.cl", absl::StrCat("sl_op", k, "_reduce"),
                                absl::StrCat("op ", k, " Reduce ", op.node),
                                {{"OUTER", absl::StrCat(v.outer)},
                                 {"AXIS", absl::StrCat(v.axis)},
                                 {"INNER", absl::StrCat(v.inner)},
                                 {"REDUCE_INIT", init},
                                 {"REDUCE_STEP(acc, x)", step},
                                 {"REDUCE_FINAL(acc)", final_value},
                                 {"POST(x)", Post(k, op, "float")}},
                                {Value(op.inputs[0]), Value(op.output)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitSoftmax(int k, const Op& op, const SoftmaxOp& softmax) {
  const auto& v = softmax.shape;
  RETURN_IF_ERROR(EmitSessionOp("softmax.cl", absl::StrCat("sl_op", k, "_softmax"),
                                absl::StrCat("op ", k, " ", op.KindName(), " ", op.node),
                                {{"OUTER", absl::StrCat(v.outer)},
                                 {"AXIS", absl::StrCat(v.axis)},
                                 {"INNER", absl::StrCat(v.inner)},
                                 {"LOG", softmax.log ? "1" : "0"},
                                 {"POST(x)", Post(k, op, "float")}},
                                {Value(op.inputs[0]), Value(op.output)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitLayerNorm(int k, const Op& op, const LayerNormOp& norm) {
  const auto& v = norm.shape;
  const int scale = AddFloats(absl::StrCat(op.node, " scale"), norm.scale);
  const int bias = AddFloats(absl::StrCat(op.node, " bias"), norm.bias);
  RETURN_IF_ERROR(
      EmitSessionOp("layernorm.cl", absl::StrCat("sl_op", k, "_layernorm"),
                    absl::StrCat("op ", k, " LayerNorm ", op.node),
                    {{"OUTER", absl::StrCat(v.outer)},
                     {"AXIS", absl::StrCat(v.axis)},
                     {"EPSILON", FloatLiteral(norm.epsilon)},
                     {"POST(x)", Post(k, op, "float")}},
                    {Value(op.inputs[0]), Value(op.output), Const(scale), Const(bias)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitConcat(int k, const Op& op, const ConcatOp& concat) {
  int64_t total = 0;
  std::string params;
  std::string fetch;
  std::vector<KernelArg> args;
  for (size_t i = 0; i < concat.parts.size(); ++i) {
    const int64_t part = concat.parts[i];
    absl::StrAppend(&params, "__global const float* restrict in", i, ", ");
    const std::string element = absl::StrCat("in", i, "[((b) * ", concat.outer, " + (o)) * ", part,
                                             " + (w) - ", total, "]");
    total += part;
    if (i + 1 < concat.parts.size()) {
      absl::StrAppend(&fetch, "(w) < ", total, " ? ", element, " : ");
    } else {
      absl::StrAppend(&fetch, element);
    }
    args.push_back(Value(op.inputs[i]));
  }
  args.push_back(Value(op.output));
  RETURN_IF_ERROR(EmitSessionOp("concat.cl", absl::StrCat("sl_op", k, "_concat"),
                                absl::StrCat("op ", k, " Concat ", op.node),
                                {{"OUTER", absl::StrCat(concat.outer)},
                                 {"TOTAL", absl::StrCat(total)},
                                 {"CONCAT_PARAMS", params},
                                 {"CONCAT_FETCH(b, o, w)", absl::StrCat("(", fetch, ")")},
                                 {"POST(x)", Post(k, op, "float")}},
                                std::move(args)));
  return absl::OkStatus();
}

absl::Status Generator::EmitSlice(int k, const Op& op, const SliceOp& slice) {
  const auto& v = slice.shape;
  RETURN_IF_ERROR(EmitSessionOp("slice.cl", absl::StrCat("sl_op", k, "_slice"),
                                absl::StrCat("op ", k, " Slice ", op.node),
                                {{"OUTER", absl::StrCat(v.outer)},
                                 {"AXIS", absl::StrCat(v.axis)},
                                 {"INNER", absl::StrCat(v.inner)},
                                 {"START", absl::StrCat(slice.start)},
                                 {"STEP", absl::StrCat(slice.step)},
                                 {"COUNT", absl::StrCat(slice.count)},
                                 {"POST(x)", Post(k, op, "float")}},
                                {Value(op.inputs[0]), Value(op.output)}));
  return absl::OkStatus();
}

absl::Status Generator::EmitCopy(int output, int value) {
  return EmitSessionOp("copy.cl", absl::StrCat("sl_output", output, "_copy"),
                       absl::StrCat("copy of value ", value, " to output ", output),
                       {{"SIZE", absl::StrCat(Size(value))}},
                       {Value(value), {Kind::kOutput, output}});
}

absl::Status Generator::EmitCommit() {
  std::string copy;
  int64_t words = 0;
  if (mirror_) {
    copy = "sl_copy_words((dst), (slot), 2);";  // The step counter, already incremented.
    words = 2;
    out_.mirror_bytes = sizeof(int64_t);
    for (const Op& op : program_.ops) {
      const auto* rnn = std::get_if<RnnOp>(&op.params);
      if (rnn == nullptr) continue;
      const int64_t bytes = streaming::RnnStateBytes(*rnn);
      absl::StrAppend(&copy, " sl_copy_words((dst) + ", words, ", (slot) + ", rnn->state_offset,
                      ", ", bytes / 4, ");");
      out_.mirror_regions.emplace_back(rnn->state_offset, bytes);
      out_.mirror_bytes += bytes;
      words += bytes / 4;
    }
  }
  return EmitSessionOp("commit.cl", "sl_commit", "commit",
                       {{"WARMUP", absl::StrCat(program_.warmup_frames)},
                        {"COMMIT_HEADS(slot, step)", absl::StrJoin(commit_heads_, " ")},
                        {"MIRROR_WORDS", absl::StrCat(words)},
                        {"MIRROR_COPY(slot, dst)", copy}},
                       {Arg(Kind::kPool), Arg(Kind::kSlots), Arg(Kind::kReady),
                        mirror_ ? Arg(Kind::kMirror) : Arg(Kind::kUnused)});
}

absl::StatusOr<KernelProgram> Generator::Run() {
  const Program& p = program_;
  if (p.input_value < 0 || p.input_value >= static_cast<int>(p.values.size()) ||
      p.output_values.size() != p.outputs.size()) {
    return absl::InvalidArgumentError("malformed program: input or outputs");
  }
  out_.slot_stride = std::max<int64_t>(64, (p.state_bytes + 63) / 64 * 64);
  out_.build_options = "-cl-std=CL1.2";
  for (size_t k = 0; k < p.ops.size(); ++k) {
    const Op& op = p.ops[k];
    const int index = static_cast<int>(k);
    if (op.output < 0 || op.output >= static_cast<int>(p.values.size())) {
      return absl::InvalidArgumentError(absl::StrCat("malformed program: op ", k, " output"));
    }
    for (int v : op.inputs) {
      if (v < 0 || v >= static_cast<int>(p.values.size())) {
        return absl::InvalidArgumentError(absl::StrCat("malformed program: op ", k, " input"));
      }
    }
    RETURN_IF_ERROR(CheckShapes(p, op));
    const bool gemm_class = std::holds_alternative<ConvOp>(op.params) ||
                            std::holds_alternative<LinearOp>(op.params) ||
                            std::holds_alternative<RnnOp>(op.params);
    if (gemm_class) RETURN_IF_ERROR(FlushRun());  // Its own kernel: end the fused run.
    absl::Status status;
    if (const auto* conv = std::get_if<ConvOp>(&op.params)) {
      status = EmitConv(index, op, *conv);
    } else if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
      status = EmitLinear(index, op, *linear);
    } else if (const auto* rnn = std::get_if<RnnOp>(&op.params)) {
      status = EmitRnn(index, op, *rnn);
    } else if (const auto* unary = std::get_if<streaming::UnaryOp>(&op.params)) {
      status = EmitUnary(index, op, *unary);
    } else if (const auto* binary = std::get_if<streaming::BinaryOp>(&op.params)) {
      status = EmitBinary(index, op, *binary);
    } else if (const auto* reduce = std::get_if<ReduceOp>(&op.params)) {
      status = EmitReduce(index, op, *reduce);
    } else if (const auto* softmax = std::get_if<SoftmaxOp>(&op.params)) {
      status = EmitSoftmax(index, op, *softmax);
    } else if (const auto* norm = std::get_if<LayerNormOp>(&op.params)) {
      status = EmitLayerNorm(index, op, *norm);
    } else if (const auto* concat = std::get_if<ConcatOp>(&op.params)) {
      status = EmitConcat(index, op, *concat);
    } else if (const auto* slice = std::get_if<SliceOp>(&op.params)) {
      status = EmitSlice(index, op, *slice);
    } else {
      status = absl::UnimplementedError(absl::StrCat(op.node, ": op kind ", op.KindName()));
    }
    RETURN_IF_ERROR(status);
  }
  // Outputs live in the result buffer: the first output naming a computed value owns it; an
  // output that is the model input or repeats a value gets a copy.
  out_.value_output.assign(p.values.size(), -1);
  for (size_t j = 0; j < p.output_values.size(); ++j) {
    const int v = p.output_values[j];
    if (v < 0 || v >= static_cast<int>(p.values.size()) ||
        p.outputs[j].frame_size != p.values[v].size) {
      return absl::InvalidArgumentError(absl::StrCat("malformed program: output ", j));
    }
    if (v != p.input_value && out_.value_output[v] < 0) {
      out_.value_output[v] = static_cast<int>(j);
    } else {
      RETURN_IF_ERROR(EmitCopy(static_cast<int>(j), v));
    }
  }
  RETURN_IF_ERROR(EmitCommit());
  RETURN_IF_ERROR(FlushRun());

  std::string source = absl::StrFormat(
      "// Generated by sluice (runtime/opencl/kernel_source.cc), %s variant.\n"
      "#define SLOT_STRIDE %d\n",
      KernelVariantName(out_.variant), out_.slot_stride);
  absl::StrAppend(&source, std::string(*KernelFileText("common.cl")));
  if (swi_) absl::StrAppend(&source, std::string(*KernelFileText("fpga/prelude.cl")));
  absl::StrAppend(&source, body_);
  out_.fingerprint = absl::StrFormat("sl_model_%016x", Fnv1a64(source));
  absl::StrAppend(&source, "\n// Identifies this program in a precompiled binary.\n__kernel void ",
                  out_.fingerprint, "(void) {}\n");
  out_.source = std::move(source);
  return std::move(out_);
}

}  // namespace

uint64_t Fnv1a64(std::string_view data, uint64_t seed) {
  uint64_t hash = seed;
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

const char* KernelVariantName(KernelVariant variant) {
  switch (variant) {
    case KernelVariant::kAuto:
      return "auto";
    case KernelVariant::kNdRange:
      return "ndrange";
    case KernelVariant::kSingleWorkItem:
      return "single_work_item";
  }
  return "auto";
}

absl::StatusOr<KernelVariant> ParseKernelVariant(std::string_view name) {
  const std::string lower = absl::AsciiStrToLower(std::string(name));
  if (lower.empty() || lower == "auto") return KernelVariant::kAuto;
  if (lower == "ndrange") return KernelVariant::kNdRange;
  if (lower == "single_work_item" || lower == "swi" || lower == "fpga") {
    return KernelVariant::kSingleWorkItem;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown OpenCL kernel variant '",
                                                 std::string(name),
                                                 "' (auto, ndrange or single_work_item)"));
}

unsigned Launch::Geometry(int bucket, size_t global[2], size_t local[2]) const {
  if (task) {
    global[0] = local[0] = 1;
    return 1;
  }
  if (sessions_on_x) {
    global[0] = RoundUp(static_cast<size_t>(bucket), local_x);
    local[0] = local_x;
    return 1;
  }
  global[0] = global_x;
  local[0] = local_x;
  global[1] = static_cast<size_t>(bucket) * rows_per_session / rows_per_item;
  local[1] = 1;
  return 2;
}

const Launch& Stage::For(int bucket) const {
  for (const Launch& launch : alternatives) {
    if (launch.Fits(bucket)) return launch;
  }
  return alternatives.back();
}

absl::StatusOr<KernelProgram> GenerateKernelProgram(const streaming::Program& program,
                                                    const KernelOptions& options) {
  if (options.variant == KernelVariant::kAuto) {
    return absl::InvalidArgumentError("GenerateKernelProgram needs a concrete kernel variant");
  }
  return Generator(program, options).Run();
}

}  // namespace sluice::opencl
