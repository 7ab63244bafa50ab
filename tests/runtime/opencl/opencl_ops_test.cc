// Every op and option of runtime/streaming/program.h on the OpenCL backend, against the CPU
// backend, with both kernel variants: hand-built programs cover what the reference models do not
// (depthwise and grouped convs, multi-row Linear, GRU both ways, LayerNorm, every reduction,
// log-softmax, every unary and binary kind with maps and constants, fused activations on any op,
// warm-up lags, outputs that repeat a value or are the input).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/opencl/opencl_backend.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/runtime/opencl/opencl_testing.h"

namespace sluice::opencl {
namespace {

using ::sluice::model_testing::AllClose;
using ::sluice::opencl::testing::TestOptions;
using ::sluice::opencl::testing::VariantSuffix;
using ::sluice::status_testing::IsOk;
using streaming::AxisShape;
using streaming::Op;
using streaming::Program;

// Builds a Program op by op, laying out state regions the way the streaming transform does.
class ProgramBuilder {
 public:
  explicit ProgramBuilder(int64_t input_size) : rng_(42) {
    program_.values.push_back({"x", input_size});
    program_.input_value = 0;
    program_.input = Spec("x", input_size);
    program_.state_bytes = sizeof(int64_t);
  }

  int input() const { return 0; }
  int64_t size(int value) const { return program_.values[value].size; }

  int Emit(std::vector<int> inputs, int64_t out_size, streaming::OpParams params,
           std::optional<ir::UnaryKind> activation = std::nullopt, int64_t lag = 0) {
    Op op;
    op.node = absl::StrCat("/op", program_.ops.size());
    op.inputs = std::move(inputs);
    op.output = static_cast<int>(program_.values.size());
    op.input_lag = lag;
    if (activation) {
      streaming::UnaryOp act;
      act.kind = *activation;
      act.params.alpha = 0.2f;
      op.activation = act;
    }
    op.params = std::move(params);
    program_.values.push_back({op.node, out_size});
    program_.ops.push_back(std::move(op));
    return program_.ops.back().output;
  }

  std::vector<float> Random(int64_t count, float scale) {
    std::normal_distribution<float> dist(0.f, scale);
    std::vector<float> v(count);
    for (float& x : v) x = dist(rng_);
    return v;
  }

  int Conv(int in, int64_t out_channels, int64_t kernel, int64_t dilation, int64_t groups,
           std::optional<ir::UnaryKind> activation = std::nullopt, int64_t lag = 0) {
    streaming::ConvOp conv;
    conv.in_channels = size(in);
    conv.out_channels = out_channels;
    conv.kernel = kernel;
    conv.dilation = dilation;
    conv.groups = groups;
    const int64_t fan_in = conv.in_channels / groups * kernel;
    conv.weight = Random(out_channels * fan_in, 1.f / std::sqrt(static_cast<float>(fan_in)));
    conv.bias = Random(out_channels, 0.1f);
    conv.state_offset = Region(streaming::ConvStateBytes(conv));
    return Emit({in}, out_channels, conv, activation, lag);
  }

  int Linear(int in, int64_t rows, int64_t out_features, bool bias,
             std::optional<ir::UnaryKind> activation = std::nullopt) {
    streaming::LinearOp linear;
    linear.rows = rows;
    linear.in_features = size(in) / rows;
    linear.out_features = out_features;
    linear.weight = Random(linear.in_features * out_features,
                           1.f / std::sqrt(static_cast<float>(linear.in_features)));
    if (bias) linear.bias = Random(out_features, 0.1f);
    return Emit({in}, rows * out_features, linear, activation);
  }

  int Rnn(int in, int64_t hidden, bool gru, bool linear_before_reset,
          std::optional<ir::UnaryKind> activation = std::nullopt, int64_t lag = 0) {
    streaming::RnnOp rnn;
    rnn.gru = gru;
    rnn.linear_before_reset = linear_before_reset;
    rnn.input_size = size(in);
    rnn.hidden = hidden;
    const int64_t gh = rnn.gates() * hidden;
    rnn.w = Random(rnn.input_size * gh, 0.4f);
    rnn.r = Random(hidden * gh, 0.4f);
    rnn.w_bias = Random(gh, 0.1f);
    rnn.r_bias = Random(gh, 0.1f);
    rnn.state_offset = Region(streaming::RnnStateBytes(rnn));
    return Emit({in}, hidden, rnn, activation, lag);
  }

  int Unary(int in, ir::UnaryKind kind, ir::UnaryParams params = {}) {
    streaming::UnaryOp unary;
    unary.kind = kind;
    unary.params = params;
    return Emit({in}, size(in), unary);
  }

  int Binary(std::vector<int> inputs, int64_t out_size, ir::BinaryKind kind,
             std::vector<int32_t> map_a = {}, std::vector<int32_t> map_b = {},
             std::vector<float> constant = {}, bool constant_is_lhs = false,
             std::optional<ir::UnaryKind> activation = std::nullopt) {
    streaming::BinaryOp binary;
    binary.kind = kind;
    binary.map_a = std::move(map_a);
    binary.map_b = std::move(map_b);
    binary.constant = std::move(constant);
    binary.constant_is_lhs = constant_is_lhs;
    return Emit(std::move(inputs), out_size, binary, activation);
  }

  Program Finish(const std::vector<int>& outputs, int64_t warmup) {
    for (int v : outputs) program_.output_values.push_back(v);
    for (size_t j = 0; j < outputs.size(); ++j) {
      program_.outputs.push_back(Spec(absl::StrCat("y", j), size(outputs[j])));
    }
    program_.warmup_frames = warmup;
    program_.state_bytes = (program_.state_bytes + 63) / 64 * 64;
    return program_;
  }

 private:
  static streaming::StreamSpec Spec(const std::string& name, int64_t size) {
    streaming::StreamSpec spec;
    spec.name = name;
    spec.offline_shape = {1, size, -1};
    spec.time_axis = 2;
    spec.batch_axis = 0;
    spec.frame_shape = {1, size};
    spec.frame_size = size;
    return spec;
  }
  int64_t Region(int64_t bytes) {
    const int64_t offset = (program_.state_bytes + 63) / 64 * 64;
    program_.state_bytes = offset + bytes;
    return offset;
  }

  Program program_;
  std::mt19937 rng_;
};

using ir::BinaryKind;
using ir::UnaryKind;

// Convs of every shape, Linear with rows, GRU both ways and LSTM with lags and activations.
Program StatefulProgram() {
  ProgramBuilder b(24);
  const int dw = b.Conv(b.input(), 24, 3, 2, 24, UnaryKind::kSilu);          // depthwise
  const int grouped = b.Conv(dw, 12, 2, 1, 3, UnaryKind::kLeakyRelu);        // 8 -> 4 per group
  const int dense = b.Conv(grouped, 32, 4, 3, 1, UnaryKind::kRelu, 1);       // dilated, lag 1
  const int pointwise = b.Conv(dense, 16, 1, 1, 1);                          // window of one
  const int multiplier = b.Conv(pointwise, 32, 2, 1, 16, UnaryKind::kTanh);  // depthwise x2
  const int rows = b.Linear(multiplier, 4, 5, true, UnaryKind::kGelu);       // 4 rows of 8 -> 5
  const int flat = b.Linear(rows, 1, 8, false);
  const int gru_lbr = b.Rnn(flat, 6, true, true);
  const int gru = b.Rnn(gru_lbr, 7, true, false, UnaryKind::kRelu, 2);
  const int lstm = b.Rnn(gru, 16, false, false, UnaryKind::kSigmoid, 2);
  const int lstm_odd = b.Rnn(lstm, 5, false, false);
  const int out = b.Conv(lstm_odd, 5, 3, 1, 1, std::nullopt, 3);
  return b.Finish({out, lstm}, /*warmup=*/3);
}

// Elementwise and shape ops, including every unary and binary kind.
Program StatelessProgram() {
  ProgramBuilder b(16);
  const int x = b.input();
  std::vector<int> parts;
  for (UnaryKind kind :
       {UnaryKind::kRelu, UnaryKind::kLeakyRelu, UnaryKind::kSigmoid, UnaryKind::kTanh,
        UnaryKind::kGelu, UnaryKind::kErf, UnaryKind::kSilu, UnaryKind::kSoftplus, UnaryKind::kExp,
        UnaryKind::kNeg, UnaryKind::kAbs, UnaryKind::kElu, UnaryKind::kFloor, UnaryKind::kCeil,
        UnaryKind::kSign, UnaryKind::kIdentity}) {
    ir::UnaryParams params;
    params.alpha = 0.3f;
    parts.push_back(b.Unary(x, kind, params));
  }
  ir::UnaryParams clip;
  clip.lo = -0.5f;
  clip.hi = 0.75f;
  parts.push_back(b.Unary(x, UnaryKind::kClip, clip));
  ir::UnaryParams hard;
  hard.alpha = 0.2f;
  hard.beta = 0.5f;
  parts.push_back(b.Unary(x, UnaryKind::kHardSigmoid, hard));
  // Positive inputs for log, sqrt, reciprocal and pow.
  const int positive = b.Binary({b.Unary(x, UnaryKind::kAbs)}, 16, BinaryKind::kAdd, {}, {},
                                std::vector<float>(16, 1.f));
  parts.push_back(b.Unary(positive, UnaryKind::kLog));
  parts.push_back(b.Unary(positive, UnaryKind::kSqrt));
  parts.push_back(b.Unary(positive, UnaryKind::kReciprocal));
  parts.push_back(b.Binary({positive}, 16, BinaryKind::kPow, {}, {}, std::vector<float>(16, 2.f)));
  parts.push_back(b.Binary({positive}, 16, BinaryKind::kPow, {}, {}, std::vector<float>(16, 1.5f)));
  // Two streamed operands with broadcast maps: row-wise against a 4-vector.
  const int small = b.Emit({x}, 4, streaming::ReduceOp{streaming::ReduceKind::kMean, {4, 4, 1}});
  std::vector<int32_t> tile(16);
  std::vector<int32_t> reversed(16);
  for (int i = 0; i < 16; ++i) {
    tile[i] = i / 4;
    reversed[i] = 15 - i;
  }
  for (BinaryKind kind :
       {BinaryKind::kAdd, BinaryKind::kSub, BinaryKind::kMul, BinaryKind::kMin, BinaryKind::kMax}) {
    parts.push_back(b.Binary({x, small}, 16, kind, reversed, tile));
  }
  parts.push_back(
      b.Binary({x, positive}, 16, BinaryKind::kDiv, {}, {}, {}, false, UnaryKind::kTanh));
  std::vector<float> ramp(16);
  for (int i = 0; i < 16; ++i) ramp[i] = 0.25f * static_cast<float>(i) - 1.f;
  parts.push_back(b.Binary({x}, 16, BinaryKind::kSub, {}, reversed, ramp, /*lhs=*/true));
  parts.push_back(b.Binary({positive}, 16, BinaryKind::kDiv, {}, {}, ramp, /*lhs=*/true));
  parts.push_back(b.Binary({x}, 16, BinaryKind::kMul, reversed, {}, ramp, /*lhs=*/false));

  // Reductions, softmax and layer norm over views of a concat of everything.
  streaming::ConcatOp concat;
  concat.outer = 2;  // Each part viewed as [2][8].
  concat.parts.assign(parts.size(), 8);
  const int64_t total = static_cast<int64_t>(parts.size()) * 16;
  const int all = b.Emit(parts, total, concat);
  const int64_t columns = total / 2;
  std::vector<int> outs;
  for (streaming::ReduceKind kind :
       {streaming::ReduceKind::kSum, streaming::ReduceKind::kMean, streaming::ReduceKind::kMax,
        streaming::ReduceKind::kMin, streaming::ReduceKind::kL2,
        streaming::ReduceKind::kSumSquare}) {
    outs.push_back(b.Emit({all}, 2 * 8, streaming::ReduceOp{kind, {2, columns / 8, 8}}));
  }
  outs.push_back(b.Emit({all}, total, streaming::SoftmaxOp{{2, columns / 8, 8}, false}));
  outs.push_back(b.Emit({all}, total, streaming::SoftmaxOp{{1, total, 1}, true}, UnaryKind::kExp));
  streaming::LayerNormOp norm;
  norm.shape = {2, columns, 1};
  norm.epsilon = 1e-3f;
  norm.scale = b.Random(columns, 1.f);
  norm.bias = b.Random(columns, 0.1f);
  outs.push_back(b.Emit({all}, total, norm));
  streaming::SliceOp slice;
  slice.shape = {2, columns, 1};
  slice.start = 3;
  slice.step = 5;
  slice.count = (columns - 3 + 4) / 5;
  outs.push_back(b.Emit({all}, 2 * slice.count, slice, UnaryKind::kAbs));
  streaming::ConcatOp joined;
  joined.outer = 1;
  int64_t joined_size = 0;
  for (int v : outs) {
    joined.parts.push_back(b.size(v));
    joined_size += b.size(v);
  }
  const int result = b.Emit(outs, joined_size, joined);
  // Outputs: a computed value, the same value again, and the model input.
  return b.Finish({result, result, x}, /*warmup=*/0);
}

class OpenClOpsTest : public ::testing::TestWithParam<KernelVariant> {
 protected:
  // Streams `sessions` sessions with random frames for `steps` steps (random subsets), on the
  // OpenCL and CPU backends in lockstep; every ready output must agree.
  void CompareWithCpu(const Program& source, int sessions, int steps) {
    auto program = std::make_shared<const Program>(source);
    BackendOptions options;
    options.max_batch = 16;
    OpenClOptions opencl_options = TestOptions(GetParam());
    opencl_options.read_back_recurrent_state = true;
    ASSERT_OK_AND_ASSIGN(auto opencl, OpenClBackend::Create(program, options, opencl_options));
    ASSERT_OK_AND_ASSIGN(auto cpu, cpu::CpuBackend::Create(program, options));
    std::vector<SlotId> a;
    std::vector<SlotId> b;
    std::vector<int64_t> step(sessions, 0);
    for (int s = 0; s < sessions; ++s) {
      ASSERT_OK_AND_ASSIGN(SlotId x, opencl->AllocateSlot());
      ASSERT_OK_AND_ASSIGN(SlotId y, cpu->AllocateSlot());
      a.push_back(x);
      b.push_back(y);
    }
    std::mt19937 rng(7);
    std::normal_distribution<float> dist(0.f, 1.f);
    const int64_t in_size = program->input.frame_size;
    for (int t = 0; t < steps; ++t) {
      std::vector<int> members;
      for (int s = 0; s < sessions; ++s) {
        if (rng() % 3 != 0) members.push_back(s);
      }
      std::vector<float> frames(members.size() * in_size);
      for (float& x : frames) x = dist(rng);
      std::vector<StepItem> items_a;
      std::vector<StepItem> items_b;
      for (size_t i = 0; i < members.size(); ++i) {
        items_a.push_back({a[members[i]], frames.data() + i * in_size});
        items_b.push_back({b[members[i]], frames.data() + i * in_size});
      }
      std::vector<std::vector<float>> out_a(program->outputs.size());
      std::vector<std::vector<float>> out_b(program->outputs.size());
      std::vector<float*> ptr_a;
      std::vector<float*> ptr_b;
      for (size_t j = 0; j < program->outputs.size(); ++j) {
        out_a[j].assign(std::max<size_t>(1, members.size()) * program->outputs[j].frame_size, NAN);
        out_b[j].assign(out_a[j].size(), NAN);
        ptr_a.push_back(out_a[j].data());
        ptr_b.push_back(out_b[j].data());
      }
      std::vector<uint8_t> ready_a(members.size(), 2);
      std::vector<uint8_t> ready_b(members.size(), 2);
      ASSERT_THAT(opencl->Step(items_a, ptr_a, absl::MakeSpan(ready_a)), IsOk());
      ASSERT_THAT(cpu->Step(items_b, ptr_b, absl::MakeSpan(ready_b)), IsOk());
      ASSERT_EQ(ready_a, ready_b) << "step " << t;
      for (size_t i = 0; i < members.size(); ++i) {
        EXPECT_EQ(ready_a[i], step[members[i]] >= program->warmup_frames ? 1 : 0);
        if (ready_a[i]) {
          for (size_t j = 0; j < program->outputs.size(); ++j) {
            const int64_t size = program->outputs[j].frame_size;
            NpyArray x{{size}, {out_a[j].begin() + i * size, out_a[j].begin() + (i + 1) * size}};
            NpyArray y{{size}, {out_b[j].begin() + i * size, out_b[j].begin() + (i + 1) * size}};
            ASSERT_TRUE(AllClose(x, y, 1e-4, 1e-4))
                << "step " << t << " session " << members[i] << " output " << j;
          }
        }
        ++step[members[i]];
        // The read-back holds the step counter and the LSTM/GRU regions of the device state.
        ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> image,
                             opencl->LastStepRecurrentState(static_cast<int>(i)));
        ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, opencl->ExportSlot(a[members[i]]));
        ASSERT_EQ(image.size(), state.size());
        EXPECT_EQ(0, std::memcmp(image.data(), state.data(), sizeof(int64_t)));
        for (const Op& op : program->ops) {
          if (const auto* rnn = std::get_if<streaming::RnnOp>(&op.params)) {
            EXPECT_EQ(
                0, std::memcmp(image.data() + rnn->state_offset, state.data() + rnn->state_offset,
                               streaming::RnnStateBytes(*rnn)))
                << op.node << " step " << t;
          } else if (const auto* conv = std::get_if<streaming::ConvOp>(&op.params)) {
            const auto begin = image.begin() + conv->state_offset;
            EXPECT_TRUE(std::all_of(begin, begin + streaming::ConvStateBytes(*conv),
                                    [](uint8_t x) { return x == 0; }));
          }
        }
      }
    }
    for (int s = 0; s < sessions; ++s) {
      ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> x, opencl->ExportSlot(a[s]));
      ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> y, cpu->ExportSlot(b[s]));
      ASSERT_EQ(x.size(), y.size());
      EXPECT_EQ(0, std::memcmp(x.data(), y.data(), sizeof(int64_t))) << "step counter";
    }
  }
};

TEST_P(OpenClOpsTest, StatefulOpsMatchCpu) { CompareWithCpu(StatefulProgram(), 9, 24); }

TEST_P(OpenClOpsTest, StatelessOpsMatchCpu) { CompareWithCpu(StatelessProgram(), 5, 6); }

INSTANTIATE_TEST_SUITE_P(Variants, OpenClOpsTest,
                         ::testing::Values(KernelVariant::kNdRange, KernelVariant::kSingleWorkItem),
                         [](const ::testing::TestParamInfo<KernelVariant>& info) {
                           return VariantSuffix(info.param);
                         });

}  // namespace
}  // namespace sluice::opencl
