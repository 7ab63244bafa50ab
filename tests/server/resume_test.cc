// Session resume on the native API: a client whose stream drops reconnects with its resume token
// and the seq of the last output it received, and the session goes on with its state intact; the
// outputs of both streams together equal the offline output, each exactly once and in order.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/admin/metrics.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

using model_testing::LoadReferenceModel;
using model_testing::ReferenceModel;

// Output frames by seq, as received over one or more streams.
using ReceivedOutputs = std::map<uint64_t, std::vector<float>>;

// Reads responses until `stop_after_outputs` output frames arrived (or the stream ends), adding
// them to `received`; fails on a seq received twice. Returns the last response read.
void ReadOutputs(TestStream& s, const streaming::StreamSpec& out, int64_t stop_after_outputs,
                 ReceivedOutputs* received) {
  v1::StreamResponse response;
  int64_t got = 0;
  while (got < stop_after_outputs && s.Read(&response)) {
    if (!response.has_outputs()) continue;
    const v1::Outputs& outputs = response.outputs();
    for (uint32_t i = 0; i < outputs.count(); ++i) {
      std::vector<float> frame(out.frame_size);
      std::memcpy(frame.data(),
                  outputs.tensors(0).data().data() + i * out.frame_size * sizeof(float),
                  out.frame_size * sizeof(float));
      const bool fresh = received->emplace(outputs.first_seq() + i, std::move(frame)).second;
      ASSERT_TRUE(fresh) << "output seq " << outputs.first_seq() + i << " delivered twice";
      ++got;
    }
  }
}

std::vector<std::vector<float>> RowFrames(const ReferenceModel& model, int64_t row, int64_t begin,
                                          int64_t end) {
  std::vector<std::vector<float>> frames;
  for (int64_t t = begin; t < end; ++t) {
    frames.push_back(model_testing::ExtractFrame(model.input, model.program->input, t, row));
  }
  return frames;
}

// Every output of row 0, each once, equals the offline reference.
void ExpectMatchesOffline(const ReferenceModel& model, const ReceivedOutputs& received) {
  ASSERT_EQ(static_cast<int64_t>(received.size()), model.out_frames());
  const streaming::StreamSpec& out = model.program->outputs[0];
  int64_t t = 0;
  for (const auto& [seq, frame] : received) {
    ASSERT_EQ(seq, static_cast<uint64_t>(t + model.program->warmup_frames));
    const auto want = model_testing::ExtractFrame(model.expected, out, t, 0);
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_LE(std::fabs(frame[i] - want[i]), 1e-4f + 1e-4f * std::fabs(want[i]))
          << "frame " << t << " element " << i;
    }
    ++t;
  }
}

class ResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repository_ = new std::string(MakeRepository({
        {"vollo_valid_cnn", "vollo_valid_cnn", ""},
        {"lstm2", "lstm2", ""},
    }));
    servers_ = new std::map<std::string, server::SluiceServer*>();
    (*servers_)["resumable"] = StartServer(/*grace_ms=*/5000, /*buffer=*/1024);
    (*servers_)["short_grace"] = StartServer(/*grace_ms=*/200, /*buffer=*/1024);
    (*servers_)["small_buffer"] = StartServer(/*grace_ms=*/5000, /*buffer=*/4);
    (*servers_)["no_resume"] = StartServer(/*grace_ms=*/0, /*buffer=*/1024);
  }
  static void TearDownTestSuite() {
    for (auto& [name, server] : *servers_) delete server;
    delete servers_;
    std::filesystem::remove_all(*repository_);
    delete repository_;
  }

  static server::SluiceServer* StartServer(int64_t grace_ms, int buffer) {
    server::ServerOptions options;
    options.model_repository = *repository_;
    options.host = "127.0.0.1";
    options.grpc_port = 0;
    options.http_port = -1;
    options.resume_grace_ms = grace_ms;
    options.resume_buffer_frames = buffer;
    auto server = server::SluiceServer::Start(options);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? server->release() : nullptr;
  }

  static std::unique_ptr<v1::Streaming::Stub> Stub(const std::string& server) {
    return v1::Streaming::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*servers_)[server]->grpc_port()),
                            grpc::InsecureChannelCredentials()));
  }

  static v1::StreamRequest ResumeRequest(const std::string& token,
                                         std::optional<uint64_t> last_output_seq,
                                         const std::string& model = "") {
    v1::StreamRequest request;
    request.mutable_open()->set_model(model);
    request.mutable_open()->set_resume_token(token);
    if (last_output_seq.has_value()) request.mutable_open()->set_last_output_seq(*last_output_seq);
    return request;
  }

  // Opens a resume stream, retrying while the old stream is still closing.
  static std::unique_ptr<TestStream> Resume(v1::Streaming::Stub& stub, const std::string& token,
                                            std::optional<uint64_t> last_output_seq,
                                            v1::StreamResponse* opened, grpc::Status* failure) {
    for (int attempt = 0; attempt < 100; ++attempt) {
      auto s = StartStream(stub);
      s->Write(ResumeRequest(token, last_output_seq));
      if (s->Read(opened)) return s;
      *failure = s->stream->Finish();
      if (failure->error_code() != grpc::StatusCode::UNAVAILABLE) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return nullptr;
  }

  // Streams row 0 of `model_name` in two streams: the first sends `first_frames` frames, reads
  // `read_before_drop` outputs and is cancelled; the second resumes and sends the rest.
  void StreamWithDrop(const std::string& model_name, int64_t first_frames,
                      int64_t read_before_drop) {
    auto model = LoadReferenceModel(model_name);
    ASSERT_TRUE(model.ok()) << model.status();
    const streaming::StreamSpec& in = model->program->input;
    const streaming::StreamSpec& out = model->program->outputs[0];
    auto stub = Stub("resumable");
    ReceivedOutputs received;

    auto first = StartStream(*stub);
    ASSERT_TRUE(first->Write(OpenRequest(model_name)));
    v1::StreamResponse opened;
    ASSERT_TRUE(first->Read(&opened));
    ASSERT_TRUE(opened.has_opened()) << opened.DebugString();
    const std::string token = opened.opened().resume_token();
    ASSERT_EQ(token.size(), 32u);
    ASSERT_TRUE(first->Write(FramesRequest(RowFrames(*model, 0, 0, first_frames), in.frame_shape)));
    ReadOutputs(*first, out, read_before_drop, &received);
    first->context.TryCancel();
    EXPECT_FALSE(first->stream->Finish().ok());

    std::optional<uint64_t> last;
    if (!received.empty()) last = received.rbegin()->first;
    grpc::Status failure;
    auto second = Resume(*stub, token, last, &opened, &failure);
    ASSERT_NE(second, nullptr) << failure.error_message();
    ASSERT_TRUE(opened.has_opened()) << opened.DebugString();
    EXPECT_TRUE(opened.opened().resumed());
    EXPECT_EQ(opened.opened().resume_token(), token);
    // Every frame of the first stream was accepted: the client goes on from there.
    EXPECT_EQ(opened.opened().next_seq(), static_cast<uint64_t>(first_frames));
    ASSERT_TRUE(second->Write(FramesRequest(
        RowFrames(*model, 0, static_cast<int64_t>(opened.opened().next_seq()), model->frames()),
        in.frame_shape)));
    v1::StreamRequest close;
    close.mutable_close();
    ASSERT_TRUE(second->Write(close));
    second->stream->WritesDone();
    ReadOutputs(*second, out, std::numeric_limits<int64_t>::max(), &received);
    const grpc::Status status = second->stream->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
    ExpectMatchesOffline(*model, received);
  }

  static std::string* repository_;
  static std::map<std::string, server::SluiceServer*>* servers_;
};

std::string* ResumeTest::repository_ = nullptr;
std::map<std::string, server::SluiceServer*>* ResumeTest::servers_ = nullptr;

TEST_F(ResumeTest, ConvModelResumedMidStreamMatchesOffline) {
  StreamWithDrop("vollo_valid_cnn", /*first_frames=*/20, /*read_before_drop=*/5);
}

TEST_F(ResumeTest, RecurrentModelResumedMidStreamMatchesOffline) {
  StreamWithDrop("lstm2", /*first_frames=*/25, /*read_before_drop=*/10);
}

TEST_F(ResumeTest, DropBeforeAnyOutputReplaysEverything) {
  StreamWithDrop("lstm2", /*first_frames=*/12, /*read_before_drop=*/0);
}

TEST_F(ResumeTest, StreamEndingWithoutCloseDetachesTheSession) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  auto stub = Stub("resumable");
  auto first = StartStream(*stub);
  ASSERT_TRUE(first->Write(OpenRequest("lstm2")));
  v1::StreamResponse opened;
  ASSERT_TRUE(first->Read(&opened));
  ASSERT_TRUE(
      first->Write(FramesRequest(RowFrames(*model, 0, 0, 3), model->program->input.frame_shape)));
  first->stream->WritesDone();  // No Close: with resume on, the link counts as dropped.
  ReceivedOutputs received;
  ReadOutputs(*first, model->program->outputs[0], std::numeric_limits<int64_t>::max(), &received);
  EXPECT_EQ(first->stream->Finish().error_code(), grpc::StatusCode::CANCELLED);

  grpc::Status failure;
  std::optional<uint64_t> last;
  if (!received.empty()) last = received.rbegin()->first;
  auto second = Resume(*stub, opened.opened().resume_token(), last, &opened, &failure);
  ASSERT_NE(second, nullptr) << failure.error_message();
  EXPECT_TRUE(opened.opened().resumed());
  EXPECT_EQ(opened.opened().next_seq(), 3u);
  second->context.TryCancel();
  second->stream->Finish();
}

TEST_F(ResumeTest, UnknownTokenIsNotFound) {
  auto stub = Stub("resumable");
  auto s = StartStream(*stub);
  s->Write(ResumeRequest("0123456789abcdef0123456789abcdef", 3));
  v1::StreamResponse response;
  EXPECT_FALSE(s->Read(&response));
  const grpc::Status status = s->stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(status.error_message(), "unknown or expired resume token");
}

TEST_F(ResumeTest, TokenOfAnotherModelIsInvalid) {
  auto stub = Stub("resumable");
  auto first = StartStream(*stub);
  ASSERT_TRUE(first->Write(OpenRequest("lstm2")));
  v1::StreamResponse opened;
  ASSERT_TRUE(first->Read(&opened));
  first->context.TryCancel();
  first->stream->Finish();
  auto s = StartStream(*stub);
  s->Write(ResumeRequest(opened.opened().resume_token(), std::nullopt, "vollo_valid_cnn"));
  v1::StreamResponse response;
  EXPECT_FALSE(s->Read(&response));
  const grpc::Status status = s->stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(status.error_message(),
                               "the resume token belongs to a session on model lstm2"))
      << status.error_message();
}

TEST_F(ResumeTest, TokenExpiresAfterTheGracePeriod) {
  auto stub = Stub("short_grace");
  auto first = StartStream(*stub);
  ASSERT_TRUE(first->Write(OpenRequest("lstm2")));
  v1::StreamResponse opened;
  ASSERT_TRUE(first->Read(&opened));
  first->context.TryCancel();
  first->stream->Finish();
  server::SluiceServer* server = (*servers_)["short_grace"];
  // The detached session holds its place until the grace period (200 ms) ends.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server->metrics().ForModel("lstm2")->sessions_active.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(server->metrics().ForModel("lstm2")->sessions_active.load(), 0);
  auto s = StartStream(*stub);
  s->Write(ResumeRequest(opened.opened().resume_token(), std::nullopt));
  v1::StreamResponse response;
  EXPECT_FALSE(s->Read(&response));
  EXPECT_EQ(s->stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ResumeTest, EvictedOutputsAreOutOfRangeAndTheSessionSurvives) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok()) << model.status();
  const streaming::StreamSpec& out = model->program->outputs[0];
  auto stub = Stub("small_buffer");  // Keeps 4 written output frames.
  auto first = StartStream(*stub);
  ASSERT_TRUE(first->Write(OpenRequest("lstm2")));
  v1::StreamResponse opened;
  ASSERT_TRUE(first->Read(&opened));
  // Ping-pong, so that each output is its own response and the buffer evicts whole ones.
  ReceivedOutputs received;
  for (int64_t t = 0; t < 20; ++t) {
    ASSERT_TRUE(first->Write(
        FramesRequest(RowFrames(*model, 0, t, t + 1), model->program->input.frame_shape)));
    ReadOutputs(*first, out, 1, &received);
  }
  first->context.TryCancel();
  first->stream->Finish();

  grpc::Status failure;
  v1::StreamResponse reopened;
  // Outputs after seq 2 are long gone from a 4-frame buffer.
  EXPECT_EQ(Resume(*stub, opened.opened().resume_token(), 2, &reopened, &failure), nullptr);
  EXPECT_EQ(failure.error_code(), grpc::StatusCode::OUT_OF_RANGE) << failure.error_message();
  // The refused resume left the session detached: resuming from the true last seq works.
  auto second = Resume(*stub, opened.opened().resume_token(), 19, &reopened, &failure);
  ASSERT_NE(second, nullptr) << failure.error_message();
  EXPECT_EQ(reopened.opened().next_seq(), 20u);
  second->context.TryCancel();
  second->stream->Finish();
}

TEST_F(ResumeTest, WithoutGraceSessionsHaveNoTokenAndEndWithTheirStream) {
  auto stub = Stub("no_resume");
  auto first = StartStream(*stub);
  ASSERT_TRUE(first->Write(OpenRequest("lstm2")));
  v1::StreamResponse opened;
  ASSERT_TRUE(first->Read(&opened));
  EXPECT_TRUE(opened.opened().resume_token().empty());
  first->context.TryCancel();
  first->stream->Finish();
  server::SluiceServer* server = (*servers_)["no_resume"];
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server->metrics().ForModel("lstm2")->sessions_active.load() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server->metrics().ForModel("lstm2")->sessions_active.load(), 0);
}

}  // namespace
}  // namespace sluice::server_testing
