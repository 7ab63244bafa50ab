#include "server/admin/http_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "tests/common/status_matchers.h"

namespace sluice::server {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// State the hooks read; the tests change it while the server runs.
class FakeServerState {
 public:
  void SetReadiness(Readiness r) {
    absl::MutexLock lock(&mu_);
    readiness_ = std::move(r);
  }
  void SetModel(const std::string& name, bool ready) {
    absl::MutexLock lock(&mu_);
    models_[name] = ready;
  }

  AdminHooks Hooks() {
    AdminHooks hooks;
    hooks.readiness = [this] {
      absl::MutexLock lock(&mu_);
      return readiness_;
    };
    hooks.metrics_text = [] {
      return std::string("# HELP sluice_ready Ready.\n# TYPE sluice_ready gauge\nsluice_ready 1\n");
    };
    hooks.model_json = [this](const std::string& name) -> std::optional<std::string> {
      absl::MutexLock lock(&mu_);
      if (models_.count(name) == 0) return std::nullopt;
      return absl::StrCat(R"({"name":")", name, R"(","platform":"sluice"})");
    };
    hooks.model_ready = [this](const std::string& name) -> std::optional<bool> {
      absl::MutexLock lock(&mu_);
      auto it = models_.find(name);
      if (it == models_.end()) return std::nullopt;
      return it->second;
    };
    return hooks;
  }

 private:
  absl::Mutex mu_;
  Readiness readiness_ ABSL_GUARDED_BY(mu_){true, "ready"};
  std::map<std::string, bool> models_ ABSL_GUARDED_BY(mu_);
};

class AdminServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    state_.SetModel("kws", true);
    state_.SetModel("loading", false);
    ASSERT_OK_AND_ASSIGN(server_, AdminServer::Start("127.0.0.1", 0, state_.Hooks()));
    ASSERT_GT(server_->port(), 0);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", server_->port());
    client_->set_connection_timeout(2);
    client_->set_read_timeout(5);
  }

  httplib::Result Get(const std::string& path) { return client_->Get(path.c_str()); }

  FakeServerState state_;
  std::unique_ptr<AdminServer> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(AdminServerTest, Healthz) {
  auto res = Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok");
}

TEST_F(AdminServerTest, ReadyzFollowsReadiness) {
  auto res = Get("/readyz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ready");
  EXPECT_THAT(res->get_header_value("Content-Type"), StartsWith("text/plain"));

  state_.SetReadiness({true, "degraded: fpga0 failed, serving on cpu"});
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "degraded: fpga0 failed, serving on cpu");

  state_.SetReadiness({false, "loading models"});
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "loading models");

  state_.SetReadiness({false, ""});
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "not ready");

  state_.SetReadiness({true, ""});
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ready");
}

TEST_F(AdminServerTest, MetricsServesTheExpositionFormat) {
  auto res = Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), StartsWith("text/plain; version=0.0.4"));
  EXPECT_THAT(res->body, HasSubstr("sluice_ready 1\n"));
}

TEST_F(AdminServerTest, V2HealthLiveAndReady) {
  auto res = Get("/v2/health/live");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "");

  res = Get("/v2/health/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "");

  state_.SetReadiness({false, "loading"});
  res = Get("/v2/health/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);  // The OIP: 4xx means false.
  res = Get("/v2/health/live");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);  // Live whatever the readiness.
}

TEST_F(AdminServerTest, V2ModelMetadata) {
  auto res = Get("/v2/models/kws");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"name":"kws","platform":"sluice"})");
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");

  res = Get("/v2/models/nope");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->body, R"({"error":"unknown model 'nope'"})");
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
}

TEST_F(AdminServerTest, V2ModelMetadataEscapesTheNameInErrors) {
  auto res = Get("/v2/models/a%22b");  // URL-decoded to a"b before routing.
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(res->body, R"({"error":"unknown model 'a\"b'"})");
}

TEST_F(AdminServerTest, V2ModelReady) {
  auto res = Get("/v2/models/kws/ready");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);

  res = Get("/v2/models/loading/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);

  state_.SetModel("loading", true);
  res = Get("/v2/models/loading/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  res = Get("/v2/models/nope/ready");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_THAT(res->body, HasSubstr(R"("error")"));
}

TEST_F(AdminServerTest, UnknownPathIs404) {
  for (const char* path : {"/", "/nope", "/healthz/extra", "/v2/models", "/v2/models/"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path << ": " << httplib::to_string(res.error());
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_THAT(res->body, HasSubstr(R"({"error":)")) << path;
  }
  auto res = client_->Post("/nope", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

TEST_F(AdminServerTest, WrongMethodOnAKnownPathIs405) {
  auto res = client_->Post("/healthz", "", "text/plain");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");

  res = client_->Delete("/v2/models/kws");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);

  res = client_->Put("/metrics", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
}

TEST_F(AdminServerTest, HeadIsAnsweredByTheGetRoute) {
  auto res = client_->Head("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "");
}

TEST_F(AdminServerTest, RoutesAddedWhileServing) {
  auto res = client_->Post("/v2/models/kws/infer", R"({"inputs":[]})", "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 404);

  ASSERT_OK(
      server_->AddPost("/v2/models/([^/]+)/infer", [](const HttpRequest& req, HttpResponse& res) {
        res.SetJson(200, absl::StrCat(R"({"model":")", JsonEscape(req.path_params[0]),
                                      R"(","echo":)", req.body, "}"));
        res.headers.emplace_back("X-Method", req.method);
        res.headers.emplace_back("X-Trace", std::string(req.Header("x-trace-id")));
      }));
  ASSERT_OK(server_->AddGet("/v2", [](const HttpRequest& req, HttpResponse& res) {
    res.SetJson(200, absl::StrCat(R"({"name":"sluice","q":")",
                                  std::string(req.QueryParam("q").value_or("none")), R"("})"));
  }));

  res = client_->Post("/v2/models/kws/infer", {{"X-Trace-Id", "abc"}}, R"({"inputs":[]})",
                      "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"model":"kws","echo":{"inputs":[]}})");
  EXPECT_EQ(res->get_header_value("X-Method"), "POST");
  EXPECT_EQ(res->get_header_value("X-Trace"), "abc");

  // GET on the POST-only path: 405 naming POST.
  res = Get("/v2/models/kws/infer");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "POST");

  res = Get("/v2?q=hello%20world");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, R"({"name":"sluice","q":"hello world"})");
}

TEST_F(AdminServerTest, BuiltinRoutesCannotBeOverridden) {
  ASSERT_OK(server_->AddGet(
      "/healthz", [](const HttpRequest&, HttpResponse& res) { res.body = "overridden"; }));
  auto res = Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body, "ok");
}

TEST_F(AdminServerTest, InvalidRoutePatternIsInvalidArgument) {
  EXPECT_THAT(server_->AddGet("/v2/models/([^/]+", [](const HttpRequest&, HttpResponse&) {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/v2/models/([^/]+")));
}

TEST_F(AdminServerTest, SecondServerOnTheSamePortIsUnavailable) {
  FakeServerState other;
  auto second = AdminServer::Start("127.0.0.1", server_->port(), other.Hooks());
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable,
                               HasSubstr(absl::StrCat("127.0.0.1:", server_->port()))));
  // The first server still answers.
  auto res = Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(AdminServerTest, StopIsIdempotentAndClosesThePort) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  auto res = client.Get("/healthz");
  EXPECT_FALSE(res);
  // The port can be bound again at once.
  FakeServerState other;
  ASSERT_OK_AND_ASSIGN(auto again, AdminServer::Start("127.0.0.1", port, other.Hooks()));
  EXPECT_EQ(again->port(), port);
  res = client.Get("/healthz");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
}

TEST_F(AdminServerTest, ServesManyClientsConcurrently) {
  // One request first: cpp-httplib's client builds function-local static regexes on first use,
  // inside the (uninstrumented) shared library, which ThreadSanitizer reports as a race when the
  // first uses are concurrent.
  ASSERT_TRUE(Get("/healthz"));
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      httplib::Client client("127.0.0.1", server_->port());
      client.set_connection_timeout(2);
      for (int i = 0; i < 25; ++i) {
        auto res = client.Get("/metrics");
        if (res && res->status == 200) ok.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
}

TEST(AdminServer, StartRejectsMissingHooksAndBadPorts) {
  FakeServerState state;
  AdminHooks hooks = state.Hooks();
  hooks.model_ready = nullptr;
  EXPECT_THAT(AdminServer::Start("127.0.0.1", 0, hooks),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("model_ready")));
  EXPECT_THAT(AdminServer::Start("127.0.0.1", -1, state.Hooks()),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(AdminServer::Start("127.0.0.1", 70000, state.Hooks()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(AdminServer, UnbindableHostIsUnavailable) {
  FakeServerState state;
  // 192.0.2.1 (TEST-NET-1) is not an address of this machine, so bind() fails; nothing is sent.
  EXPECT_THAT(AdminServer::Start("192.0.2.1", 0, state.Hooks()),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("192.0.2.1:0")));
}

TEST(AdminServer, StartAndStopQuickly) {
  FakeServerState state;
  for (int i = 0; i < 20; ++i) {
    ASSERT_OK_AND_ASSIGN(auto server, AdminServer::Start("127.0.0.1", 0, state.Hooks()));
    if (i % 2 == 0) server->Stop();
  }
}

}  // namespace
}  // namespace sluice::server
