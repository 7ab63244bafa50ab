// Device-fault fallback end to end: the primary backend dies mid-stream (injected), every
// session moves to the CPU backend with its exact state, and no output is lost or wrong.
#include <gtest/gtest.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "server/admin/metrics.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

std::string Get(int port, const std::string& path) {
  FILE* pipe =
      popen(absl::StrCat("curl -s --max-time 10 http://127.0.0.1:", port, path).c_str(), "r");
  std::string body;
  char buffer[4096];
  size_t n;
  while (pipe != nullptr && (n = fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    body.append(buffer, n);
  if (pipe != nullptr) pclose(pipe);
  return body;
}

struct FallbackCase {
  std::string backend;
  int64_t fault_step;  // 0 = no fault.
};

class FallbackTest : public ::testing::TestWithParam<FallbackCase> {};

// 32 sessions, each fed a different sequence (8 rows x 4 models: two conv models, an LSTM and a
// GRU) on the CPU or OpenCL (PoCL) backend; with a fault at step 24 of each model's backend:
// streaming 8 sessions of 40 or 48 frames takes at least 40 steps, so the fault always hits
// mid-stream, and with full batches every session is then past twice its receptive field. Snapshots
// every 8 frames so the rebuild uses both a snapshot and a replay of the frames since.
TEST_P(FallbackTest, ThirtyTwoSessionsMatchOfflineThroughADeviceFault) {
  const FallbackCase& param = GetParam();
  const std::vector<std::string> names = {"espdl_tcn_block", "lstm2", "chomp_tcn", "gru_tanh"};
  std::vector<RepoModel> repo;
  for (const std::string& name : names) repo.push_back({name, name, ""});
  const std::string repository = MakeRepository(repo);
  server::ServerOptions options;
  options.model_repository = repository;
  options.host = "127.0.0.1";
  options.grpc_port = 0;
  options.http_port = 0;
  options.backend = param.backend;
  options.opencl_device = param.backend == "opencl" ? "cpu" : "";
  options.inject_device_fault_after_steps = param.fault_step;
  options.fallback_snapshot_interval_frames = 8;
  auto server = server::SluiceServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_NE(Get((*server)->http_port(), "/readyz").find("ready:"), std::string::npos);

  auto stub = v1::Streaming::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", (*server)->grpc_port()), grpc::InsecureChannelCredentials()));
  std::vector<model_testing::ReferenceModel> models;
  for (const std::string& name : names) {
    auto model = model_testing::LoadReferenceModel(name);
    ASSERT_TRUE(model.ok()) << model.status();
    models.push_back(*std::move(model));
  }
  std::vector<std::thread> threads;
  for (size_t m = 0; m < models.size(); ++m) {
    for (int64_t row = 0; row < models[m].rows(); ++row) {
      threads.emplace_back([&, m, row] {
        StreamRowAndCheck(*stub, models[m].row.name, models[m], row,
                          static_cast<uint32_t>(1000 * m + row));
      });
    }
  }
  ASSERT_EQ(threads.size(), 32u);
  for (auto& thread : threads) thread.join();

  const std::string ready = Get((*server)->http_port(), "/readyz");
  if (param.fault_step == 0) {
    EXPECT_NE(ready.find("ready:"), std::string::npos) << ready;
    (*server)->Shutdown();
    std::filesystem::remove_all(repository);
    return;
  }
  EXPECT_NE(ready.find("degraded:"), std::string::npos) << ready;
  EXPECT_NE(ready.find("injected device fault"), std::string::npos) << ready;
  const std::string metrics = Get((*server)->http_port(), "/metrics");
  for (const std::string& model : names) {
    EXPECT_NE(metrics.find(absl::StrCat("sluice_backend_fallbacks_total{model=\"", model, "\"} 1")),
              std::string::npos)
        << metrics;
    // The fault hit live sessions (not an idle model after the streams ended).
    const std::string migrated =
        absl::StrCat("sluice_sessions_migrated_total{model=\"", model, "\"} ");
    const size_t at = metrics.find(migrated);
    ASSERT_NE(at, std::string::npos) << metrics;
    EXPECT_GT(std::stol(metrics.substr(at + migrated.size())), 0) << model;
  }
  (*server)->Shutdown();
  std::filesystem::remove_all(repository);
}

INSTANTIATE_TEST_SUITE_P(Backends, FallbackTest,
                         ::testing::Values(FallbackCase{"cpu", 24}, FallbackCase{"opencl", 0},
                                           FallbackCase{"opencl", 24}),
                         [](const ::testing::TestParamInfo<FallbackCase>& info) {
                           return absl::StrCat(info.param.backend, "_fault_at_",
                                               info.param.fault_step);
                         });

}  // namespace
}  // namespace sluice::server_testing
