#include "runtime/streaming/program.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "runtime/common/bf16.h"

namespace sluice::streaming {
namespace {

struct KindNamer {
  const char* operator()(const ConvOp&) const { return "Conv"; }
  const char* operator()(const LinearOp&) const { return "Linear"; }
  const char* operator()(const UnaryOp& op) const { return ir::UnaryName(op.kind); }
  const char* operator()(const BinaryOp& op) const { return ir::BinaryName(op.kind); }
  const char* operator()(const ReduceOp&) const { return "Reduce"; }
  const char* operator()(const SoftmaxOp& op) const { return op.log ? "LogSoftmax" : "Softmax"; }
  const char* operator()(const LayerNormOp&) const { return "LayerNorm"; }
  const char* operator()(const ConcatOp&) const { return "Concat"; }
  const char* operator()(const SliceOp&) const { return "Slice"; }
  const char* operator()(const RnnOp& op) const { return op.gru ? "GRU" : "LSTM"; }
};

std::string Details(const Op& op) {
  if (const auto* conv = std::get_if<ConvOp>(&op.params)) {
    return absl::StrFormat("%d->%d k=%d d=%d groups=%d window=%d state=%dB", conv->in_channels,
                           conv->out_channels, conv->kernel, conv->dilation, conv->groups,
                           conv->taps(), ConvStateBytes(*conv));
  }
  if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
    return absl::StrFormat("%dx(%d->%d)", linear->rows, linear->in_features, linear->out_features);
  }
  if (const auto* rnn = std::get_if<RnnOp>(&op.params)) {
    return absl::StrFormat("%d->%d state=%dB", rnn->input_size, rnn->hidden, RnnStateBytes(*rnn));
  }
  if (const auto* binary = std::get_if<BinaryOp>(&op.params)) {
    return binary->constant.empty() ? "" : "with constant";
  }
  return "";
}

}  // namespace

const char* Op::KindName() const { return std::visit(KindNamer{}, params); }

std::string Program::Describe() const {
  std::string out = absl::StrFormat("input %s offline %s time_axis %d frame %s\n", input.name,
                                    absl::StrCat("[", absl::StrJoin(input.offline_shape, ","), "]"),
                                    input.time_axis,
                                    absl::StrCat("[", absl::StrJoin(input.frame_shape, ","), "]"));
  for (const Op& op : ops) {
    std::vector<std::string> ins;
    for (int v : op.inputs) ins.push_back(absl::StrCat("%", v));
    absl::StrAppendFormat(
        &out, "  %%%d = %s(%s) [%d floats] %s%s%s  <- %s\n", op.output, op.KindName(),
        absl::StrJoin(ins, ", "), values[op.output].size, Details(op),
        op.activation ? absl::StrCat(" +", ir::UnaryName(op.activation->kind)) : "",
        op.input_lag ? absl::StrCat(" lag=", op.input_lag) : "", op.node);
  }
  for (const StreamSpec& output : outputs) {
    absl::StrAppendFormat(&out, "output %s offline %s time_axis %d frame %s\n", output.name,
                          absl::StrCat("[", absl::StrJoin(output.offline_shape, ","), "]"),
                          output.time_axis,
                          absl::StrCat("[", absl::StrJoin(output.frame_shape, ","), "]"));
  }
  absl::StrAppendFormat(&out, "warm-up frames: %d\nstate bytes per session: %d\n", warmup_frames,
                        state_bytes);
  absl::StrAppendFormat(&out, "MFLOP per frame: %.3f\n", FlopsPerFrame() / 1e6);
  return out;
}

Program RoundWeightsToBf16(const Program& program) {
  Program rounded = program;
  const auto round_all = [](std::vector<float>& weights) {
    for (float& w : weights) w = RoundToBf16(w);
  };
  for (Op& op : rounded.ops) {
    if (auto* conv = std::get_if<ConvOp>(&op.params)) {
      round_all(conv->weight);
    } else if (auto* linear = std::get_if<LinearOp>(&op.params)) {
      round_all(linear->weight);
    } else if (auto* rnn = std::get_if<RnnOp>(&op.params)) {
      round_all(rnn->w);
      round_all(rnn->r);
    }
  }
  return rounded;
}

int64_t Program::FlopsPerFrame() const {
  int64_t flops = 0;
  for (const Op& op : ops) {
    if (const auto* conv = std::get_if<ConvOp>(&op.params)) {
      flops += 2 * conv->out_channels * (conv->in_channels / conv->groups) * conv->kernel;
    } else if (const auto* linear = std::get_if<LinearOp>(&op.params)) {
      flops += 2 * linear->rows * linear->in_features * linear->out_features;
    } else if (const auto* rnn = std::get_if<RnnOp>(&op.params)) {
      flops += 2 * rnn->gates() * rnn->hidden * (rnn->input_size + rnn->hidden);
    } else {
      flops += values[op.output].size;
    }
  }
  return flops;
}

}  // namespace sluice::streaming
