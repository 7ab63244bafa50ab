// The OpenCL backend on every reference model, with both kernel variants, on PoCL: streaming
// equals the offline model and the CPU backend, sessions interleave, reset, and move between
// the OpenCL and CPU backends mid-sequence (their state slots are byte-compatible); a Step's
// launches and transfers do not depend on the batch size; injected faults surface as
// Unavailable.
#include "runtime/opencl/opencl_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/cpu/cpu_backend.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/runtime/opencl/opencl_testing.h"

namespace sluice::opencl {
namespace {

using ::sluice::model_testing::AllClose;
using ::sluice::model_testing::ExtractFrame;
using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ManifestNames;
using ::sluice::model_testing::NanArrayLike;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::model_testing::ScatterFrame;
using ::sluice::model_testing::StepBatch;
using ::sluice::model_testing::StepResult;
using ::sluice::opencl::testing::SharedBackend;
using ::sluice::opencl::testing::TestOptions;
using ::sluice::opencl::testing::VariantSuffix;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

constexpr int kMinSessions = 8;

// A session streaming one row of the reference input, on one of two backends.
struct Session {
  int64_t row = 0;
  Backend* backend = nullptr;
  SlotId slot = -1;
  int64_t next = 0;  // Next frame.
};

class OpenClModelTest : public ::testing::TestWithParam<std::tuple<std::string, KernelVariant>> {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(model_, LoadReferenceModel(std::get<0>(GetParam())));
    ASSERT_EQ(model_.program->outputs.size(), 1u);
    ASSERT_OK_AND_ASSIGN(opencl_, SharedBackend(model_.row.name, model_.program, variant()));
    ASSERT_EQ(opencl_->variant(), variant());
    BackendOptions options;
    options.max_batch = 64;
    ASSERT_OK_AND_ASSIGN(cpu_, cpu::CpuBackend::Create(model_.program, options));
  }

  void TearDown() override {
    for (Session& session : sessions_) {
      if (session.slot >= 0) {
        EXPECT_THAT(session.backend->FreeSlot(session.slot), IsOk());
      }
    }
  }

  KernelVariant variant() const { return std::get<1>(GetParam()); }
  const streaming::StreamSpec& in_spec() const { return model_.program->input; }
  const streaming::StreamSpec& out_spec() const { return model_.program->outputs[0]; }
  int64_t warmup() const { return model_.program->warmup_frames; }

  // At least kMinSessions sessions on the OpenCL backend, session s streaming row s % rows.
  void OpenSessions() {
    const int64_t rows = model_.rows();
    const int64_t count = (kMinSessions + rows - 1) / rows * rows;
    for (int64_t s = 0; s < count; ++s) {
      ASSERT_OK_AND_ASSIGN(SlotId slot, opencl_->AllocateSlot());
      sessions_.push_back({s % rows, opencl_, slot, 0});
    }
    streamed_.assign(count / rows, NanArrayLike(model_.expected));
  }

  // Advances the sessions `which` by one frame each (those on the same backend in one batch,
  // in the given order), recording ready outputs.
  void StepSessions(const std::vector<size_t>& which) {
    for (Backend* backend : {static_cast<Backend*>(opencl_), static_cast<Backend*>(cpu_.get())}) {
      std::vector<std::vector<float>> frames;
      std::vector<size_t> members;
      for (size_t s : which) {
        if (sessions_[s].backend != backend || sessions_[s].next >= model_.frames()) continue;
        members.push_back(s);
        frames.push_back(
            ExtractFrame(model_.input, in_spec(), sessions_[s].next, sessions_[s].row));
      }
      if (members.empty()) continue;
      std::vector<StepItem> batch;
      for (size_t i = 0; i < members.size(); ++i) {
        batch.push_back({sessions_[members[i]].slot, frames[i].data()});
      }
      ASSERT_OK_AND_ASSIGN(StepResult result, StepBatch(*backend, batch));
      for (size_t i = 0; i < members.size(); ++i) {
        Session& session = sessions_[members[i]];
        ASSERT_EQ(result.ready[i], session.next >= warmup() ? 1 : 0)
            << "session " << members[i] << " frame " << session.next << " on " << backend->name();
        if (result.ready[i]) {
          const size_t copy = members[i] / model_.rows();
          ScatterFrame(result.frames[i], out_spec(), session.next - warmup(), session.row,
                       &streamed_[copy]);
        }
        ++session.next;
      }
    }
  }

  // Steps every session in random subsets and orders until each reached frame `until`.
  void StreamShuffled(int64_t until, std::mt19937& rng) {
    while (true) {
      std::vector<size_t> which;
      for (size_t s = 0; s < sessions_.size(); ++s) {
        if (sessions_[s].next < until && (rng() % 4 != 0)) which.push_back(s);
      }
      bool done = true;
      for (const Session& session : sessions_) done = done && session.next >= until;
      if (done) return;
      std::shuffle(which.begin(), which.end(), rng);
      StepSessions(which);
      if (HasFatalFailure()) return;
    }
  }

  // Moves session s to `to` by ExportSlot / ImportSlot.
  void Move(size_t s, Backend* to) {
    Session& session = sessions_[s];
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, session.backend->ExportSlot(session.slot));
    ASSERT_EQ(static_cast<int64_t>(state.size()), model_.program->state_bytes);
    ASSERT_OK_AND_ASSIGN(SlotId slot, to->AllocateSlot());
    ASSERT_THAT(to->ImportSlot(slot, state), IsOk());
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> again, to->ExportSlot(slot));
    EXPECT_EQ(again, state) << "import then export returns the same bytes";
    ASSERT_THAT(session.backend->FreeSlot(session.slot), IsOk());
    session.backend = to;
    session.slot = slot;
  }

  void ExpectAllMatchOffline() const {
    for (size_t copy = 0; copy < streamed_.size(); ++copy) {
      EXPECT_TRUE(AllClose(streamed_[copy], model_.expected)) << "session copy " << copy;
    }
  }

  ReferenceModel model_;
  OpenClBackend* opencl_ = nullptr;  // Owned by SharedBackend, outlives the test.
  std::unique_ptr<cpu::CpuBackend> cpu_;
  std::vector<Session> sessions_;
  std::vector<NpyArray> streamed_;  // Per copy of the input rows.
};

TEST_P(OpenClModelTest, InterleavedSessionsMatchOffline) {
  OpenSessions();
  std::mt19937 rng(11);
  StreamShuffled(model_.frames(), rng);
  ExpectAllMatchOffline();
}

// Every step's outputs equal the CPU backend's on the same batches (ready frames only).
TEST_P(OpenClModelTest, StepsMatchCpuBackend) {
  const int64_t rows = model_.rows();
  std::vector<SlotId> on_opencl;
  std::vector<SlotId> on_cpu;
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(SlotId a, opencl_->AllocateSlot());
    ASSERT_OK_AND_ASSIGN(SlotId b, cpu_->AllocateSlot());
    on_opencl.push_back(a);
    on_cpu.push_back(b);
    sessions_.push_back({r, opencl_, a, 0});
    sessions_.push_back({r, cpu_.get(), b, 0});
  }
  for (int64_t t = 0; t < model_.frames(); ++t) {
    std::vector<std::vector<float>> frames;
    for (int64_t r = 0; r < rows; ++r)
      frames.push_back(ExtractFrame(model_.input, in_spec(), t, r));
    std::vector<StepItem> a;
    std::vector<StepItem> b;
    for (int64_t r = 0; r < rows; ++r) {
      a.push_back({on_opencl[r], frames[r].data()});
      b.push_back({on_cpu[r], frames[r].data()});
    }
    ASSERT_OK_AND_ASSIGN(StepResult got, StepBatch(*opencl_, a));
    ASSERT_OK_AND_ASSIGN(StepResult want, StepBatch(*cpu_, b));
    ASSERT_EQ(got.ready, want.ready) << "frame " << t;
    for (int64_t r = 0; r < rows; ++r) {
      if (!want.ready[r]) continue;
      NpyArray x{{static_cast<int64_t>(got.frames[r].size())}, got.frames[r]};
      NpyArray y{{static_cast<int64_t>(want.frames[r].size())}, want.frames[r]};
      ASSERT_TRUE(AllClose(x, y)) << "frame " << t << " row " << r;
    }
  }
  // The states agree too: integers (step counter, ring heads) exactly, floats closely.
  for (int64_t r = 0; r < rows; ++r) {
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> x, opencl_->ExportSlot(on_opencl[r]));
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> y, cpu_->ExportSlot(on_cpu[r]));
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(0, std::memcmp(x.data(), y.data(), sizeof(int64_t))) << "step counters";
    for (const streaming::Op& op : model_.program->ops) {
      if (const auto* conv = std::get_if<streaming::ConvOp>(&op.params)) {
        EXPECT_EQ(0, std::memcmp(x.data() + conv->state_offset, y.data() + conv->state_offset,
                                 sizeof(int64_t)))
            << op.node << " ring head";
      }
    }
  }
}

// Mid-sequence: half the sessions move to the CPU backend and later back, the other half are
// reset and replayed from the start; every output still equals the offline model.
TEST_P(OpenClModelTest, ResetAndMoveToCpuAndBackMidSequence) {
  OpenSessions();
  std::mt19937 rng(23);
  const int64_t third = model_.frames() / 3;
  StreamShuffled(third, rng);
  if (HasFatalFailure()) return;
  for (size_t s = 0; s < sessions_.size(); ++s) {
    if (s % 2 == 0) {
      Move(s, cpu_.get());
    } else {
      ASSERT_THAT(opencl_->ResetSlot(sessions_[s].slot), IsOk());
      ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, opencl_->ExportSlot(sessions_[s].slot));
      ASSERT_EQ(std::count(state.begin(), state.end(), 0), static_cast<int64_t>(state.size()))
          << "a reset slot is all zeros";
      sessions_[s].next = 0;
    }
    if (HasFatalFailure()) return;
  }
  StreamShuffled(2 * third, rng);
  if (HasFatalFailure()) return;
  for (size_t s = 0; s < sessions_.size(); s += 2) {
    Move(s, opencl_);
    if (HasFatalFailure()) return;
  }
  StreamShuffled(model_.frames(), rng);
  ExpectAllMatchOffline();
}

std::vector<std::tuple<std::string, KernelVariant>> ModelsAndVariants() {
  std::vector<std::tuple<std::string, KernelVariant>> params;
  for (const std::string& name : ManifestNames("stream")) {
    for (KernelVariant variant : {KernelVariant::kNdRange, KernelVariant::kSingleWorkItem}) {
      params.emplace_back(name, variant);
    }
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(
    AllModels, OpenClModelTest, ::testing::ValuesIn(ModelsAndVariants()),
    [](const ::testing::TestParamInfo<std::tuple<std::string, KernelVariant>>& info) {
      return absl::StrCat(std::get<0>(info.param), "_", VariantSuffix(std::get<1>(info.param)));
    });

class OpenClBackendTest : public ::testing::Test {
 protected:
  void LoadModel(const std::string& name) {
    ASSERT_OK_AND_ASSIGN(model_, LoadReferenceModel(name));
  }
  absl::StatusOr<std::unique_ptr<OpenClBackend>> NewBackend(
      int max_batch, int max_slots = 0, OpenClOptions options = TestOptions()) const {
    BackendOptions backend_options;
    backend_options.max_batch = max_batch;
    backend_options.max_slots = max_slots;
    return OpenClBackend::Create(model_.program, backend_options, options);
  }
  int64_t frame_size() const { return model_.program->input.frame_size; }

  static std::vector<float> RandomFrames(int64_t count, uint32_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.f, 1.f);
    std::vector<float> frames(count);
    for (float& x : frames) x = dist(rng);
    return frames;
  }

  absl::StatusOr<StepResult> StepSlots(Backend& backend, const std::vector<SlotId>& slots,
                                       const std::vector<float>& frames) const {
    std::vector<StepItem> batch;
    for (size_t i = 0; i < slots.size(); ++i) {
      batch.push_back({slots[i], frames.data() + i * frame_size()});
    }
    return StepBatch(backend, batch);
  }

  ReferenceModel model_;
};

TEST_F(OpenClBackendTest, LaunchesAndTransfersDoNotGrowWithBatchSize) {
  for (const std::string name : {"cnn_tiny", "lstm2", "ops_zoo"}) {
    for (KernelVariant variant : {KernelVariant::kNdRange, KernelVariant::kSingleWorkItem}) {
      SCOPED_TRACE(absl::StrCat(name, " ", KernelVariantName(variant)));
      LoadModel(name);
      if (HasFatalFailure()) return;
      ASSERT_OK_AND_ASSIGN(OpenClBackend * backend,
                           SharedBackend(name, model_.program, variant, /*max_batch=*/64));
      std::vector<SlotId> slots;
      for (int i = 0; i < 64; ++i) {
        ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
        slots.push_back(slot);
      }
      const std::vector<float> frames = RandomFrames(64 * frame_size(), 5);
      std::vector<int64_t> launches;
      std::vector<int64_t> transfers;
      for (int batch : {1, 7, 64}) {
        const std::vector<SlotId> subset(slots.begin(), slots.begin() + batch);
        ASSERT_THAT(StepSlots(*backend, subset, frames), IsOk()) << "batch " << batch;
        launches.push_back(backend->last_step_launches());
        transfers.push_back(backend->last_step_transfers());
      }
      for (SlotId slot : slots) ASSERT_THAT(backend->FreeSlot(slot), IsOk());
      EXPECT_GT(launches[0], 0);
      EXPECT_EQ(launches[0], static_cast<int64_t>(backend->launches_per_step()));
      EXPECT_THAT(launches, ::testing::Each(launches[0]))
          << "launches for batches 1, 7, 64: " << absl::StrJoin(launches, ", ");
      EXPECT_THAT(transfers, ::testing::Each(2))
          << "one write and one read per step: " << absl::StrJoin(transfers, ", ");
    }
  }
}

TEST_F(OpenClBackendTest, InjectedFaultFailsStepsFromTheNthOn) {
  LoadModel("lstm2");
  OpenClOptions options = TestOptions();
  options.inject_fault_after_steps = 3;
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(8, 0, options));
  ASSERT_OK_AND_ASSIGN(SlotId a, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId b, backend->AllocateSlot());
  const std::vector<float> frames = RandomFrames(2 * frame_size(), 3);
  EXPECT_THAT(StepBatch(*backend, {}), IsOk()) << "an empty step is not a device step";
  for (int step = 0; step < 3; ++step) {
    EXPECT_THAT(StepSlots(*backend, {a, b}, frames), IsOk()) << "step " << step;
  }
  EXPECT_THAT(StepSlots(*backend, {a, b}, frames),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("injected")));
  EXPECT_THAT(StepSlots(*backend, {a}, frames), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(backend->ExportSlot(a), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(backend->ImportSlot(a, std::vector<uint8_t>(model_.program->state_bytes)),
              StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(backend->AllocateSlot(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(backend->ResetSlot(a), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(backend->FreeSlot(a), IsOk()) << "freeing needs no device";
}

// The fallback path for recurrent models: each step reads h and c back with the outputs, so
// when the device dies every session continues on the CPU backend exactly, the failed step
// replayed there.
TEST_F(OpenClBackendTest, RecurrentStateReadBackCarriesSessionsPastAFault) {
  for (const std::string name : {"lstm2", "gru_tanh"}) {
    SCOPED_TRACE(name);
    LoadModel(name);
    if (HasFatalFailure()) return;
    const int64_t rows = model_.rows();
    const int64_t fault_at = model_.frames() / 2;
    OpenClOptions options = TestOptions();
    options.read_back_recurrent_state = true;
    options.inject_fault_after_steps = fault_at;
    ASSERT_OK_AND_ASSIGN(auto opencl, NewBackend(16, 0, options));
    ASSERT_OK_AND_ASSIGN(auto cpu, cpu::CpuBackend::Create(model_.program, {}));
    EXPECT_THAT(opencl->LastStepRecurrentState(0), StatusIs(absl::StatusCode::kFailedPrecondition));
    std::vector<SlotId> slots;
    for (int64_t r = 0; r < rows; ++r) {
      ASSERT_OK_AND_ASSIGN(SlotId slot, opencl->AllocateSlot());
      slots.push_back(slot);
    }
    const streaming::StreamSpec& in = model_.program->input;
    const streaming::StreamSpec& out = model_.program->outputs[0];
    NpyArray streamed = NanArrayLike(model_.expected);
    Backend* backend = opencl.get();
    for (int64_t t = 0; t < model_.frames(); ++t) {
      std::vector<std::vector<float>> frames;
      std::vector<StepItem> batch;
      for (int64_t r = 0; r < rows; ++r) frames.push_back(ExtractFrame(model_.input, in, t, r));
      for (int64_t r = 0; r < rows; ++r) batch.push_back({slots[r], frames[r].data()});
      auto result = StepBatch(*backend, batch);
      if (!result.ok() && backend == opencl.get()) {
        ASSERT_EQ(t, fault_at);
        ASSERT_THAT(result, StatusIs(absl::StatusCode::kUnavailable));
        ASSERT_THAT(opencl->ExportSlot(slots[0]), StatusIs(absl::StatusCode::kUnavailable));
        // Move every session with the state read back by the last good step, replay the step.
        for (int64_t r = 0; r < rows; ++r) {
          ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state,
                               opencl->LastStepRecurrentState(static_cast<int>(r)));
          ASSERT_OK_AND_ASSIGN(slots[r], cpu->AllocateSlot());
          ASSERT_THAT(cpu->ImportSlot(slots[r], state), IsOk());
          batch[r].slot = slots[r];
        }
        backend = cpu.get();
        result = StepBatch(*backend, batch);
      }
      ASSERT_THAT(result, IsOk()) << "frame " << t;
      if (backend == opencl.get()) {
        EXPECT_EQ(opencl->last_step_transfers(), 2);
        // Before the fault the read-back equals the device state (no convs in these models).
        ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> image, opencl->LastStepRecurrentState(1));
        ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, opencl->ExportSlot(slots[1]));
        ASSERT_EQ(image, state) << "frame " << t;
      }
      for (int64_t r = 0; r < rows; ++r) {
        if (result->ready[r]) {
          ScatterFrame(result->frames[r], out, t - model_.program->warmup_frames, r, &streamed);
        }
      }
    }
    EXPECT_EQ(backend, cpu.get()) << "the fault happened";
    EXPECT_TRUE(AllClose(streamed, model_.expected));
    EXPECT_THAT(opencl->LastStepRecurrentState(static_cast<int>(rows)),
                StatusIs(absl::StatusCode::kOutOfRange));
  }
}

TEST_F(OpenClBackendTest, PoolGrowsAndKeepsSessions) {
  LoadModel("gru_tanh");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(4));
  const int64_t capacity = backend->slot_capacity();
  ASSERT_OK_AND_ASSIGN(SlotId first, backend->AllocateSlot());
  const std::vector<float> frames = RandomFrames(frame_size(), 4);
  for (int i = 0; i < 3; ++i) ASSERT_THAT(StepSlots(*backend, {first}, frames), IsOk());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> before, backend->ExportSlot(first));
  std::vector<SlotId> slots;
  for (int64_t i = 0; i < capacity; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  EXPECT_GT(backend->slot_capacity(), capacity);
  EXPECT_EQ(backend->live_slots(), capacity + 1);
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> after, backend->ExportSlot(first));
  EXPECT_EQ(before, after) << "growing the pool keeps every slot";
  // Kernels use the new pool: the session continues, and a new slot steps from zero.
  ASSERT_OK_AND_ASSIGN(StepResult result, StepSlots(*backend, {first, slots.back()},
                                                    RandomFrames(2 * frame_size(), 6)));
  EXPECT_EQ(result.ready, (std::vector<uint8_t>{1, 1}));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> stepped, backend->ExportSlot(first));
  int64_t counter = 0;
  std::memcpy(&counter, stepped.data(), sizeof(counter));
  EXPECT_EQ(counter, 4);
}

TEST_F(OpenClBackendTest, MaxSlotsIsResourceExhausted) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(4, /*max_slots=*/3));
  for (int i = 0; i < 3; ++i) ASSERT_THAT(backend->AllocateSlot(), IsOk());
  EXPECT_THAT(backend->AllocateSlot(), StatusIs(absl::StatusCode::kResourceExhausted));
  ASSERT_THAT(backend->FreeSlot(1), IsOk());
  ASSERT_OK_AND_ASSIGN(SlotId again, backend->AllocateSlot());
  EXPECT_EQ(again, 1);
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, backend->ExportSlot(again));
  EXPECT_EQ(std::count(state.begin(), state.end(), 0), static_cast<int64_t>(state.size()));
}

TEST_F(OpenClBackendTest, InvalidStepsAreRejectedAndLeaveStateAlone) {
  LoadModel("vollo_valid_cnn");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(4));
  ASSERT_OK_AND_ASSIGN(SlotId a, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId b, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId freed, backend->AllocateSlot());
  ASSERT_THAT(backend->FreeSlot(freed), IsOk());
  const std::vector<float> frames = RandomFrames(5 * frame_size(), 2);
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> before, backend->ExportSlot(a));
  EXPECT_THAT(StepSlots(*backend, {a, b, a}, frames),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  EXPECT_THAT(StepSlots(*backend, {a, freed}, frames),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not allocated")));
  EXPECT_THAT(StepSlots(*backend, {a, b, 0, 1, 2}, frames),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(StepSlots(*backend, {a, b, freed, 7, 8}, frames),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch")));
  const StepItem null_frame{a, nullptr};
  EXPECT_THAT(StepBatch(*backend, {&null_frame, 1}), StatusIs(absl::StatusCode::kInvalidArgument));
  std::vector<float> out(model_.program->outputs[0].frame_size);
  std::vector<uint8_t> ready(1);
  const StepItem item{a, frames.data()};
  EXPECT_THAT(backend->Step({&item, 1}, {}, absl::MakeSpan(ready)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->ImportSlot(a, std::vector<uint8_t>(model_.program->state_bytes + 1)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> after, backend->ExportSlot(a));
  EXPECT_EQ(before, after);
  EXPECT_THAT(StepSlots(*backend, {b, a}, frames), IsOk());
  EXPECT_THAT(StepBatch(*backend, {}), IsOk());
  EXPECT_EQ(backend->last_step_launches(), 0);
}

TEST_F(OpenClBackendTest, BatchSizeDoesNotChangeResults) {
  LoadModel("cnn_tiny");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(16));
  std::vector<SlotId> slots;
  for (int i = 0; i < 9; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  // Session 0 alone (bucket 1), then with 3 others (bucket 4), then with 8 (bucket 16): the
  // same frames must give bitwise the same outputs as session 8 stepping alone.
  for (int t = 0; t < 6; ++t) {
    const std::vector<float> frame = RandomFrames(frame_size(), 100 + t);
    const int width = t < 2 ? 1 : (t < 4 ? 4 : 8);
    std::vector<float> frames;
    for (int i = 0; i < width; ++i) frames.insert(frames.end(), frame.begin(), frame.end());
    ASSERT_OK_AND_ASSIGN(StepResult group,
                         StepSlots(*backend, {slots.begin(), slots.begin() + width}, frames));
    ASSERT_OK_AND_ASSIGN(StepResult alone, StepSlots(*backend, {slots[8]}, frame));
    if (t < 2) continue;  // The others joined at t = 2 with empty windows.
    EXPECT_EQ(0, std::memcmp(group.frames[0].data(), alone.frames[0].data(),
                             alone.frames[0].size() * sizeof(float)))
        << "step " << t;
  }
}

}  // namespace
}  // namespace sluice::opencl
