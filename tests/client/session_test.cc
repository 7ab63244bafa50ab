// Session against the in-process fake service (tests/client/fake_streaming_service.h).
#include "client/lib/session.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/lib/frame_layout.h"
#include "client/lib/streaming_client.h"
#include "tests/client/fake_streaming_service.h"
#include "tests/common/status_matchers.h"

namespace sluice::client {
namespace {

using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::FloatEq;
using ::testing::HasSubstr;
using ::testing::Pointwise;

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto client = StreamingClient::Create(server_.address());
    ASSERT_OK(client);
    client_ = *std::move(client);
  }

  // Frame-major test frames: frame t = {t, t + 0.25, t + 0.5} (3 channels).
  static std::vector<float> Frames(int first, int count) {
    std::vector<float> frames;
    for (int t = first; t < first + count; ++t) {
      for (int c = 0; c < testing::kFakeChannels; ++c) frames.push_back(t + 0.25f * c);
    }
    return frames;
  }

  // Reads responses until the stream ends with OK.
  static std::vector<v1::StreamResponse> ReadAll(Session& session) {
    std::vector<v1::StreamResponse> responses;
    while (true) {
      auto next = session.Next(absl::Seconds(10));
      EXPECT_OK(next);
      if (!next.ok() || !next->has_value()) break;
      responses.push_back(**next);
    }
    return responses;
  }

  testing::FakeStreamingServer server_;
  std::unique_ptr<StreamingClient> client_;
};

TEST_F(SessionTest, OpenReturnsOpenedInfo) {
  auto session = client_->NewSession();
  ASSERT_OK_AND_ASSIGN(v1::Opened opened, session->Open("double", "tag-1"));
  EXPECT_EQ(opened.model(), "double");
  EXPECT_EQ(opened.session_tag(), "tag-1");
  EXPECT_EQ(opened.warmup_frames(), testing::kFakeWarmup);
  EXPECT_THAT(opened.input().frame_shape(), ElementsAre(1, 3));
  EXPECT_EQ(session->opened().backend(), "fake");
  EXPECT_THAT(session->Open("double"), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SessionTest, OpenErrorsAreMappedOneToOne) {
  EXPECT_THAT(client_->NewSession()->Open("nope"),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
  EXPECT_THAT(client_->NewSession()->Open("full"),
              StatusIs(absl::StatusCode::kResourceExhausted, "too many sessions"));
  EXPECT_THAT(client_->NewSession()->Open("refuse"),
              StatusIs(absl::StatusCode::kInvalidArgument, "refused"));
}

TEST_F(SessionTest, SendBeforeOpenFails) {
  auto session = client_->NewSession();
  const std::vector<float> frame = Frames(0, 1);
  EXPECT_THAT(session->SendFrames(frame.data(), 1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(session->Next(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SessionTest, ChunkedFramesComeBackInOrderWithTags) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 10);
  std::vector<std::string> tags;
  for (int t = 0; t < 10; ++t) tags.push_back(absl::StrCat("t", t));
  int sent = 0;
  for (int chunk : {1, 3, 4, 2}) {
    ASSERT_OK(session->SendFrames(frames.data() + sent * 3, chunk,
                                  absl::MakeConstSpan(tags).subspan(sent, chunk)));
    sent += chunk;
  }
  ASSERT_OK(session->Close());
  std::vector<float> outputs;
  std::vector<std::string> out_tags;
  uint64_t next_seq = testing::kFakeWarmup;
  for (const v1::StreamResponse& response : ReadAll(*session)) {
    ASSERT_TRUE(response.has_outputs()) << response.DebugString();
    EXPECT_EQ(response.outputs().first_seq(), next_seq);
    next_seq += response.outputs().count();
    int64_t count = 0;
    ASSERT_OK_AND_ASSIGN(
        std::vector<float> values,
        UnpackFrames(session->opened().outputs(0), response.outputs().tensors(0), &count));
    EXPECT_EQ(count, response.outputs().count());
    outputs.insert(outputs.end(), values.begin(), values.end());
    out_tags.insert(out_tags.end(), response.outputs().tags().begin(),
                    response.outputs().tags().end());
  }
  EXPECT_EQ(next_seq, 10u);
  std::vector<float> expected(frames.begin() + testing::kFakeWarmup * 3, frames.end());
  for (float& v : expected) v *= 2;
  EXPECT_THAT(outputs, Pointwise(FloatEq(), expected));
  EXPECT_THAT(out_tags, ElementsAre("t2", "t3", "t4", "t5", "t6", "t7", "t8", "t9"));
  EXPECT_OK(session->Finish());
  EXPECT_TRUE(session->done());
}

TEST_F(SessionTest, OfflineLayoutChunksGiveTheSameOutputs) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 5);
  ASSERT_OK(session->SendFrames(frames.data(), 5, {}, v1::Frames::OFFLINE));
  ASSERT_OK(session->Close());
  const auto responses = ReadAll(*session);
  ASSERT_EQ(responses.size(), 1u);
  EXPECT_EQ(responses[0].outputs().first_seq(), 2u);
  ASSERT_OK_AND_ASSIGN(std::vector<float> values, UnpackFrames(session->opened().outputs(0),
                                                               responses[0].outputs().tensors(0)));
  std::vector<float> expected(frames.begin() + 6, frames.end());
  for (float& v : expected) v *= 2;
  EXPECT_THAT(values, Pointwise(FloatEq(), expected));
}

TEST_F(SessionTest, Int16FramesAreScaled) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  // Three frames, warm-up 2: only the last comes back.
  const std::vector<int16_t> frames = {0, 0, 0, 0, 0, 0, 16384, -8192, 32767};
  ASSERT_OK(session->SendFrames(frames.data(), 3));
  ASSERT_OK(session->Close());
  const auto responses = ReadAll(*session);
  ASSERT_EQ(responses.size(), 1u);
  ASSERT_OK_AND_ASSIGN(std::vector<float> values, UnpackFrames(session->opened().outputs(0),
                                                               responses[0].outputs().tensors(0)));
  EXPECT_THAT(values, Pointwise(FloatEq(), {1.f, -0.5f, 2.f * 32767.f / 32768.f}));
}

TEST_F(SessionTest, BadFrameGetsAnErrorResponseAndTheSessionGoesOn) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 3);
  ASSERT_OK(session->SendFrames(frames.data(), 3));  // seq 0..2, output for seq 2.
  v1::Frames bad;
  bad.mutable_tensor()->set_dtype(v1::FLOAT32);
  bad.mutable_tensor()->add_shape(4);
  bad.mutable_tensor()->set_data(std::string(16, '\0'));
  ASSERT_OK(session->SendRaw(bad));
  ASSERT_OK(session->SendFrames(frames.data(), 1));  // seq 3.
  EXPECT_THAT(session->SendFrames(frames.data(), 2, {"only-one"}),
              StatusIs(absl::StatusCode::kInvalidArgument));
  ASSERT_OK(session->Close());
  const auto responses = ReadAll(*session);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[0].outputs().first_seq(), 2u);
  ASSERT_TRUE(responses[1].has_error());
  EXPECT_EQ(responses[1].error().seq(), 3u);
  EXPECT_EQ(responses[1].error().status().code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(responses[2].outputs().first_seq(), 3u);
}

TEST_F(SessionTest, ResetRestartsTheWarmUpAndKeepsNumbering) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 3);
  ASSERT_OK(session->SendFrames(frames.data(), 3));
  ASSERT_OK(session->Reset());
  ASSERT_OK(session->SendFrames(frames.data(), 3));
  ASSERT_OK(session->Close());
  const auto responses = ReadAll(*session);
  ASSERT_EQ(responses.size(), 3u);
  EXPECT_EQ(responses[0].outputs().first_seq(), 2u);
  ASSERT_TRUE(responses[1].has_reset_done());
  EXPECT_EQ(responses[1].reset_done().next_seq(), 3u);
  EXPECT_EQ(responses[2].outputs().first_seq(), 5u);
  EXPECT_EQ(responses[2].outputs().count(), 1u);
}

TEST_F(SessionTest, AfterCloseSendsFailAndTheStreamEndsOk) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  ASSERT_OK(session->Close());
  const std::vector<float> frame = Frames(0, 1);
  EXPECT_THAT(session->SendFrames(frame.data(), 1),
              StatusIs(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(session->Close(), StatusIs(absl::StatusCode::kFailedPrecondition));
  ASSERT_OK_AND_ASSIGN(std::optional<v1::StreamResponse> next, session->Next());
  EXPECT_FALSE(next.has_value());
  EXPECT_OK(session->Finish());
}

TEST_F(SessionTest, StreamStatusIsMappedOneToOne) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frame = Frames(0, 1);
  ASSERT_OK(session->SendFrames(frame.data(), 1, {"die"}));
  EXPECT_THAT(session->Next(absl::Seconds(10)),
              StatusIs(absl::StatusCode::kDataLoss, "told to die"));
  EXPECT_THAT(session->Finish(), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(session->SendFrames(frame.data(), 1), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_EQ(session->served_through(), std::nullopt) << "the stream ended without the trailer";
}

TEST_F(SessionTest, ServedThroughIsTheTrailersNextSeqOnceTheStreamEnded) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 5);
  ASSERT_OK(session->SendFrames(frames.data(), 5));
  EXPECT_EQ(session->served_through(), std::nullopt) << "before the end";
  ASSERT_OK(session->Close());
  ReadAll(*session);
  EXPECT_OK(session->Finish());
  EXPECT_EQ(session->served_through(), std::optional<uint64_t>(5));
}

TEST_F(SessionTest, NextTimesOutWhenNothingArrives) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  EXPECT_THAT(session->Next(absl::Milliseconds(50)), StatusIs(absl::StatusCode::kDeadlineExceeded));
  EXPECT_FALSE(session->done());
}

TEST_F(SessionTest, CallbackModeDeliversEveryResponseInOrder) {
  std::vector<uint64_t> seqs;  // Written by the callbacks, one at a time.
  absl::Status final_status = absl::UnknownError("not done");
  absl::Notification done;
  SessionOptions options;
  options.on_response = [&](const v1::StreamResponse& response) {
    seqs.push_back(response.outputs().first_seq());
  };
  options.on_done = [&](const absl::Status& status) {
    final_status = status;
    done.Notify();
  };
  auto session = client_->NewSession(options);
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frames = Frames(0, 1);
  for (int i = 0; i < 50; ++i) ASSERT_OK(session->SendFrames(frames.data(), 1));
  ASSERT_OK(session->Close());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_OK(final_status);
  ASSERT_EQ(seqs.size(), 48u);
  for (size_t i = 0; i < seqs.size(); ++i) EXPECT_EQ(seqs[i], i + 2);
  EXPECT_THAT(session->Next(), StatusIs(absl::StatusCode::kFailedPrecondition));
}

TEST_F(SessionTest, ReadingPausesWhenTheQueueIsFullAndResumes) {
  SessionOptions options;
  options.max_queued_responses = 4;
  auto session = client_->NewSession(options);
  ASSERT_OK(session->Open("double"));
  const std::vector<float> frame = Frames(7, 1);
  for (int i = 0; i < 200; ++i) ASSERT_OK(session->SendFrames(frame.data(), 1));
  ASSERT_OK(session->Close());
  absl::SleepFor(absl::Milliseconds(100));  // Let the queue fill up and reading pause.
  const auto responses = ReadAll(*session);
  ASSERT_EQ(responses.size(), 198u);
  EXPECT_EQ(responses.back().outputs().first_seq(), 199u);
}

TEST_F(SessionTest, DestroyingAnOpenSessionCancelsIt) {
  {
    auto session = client_->NewSession();
    ASSERT_OK(session->Open("double"));
    const std::vector<float> frames = Frames(0, 4);
    ASSERT_OK(session->SendFrames(frames.data(), 4));
  }
  for (int i = 0; i < 100 && server_.service().cancelled_streams() == 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(server_.service().cancelled_streams(), 1);
  // A session that was never opened can be destroyed too.
  client_->NewSession();
}

TEST_F(SessionTest, CancelEndsTheStreamWithCancelled) {
  auto session = client_->NewSession();
  ASSERT_OK(session->Open("double"));
  session->Cancel();
  EXPECT_THAT(session->Finish(), StatusIs(absl::StatusCode::kCancelled));
}

TEST_F(SessionTest, ManyConcurrentSessionsInCallbackMode) {
  constexpr int kSessions = 100;
  constexpr int kFrames = 20;
  std::atomic<int> outputs{0};
  std::atomic<int> ok_done{0};
  std::vector<std::unique_ptr<Session>> sessions;
  for (int i = 0; i < kSessions; ++i) {
    SessionOptions options;
    options.on_response = [&](const v1::StreamResponse& r) { outputs += r.outputs().count(); };
    options.on_done = [&](const absl::Status& s) { ok_done += s.ok() ? 1 : 0; };
    sessions.push_back(client_->NewSession(options));
    ASSERT_OK(sessions.back()->Open("double"));
  }
  const std::vector<float> frames = Frames(0, 1);
  for (int t = 0; t < kFrames; ++t) {
    for (auto& session : sessions) ASSERT_OK(session->SendFrames(frames.data(), 1));
  }
  for (auto& session : sessions) ASSERT_OK(session->Close());
  for (auto& session : sessions) EXPECT_OK(session->Finish());
  EXPECT_EQ(ok_done.load(), kSessions);
  EXPECT_EQ(outputs.load(), kSessions * (kFrames - testing::kFakeWarmup));
}

}  // namespace
}  // namespace sluice::client
