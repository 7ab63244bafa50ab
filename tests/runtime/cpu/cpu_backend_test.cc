#include "runtime/cpu/cpu_backend.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"

namespace sluice::cpu {
namespace {

using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::model_testing::StepBatch;
using ::sluice::model_testing::StepResult;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

std::vector<float> RandomFrames(int64_t count, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.f, 1.f);
  std::vector<float> frames(count);
  for (float& x : frames) x = dist(rng);
  return frames;
}

class CpuBackendTest : public ::testing::Test {
 protected:
  // Loads reference model `name` (its program and data).
  void LoadModel(const std::string& name) {
    ASSERT_OK_AND_ASSIGN(model_, LoadReferenceModel(name));
  }

  absl::StatusOr<std::unique_ptr<CpuBackend>> NewBackend(int max_batch = 256,
                                                         int max_slots = 0) const {
    BackendOptions options;
    options.max_batch = max_batch;
    options.max_slots = max_slots;
    return CpuBackend::Create(model_.program, options);
  }

  int64_t frame_size() const { return model_.program->input.frame_size; }

  // Steps `slots` once, session i reading frames[i * frame_size()...].
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

TEST_F(CpuBackendTest, GemmCallsDoNotDependOnBatchSize) {
  for (const std::string name : {"cnn_tiny", "lstm2"}) {
    SCOPED_TRACE(name);
    LoadModel(name);
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(256));
    std::vector<SlotId> slots;
    for (int i = 0; i < 256; ++i) {
      ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
      slots.push_back(slot);
    }
    std::mt19937 rng(5);
    const std::vector<float> frames = RandomFrames(256 * frame_size(), rng);
    std::vector<int64_t> calls;
    for (int batch : {1, 7, 64, 256}) {
      const std::vector<SlotId> subset(slots.begin(), slots.begin() + batch);
      ASSERT_THAT(StepSlots(*backend, subset, frames), IsOk()) << "batch " << batch;
      calls.push_back(backend->last_step_gemm_calls());
    }
    EXPECT_GT(calls[0], 0);
    EXPECT_THAT(calls, ::testing::Each(calls[0]))
        << "calls for batches 1, 7, 64, 256: " << absl::StrJoin(calls, ", ");
  }
}

TEST_F(CpuBackendTest, BatchLargerThanMaxBatchIsInvalid) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(/*max_batch=*/4));
  std::vector<SlotId> slots;
  for (int i = 0; i < 5; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.push_back(slot);
  }
  std::mt19937 rng(1);
  const std::vector<float> frames = RandomFrames(5 * frame_size(), rng);
  EXPECT_THAT(StepSlots(*backend, slots, frames),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_batch")));
  // Exactly max_batch is fine.
  EXPECT_THAT(StepSlots(*backend, {slots.begin(), slots.begin() + 4}, frames), IsOk());
}

TEST_F(CpuBackendTest, SameSlotTwiceInOneBatchIsInvalid) {
  LoadModel("vollo_valid_cnn");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  ASSERT_OK_AND_ASSIGN(SlotId a, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId b, backend->AllocateSlot());
  std::mt19937 rng(2);
  const std::vector<float> frames = RandomFrames(3 * frame_size(), rng);
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> before, backend->ExportSlot(a));
  EXPECT_THAT(StepSlots(*backend, {a, b, a}, frames),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("twice")));
  // The rejected step left the sessions untouched...
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> after, backend->ExportSlot(a));
  EXPECT_EQ(before, after);
  // ...and the slots stay usable, also on the very next step.
  EXPECT_THAT(StepSlots(*backend, {a, b}, frames), IsOk());
  EXPECT_THAT(StepSlots(*backend, {b, a}, frames), IsOk());
}

TEST_F(CpuBackendTest, UnallocatedOrFreedSlotIsInvalid) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  ASSERT_OK_AND_ASSIGN(SlotId live, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId freed, backend->AllocateSlot());
  ASSERT_THAT(backend->FreeSlot(freed), IsOk());
  std::mt19937 rng(3);
  const std::vector<float> frames = RandomFrames(2 * frame_size(), rng);
  for (SlotId bad : {freed, SlotId{-1}, SlotId{63}, SlotId{64}, SlotId{1000000}}) {
    SCOPED_TRACE(absl::StrCat("slot ", bad));
    EXPECT_THAT(StepSlots(*backend, {live, bad}, frames),
                StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(backend->ResetSlot(bad), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(backend->FreeSlot(bad), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(backend->ExportSlot(bad), StatusIs(absl::StatusCode::kInvalidArgument));
    EXPECT_THAT(backend->ImportSlot(bad, std::vector<uint8_t>(model_.program->state_bytes)),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
  EXPECT_EQ(backend->live_slots(), 1);
  EXPECT_THAT(StepSlots(*backend, {live}, frames), IsOk());
}

TEST_F(CpuBackendTest, MismatchedOutputsOrReadyAreInvalid) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
  std::vector<float> frame(frame_size(), 0.5f);
  std::vector<float> out(model_.program->outputs[0].frame_size);
  float* out_ptr = out.data();
  const StepItem item{slot, frame.data()};
  std::vector<uint8_t> ready(1);
  EXPECT_THAT(backend->Step({&item, 1}, {}, absl::MakeSpan(ready)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->Step({&item, 1}, {&out_ptr, 1}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  const StepItem null_frame{slot, nullptr};
  EXPECT_THAT(backend->Step({&null_frame, 1}, {&out_ptr, 1}, absl::MakeSpan(ready)),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(backend->Step({&item, 1}, {&out_ptr, 1}, absl::MakeSpan(ready)), IsOk());
}

TEST_F(CpuBackendTest, AllocatingBeyondMaxSlotsIsResourceExhausted) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(/*max_batch=*/8, /*max_slots=*/3));
  std::set<SlotId> slots;
  for (int i = 0; i < 3; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    slots.insert(slot);
  }
  EXPECT_EQ(slots.size(), 3u);
  EXPECT_THAT(backend->AllocateSlot(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(backend->AllocateSlot(), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(backend->live_slots(), 3);
  // Freeing one makes room for exactly one more.
  ASSERT_THAT(backend->FreeSlot(*slots.begin()), IsOk());
  EXPECT_THAT(backend->AllocateSlot(), IsOk());
  EXPECT_THAT(backend->AllocateSlot(), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST_F(CpuBackendTest, UnlimitedSlotsSpanSeveralChunks) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(/*max_batch=*/8, /*max_slots=*/0));
  std::set<SlotId> slots;
  for (int i = 0; i < 300; ++i) {
    ASSERT_OK_AND_ASSIGN(SlotId slot, backend->AllocateSlot());
    EXPECT_TRUE(slots.insert(slot).second) << "slot " << slot << " handed out twice";
  }
  EXPECT_EQ(backend->live_slots(), 300);
}

TEST_F(CpuBackendTest, FreedSlotIsReusedZeroed) {
  for (const std::string name : {"vollo_valid_cnn", "lstm2", "espdl_tcn_block"}) {
    SCOPED_TRACE(name);
    LoadModel(name);
    if (HasFatalFailure()) return;
    ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
    ASSERT_OK_AND_ASSIGN(auto reference, NewBackend());
    std::mt19937 rng(8);
    const int64_t frames = 6;
    const std::vector<float> dirt = RandomFrames(frames * frame_size(), rng);
    const std::vector<float> sequence = RandomFrames(frames * frame_size(), rng);

    ASSERT_OK_AND_ASSIGN(SlotId used, backend->AllocateSlot());
    for (int64_t t = 0; t < frames; ++t) {
      const StepItem item{used, dirt.data() + t * frame_size()};
      ASSERT_THAT(StepBatch(*backend, {&item, 1}), IsOk());
    }
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> dirty_state, backend->ExportSlot(used));
    ASSERT_THAT(backend->FreeSlot(used), IsOk());
    ASSERT_OK_AND_ASSIGN(SlotId reused, backend->AllocateSlot());
    EXPECT_EQ(reused, used) << "the freed slot is handed out again";
    ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> state, backend->ExportSlot(reused));
    EXPECT_EQ(std::count(state.begin(), state.end(), 0), static_cast<int64_t>(state.size()))
        << "a reused slot starts zeroed";
    EXPECT_NE(state, dirty_state);

    // Its outputs equal a fresh session's on a backend that never held anything.
    ASSERT_OK_AND_ASSIGN(SlotId fresh, reference->AllocateSlot());
    for (int64_t t = 0; t < frames; ++t) {
      const StepItem a{reused, sequence.data() + t * frame_size()};
      const StepItem b{fresh, sequence.data() + t * frame_size()};
      ASSERT_OK_AND_ASSIGN(StepResult got, StepBatch(*backend, {&a, 1}));
      ASSERT_OK_AND_ASSIGN(StepResult want, StepBatch(*reference, {&b, 1}));
      ASSERT_EQ(got.ready, want.ready) << "frame " << t;
      if (!want.ready[0]) continue;
      ASSERT_EQ(0, std::memcmp(got.frames[0].data(), want.frames[0].data(),
                               want.frames[0].size() * sizeof(float)))
          << "frame " << t;
    }
  }
}

TEST_F(CpuBackendTest, ResetSlotMatchesFreshSession) {
  LoadModel("mixed_dilated");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  ASSERT_OK_AND_ASSIGN(SlotId a, backend->AllocateSlot());
  ASSERT_OK_AND_ASSIGN(SlotId b, backend->AllocateSlot());
  std::mt19937 rng(9);
  const int64_t frames = 8;
  const std::vector<float> dirt = RandomFrames(frames * frame_size(), rng);
  for (int64_t t = 0; t < frames; ++t) {
    const StepItem item{a, dirt.data() + t * frame_size()};
    ASSERT_THAT(StepBatch(*backend, {&item, 1}), IsOk());
  }
  ASSERT_THAT(backend->ResetSlot(a), IsOk());
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> reset_state, backend->ExportSlot(a));
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> fresh_state, backend->ExportSlot(b));
  EXPECT_EQ(reset_state, fresh_state);
  const std::vector<float> sequence = RandomFrames(frames * frame_size(), rng);
  for (int64_t t = 0; t < frames; ++t) {
    // Both sessions read the same frame.
    std::vector<float> both(sequence.begin() + t * frame_size(),
                            sequence.begin() + (t + 1) * frame_size());
    both.resize(2 * frame_size());
    std::copy(both.begin(), both.begin() + frame_size(), both.begin() + frame_size());
    ASSERT_OK_AND_ASSIGN(StepResult result, StepSlots(*backend, {a, b}, both));
    ASSERT_EQ(result.ready[0], result.ready[1]);
    EXPECT_EQ(result.ready[0], t >= model_.program->warmup_frames ? 1 : 0);
    if (!result.ready[0]) continue;
    EXPECT_EQ(0, std::memcmp(result.frames[0].data(), result.frames[1].data(),
                             result.frames[0].size() * sizeof(float)))
        << "frame " << t;
  }
}

TEST_F(CpuBackendTest, EmptyStepIsANoOp) {
  LoadModel("lstm2");
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend());
  EXPECT_THAT(StepBatch(*backend, {}), IsOk());
}

TEST_F(CpuBackendTest, NonPositiveMaxBatchIsInvalid) {
  LoadModel("lstm2");
  EXPECT_THAT(NewBackend(/*max_batch=*/0), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sluice::cpu
