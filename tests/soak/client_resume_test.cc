// The client library's side of session resume against an in-process server: Session::Resume()
// continues a dropped session with every output exactly once, its errors, and a cancelled session
// whose reading was paused (a stalled reader) ending instead of waiting for a Next() forever.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/lib/frame_layout.h"
#include "client/lib/session.h"
#include "client/lib/streaming_client.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::client {
namespace {

using model_testing::LoadReferenceModel;
using model_testing::ReferenceModel;

class ClientResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repository_ = new std::string(server_testing::MakeRepository({{"lstm2", "lstm2", ""}}));
    server::ServerOptions options;
    options.model_repository = *repository_;
    options.host = "127.0.0.1";
    options.grpc_port = 0;
    options.http_port = -1;
    options.resume_grace_ms = 5000;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::filesystem::remove_all(*repository_);
    delete repository_;
  }

  void SetUp() override {
    auto client = StreamingClient::Create(absl::StrCat("127.0.0.1:", server_->grpc_port()));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  static std::string* repository_;
  static server::SluiceServer* server_;
  std::unique_ptr<StreamingClient> client_;
};

std::string* ClientResumeTest::repository_ = nullptr;
server::SluiceServer* ClientResumeTest::server_ = nullptr;

// Reads responses until `outputs` output frames arrived or the stream ended, adding them by seq.
void ReadOutputs(Session& session, int64_t outputs,
                 std::map<uint64_t, std::vector<float>>* received) {
  int64_t got = 0;
  while (got < outputs) {
    auto next = session.Next(absl::Seconds(10));
    ASSERT_TRUE(next.ok()) << next.status();
    if (!next->has_value()) return;
    if (!(*next)->has_outputs()) continue;
    const v1::Outputs& out = (*next)->outputs();
    auto frames = UnpackFrames(session.opened().outputs(0), out.tensors(0));
    ASSERT_TRUE(frames.ok()) << frames.status();
    const size_t size = frames->size() / out.count();
    for (uint32_t i = 0; i < out.count(); ++i) {
      const bool fresh =
          received
              ->emplace(out.first_seq() + i, std::vector<float>(frames->begin() + i * size,
                                                                frames->begin() + (i + 1) * size))
              .second;
      ASSERT_TRUE(fresh) << "seq " << out.first_seq() + i << " arrived twice";
      ++got;
    }
  }
}

TEST_F(ClientResumeTest, ResumedStreamContinuesTheSessionWithEveryOutputOnce) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  const streaming::StreamSpec& in = model->program->input;
  const streaming::StreamSpec& out = model->program->outputs[0];
  const int64_t frames = model->frames();
  const int64_t first_frames = frames / 2;
  auto frame = [&](int64_t t) { return model_testing::ExtractFrame(model->input, in, t, 0); };
  std::map<uint64_t, std::vector<float>> received;

  auto first = client_->NewSession();
  auto opened = first->Open("lstm2", "resume-me");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_FALSE(opened->resumed());
  const std::string token = opened->resume_token();
  ASSERT_FALSE(token.empty());
  for (int64_t t = 0; t < first_frames; ++t)
    ASSERT_TRUE(first->SendFrames(frame(t).data(), 1).ok());
  ReadOutputs(*first, first_frames, &received);
  first->Cancel();
  EXPECT_TRUE(absl::IsCancelled(first->Finish()));

  std::unique_ptr<Session> second;
  absl::StatusOr<v1::Opened> resumed = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 100 && absl::IsUnavailable(resumed.status()); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    second = client_->NewSession();
    resumed = second->Resume(token, received.rbegin()->first, "lstm2");
  }
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_TRUE(resumed->resumed());
  EXPECT_TRUE(second->opened().resumed());
  EXPECT_EQ(resumed->resume_token(), token);
  EXPECT_EQ(resumed->session_tag(), "resume-me");
  ASSERT_EQ(resumed->next_seq(), static_cast<uint64_t>(first_frames));
  for (int64_t t = first_frames; t < frames; ++t) {
    ASSERT_TRUE(second->SendFrames(frame(t).data(), 1).ok());
  }
  ASSERT_TRUE(second->Close().ok());
  ReadOutputs(*second, frames, &received);
  EXPECT_TRUE(second->Finish().ok());

  ASSERT_EQ(static_cast<int64_t>(received.size()), model->out_frames());
  for (const auto& [seq, got] : received) {
    const int64_t t = static_cast<int64_t>(seq) - model->program->warmup_frames;
    const auto want = model_testing::ExtractFrame(model->expected, out, t, 0);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_LE(std::fabs(got[i] - want[i]), 1e-4f + 1e-4f * std::fabs(want[i]))
          << "seq " << seq << " element " << i;
    }
  }
}

TEST_F(ClientResumeTest, ResumeErrors) {
  auto session = client_->NewSession();
  EXPECT_TRUE(absl::IsInvalidArgument(session->Resume("", std::nullopt).status()));
  auto unknown = client_->NewSession();
  EXPECT_TRUE(
      absl::IsNotFound(unknown->Resume("0123456789abcdef0123456789abcdef", 3, "lstm2").status()));
  auto opened = client_->NewSession();
  ASSERT_TRUE(opened->Open("lstm2").ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(opened->Resume("token", std::nullopt).status()));
}

// Sends enough frames for many Outputs responses to a session that reads none of them.
std::unique_ptr<Session> StalledSession(StreamingClient& client) {
  SessionOptions options;
  options.max_queued_responses = 2;
  auto session = client.NewSession(std::move(options));
  auto opened = session->Open("lstm2");
  EXPECT_TRUE(opened.ok()) << opened.status();
  if (!opened.ok()) return session;
  const std::vector<float> frame(FrameSize(opened->input()), 0.5f);
  for (int i = 0; i < 200; ++i) EXPECT_TRUE(session->SendFrames(frame.data(), 1).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // Reading pauses meanwhile.
  return session;
}

// Runs `f` on a thread of its own and reports whether it returned within 10 s (a hung `f` is
// left behind rather than hanging the test).
template <typename F>
bool ReturnsInTime(F f) {
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  std::thread([f = std::move(f), done]() mutable {
    f();
    done->set_value();
  }).detach();
  return finished.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
}

TEST_F(ClientResumeTest, CancelWhileReadingIsPausedEndsTheStream) {
  std::shared_ptr<Session> session = StalledSession(*client_);
  session->Cancel();
  auto status = std::make_shared<absl::Status>();
  EXPECT_TRUE(ReturnsInTime([session, status] { *status = session->Finish(); }));
  EXPECT_TRUE(absl::IsCancelled(*status)) << *status;
}

TEST_F(ClientResumeTest, DestroyingAStalledSessionReturns) {
  std::shared_ptr<Session> session = StalledSession(*client_);
  EXPECT_TRUE(ReturnsInTime([session = std::move(session)]() mutable { session.reset(); }));
}

}  // namespace
}  // namespace sluice::client
