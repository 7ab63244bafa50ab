// The server's operational surface end to end: the admin HTTP endpoint probed with the real curl
// binary (health, readiness, Prometheus metrics validated by promtool, KServe v2 routes), and over
// gRPC the standard health service and server reflection, called with hand-encoded protobuf
// through a generic stub (no generated code for those services is needed).
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "server/server.h"
#include "tests/server/command_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

using command_testing::CommandResult;
using command_testing::HaveTool;
using command_testing::HttpResult;
using command_testing::RunCommand;
using command_testing::SampleValue;
using command_testing::TempPath;

// GET http://127.0.0.1:<port><path> with curl; a curl failure fails the test.
HttpResult Curl(int port, const std::string& path) {
  HttpResult result = command_testing::CurlGet(port, path);
  if (result.curl_exit != 0)
    ADD_FAILURE() << "curl " << path << " exited with " << result.curl_exit;
  return result;
}

server::ServerOptions Options(const std::string& repository) {
  server::ServerOptions options;
  options.model_repository = repository;
  options.host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = 0;
  return options;
}

class AdminTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    repository_ = new std::string(MakeRepository({
        {"lstm2", "lstm2", ""},
        {"gru_tanh", "gru_tanh", ""},
        {"broken", "", ""},
    }));
    auto server = server::SluiceServer::Start(Options(*repository_));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = server->release();
  }
  static void TearDownTestSuite() {
    delete server_;
    std::filesystem::remove_all(*repository_);
    delete repository_;
  }
  void SetUp() override {
    ASSERT_TRUE(HaveTool("curl", "--version"))
        << "curl is not installed (Debian package curl; scripts/setup.sh installs it)";
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(server_->http_port(), 0);
  }

  std::shared_ptr<grpc::Channel> Channel() {
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->grpc_port()),
                               grpc::InsecureChannelCredentials());
  }

  static server::SluiceServer* server_;
  static std::string* repository_;
};

server::SluiceServer* AdminTest::server_ = nullptr;
std::string* AdminTest::repository_ = nullptr;

TEST_F(AdminTest, HealthzIsOk) {
  const HttpResult r = Curl(server_->http_port(), "/healthz");
  EXPECT_EQ(r.code, 200);
  EXPECT_EQ(r.body, "ok");
}

TEST_F(AdminTest, ReadyzListsTheReadyModels) {
  const HttpResult r = Curl(server_->http_port(), "/readyz");
  EXPECT_EQ(r.code, 200) << r.body;
  EXPECT_NE(r.body.find("lstm2"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("gru_tanh"), std::string::npos) << r.body;
  // The model that failed to load is named as not ready, never as ready.
  const size_t not_ready = r.body.find("not ready");
  ASSERT_NE(not_ready, std::string::npos) << r.body;
  EXPECT_NE(r.body.find("broken", not_ready), std::string::npos) << r.body;
  EXPECT_EQ(r.body.substr(0, not_ready).find("broken"), std::string::npos) << r.body;
}

TEST_F(AdminTest, ReadyzIs503WhenNoModelLoads) {
  const std::string repository = MakeRepository({{"broken", "", ""}, {"also_broken", "", ""}});
  auto server = server::SluiceServer::Start(Options(repository));
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->http_port();
  const HttpResult ready = Curl(port, "/readyz");
  EXPECT_EQ(ready.code, 503) << ready.body;
  EXPECT_FALSE(ready.body.empty());
  const HttpResult oip_ready = Curl(port, "/v2/health/ready");
  EXPECT_GE(oip_ready.code, 400);
  EXPECT_LT(oip_ready.code, 500);
  // Alive nonetheless.
  EXPECT_EQ(Curl(port, "/healthz").code, 200);
  EXPECT_EQ(Curl(port, "/v2/health/live").code, 200);
  server->reset();
  std::filesystem::remove_all(repository);
}

TEST_F(AdminTest, KServeV2Routes) {
  const int port = server_->http_port();
  EXPECT_EQ(Curl(port, "/v2/health/live").code, 200);
  EXPECT_EQ(Curl(port, "/v2/health/ready").code, 200);

  const HttpResult model = Curl(port, "/v2/models/lstm2");
  EXPECT_EQ(model.code, 200) << model.body;
  EXPECT_EQ(model.body.front(), '{') << model.body;
  EXPECT_NE(model.body.find("\"name\":\"lstm2\""), std::string::npos) << model.body;
  EXPECT_NE(model.body.find("\"inputs\""), std::string::npos) << model.body;
  EXPECT_NE(model.body.find("\"outputs\""), std::string::npos) << model.body;
  // lstm2's input: offline shape [-1,1,10].
  EXPECT_NE(model.body.find("[-1,1,10]"), std::string::npos) << model.body;

  const HttpResult nope = Curl(port, "/v2/models/nope");
  EXPECT_EQ(nope.code, 404) << nope.body;
  EXPECT_NE(nope.body.find("nope"), std::string::npos) << nope.body;

  EXPECT_EQ(Curl(port, "/v2/models/lstm2/ready").code, 200);
  EXPECT_EQ(Curl(port, "/v2/models/broken/ready").code, 400);
  EXPECT_EQ(Curl(port, "/v2/models/nope/ready").code, 404);
  const HttpResult broken = Curl(port, "/v2/models/broken");
  EXPECT_EQ(broken.code, 200) << broken.body;
  EXPECT_NE(broken.body.find("\"ready\":false"), std::string::npos) << broken.body;
}

TEST_F(AdminTest, MetricsCountStreamedFramesAndPassPromtool) {
  ASSERT_TRUE(HaveTool("promtool", "--version"))
      << "promtool is not installed (Debian package prometheus; scripts/setup.sh installs it)";
  // Stream a few frames through lstm2 and read every output.
  constexpr int kFrames = 7;
  {
    auto stub = v1::Streaming::NewStub(Channel());
    auto s = StartStream(*stub);
    ASSERT_TRUE(s->Write(OpenRequest("lstm2")));
    v1::StreamResponse response;
    ASSERT_TRUE(s->Read(&response));
    ASSERT_TRUE(response.has_opened()) << response.DebugString();
    std::vector<std::vector<float>> frames(kFrames, std::vector<float>(10, 0.25f));
    ASSERT_TRUE(s->Write(FramesRequest(frames, {1, 10})));
    v1::StreamRequest close;
    close.mutable_close();
    ASSERT_TRUE(s->Write(close));
    s->stream->WritesDone();
    uint32_t outputs = 0;
    while (s->Read(&response)) {
      if (response.has_outputs()) outputs += response.outputs().count();
    }
    EXPECT_EQ(outputs, static_cast<uint32_t>(kFrames));
    const grpc::Status status = s->stream->Finish();
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  const HttpResult r = Curl(server_->http_port(), "/metrics");
  ASSERT_EQ(r.code, 200) << r.body;
  const std::string& m = r.body;
  EXPECT_GE(SampleValue(m, "sluice_frames_total{model=\"lstm2\",direction=\"in\"}"), kFrames) << m;
  EXPECT_GE(SampleValue(m, "sluice_frames_total{model=\"lstm2\",direction=\"out\"}"), kFrames) << m;
  EXPECT_GT(SampleValue(m, "sluice_batch_size_count{model=\"lstm2\"}"), 0) << m;
  EXPECT_GE(SampleValue(m, "sluice_sessions_total{model=\"lstm2\"}"), 1) << m;
  EXPECT_EQ(SampleValue(m, "sluice_frames_total{model=\"gru_tanh\",direction=\"in\"}"), 0) << m;

  const std::string metrics_file = TempPath("metrics");
  std::ofstream(metrics_file) << m;
  const CommandResult check =
      RunCommand(absl::StrCat("promtool check metrics < '", metrics_file, "' 2>&1"));
  std::filesystem::remove(metrics_file);
  EXPECT_EQ(check.exit_code, 0) << "promtool check metrics:\n" << check.output;
}

// ---- gRPC: health and reflection through a generic stub with hand-encoded protobuf ----

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return "";
  std::string out;
  for (const grpc::Slice& s : slices)
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// grpc.health.v1.HealthCheckRequest{service}: field 1, length-delimited.
std::string HealthRequest(const std::string& service) {
  if (service.empty()) return "";
  return absl::StrCat(std::string(1, '\x0a'), std::string(1, static_cast<char>(service.size())),
                      service);
}

grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                         std::string* response_bytes) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  const grpc::ByteBuffer request = ToByteBuffer(HealthRequest(service));
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&done](grpc::Status status) { done.set_value(status); });
  const grpc::Status status = done.get_future().get();
  *response_bytes = FromByteBuffer(response);
  return status;
}

TEST_F(AdminTest, GrpcHealthCheckIsServing) {
  std::string bytes;
  const grpc::Status status = HealthCheck(Channel(), "", &bytes);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  // HealthCheckResponse{status: SERVING}: field 1 varint = 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));

  // Per model: a loaded model serves, one that failed to load does not (NOT_SERVING = 2).
  ASSERT_TRUE(HealthCheck(Channel(), "lstm2", &bytes).ok());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
  ASSERT_TRUE(HealthCheck(Channel(), "broken", &bytes).ok());
  EXPECT_EQ(bytes, std::string("\x08\x02", 2));
  EXPECT_EQ(HealthCheck(Channel(), "nope", &bytes).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(AdminTest, ServerReflectionListsTheStreamingService) {
  grpc::GenericStub stub(Channel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(
      &context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  void* tag = nullptr;
  bool ok = false;
  auto next = [&](intptr_t expected_tag) {
    if (!cq.Next(&tag, &ok)) return false;
    EXPECT_EQ(reinterpret_cast<intptr_t>(tag), expected_tag);
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(next(1));
  // ServerReflectionRequest{list_services: ""}: field 7, length-delimited, empty.
  call->Write(ToByteBuffer(std::string("\x3a\x00", 2)), reinterpret_cast<void*>(2));
  ASSERT_TRUE(next(2));
  call->WritesDone(reinterpret_cast<void*>(3));
  ASSERT_TRUE(next(3));
  std::string all;
  while (true) {
    grpc::ByteBuffer response;
    call->Read(&response, reinterpret_cast<void*>(4));
    if (!next(4)) break;
    all += FromByteBuffer(response);
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(5));
  ASSERT_TRUE(next(5));
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_NE(all.find("sluice.v1.Streaming"), std::string::npos)
      << "reflection did not list sluice.v1.Streaming; got " << all.size() << " bytes";
  EXPECT_NE(all.find("grpc.health.v1.Health"), std::string::npos);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

}  // namespace
}  // namespace sluice::server_testing
