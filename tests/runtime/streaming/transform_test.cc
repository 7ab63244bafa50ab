// The core invariant of the streaming transform: for every reference model, streaming each
// sequence frame by frame through the per-step Program reproduces the offline model's output
// (onnxruntime's), however sessions are interleaved, batched, reset, moved or grouped; and
// every model that cannot stream is refused with an error naming the node and the reason.
// Hand-built conv and GRU graphs cover CPU paths the reference models do not reach.
#include "runtime/streaming/transform.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "onnx/onnx_pb.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/sequence_runner.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"

namespace sluice::streaming {
namespace {

using ::sluice::model_testing::AllClose;
using ::sluice::model_testing::ExtractFrame;
using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ManifestNames;
using ::sluice::model_testing::ManifestRow;
using ::sluice::model_testing::NanArrayLike;
using ::sluice::model_testing::ReadManifest;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::model_testing::ScatterFrame;
using ::sluice::model_testing::StepBatch;
using ::sluice::model_testing::StepResult;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::AnyOf;
using ::testing::HasSubstr;

std::vector<float> RandomFrame(int64_t size, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> frame(size);
  for (float& x : frame) x = dist(rng);
  return frame;
}

class StreamModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto model = LoadReferenceModel(GetParam());
    ASSERT_THAT(model, IsOk());
    model_ = *std::move(model);
    const Program& program = *model_.program;
    ASSERT_EQ(program.outputs.size(), 1u) << "expected.npy holds one output";
    ASSERT_EQ(model_.input.shape.size(), program.input.offline_shape.size());
    ASSERT_EQ(model_.expected.shape.size(), program.outputs[0].offline_shape.size());
    ASSERT_GE(model_.frames(), 4);
  }

  absl::StatusOr<std::unique_ptr<cpu::CpuBackend>> NewBackend(int max_batch = 256) const {
    BackendOptions options;
    options.max_batch = max_batch;
    return cpu::CpuBackend::Create(model_.program, options);
  }

  const StreamSpec& in_spec() const { return model_.program->input; }
  const StreamSpec& out_spec() const { return model_.program->outputs[0]; }
  int64_t warmup() const { return model_.program->warmup_frames; }
  // Row r's input frame t.
  std::vector<float> InputFrame(int64_t t, int64_t r) const {
    return ExtractFrame(model_.input, in_spec(), t, r);
  }

  // Streams every row of the input through `slots` (slot r plays row r), one frame per row per
  // call, all rows in one batch, from frame `from` to `to` (the sessions are at step `from`);
  // checks the ready flags against the warm-up and writes ready outputs to `streamed` (offline
  // layout).
  void StreamRows(Backend& backend, const std::vector<SlotId>& slots, int64_t from, int64_t to,
                  NpyArray* streamed) const {
    for (int64_t t = from; t < to; ++t) {
      std::vector<std::vector<float>> frames;
      std::vector<StepItem> batch;
      for (size_t r = 0; r < slots.size(); ++r) frames.push_back(InputFrame(t, r));
      for (size_t r = 0; r < slots.size(); ++r) batch.push_back({slots[r], frames[r].data()});
      ASSERT_OK_AND_ASSIGN(StepResult result, StepBatch(backend, batch));
      for (size_t r = 0; r < slots.size(); ++r) {
        ASSERT_EQ(result.ready[r], t >= warmup() ? 1 : 0) << "row " << r << " frame " << t;
        if (result.ready[r]) {
          ScatterFrame(result.frames[r], out_spec(), t - warmup(), r, streamed);
        }
      }
    }
  }

  ReferenceModel model_;
};

TEST_P(StreamModelTest, WarmupAndTimeAxisMatchManifest) {
  EXPECT_EQ(model_.program->warmup_frames, model_.row.warmup);
  EXPECT_EQ(in_spec().time_axis, model_.row.time_axis);
  EXPECT_EQ(in_spec().offline_shape[in_spec().time_axis], -1);
  // The expected output has T - warmup frames on its time axis.
  EXPECT_EQ(model_.expected.shape[out_spec().time_axis], model_.frames() - model_.row.warmup);
  EXPECT_GT(model_.program->state_bytes, 0);
  EXPECT_EQ(model_.program->state_bytes % 64, 0);
  // The frame sizes agree with the arrays: one frame per (row, time) pair.
  EXPECT_EQ(in_spec().frame_size * model_.rows() * model_.frames(),
            static_cast<int64_t>(model_.input.data.size()));
  EXPECT_EQ(out_spec().frame_size * model_.rows() * model_.out_frames(),
            static_cast<int64_t>(model_.expected.data.size()));
}

TEST_P(StreamModelTest, ExplicitTimeAxisGivesTheSameProgram) {
  TransformOptions options;
  options.time_axis = model_.row.time_axis;
  ASSERT_OK_AND_ASSIGN(Program program, LoadProgram(model_.row.ModelPath(), options));
  EXPECT_EQ(program.warmup_frames, model_.program->warmup_frames);
  EXPECT_EQ(program.state_bytes, model_.program->state_bytes);
  EXPECT_EQ(program.ops.size(), model_.program->ops.size());
  EXPECT_EQ(program.input.frame_size, in_spec().frame_size);
}

TEST_P(StreamModelTest, StreamingMatchesOffline) {
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  SequenceRunOptions options;
  options.copies = 3;  // >= 16 interleaved sessions of 8 different sequences.
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> outputs,
                       RunSequences(*backend, model_.input, options));
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_TRUE(AllClose(outputs[0], model_.expected));
  EXPECT_EQ(backend->live_slots(), 0) << "RunSequences must free its slots";
}

TEST_P(StreamModelTest, StreamingMatchesOfflineInSmallBatches) {
  // Sessions split over several Step calls per frame (batch 5 does not divide the count).
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(5));
  SequenceRunOptions options;
  options.copies = 2;
  options.batch = 5;
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> outputs,
                       RunSequences(*backend, model_.input, options));
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_TRUE(AllClose(outputs[0], model_.expected));
}

TEST_P(StreamModelTest, ShuffledInterleavingMatchesOffline) {
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  const int64_t rows = model_.rows();
  const int64_t frames = model_.frames();
  // At least 8 sessions and 2 copies of every row; session s streams row s % rows.
  const int64_t groups = std::max<int64_t>(2, (8 + rows - 1) / rows);
  const int64_t sessions = groups * rows;
  std::vector<SlotId> slots;
  for (int64_t s = 0; s < sessions; ++s) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  std::vector<std::vector<std::vector<float>>> inputs(rows);  // [row][t] frame.
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < frames; ++t) inputs[r].push_back(InputFrame(t, r));
  }
  // Per copy group (session s is in group s / rows), the streamed output of its rows.
  std::vector<NpyArray> streamed(groups, NanArrayLike(model_.expected));
  std::vector<int64_t> next(sessions, 0);  // Next frame per session.
  std::mt19937 rng(20240611);
  int round = 0;
  int64_t finished = 0;
  while (finished < sessions) {
    // A random subset of unfinished sessions, in random order: sessions drift apart in time.
    std::vector<int64_t> order;
    for (int64_t s = 0; s < sessions; ++s) {
      if (next[s] < frames && (rng() % 4 != 0)) order.push_back(s);
    }
    if (order.empty()) continue;
    std::shuffle(order.begin(), order.end(), rng);
    const size_t chunk = round % 3 == 0 ? 1 : round % 3 == 1 ? 3 : order.size();
    ++round;
    for (size_t first = 0; first < order.size(); first += chunk) {
      const size_t count = std::min(chunk, order.size() - first);
      std::vector<StepItem> batch;
      for (size_t i = 0; i < count; ++i) {
        const int64_t s = order[first + i];
        batch.push_back({slots[s], inputs[s % rows][next[s]].data()});
      }
      ASSERT_OK_AND_ASSIGN(StepResult result, StepBatch(*backend, batch));
      for (size_t i = 0; i < count; ++i) {
        const int64_t s = order[first + i];
        const int64_t t = next[s]++;
        if (next[s] == frames) ++finished;
        ASSERT_EQ(result.ready[i], t >= warmup() ? 1 : 0) << "session " << s << " frame " << t;
        if (result.ready[i]) {
          ScatterFrame(result.frames[i], out_spec(), t - warmup(), s % rows, &streamed[s / rows]);
        }
      }
    }
  }
  for (int64_t group = 0; group < groups; ++group) {
    EXPECT_TRUE(AllClose(streamed[group], model_.expected)) << "session copy group " << group;
  }
}

TEST_P(StreamModelTest, ResetMidSequenceRestartsFromScratch) {
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  const int64_t rows = model_.rows();
  const int64_t half = model_.frames() / 2;
  std::vector<SlotId> slots;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  // First half: each slot streams another row, so stale state would show in the outputs.
  std::mt19937 rng(7);
  for (int64_t t = 0; t < half; ++t) {
    std::vector<std::vector<float>> frames;
    std::vector<StepItem> batch;
    for (int64_t r = 0; r < rows; ++r) {
      frames.push_back(rows > 1 ? InputFrame(t, (r + 1) % rows)
                                : RandomFrame(in_spec().frame_size, rng));
    }
    for (int64_t r = 0; r < rows; ++r) batch.push_back({slots[r], frames[r].data()});
    ASSERT_THAT(StepBatch(*backend, batch), IsOk());
  }
  for (SlotId slot : slots) ASSERT_THAT(backend->ResetSlot(slot), IsOk());
  for (SlotId slot : slots) {
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, backend->ExportSlot(slot));
    EXPECT_EQ(std::count(state.begin(), state.end(), 0), static_cast<int64_t>(state.size()))
        << "a reset slot's state is all zeros (step 0, empty windows)";
  }
  NpyArray streamed = NanArrayLike(model_.expected);
  StreamRows(*backend, slots, 0, model_.frames(), &streamed);
  EXPECT_TRUE(AllClose(streamed, model_.expected));
}

TEST_P(StreamModelTest, ExportImportMidSequenceContinues) {
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  const int64_t rows = model_.rows();
  const int64_t half = model_.frames() / 2;
  std::vector<SlotId> slots;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  NpyArray streamed = NanArrayLike(model_.expected);
  StreamRows(*backend, slots, 0, half, &streamed);
  if (HasFatalFailure()) return;

  std::mt19937 rng(99);
  std::vector<SlotId> moved;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, backend->ExportSlot(slots[r]));
    ASSERT_EQ(static_cast<int64_t>(state.size()), model_.program->state_bytes);
    ASSERT_OK_AND_ASSIGN(SlotId fresh, backend->AllocateSlot());
    ASSERT_NE(fresh, slots[r]);
    // Dirty the fresh slot first: the import must replace all of its state.
    std::vector<float> noise = RandomFrame(in_spec().frame_size, rng);
    for (int i = 0; i < 3; ++i) {
      const StepItem item{fresh, noise.data()};
      ASSERT_THAT(StepBatch(*backend, {&item, 1}), IsOk());
    }
    ASSERT_THAT(backend->ImportSlot(fresh, state), IsOk());
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> reexported, backend->ExportSlot(fresh));
    EXPECT_EQ(reexported, state);
    ASSERT_THAT(backend->FreeSlot(slots[r]), IsOk());
    moved.push_back(fresh);
  }
  StreamRows(*backend, moved, half, model_.frames(), &streamed);
  EXPECT_TRUE(AllClose(streamed, model_.expected));
}

TEST_P(StreamModelTest, StateMovesBetweenBackendInstances) {
  ASSERT_OK_AND_ASSIGN(auto first, NewBackend(256));
  ASSERT_OK_AND_ASSIGN(auto second, NewBackend(3));
  const int64_t rows = model_.rows();
  const int64_t third = model_.frames() / 3;
  std::vector<SlotId> slots;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, first->AllocateSlot());
    slots.push_back(slot);
  }
  NpyArray streamed = NanArrayLike(model_.expected);
  StreamRows(*first, slots, 0, third, &streamed);
  if (HasFatalFailure()) return;
  std::vector<SlotId> moved;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, first->ExportSlot(slots[r]));
    ASSERT_OK_AND_ASSIGN(SlotId slot, second->AllocateSlot());
    ASSERT_THAT(second->ImportSlot(slot, state), IsOk());
    moved.push_back(slot);
  }
  // `second` steps at most 3 sessions at once: move the rest frame by frame in groups.
  for (int64_t t = third; t < model_.frames(); ++t) {
    for (int64_t r0 = 0; r0 < rows; r0 += 3) {
      std::vector<SlotId> group(moved.begin() + r0,
                                moved.begin() + std::min<int64_t>(rows, r0 + 3));
      std::vector<std::vector<float>> frames;
      std::vector<StepItem> batch;
      for (size_t i = 0; i < group.size(); ++i) frames.push_back(InputFrame(t, r0 + i));
      for (size_t i = 0; i < group.size(); ++i) batch.push_back({group[i], frames[i].data()});
      ASSERT_OK_AND_ASSIGN(StepResult result, StepBatch(*second, batch));
      for (size_t i = 0; i < group.size(); ++i) {
        ASSERT_EQ(result.ready[i], t >= warmup() ? 1 : 0);
        if (result.ready[i]) {
          ScatterFrame(result.frames[i], out_spec(), t - warmup(), r0 + i, &streamed);
        }
      }
    }
  }
  EXPECT_TRUE(AllClose(streamed, model_.expected));
}

TEST_P(StreamModelTest, ImportingWrongSizeStateIsInvalid) {
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, backend->ExportSlot(slot));
  ASSERT_EQ(static_cast<int64_t>(state.size()), model_.program->state_bytes);
  std::vector<uint8_t> longer(state.size() + 1, 0);
  std::vector<uint8_t> shorter(state.size() - 1, 0);
  EXPECT_THAT(backend->ImportSlot(slot, longer), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ImportSlot(slot, shorter), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ImportSlot(slot, {}), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ImportSlot(slot, state), IsOk());
}

TEST_P(StreamModelTest, BatchInvarianceIsBitwise) {
  constexpr int kBatch = 256;
  ASSERT_OK_AND_ASSIGN(auto alone, NewBackend(kBatch));
  ASSERT_OK_AND_ASSIGN(auto crowd, NewBackend(kBatch));
  const int64_t frames = model_.frames();
  const int64_t row = model_.rows() / 2;
  ASSERT_OK_AND_ASSIGN(SlotId solo, alone->AllocateSlot());
  std::vector<SlotId> slots;
  for (int i = 0; i < kBatch; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, crowd->AllocateSlot());
    slots.push_back(slot);
  }
  std::mt19937 rng(4242);
  std::vector<float> noise(kBatch * in_spec().frame_size);
  for (int64_t t = 0; t < frames; ++t) {
    const std::vector<float> frame = InputFrame(t, row);
    const StepItem item{solo, frame.data()};
    ASSERT_OK_AND_ASSIGN(StepResult one, StepBatch(*alone, {&item, 1}));
    // The tracked session (slots[0]) sits at a different batch position every step; the other
    // 255 sessions stream random data.
    std::normal_distribution<float> dist(0.f, 1.f);
    for (float& x : noise) x = dist(rng);
    std::vector<SlotId> order = slots;
    std::shuffle(order.begin() + 1, order.end(), rng);
    const int position = static_cast<int>((t * 37 + 11) % kBatch);
    std::swap(order[0], order[position]);
    std::vector<StepItem> batch;
    for (int i = 0; i < kBatch; ++i) {
      batch.push_back(
          {order[i], i == position ? frame.data() : noise.data() + i * in_spec().frame_size});
    }
    ASSERT_OK_AND_ASSIGN(StepResult many, StepBatch(*crowd, batch));
    ASSERT_EQ(one.ready[0], many.ready[position]);
    if (!one.ready[0]) continue;
    const std::vector<float>& a = one.frames[0];
    const std::vector<float>& b = many.frames[position];
    ASSERT_EQ(a.size(), b.size());
    ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)))
        << "frame " << t << ": the session's output alone differs from its output at position "
        << position << " of a batch of " << kBatch;
  }
}

INSTANTIATE_TEST_SUITE_P(Manifest, StreamModelTest, ::testing::ValuesIn(ManifestNames("stream")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

class RefusedModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RefusedModelTest, IsRefusedNamingNodeAndReason) {
  ASSERT_OK_AND_ASSIGN(ManifestRow row, model_testing::FindManifestRow(GetParam()));
  ASSERT_TRUE(std::filesystem::exists(row.ModelPath())) << row.ModelPath();
  auto program = LoadProgram(row.ModelPath(), {});
  ASSERT_FALSE(program.ok()) << row.name << " must not stream";
  EXPECT_THAT(program.status().code(),
              AnyOf(absl::StatusCode::kInvalidArgument, absl::StatusCode::kUnimplemented));
  const std::string message(program.status().message());
  EXPECT_THAT(message, HasSubstr(row.node));
  EXPECT_THAT(absl::AsciiStrToLower(message), HasSubstr(absl::AsciiStrToLower(row.reason)));
}

INSTANTIATE_TEST_SUITE_P(Manifest, RefusedModelTest, ::testing::ValuesIn(ManifestNames("refuse")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// Hand-built causal convolutions (left padding = receptive field) covering every CPU conv
// path (plain, dilated, grouped, depthwise) with and without a fused ReLU, checked against a
// direct offline computation.
struct ConvCase {
  std::string name;
  int in_channels;
  int out_channels;
  int kernel;
  int dilation;
  int groups;
  bool relu;
};

void PrintTo(const ConvCase& c, std::ostream* os) { *os << c.name; }

class HandBuiltConvTest : public ::testing::TestWithParam<ConvCase> {};

void SetTensorType(::onnx::ValueInfoProto* info, const std::string& name,
                   const std::vector<std::string>& dims) {
  info->set_name(name);
  auto* tensor_type = info->mutable_type()->mutable_tensor_type();
  tensor_type->set_elem_type(::onnx::TensorProto::FLOAT);
  for (const std::string& dim : dims) {
    if (!dim.empty() && std::isdigit(static_cast<unsigned char>(dim[0]))) {
      tensor_type->mutable_shape()->add_dim()->set_dim_value(std::stoll(dim));
    } else {
      tensor_type->mutable_shape()->add_dim()->set_dim_param(dim);
    }
  }
}

void AddInitializer(::onnx::GraphProto* graph, const std::string& name,
                    const std::vector<int64_t>& dims, const std::vector<float>& values) {
  ::onnx::TensorProto* t = graph->add_initializer();
  t->set_name(name);
  t->set_data_type(::onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  for (float v : values) t->add_float_data(v);
}

void AddInts(::onnx::NodeProto* node, const std::string& name, const std::vector<int64_t>& ints) {
  auto* attr = node->add_attribute();
  attr->set_name(name);
  attr->set_type(::onnx::AttributeProto::INTS);
  for (int64_t v : ints) attr->add_ints(v);
}

TEST_P(HandBuiltConvTest, StreamingMatchesDirectComputation) {
  const ConvCase& c = GetParam();
  const int64_t cin_g = c.in_channels / c.groups;
  const int64_t cout_g = c.out_channels / c.groups;
  const int64_t receptive = (c.kernel - 1) * c.dilation;
  std::mt19937 rng(c.in_channels * 131 + c.kernel * 17 + c.groups);
  const std::vector<float> weight = RandomFrame(c.out_channels * cin_g * c.kernel, rng);
  const std::vector<float> bias = RandomFrame(c.out_channels, rng);

  ::onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(13);
  ::onnx::GraphProto* graph = model.mutable_graph();
  SetTensorType(graph->add_input(), "x", {"B", std::to_string(c.in_channels), "T"});
  SetTensorType(graph->add_output(), "y", {"B", std::to_string(c.out_channels), "T"});
  AddInitializer(graph, "w", {c.out_channels, cin_g, c.kernel}, weight);
  AddInitializer(graph, "b", {c.out_channels}, bias);
  ::onnx::NodeProto* conv = graph->add_node();
  conv->set_name("/causal/Conv");
  conv->set_op_type("Conv");
  conv->add_input("x");
  conv->add_input("w");
  conv->add_input("b");
  conv->add_output(c.relu ? "conv_out" : "y");
  AddInts(conv, "kernel_shape", {c.kernel});
  AddInts(conv, "dilations", {c.dilation});
  AddInts(conv, "pads", {receptive, 0});
  auto* group = conv->add_attribute();
  group->set_name("group");
  group->set_type(::onnx::AttributeProto::INT);
  group->set_i(c.groups);
  if (c.relu) {
    ::onnx::NodeProto* relu = graph->add_node();
    relu->set_name("/causal/Relu");
    relu->set_op_type("Relu");
    relu->add_input("conv_out");
    relu->add_output("y");
  }
  std::string bytes;
  ASSERT_TRUE(model.SerializeToString(&bytes));
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, onnx_import::ImportModel(bytes, c.name));
  ASSERT_OK_AND_ASSIGN(Program built, BuildProgram(imported, {}));
  auto program = std::make_shared<const Program>(std::move(built));
  EXPECT_EQ(program->warmup_frames, 0);
  EXPECT_EQ(program->input.time_axis, 2);

  // Offline: x[R, Cin, T] -> y[R, Cout, T], causal (inputs before t = 0 are zero).
  constexpr int64_t kRows = 3, kFrames = 20;
  NpyArray x;
  x.shape = {kRows, c.in_channels, kFrames};
  x.data = RandomFrame(kRows * c.in_channels * kFrames, rng);
  NpyArray expected;
  expected.shape = {kRows, c.out_channels, kFrames};
  expected.data.assign(kRows * c.out_channels * kFrames, 0.f);
  int negatives = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t o = 0; o < c.out_channels; ++o) {
      const int64_t g = o / cout_g;
      for (int64_t t = 0; t < kFrames; ++t) {
        double acc = bias[o];
        for (int64_t ci = 0; ci < cin_g; ++ci) {
          for (int64_t i = 0; i < c.kernel; ++i) {
            const int64_t src = t - (c.kernel - 1 - i) * c.dilation;
            if (src < 0) continue;
            acc += static_cast<double>(weight[(o * cin_g + ci) * c.kernel + i]) *
                   x.data[(r * c.in_channels + g * cin_g + ci) * kFrames + src];
          }
        }
        negatives += acc < 0;
        if (c.relu && acc < 0) acc = 0;
        expected.data[(r * c.out_channels + o) * kFrames + t] = static_cast<float>(acc);
      }
    }
  }
  ASSERT_GT(negatives, 0) << "the data must exercise the ReLU";

  ASSERT_OK_AND_ASSIGN(auto backend, cpu::CpuBackend::Create(program));
  SequenceRunOptions options;
  options.copies = 2;
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> outputs, RunSequences(*backend, x, options));
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_TRUE(AllClose(outputs[0], expected));
}

INSTANTIATE_TEST_SUITE_P(
    Paths, HandBuiltConvTest,
    ::testing::Values(
        ConvCase{"plain", 6, 5, 3, 1, 1, false}, ConvCase{"plain_relu", 6, 5, 3, 1, 1, true},
        ConvCase{"wide_relu", 6, 70, 2, 1, 1, true}, ConvCase{"dilated", 6, 5, 3, 2, 1, false},
        ConvCase{"dilated_relu", 6, 5, 3, 2, 1, true}, ConvCase{"grouped", 6, 9, 3, 2, 3, false},
        ConvCase{"grouped_relu", 6, 9, 3, 2, 3, true}, ConvCase{"depthwise", 6, 6, 3, 2, 6, false},
        ConvCase{"depthwise_relu", 6, 6, 3, 2, 6, true},
        ConvCase{"depthwise_undilated_relu", 6, 6, 4, 1, 6, true}),
    [](const ::testing::TestParamInfo<ConvCase>& info) { return info.param.name; });

// ONNX GRU (gates z, r, h) in both forms of the candidate gate, against a direct computation.
class HandBuiltGruTest : public ::testing::TestWithParam<bool> {};

TEST_P(HandBuiltGruTest, StreamingMatchesDirectComputation) {
  const bool linear_before_reset = GetParam();
  constexpr int64_t kInput = 5, kHidden = 7, kRows = 3, kFrames = 12;
  std::mt19937 rng(linear_before_reset ? 11 : 12);
  const std::vector<float> w = RandomFrame(3 * kHidden * kInput, rng);   // [3H][I]
  const std::vector<float> r = RandomFrame(3 * kHidden * kHidden, rng);  // [3H][H]
  const std::vector<float> b = RandomFrame(6 * kHidden, rng);            // Wb then Rb.

  ::onnx::ModelProto model;
  model.set_ir_version(7);
  model.add_opset_import()->set_version(13);
  ::onnx::GraphProto* graph = model.mutable_graph();
  SetTensorType(graph->add_input(), "x", {"T", "B", std::to_string(kInput)});
  SetTensorType(graph->add_output(), "y", {"T", "1", "B", std::to_string(kHidden)});
  AddInitializer(graph, "W", {1, 3 * kHidden, kInput}, w);
  AddInitializer(graph, "R", {1, 3 * kHidden, kHidden}, r);
  AddInitializer(graph, "Bias", {1, 6 * kHidden}, b);
  ::onnx::NodeProto* gru = graph->add_node();
  gru->set_name("/gru/GRU");
  gru->set_op_type("GRU");
  for (const char* in : {"x", "W", "R", "Bias"}) gru->add_input(in);
  gru->add_output("y");
  auto* hidden = gru->add_attribute();
  hidden->set_name("hidden_size");
  hidden->set_type(::onnx::AttributeProto::INT);
  hidden->set_i(kHidden);
  auto* lbr = gru->add_attribute();
  lbr->set_name("linear_before_reset");
  lbr->set_type(::onnx::AttributeProto::INT);
  lbr->set_i(linear_before_reset ? 1 : 0);
  std::string bytes;
  ASSERT_TRUE(model.SerializeToString(&bytes));
  ASSERT_OK_AND_ASSIGN(ir::Graph imported, onnx_import::ImportModel(bytes, "gru"));
  ASSERT_OK_AND_ASSIGN(Program built, BuildProgram(imported, {}));
  auto program = std::make_shared<const Program>(std::move(built));
  EXPECT_EQ(program->input.time_axis, 0);

  NpyArray x;
  x.shape = {kFrames, kRows, kInput};
  x.data = RandomFrame(kFrames * kRows * kInput, rng);
  NpyArray expected;
  expected.shape = {kFrames, 1, kRows, kHidden};
  expected.data.assign(kFrames * kRows * kHidden, 0.f);
  auto sigmoid = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  for (int64_t row = 0; row < kRows; ++row) {
    std::vector<double> h(kHidden, 0.0);
    for (int64_t t = 0; t < kFrames; ++t) {
      const float* xt = x.data.data() + (t * kRows + row) * kInput;
      // gx[g] = x W_g^T + Wb_g; gh[g] = h R_g^T + Rb_g, for the 3H gate rows.
      std::vector<double> gx(3 * kHidden), gh(3 * kHidden);
      for (int64_t g = 0; g < 3 * kHidden; ++g) {
        gx[g] = b[g];
        for (int64_t i = 0; i < kInput; ++i)
          gx[g] += static_cast<double>(w[g * kInput + i]) * xt[i];
        gh[g] = b[3 * kHidden + g];
        for (int64_t k = 0; k < kHidden; ++k) gh[g] += r[g * kHidden + k] * h[k];
      }
      std::vector<double> next(kHidden);
      for (int64_t j = 0; j < kHidden; ++j) {
        const double z = sigmoid(gx[j] + gh[j]);
        const double rr = sigmoid(gx[kHidden + j] + gh[kHidden + j]);
        double candidate;
        if (linear_before_reset) {
          candidate = std::tanh(gx[2 * kHidden + j] + rr * gh[2 * kHidden + j]);
        } else {
          double reset_h = b[5 * kHidden + j];  // Rb_h + (r * h) R_h^T.
          for (int64_t k = 0; k < kHidden; ++k) {
            const double rk = sigmoid(gx[kHidden + k] + gh[kHidden + k]);
            reset_h += r[(2 * kHidden + j) * kHidden + k] * rk * h[k];
          }
          candidate = std::tanh(gx[2 * kHidden + j] + reset_h);
        }
        next[j] = (1 - z) * candidate + z * h[j];
      }
      h = next;
      for (int64_t j = 0; j < kHidden; ++j) {
        expected.data[(t * kRows + row) * kHidden + j] = static_cast<float>(h[j]);
      }
    }
  }

  ASSERT_OK_AND_ASSIGN(auto backend, cpu::CpuBackend::Create(program));
  SequenceRunOptions options;
  options.copies = 2;
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> outputs, RunSequences(*backend, x, options));
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_TRUE(AllClose(outputs[0], expected));
}

INSTANTIATE_TEST_SUITE_P(LinearBeforeReset, HandBuiltGruTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "linear_before_reset" : "reset_before_linear";
                         });

TEST(ManifestTest, ListsEveryReferenceModel) {
  ASSERT_OK_AND_ASSIGN(std::vector<ManifestRow> rows, ReadManifest());
  std::set<std::string> listed;
  int streams = 0, refusals = 0;
  for (const ManifestRow& row : rows) {
    EXPECT_TRUE(listed.insert(row.path).second) << "listed twice: " << row.path;
    EXPECT_THAT(row.kind, AnyOf("stream", "refuse")) << row.name;
    streams += row.kind == "stream";
    refusals += row.kind == "refuse";
    if (row.kind == "stream") {
      EXPECT_GE(row.time_axis, 0) << row.name;
      EXPECT_GE(row.warmup, 0) << row.name;
      EXPECT_TRUE(std::filesystem::exists(row.DataPath("input.npy"))) << row.name;
      EXPECT_TRUE(std::filesystem::exists(row.DataPath("expected.npy"))) << row.name;
    } else {
      EXPECT_NE(row.node, "-") << row.name;
      EXPECT_NE(row.reason, "-") << row.name;
    }
  }
  EXPECT_GE(streams, 1);
  EXPECT_GE(refusals, 1);
  // Every model file on disk is in the manifest, so none goes untested.
  const std::filesystem::path root = model_testing::ModelsDir();
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".onnx") continue;
    const std::string relative = std::filesystem::relative(entry.path(), root).string();
    EXPECT_TRUE(listed.count(relative)) << relative << " is not in manifest.tsv";
  }
}

}  // namespace
}  // namespace sluice::streaming
