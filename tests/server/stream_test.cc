// End-to-end tests of the native streaming API against a real in-process server on loopback.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/streaming/sequence_runner.h"
#include "server/server.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

using model_testing::LoadReferenceModel;
using model_testing::ReferenceModel;

class StreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repository_ = new std::string(MakeRepository({
        {"vollo_valid_cnn", "vollo_valid_cnn", ""},
        {"espdl_tcn_block", "espdl_tcn_block", "max_batch: 64\n"},
        {"lstm2", "lstm2", "instance_count: 2\n"},
        {"gru_tanh", "gru_tanh", "max_queue_delay_us: 200\n"},
        {"chomp_tcn", "chomp_tcn", ""},
        {"limited", "espdl_tcn_block", "max_sessions: 2\n"},
        {"idle", "lstm2", "session_idle_timeout_ms: 300\n"},
        {"broken", "", ""},
        {"bad_config", "lstm2", "max_batch: -3\n"},
        {"lstm2_bf16", "lstm2", "precision: PRECISION_BF16\n"},
        {"espdl_bf16", "espdl_tcn_block", "precision: PRECISION_BF16\n"},
    }));
    server::ServerOptions options;
    options.model_repository = *repository_;
    options.host = "127.0.0.1";
    options.grpc_port = 0;
    options.http_port = 0;
    options.max_sessions = 500;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::filesystem::remove_all(*repository_);
    delete repository_;
  }

  std::unique_ptr<v1::Streaming::Stub> NewStub() {
    return v1::Streaming::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", server_->grpc_port()), grpc::InsecureChannelCredentials()));
  }

  static server::SluiceServer* server_;
  static std::string* repository_;
};

server::SluiceServer* StreamTest::server_ = nullptr;
std::string* StreamTest::repository_ = nullptr;

TEST_F(StreamTest, ConcurrentSessionsOnMixedModelsMatchOffline) {
  const std::vector<std::string> names = {"vollo_valid_cnn", "espdl_tcn_block", "lstm2", "gru_tanh",
                                          "chomp_tcn"};
  std::vector<ReferenceModel> models;
  for (const auto& name : names) {
    auto model = LoadReferenceModel(name);
    ASSERT_TRUE(model.ok()) << model.status();
    models.push_back(*std::move(model));
  }
  auto stub = NewStub();
  std::vector<std::thread> threads;
  for (size_t m = 0; m < models.size(); ++m) {
    for (int64_t row = 0; row < models[m].rows(); ++row) {
      threads.emplace_back([&, m, row] {
        StreamRowAndCheck(*stub, names[m], models[m], row, static_cast<uint32_t>(m * 100 + row));
      });
    }
  }
  ASSERT_GE(threads.size(), 32u);
  for (auto& thread : threads) thread.join();
}

// A bf16 model serves exactly what the CPU backend computes in bf16 locally (bitwise: the server
// batches sessions, and batching never changes a CPU result), which differs from fp32.
TEST_F(StreamTest, Bf16ModelsServeTheBf16Computation) {
  auto stub = NewStub();
  for (const auto& [served_name, source] :
       {std::pair{"lstm2_bf16", "lstm2"}, std::pair{"espdl_bf16", "espdl_tcn_block"}}) {
    const std::string served = served_name;  // Lambdas cannot capture a structured binding.
    ASSERT_OK_AND_ASSIGN(ReferenceModel model, LoadReferenceModel(source));
    BackendOptions options;
    options.precision = Precision::kBf16;
    ASSERT_OK_AND_ASSIGN(auto bf16, cpu::CpuBackend::Create(model.program, options));
    ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> local,
                         streaming::RunSequences(*bf16, model.input, {}));
    EXPECT_FALSE(model_testing::AllClose(local[0], model.expected, 0, 0));
    EXPECT_TRUE(model_testing::AllClose(local[0], model.expected, 5e-3, 1e-3));
    model.expected = local[0];
    std::vector<std::thread> threads;
    for (int64_t row = 0; row < model.rows(); ++row) {
      threads.emplace_back([&, row] {
        StreamRowAndCheck(*stub, served, model, row, static_cast<uint32_t>(row), 0.f, 0.f);
      });
    }
    for (auto& thread : threads) thread.join();
  }
}

grpc::Status OpenAndFinish(v1::Streaming::Stub& stub, const v1::StreamRequest& first,
                           const std::vector<v1::StreamRequest>& more = {}) {
  auto s = StartStream(stub);
  s->Write(first);
  for (const auto& request : more) s->Write(request);
  s->stream->WritesDone();
  v1::StreamResponse response;
  while (s->Read(&response)) {
  }
  return s->stream->Finish();
}

TEST_F(StreamTest, UnknownModelIsNotFound) {
  auto stub = NewStub();
  const grpc::Status status = OpenAndFinish(*stub, OpenRequest("no_such_model"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(status.error_message().find("no_such_model"), std::string::npos);
}

TEST_F(StreamTest, ModelThatFailedToLoadIsUnavailableAndOthersServe) {
  auto stub = NewStub();
  for (const char* name : {"broken", "bad_config"}) {
    const grpc::Status status = OpenAndFinish(*stub, OpenRequest(name));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << name;
  }
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok());
  StreamRowAndCheck(*stub, "lstm2", *model, 0, 1);
}

TEST_F(StreamTest, FramesBeforeOpenIsFailedPrecondition) {
  auto stub = NewStub();
  const grpc::Status status = OpenAndFinish(*stub, FramesRequest({{1.f}}, {1}));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(StreamTest, OpenTwiceIsFailedPrecondition) {
  auto stub = NewStub();
  const grpc::Status status = OpenAndFinish(*stub, OpenRequest("lstm2"), {OpenRequest("lstm2")});
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(StreamTest, BadFramesGetInStreamErrorsAndTheSessionGoesOn) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok());
  const streaming::StreamSpec& in = model->program->input;
  auto stub = NewStub();
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("lstm2")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened());

  v1::StreamRequest wrong_shape =
      FramesRequest({std::vector<float>(in.frame_size + 1)}, {in.frame_size + 1});
  v1::StreamRequest wrong_dtype =
      FramesRequest({std::vector<float>(in.frame_size)}, in.frame_shape);
  wrong_dtype.mutable_frames()->mutable_tensor()->set_dtype(v1::DATA_TYPE_UNSPECIFIED);
  v1::StreamRequest wrong_bytes =
      FramesRequest({std::vector<float>(in.frame_size)}, in.frame_shape);
  wrong_bytes.mutable_frames()->mutable_tensor()->mutable_data()->append("xyz");
  for (const auto* bad : {&wrong_shape, &wrong_dtype, &wrong_bytes}) {
    ASSERT_TRUE(s->Write(*bad));
    ASSERT_TRUE(s->Read(&response));
    ASSERT_TRUE(response.has_error()) << response.DebugString();
    EXPECT_EQ(response.error().status().code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(response.error().seq(), 0u);
  }
  // The session's state was untouched: the whole row 3 still matches the offline output.
  const streaming::StreamSpec& out = model->program->outputs[0];
  for (int64_t t = 0; t < model->frames(); ++t) {
    ASSERT_TRUE(s->Write(
        FramesRequest({model_testing::ExtractFrame(model->input, in, t, 3)}, in.frame_shape)));
    ASSERT_TRUE(s->Read(&response));
    ASSERT_TRUE(response.has_outputs()) << response.DebugString();
    EXPECT_EQ(response.outputs().first_seq(), static_cast<uint64_t>(t));
    const auto want = model_testing::ExtractFrame(model->expected, out, t, 3);
    const float* got = reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1e-4f + 1e-4f * std::fabs(want[i]));
    }
  }
  s->Write(CloseRequest());
  s->stream->WritesDone();
  while (s->Read(&response)) {
  }
  EXPECT_TRUE(s->stream->Finish().ok());
}

TEST_F(StreamTest, ResetRestartsTheSequence) {
  auto model = LoadReferenceModel("vollo_valid_cnn");
  ASSERT_TRUE(model.ok());
  const streaming::StreamSpec& in = model->program->input;
  auto stub = NewStub();
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("vollo_valid_cnn")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  std::vector<std::vector<float>> half;
  for (int64_t t = 0; t < 10; ++t)
    half.push_back(model_testing::ExtractFrame(model->input, in, t, 1));
  ASSERT_TRUE(s->Write(FramesRequest(half, in.frame_shape)));
  v1::StreamRequest reset;
  reset.mutable_reset();
  ASSERT_TRUE(s->Write(reset));
  uint64_t outputs_before_reset = 0;
  while (true) {
    ASSERT_TRUE(s->Read(&response));
    if (response.has_reset_done()) break;
    ASSERT_TRUE(response.has_outputs());
    outputs_before_reset += response.outputs().count();
  }
  EXPECT_EQ(outputs_before_reset, 10u - model->program->warmup_frames);
  EXPECT_EQ(response.reset_done().next_seq(), 10u);
  // After the reset the warm-up starts again and outputs equal a fresh session's.
  std::vector<std::vector<float>> all;
  for (int64_t t = 0; t < model->frames(); ++t) {
    all.push_back(model_testing::ExtractFrame(model->input, in, t, 2));
  }
  ASSERT_TRUE(s->Write(FramesRequest(all, in.frame_shape)));
  ASSERT_TRUE(s->Write(CloseRequest()));
  s->stream->WritesDone();
  const streaming::StreamSpec& out = model->program->outputs[0];
  int64_t got_frames = 0;
  while (s->Read(&response)) {
    ASSERT_TRUE(response.has_outputs());
    for (uint32_t i = 0; i < response.outputs().count(); ++i) {
      const uint64_t seq = response.outputs().first_seq() + i;
      const int64_t t = static_cast<int64_t>(seq) - 10 - model->program->warmup_frames;
      ASSERT_EQ(t, got_frames);
      const auto want = model_testing::ExtractFrame(model->expected, out, t, 2);
      const float* got =
          reinterpret_cast<const float*>(response.outputs().tensors(0).data().data()) +
          i * out.frame_size;
      for (size_t e = 0; e < want.size(); ++e) {
        ASSERT_NEAR(got[e], want[e], 1e-4f + 1e-4f * std::fabs(want[e]));
      }
      ++got_frames;
    }
  }
  EXPECT_EQ(got_frames, model->out_frames());
  EXPECT_TRUE(s->stream->Finish().ok());
}

TEST_F(StreamTest, SessionsOverTheModelLimitAreResourceExhausted) {
  auto stub = NewStub();
  auto a = StartStream(*stub);
  auto b = StartStream(*stub);
  v1::StreamResponse response;
  ASSERT_TRUE(a->Write(OpenRequest("limited")));
  ASSERT_TRUE(a->Read(&response));
  ASSERT_TRUE(b->Write(OpenRequest("limited")));
  ASSERT_TRUE(b->Read(&response));
  const grpc::Status third = OpenAndFinish(*stub, OpenRequest("limited"));
  EXPECT_EQ(third.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(third.error_message().find("limited"), std::string::npos);
  // Other models are not affected, and a closed session frees its place.
  auto model = LoadReferenceModel("espdl_tcn_block");
  ASSERT_TRUE(model.ok());
  StreamRowAndCheck(*stub, "espdl_tcn_block", *model, 5, 9);
  a->Write(CloseRequest());
  a->stream->WritesDone();
  while (a->Read(&response)) {
  }
  EXPECT_TRUE(a->stream->Finish().ok());
  StreamRowAndCheck(*stub, "limited", *model, 6, 10);
  b->context.TryCancel();
  b->stream->Finish().IgnoreError();
}

TEST_F(StreamTest, IdleSessionEndsWithDeadlineExceeded) {
  auto stub = NewStub();
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("idle")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened());
  const auto start = std::chrono::steady_clock::now();
  while (s->Read(&response)) {
  }
  const grpc::Status status = s->stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(StreamTest, OversizeMessageIsResourceExhausted) {
  auto stub = NewStub();
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("lstm2")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  v1::StreamRequest huge;
  huge.mutable_frames()->mutable_tensor()->mutable_data()->assign(20 << 20, 'x');
  s->Write(huge);
  while (s->Read(&response)) {
  }
  EXPECT_EQ(s->stream->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(StreamTest, SlowReaderDoesNotStallOtherSessions) {
  auto model = LoadReferenceModel("lstm2");
  ASSERT_TRUE(model.ok());
  const streaming::StreamSpec& in = model->program->input;
  auto stub = NewStub();
  auto slow = StartStream(*stub);
  v1::StreamResponse response;
  ASSERT_TRUE(slow->Write(OpenRequest("lstm2")));
  ASSERT_TRUE(slow->Read(&response));
  // The slow session keeps sending and never reads: it ends up blocked by flow control.
  std::atomic<bool> stop{false};
  std::thread flood([&] {
    const auto request =
        FramesRequest(std::vector<std::vector<float>>(64, std::vector<float>(in.frame_size, 0.5f)),
                      in.frame_shape);
    while (!stop.load() && slow->Write(request)) {
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int64_t row = 0; row < 4; ++row) StreamRowAndCheck(*stub, "lstm2", *model, row, 77 + row);
  stop.store(true);
  slow->context.TryCancel();
  flood.join();
  slow->stream->Finish().IgnoreError();
}

}  // namespace
}  // namespace sluice::server_testing
