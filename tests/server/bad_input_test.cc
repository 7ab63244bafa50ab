// Bad input on every front door of a real in-process server, and proof that nothing else suffers:
// each case asserts the exact status code and message prefix the server answers with (read from
// the server code: stream_service.cc, frame_codec.cc, registry.cc, config.cc, repository.cc,
// oip_codec.cc, oip_engine.cc, http_server.cc, oip_http.cc), and after each case
//  - a healthy session (the "canary", lstm2) that streams all along has kept getting its outputs,
//  - every model is back to its baseline of open sessions (no place leaked),
//  - a fresh session opens and matches the offline reference.
// The canary's outputs are checked frame by frame against the reference as they come, and at the
// end for completeness and order.
//
// Every case runs twice: once as its own test (Matrix/BadInputCaseTest.*, a canary per test), and
// once in WholeMatrixWithOneHealthySession, where one canary streams across the whole matrix.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "inference/grpc_service.grpc.pb.h"
#include "server/admin/metrics.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/command_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

using command_testing::Curl;
using command_testing::CurlGet;
using command_testing::HttpRequestSpec;
using command_testing::HttpResult;
using model_testing::LoadReferenceModel;
using model_testing::ReferenceModel;

constexpr int kMaxSessions = 12;
constexpr int64_t kMaxMessageBytes = 256 << 10;
constexpr int kIdleTimeoutMs = 300;

#define EXPECT_STATUS(status, code, prefix)                                                   \
  do {                                                                                        \
    const grpc::Status& s_ = (status);                                                        \
    EXPECT_EQ(s_.error_code(), (code)) << s_.error_message();                                 \
    EXPECT_TRUE(absl::StartsWith(s_.error_message(), (prefix)))                               \
        << "message '" << s_.error_message() << "' does not start with '" << (prefix) << "'"; \
  } while (0)

bool Near(float got, float want) {
  return std::fabs(got - want) <= 1e-4f + 1e-4f * std::fabs(want);
}

// ---- the served repository ----

// Every model the fixture serves, with how many sessions it holds when no case runs.
const std::vector<std::string>& ReadyModels() {
  static const auto* names = new std::vector<std::string>{
      "lstm2", "lstm2_limited", "lstm2_idle", "gru_tanh", "cnn_tiny", "espdl_tcn_block"};
  return *names;
}

// The refused (non-causal) reference models, served as "refused_<manifest name>".
std::vector<model_testing::ManifestRow> RefusedRows() {
  std::vector<model_testing::ManifestRow> rows;
  auto manifest = model_testing::ReadManifest();
  if (!manifest.ok()) return rows;
  for (const auto& row : *manifest) {
    if (row.kind == "refuse") rows.push_back(row);
  }
  return rows;
}

std::string BuildRepository() {
  const std::string root = MakeRepository({
      {"lstm2", "lstm2", ""},
      {"lstm2_limited", "lstm2", "max_sessions: 2\n"},
      {"lstm2_idle", "lstm2", absl::StrCat("session_idle_timeout_ms: ", kIdleTimeoutMs, "\n")},
      {"gru_tanh", "gru_tanh", ""},
      {"cnn_tiny", "cnn_tiny", ""},
      {"espdl_tcn_block", "espdl_tcn_block", ""},
      {"corrupt", "", ""},  // model.onnx is garbage text.
      {"bad_value", "lstm2", "max_batch: 0\n"},
      {"bad_negative", "lstm2", "max_sessions: -1\n"},
      {"bad_syntax", "lstm2", "max_batch: 8\nmax_batchh: 3\n"},
      {"bad_type", "lstm2", "instance_count: two\n"},
      // The README: `name` is "the name clients open" (default: the folder name).
      {"folder_name", "lstm2", "name: \"alias\"\n"},
  });
  const std::filesystem::path dir(root);
  const std::string lstm2_onnx = model_testing::SourcePath("tests/models/lstm2/model.onnx");
  std::filesystem::create_directories(dir / "truncated");
  command_testing::WriteFile((dir / "truncated" / "model.onnx").string(),
                             command_testing::ReadFile(lstm2_onnx).substr(0, 3000));
  std::filesystem::create_directories(dir / "empty_onnx");
  command_testing::WriteFile((dir / "empty_onnx" / "model.onnx").string(), "");
  std::filesystem::create_directories(dir / "missing_onnx");
  command_testing::WriteFile((dir / "missing_onnx" / "config.pbtxt").string(), "max_batch: 4\n");
  for (const auto& row : RefusedRows()) {
    std::filesystem::create_directories(dir / absl::StrCat("refused_", row.name));
    std::filesystem::create_symlink(row.ModelPath(),
                                    dir / absl::StrCat("refused_", row.name) / "model.onnx");
  }
  return root;
}

// ---- raw streams ----

struct StreamOutcome {
  grpc::Status status;
  std::vector<v1::StreamResponse> responses;
  bool opened() const { return !responses.empty() && responses.front().has_opened(); }
  // The responses in order, one letter each: O(pened) o(utputs) E(rror) R(esetDone).
  std::string Kinds() const {
    std::string kinds;
    for (const auto& r : responses) {
      kinds += r.has_opened() ? 'O' : r.has_outputs() ? 'o' : r.has_error() ? 'E' : 'R';
    }
    return kinds;
  }
};

// Writes `requests` in order (a write the server no longer takes is skipped), half-closes unless
// `writes_done` is false, reads every response on a concurrent reader and returns how the stream
// ended.
StreamOutcome RunStream(v1::Streaming::Stub& stub, const std::vector<v1::StreamRequest>& requests,
                        bool writes_done = true, int deadline_s = 30) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(deadline_s));
  auto stream = stub.Stream(&context);
  StreamOutcome outcome;
  std::thread reader([&] {
    v1::StreamResponse response;
    while (stream->Read(&response)) outcome.responses.push_back(response);
  });
  for (const auto& request : requests) {
    if (!stream->Write(request)) break;
  }
  if (writes_done) stream->WritesDone();
  reader.join();
  outcome.status = stream->Finish();
  return outcome;
}

v1::StreamRequest ResetRequest() {
  v1::StreamRequest request;
  request.mutable_reset();
  return request;
}

// ---- the fixture ----

// The healthy session: streams lstm2's reference row `row` frame by frame (a Reset after every
// pass over the row, so output seq s is the row's frame s % T) from a writer thread, and checks
// each output against the offline reference on a reader thread.
class Canary {
 public:
  Canary(v1::Streaming::Stub* stub, const ReferenceModel* model, int64_t row)
      : stub_(stub), model_(model), row_(row) {}
  ~Canary() {
    stop_.store(true);
    if (writer_.joinable()) writer_.join();
    if (stream_ != nullptr && reader_.joinable()) {
      stream_->context.TryCancel();
      reader_.join();
    }
  }

  ::testing::AssertionResult Start() {
    stream_ = StartStream(*stub_);
    if (!stream_->Write(OpenRequest("lstm2"))) {
      return ::testing::AssertionFailure() << "canary: cannot write Open";
    }
    v1::StreamResponse response;
    if (!stream_->Read(&response) || !response.has_opened()) {
      return ::testing::AssertionFailure() << "canary: no Opened: " << response.DebugString();
    }
    reader_ = std::thread([this] { ReadLoop(); });
    writer_ = std::thread([this] { WriteLoop(); });
    return ::testing::AssertionSuccess();
  }

  int64_t received() const { return received_.load(); }

  // Waits until `more` outputs have come since the call.
  ::testing::AssertionResult WaitForProgress(int64_t more, absl::Duration timeout) {
    const int64_t target = received_.load() + more;
    const absl::Time deadline = absl::Now() + timeout;
    while (received_.load() < target) {
      if (absl::Now() > deadline) {
        return ::testing::AssertionFailure()
               << "the healthy session got " << received_.load() << " outputs, waited for "
               << target << " (" << Failures() << ")";
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    return ::testing::AssertionSuccess();
  }

  // Stops sending, closes, and checks that every frame sent got its output, in order and right.
  ::testing::AssertionResult StopAndCheck() {
    stop_.store(true);
    if (writer_.joinable()) writer_.join();
    stream_->Write(CloseRequest());
    stream_->stream->WritesDone();
    reader_.join();
    const grpc::Status status = stream_->stream->Finish();
    stream_.reset();
    const std::string failures = Failures();
    if (!failures.empty()) return ::testing::AssertionFailure() << "canary: " << failures;
    if (!status.ok()) {
      return ::testing::AssertionFailure() << "canary stream ended with " << status.error_code()
                                           << ": " << status.error_message();
    }
    if (sent_.load() == 0 || received_.load() != sent_.load()) {
      return ::testing::AssertionFailure() << "canary: sent " << sent_.load() << " frames, got "
                                           << received_.load() << " outputs";
    }
    return ::testing::AssertionSuccess();
  }

 private:
  void Fail(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (failures_.size() < 5) failures_.push_back(what);
  }
  std::string Failures() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(failures_, "; ");
  }

  void WriteLoop() {
    const streaming::StreamSpec& in = model_->program->input;
    const int64_t frames = model_->frames();
    while (!stop_.load()) {
      const int64_t t = sent_.load() % frames;
      if (!stream_->Write(FramesRequest({model_testing::ExtractFrame(model_->input, in, t, row_)},
                                        in.frame_shape))) {
        Fail("a frame write failed: the stream ended");
        return;
      }
      sent_.fetch_add(1);
      if (t == frames - 1 && !stream_->Write(ResetRequest())) {
        Fail("a reset write failed: the stream ended");
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  void ReadLoop() {
    const streaming::StreamSpec& out = model_->program->outputs[0];
    const int64_t frames = model_->frames();
    v1::StreamResponse response;
    while (stream_->Read(&response)) {
      if (response.has_outputs()) {
        const v1::Outputs& outputs = response.outputs();
        const float* got = reinterpret_cast<const float*>(outputs.tensors(0).data().data());
        for (uint32_t i = 0; i < outputs.count(); ++i) {
          const uint64_t seq = outputs.first_seq() + i;
          const int64_t expected_seq = received_.load();
          if (seq != static_cast<uint64_t>(expected_seq)) {
            Fail(absl::StrCat("output seq ", seq, " where ", expected_seq, " was due"));
          }
          const auto want = model_testing::ExtractFrame(model_->expected, out,
                                                        static_cast<int64_t>(seq) % frames, row_);
          for (size_t e = 0; e < want.size(); ++e) {
            if (!Near(got[i * out.frame_size + e], want[e])) {
              Fail(absl::StrCat("seq ", seq, " element ", e, ": ", got[i * out.frame_size + e],
                                " != ", want[e]));
              break;
            }
          }
          received_.fetch_add(1);
        }
      } else if (response.has_reset_done()) {
        if (response.reset_done().next_seq() % frames != 0) {
          Fail(absl::StrCat("ResetDone next_seq ", response.reset_done().next_seq()));
        }
      } else {
        Fail(absl::StrCat("unexpected response ", response.ShortDebugString()));
      }
    }
  }

  v1::Streaming::Stub* const stub_;
  const ReferenceModel* const model_;
  const int64_t row_;
  std::unique_ptr<TestStream> stream_;
  std::thread reader_;
  std::thread writer_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> sent_{0};
  std::atomic<int64_t> received_{0};
  std::mutex mu_;
  std::vector<std::string> failures_;
};

// The server every case runs against, shared by the whole test program.
struct Env {
  std::string repository;
  std::unique_ptr<server::SluiceServer> server;
  std::unique_ptr<v1::Streaming::Stub> stub;
  std::unique_ptr<inference::GRPCInferenceService::Stub> oip;
  ReferenceModel lstm2;
  ReferenceModel espdl;
  ReferenceModel cnn_tiny;

  std::shared_ptr<grpc::Channel> NewChannel() const {
    // Every case gets its own channel where it matters (a connection-level failure must not hit
    // the canary's connection).
    grpc::ChannelArguments args;
    args.SetInt("sluice_test_channel_id", next_channel_id.fetch_add(1));
    args.SetMaxReceiveMessageSize(-1);
    return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server->grpc_port()),
                                     grpc::InsecureChannelCredentials(), args);
  }
  std::string HttpUrl(const std::string& path) const {
    return absl::StrCat("http://127.0.0.1:", server->http_port(), path);
  }
  int64_t Active(const std::string& model) const {
    return server->metrics().ForModel(model)->sessions_active.load();
  }
  int64_t TotalActive() const {
    int64_t total = 0;
    for (const auto& name : ReadyModels()) total += Active(name);
    return total;
  }

  mutable std::atomic<int> next_channel_id{0};
};

Env* env = nullptr;

// Stops the shared server and removes its repository when the program ends.
class EnvCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    if (env == nullptr) return;
    const std::string repository = env->repository;
    delete env;
    env = nullptr;
    std::filesystem::remove_all(repository);
  }
};

::testing::Environment* const env_cleanup = ::testing::AddGlobalTestEnvironment(new EnvCleanup);

class BadInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (env != nullptr) return;  // One server for the whole program.
    auto* e = new Env();
    e->repository = BuildRepository();
    for (auto [name, model] :
         {std::pair{"lstm2", &e->lstm2}, std::pair{"espdl_tcn_block", &e->espdl},
          std::pair{"cnn_tiny", &e->cnn_tiny}}) {
      auto loaded = LoadReferenceModel(name);
      ASSERT_TRUE(loaded.ok()) << loaded.status();
      *model = *std::move(loaded);
    }
    server::ServerOptions options;
    options.model_repository = e->repository;
    options.host = "127.0.0.1";
    options.grpc_port = 0;
    options.http_port = 0;
    options.max_sessions = kMaxSessions;
    options.max_message_bytes = kMaxMessageBytes;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    e->server = *std::move(server);
    e->stub = v1::Streaming::NewStub(e->NewChannel());
    e->oip = inference::GRPCInferenceService::NewStub(e->NewChannel());
    env = e;
  }

  void SetUp() override {
    ASSERT_NE(env, nullptr);
    ASSERT_TRUE(command_testing::HaveTool("curl", "--version"))
        << "curl is not installed (Debian package curl; scripts/setup.sh installs it)";
    canary_stub_ = v1::Streaming::NewStub(env->NewChannel());
    canary_ = std::make_unique<Canary>(canary_stub_.get(), &env->lstm2, 3);
    ASSERT_TRUE(canary_->Start());
    ASSERT_TRUE(canary_->WaitForProgress(10, absl::Seconds(20)));
  }

  void TearDown() override {
    if (canary_ != nullptr) {
      EXPECT_TRUE(canary_->StopAndCheck());
      canary_.reset();
    }
    if (env != nullptr) ExpectSessionsAtBaseline(/*canary=*/0);
  }

  // Every model holds its baseline of sessions (the canary's one on lstm2) within 5 s.
  static void ExpectSessionsAtBaseline(int64_t canary) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    for (const auto& name : ReadyModels()) {
      const int64_t want = name == "lstm2" ? canary : 0;
      while (env->Active(name) != want && absl::Now() < deadline) {
        absl::SleepFor(absl::Milliseconds(5));
      }
      EXPECT_EQ(env->Active(name), want)
          << "sessions on " << name << " did not return to " << want << ": a place leaked";
    }
  }

  // After a case: the healthy session goes on, nothing leaked, and a fresh session works.
  void ExpectServerCarriesOn() {
    EXPECT_TRUE(canary_->WaitForProgress(10, absl::Seconds(10)));
    ExpectSessionsAtBaseline(/*canary=*/1);
    ExpectFreshSessionWorks();
    ExpectSessionsAtBaseline(/*canary=*/1);
  }

  static void ExpectFreshSessionWorks() {
    const ReferenceModel& model = env->lstm2;
    const streaming::StreamSpec& in = model.program->input;
    const streaming::StreamSpec& out = model.program->outputs[0];
    std::vector<std::vector<float>> frames;
    for (int64_t t = 0; t < 5; ++t)
      frames.push_back(model_testing::ExtractFrame(model.input, in, t, 1));
    auto stub = v1::Streaming::NewStub(env->NewChannel());
    const StreamOutcome outcome = RunStream(
        *stub, {OpenRequest("lstm2"), FramesRequest(frames, in.frame_shape), CloseRequest()});
    ASSERT_TRUE(outcome.status.ok())
        << "a fresh session failed: " << outcome.status.error_message();
    ASSERT_TRUE(outcome.opened());
    int64_t next = 0;
    for (size_t r = 1; r < outcome.responses.size(); ++r) {
      const auto& response = outcome.responses[r];
      ASSERT_TRUE(response.has_outputs()) << response.DebugString();
      const float* got =
          reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
      for (uint32_t i = 0; i < response.outputs().count(); ++i, ++next) {
        ASSERT_EQ(response.outputs().first_seq() + i, static_cast<uint64_t>(next));
        const auto want = model_testing::ExtractFrame(model.expected, out, next, 1);
        for (size_t e = 0; e < want.size(); ++e) {
          ASSERT_TRUE(Near(got[i * out.frame_size + e], want[e])) << "fresh session frame " << next;
        }
      }
    }
    EXPECT_EQ(next, 5);
  }

  std::unique_ptr<v1::Streaming::Stub> canary_stub_;
  std::unique_ptr<Canary> canary_;
};

// ---- the case registry ----

struct BadCase {
  std::string name;
  std::function<void()> run;
};

std::vector<BadCase>& Cases() {
  static auto* cases = new std::vector<BadCase>();
  return *cases;
}

void PrintTo(const BadCase& bad, std::ostream* os) { *os << bad.name; }

struct CaseRegistrar {
  CaseRegistrar(const char* name, void (*run)()) { Cases().push_back({name, run}); }
};

#define BAD_CASE(name)                                      \
  void Case##name();                                        \
  const CaseRegistrar registrar_##name(#name, &Case##name); \
  void Case##name()

// ---- shared case bodies ----

// A stream whose requests end it with `code` and `prefix`; Opened came first iff `opened` (not
// checked when nullopt).
void ExpectStreamEnds(const std::vector<v1::StreamRequest>& requests, grpc::StatusCode code,
                      const std::string& prefix, std::optional<bool> opened = false,
                      bool writes_done = true) {
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome outcome = RunStream(*stub, requests, writes_done);
  EXPECT_STATUS(outcome.status, code, prefix);
  if (opened.has_value()) {
    EXPECT_EQ(outcome.opened(), *opened) << outcome.Kinds();
  }
}

// Opens lstm2, sends frames 0..2 of row 2, then `bad`, then frames 3..5, then Close. The bad
// request must get exactly one in-stream Error{code, prefix, seq 3}, and the six good frames their
// outputs (seq 0..5, equal to the reference: the bad request left the state alone); the stream
// then ends with OK.
void ExpectInStreamError(const v1::StreamRequest& bad, grpc::StatusCode code,
                         const std::string& prefix) {
  const ReferenceModel& model = env->lstm2;
  const streaming::StreamSpec& in = model.program->input;
  const streaming::StreamSpec& out = model.program->outputs[0];
  std::vector<std::vector<float>> first, second;
  for (int64_t t = 0; t < 3; ++t)
    first.push_back(model_testing::ExtractFrame(model.input, in, t, 2));
  for (int64_t t = 3; t < 6; ++t)
    second.push_back(model_testing::ExtractFrame(model.input, in, t, 2));
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome outcome =
      RunStream(*stub, {OpenRequest("lstm2"), FramesRequest(first, in.frame_shape), bad,
                        FramesRequest(second, in.frame_shape), CloseRequest()});
  EXPECT_TRUE(outcome.status.ok())
      << outcome.status.error_code() << " " << outcome.status.error_message();
  // That Opened comes first is checked by InStreamErrorsNeverOvertakeOpened.
  const std::string kinds = outcome.Kinds();
  ASSERT_EQ(std::count(kinds.begin(), kinds.end(), 'O'), 1) << "responses: " << kinds;
  int errors = 0;
  int64_t next = 0;
  for (const v1::StreamResponse& response : outcome.responses) {
    if (response.has_opened()) continue;
    if (response.has_error()) {
      ++errors;
      EXPECT_EQ(response.error().status().code(), static_cast<int>(code))
          << response.error().status().message();
      EXPECT_TRUE(absl::StartsWith(response.error().status().message(), prefix))
          << "message '" << response.error().status().message() << "' does not start with '"
          << prefix << "'";
      EXPECT_EQ(response.error().seq(), 3u);
      continue;
    }
    ASSERT_TRUE(response.has_outputs()) << response.DebugString();
    const float* got = reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
    for (uint32_t i = 0; i < response.outputs().count(); ++i, ++next) {
      ASSERT_EQ(response.outputs().first_seq() + i, static_cast<uint64_t>(next));
      const auto want = model_testing::ExtractFrame(model.expected, out, next, 2);
      for (size_t e = 0; e < want.size(); ++e) {
        ASSERT_TRUE(Near(got[i * out.frame_size + e], want[e]))
            << "frame " << next << " element " << e << " after the bad request";
      }
    }
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(next, 6) << "the good frames around the bad request did not all get outputs";
}

v1::StreamRequest Lstm2Frames(int64_t count, float value = 0.25f) {
  return FramesRequest(std::vector<std::vector<float>>(count, std::vector<float>(10, value)),
                       {1, 10});
}

// A Frames request for lstm2 with raw fields.
v1::StreamRequest RawFrames(v1::DataType dtype, std::vector<int64_t> shape, std::string data,
                            v1::Frames::Layout layout = v1::Frames::STACKED) {
  v1::StreamRequest request;
  v1::Tensor* tensor = request.mutable_frames()->mutable_tensor();
  tensor->set_dtype(dtype);
  for (int64_t d : shape) tensor->add_shape(d);
  tensor->set_data(std::move(data));
  request.mutable_frames()->set_layout(layout);
  return request;
}

std::string FloatBytes(int64_t count, float value = 0.25f) {
  std::vector<float> values(count, value);
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

// Opens a model and expects UNAVAILABLE "model <name> is not ready: <detail_prefix>...", with the
// whole message containing `contains`.
void ExpectNotReady(const std::string& name, const std::string& detail_prefix,
                    const std::string& contains = "") {
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome outcome = RunStream(*stub, {OpenRequest(name), Lstm2Frames(1)});
  EXPECT_STATUS(outcome.status, grpc::StatusCode::UNAVAILABLE,
                absl::StrCat("model ", name, " is not ready: ", detail_prefix));
  EXPECT_NE(outcome.status.error_message().find(contains), std::string::npos)
      << outcome.status.error_message();
  EXPECT_FALSE(outcome.opened());
}

// ---- native stream: stream-ending errors ----

BAD_CASE(UnknownModel) {
  ExpectStreamEnds({OpenRequest("no_such_model")}, grpc::StatusCode::NOT_FOUND,
                   "unknown model 'no_such_model'");
  ExpectStreamEnds({OpenRequest("")}, grpc::StatusCode::NOT_FOUND, "unknown model ''");
}

BAD_CASE(FramesBeforeOpen) {
  ExpectStreamEnds({Lstm2Frames(2), OpenRequest("lstm2")}, grpc::StatusCode::FAILED_PRECONDITION,
                   "the first request of a stream must be Open");
}

BAD_CASE(ResetOrCloseOrNothingBeforeOpen) {
  for (const v1::StreamRequest& first : {ResetRequest(), CloseRequest(), v1::StreamRequest()}) {
    ExpectStreamEnds({first, OpenRequest("lstm2")}, grpc::StatusCode::FAILED_PRECONDITION,
                     "the first request of a stream must be Open");
  }
}

// A stream half-closed before any request: the server ends it with CANCELLED (stream_service.cc
// OnReadDone(false) before Open).
BAD_CASE(HalfCloseBeforeOpen) {
  ExpectStreamEnds({}, grpc::StatusCode::CANCELLED, "the stream closed before Open");
}

BAD_CASE(OpenTwice) {
  ExpectStreamEnds({OpenRequest("lstm2"), Lstm2Frames(2), OpenRequest("lstm2")},
                   grpc::StatusCode::FAILED_PRECONDITION, "Open sent twice: one session per stream",
                   /*opened=*/true, /*writes_done=*/false);
  // A second Open naming another model is refused the same way.
  ExpectStreamEnds({OpenRequest("lstm2"), OpenRequest("gru_tanh")},
                   grpc::StatusCode::FAILED_PRECONDITION, "Open sent twice: one session per stream",
                   /*opened=*/true, /*writes_done=*/false);
}

// gRPC's own limit (ServerOptions::max_message_bytes = 256 KiB here) ends the stream with
// RESOURCE_EXHAUSTED, before or after Open; a message just under the limit is served.
BAD_CASE(MessageOverTheSizeLimit) {
  const int64_t over = kMaxMessageBytes / 40 + 100;  // lstm2 frames are 40 bytes.
  // The Opened may or may not get out before gRPC ends the call.
  ExpectStreamEnds({OpenRequest("lstm2"), Lstm2Frames(over)}, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   "Received message larger than max", /*opened=*/std::nullopt,
                   /*writes_done=*/false);
  v1::StreamRequest huge_open = OpenRequest("lstm2");
  huge_open.mutable_open()->set_session_tag(std::string(kMaxMessageBytes + 1, 't'));
  ExpectStreamEnds({huge_open}, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   "Received message larger than max", /*opened=*/false, /*writes_done=*/false);

  const int64_t under = (kMaxMessageBytes - 1024) / 40;
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome ok =
      RunStream(*stub, {OpenRequest("lstm2"), Lstm2Frames(under), CloseRequest()});
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  int64_t outputs = 0;
  for (const auto& response : ok.responses) {
    if (response.has_outputs()) outputs += response.outputs().count();
  }
  EXPECT_EQ(outputs, under);
}

BAD_CASE(SessionsOverTheServerLimit) {
  const int64_t free_places = kMaxSessions - env->TotalActive();
  ASSERT_GT(free_places, 0);
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  std::vector<std::unique_ptr<TestStream>> held;
  for (int64_t i = 0; i < free_places; ++i) {
    auto s = StartStream(*stub);
    ASSERT_TRUE(s->Write(OpenRequest(i % 2 == 0 ? "gru_tanh" : "cnn_tiny")));
    v1::StreamResponse response;
    ASSERT_TRUE(s->Read(&response));
    ASSERT_TRUE(response.has_opened()) << "session " << i << " of " << free_places;
    held.push_back(std::move(s));
  }
  ExpectStreamEnds({OpenRequest("lstm2")}, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   absl::StrCat("the server holds its maximum of ", kMaxSessions, " sessions"));
  // OIP sequences share the limit.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    inference::ModelInferRequest request;
    request.set_model_name("lstm2");
    auto* input = request.add_inputs();
    input->set_name("x");
    input->set_datatype("FP32");
    for (int64_t d : {1, 1, 10}) input->add_shape(d);
    request.add_raw_input_contents(FloatBytes(10));
    inference::ModelInferResponse response;
    EXPECT_STATUS(env->oip->ModelInfer(&context, request, &response),
                  grpc::StatusCode::RESOURCE_EXHAUSTED,
                  absl::StrCat("the server holds its maximum of ", kMaxSessions, " sessions"));
  }
  // A closed session frees its place.
  held.back()->Write(CloseRequest());
  held.back()->stream->WritesDone();
  v1::StreamResponse response;
  while (held.back()->Read(&response)) {
  }
  EXPECT_TRUE(held.back()->stream->Finish().ok());
  held.pop_back();
  const StreamOutcome again = RunStream(*stub, {OpenRequest("gru_tanh"), CloseRequest()});
  EXPECT_TRUE(again.status.ok()) << again.status.error_message();
  for (auto& s : held) {
    s->Write(CloseRequest());
    s->stream->WritesDone();
    while (s->Read(&response)) {
    }
    EXPECT_TRUE(s->stream->Finish().ok());
  }
}

BAD_CASE(SessionsOverTheModelLimit) {
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  std::vector<std::unique_ptr<TestStream>> held;
  for (int i = 0; i < 2; ++i) {
    auto s = StartStream(*stub);
    ASSERT_TRUE(s->Write(OpenRequest("lstm2_limited")));
    v1::StreamResponse response;
    ASSERT_TRUE(s->Read(&response));
    ASSERT_TRUE(response.has_opened());
    held.push_back(std::move(s));
  }
  ExpectStreamEnds({OpenRequest("lstm2_limited")}, grpc::StatusCode::RESOURCE_EXHAUSTED,
                   "model lstm2_limited holds its maximum of 2 sessions");
  // Other models are not limited by it.
  const StreamOutcome other = RunStream(*stub, {OpenRequest("gru_tanh"), CloseRequest()});
  EXPECT_TRUE(other.status.ok()) << other.status.error_message();
  for (auto& s : held) {
    s->context.TryCancel();
    s->stream->Finish().IgnoreError();
  }
  // Both places come back: two sessions open again.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (env->Active("lstm2_limited") > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  for (int i = 0; i < 2; ++i) {
    auto s = StartStream(*stub);
    ASSERT_TRUE(s->Write(OpenRequest("lstm2_limited")));
    v1::StreamResponse response;
    ASSERT_TRUE(s->Read(&response));
    EXPECT_TRUE(response.has_opened()) << "place " << i << " did not come back";
    held[i] = std::move(s);
  }
  for (auto& s : held) {
    s->Write(CloseRequest());
    s->stream->WritesDone();
    v1::StreamResponse response;
    while (s->Read(&response)) {
    }
    EXPECT_TRUE(s->stream->Finish().ok());
  }
}

BAD_CASE(IdleSessionTimesOut) {
  const auto start = std::chrono::steady_clock::now();
  ExpectStreamEnds({OpenRequest("lstm2_idle"), Lstm2Frames(2)}, grpc::StatusCode::DEADLINE_EXCEEDED,
                   absl::StrCat("session idle for more than ", kIdleTimeoutMs, " ms"),
                   /*opened=*/true, /*writes_done=*/false);
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(kIdleTimeoutMs));
}

// ---- native stream: in-stream errors (the session goes on) ----

BAD_CASE(WrongDtype) {
  ExpectInStreamError(RawFrames(v1::DATA_TYPE_UNSPECIFIED, {1, 1, 10}, FloatBytes(10)),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames have dtype DATA_TYPE_UNSPECIFIED; the model takes FLOAT32 (or INT16 "
                      "PCM)");
  // A dtype number this server does not know.
  ExpectInStreamError(RawFrames(static_cast<v1::DataType>(7), {1, 1, 10}, FloatBytes(10)),
                      grpc::StatusCode::INVALID_ARGUMENT, "frames have dtype ");
}

BAD_CASE(WrongShape) {
  ExpectInStreamError(RawFrames(v1::FLOAT32, {1, 1, 11}, FloatBytes(11)),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames have shape [1,1,11]; the model takes frames of shape [1,10] stacked "
                      "as [k,1,10]");
  ExpectInStreamError(RawFrames(v1::FLOAT32, {}, ""), grpc::StatusCode::INVALID_ARGUMENT,
                      "frames have shape []; the model takes frames of shape [1,10]");
  ExpectInStreamError(RawFrames(v1::FLOAT32, {5, 2, 10}, FloatBytes(100), v1::Frames::OFFLINE),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames have shape [5,2,10]; the model's offline layout is [-1,1,10] (-1 = "
                      "time, batch 1)");
}

BAD_CASE(ByteLengthDoesNotMatchTheShape) {
  ExpectInStreamError(RawFrames(v1::FLOAT32, {1, 1, 10}, FloatBytes(10) + "xyz"),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames hold 43 bytes; shape [1,1,10] of FLOAT32 needs 40");
  ExpectInStreamError(RawFrames(v1::FLOAT32, {2, 1, 10}, FloatBytes(10)),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames hold 40 bytes, too few for 2 frames of 10 FLOAT32 values");
  ExpectInStreamError(RawFrames(v1::INT16, {1, 1, 10}, std::string(21, '\0')),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames hold 21 bytes; shape [1,1,10] of INT16 needs 20");
  // 2^62 frames of 40 bytes wrap to 0 bytes: the count is compared before multiplying.
  ExpectInStreamError(RawFrames(v1::FLOAT32, {int64_t{1} << 62, 1, 10}, ""),
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "frames hold 0 bytes, too few for 4611686018427387904 frames");
}

BAD_CASE(EmptyFrames) {
  ExpectInStreamError(RawFrames(v1::FLOAT32, {0, 1, 10}, ""), grpc::StatusCode::INVALID_ARGUMENT,
                      "a Frames request holds no frames");
  ExpectInStreamError(RawFrames(v1::FLOAT32, {-3, 1, 10}, ""), grpc::StatusCode::INVALID_ARGUMENT,
                      "a Frames request holds no frames");
  ExpectInStreamError(RawFrames(v1::FLOAT32, {0, 1, 10}, "", v1::Frames::OFFLINE),
                      grpc::StatusCode::INVALID_ARGUMENT, "a Frames request holds no frames");
  // A Frames message with no tensor at all has no dtype.
  v1::StreamRequest empty;
  empty.mutable_frames();
  ExpectInStreamError(empty, grpc::StatusCode::INVALID_ARGUMENT,
                      "frames have dtype DATA_TYPE_UNSPECIFIED");
}

BAD_CASE(EmptyStreamRequestAfterOpen) {
  ExpectInStreamError(v1::StreamRequest(), grpc::StatusCode::INVALID_ARGUMENT,
                      "empty StreamRequest");
}

BAD_CASE(TagCountDoesNotMatchTheFrames) {
  v1::StreamRequest tagged = Lstm2Frames(2);
  for (const char* tag : {"a", "b", "c"}) tagged.mutable_frames()->add_tags(tag);
  ExpectInStreamError(tagged, grpc::StatusCode::INVALID_ARGUMENT,
                      "3 tags for 2 frames (send none or one each)");
}

// Several bad requests in a row, each between good frames: every bad one gets its Error with the
// seq the next good frame then takes, and the good frames are numbered without gaps.
BAD_CASE(FramesAfterInStreamErrorsGoOn) {
  const ReferenceModel& model = env->lstm2;
  const streaming::StreamSpec& in = model.program->input;
  const streaming::StreamSpec& out = model.program->outputs[0];
  std::vector<v1::StreamRequest> requests = {OpenRequest("lstm2")};
  std::vector<uint64_t> error_seqs;
  for (int64_t t = 0; t < model.frames(); ++t) {
    requests.push_back(
        FramesRequest({model_testing::ExtractFrame(model.input, in, t, 4)}, in.frame_shape));
    if (t % 5 == 2) {
      requests.push_back(RawFrames(v1::FLOAT32, {1, 1, 9}, FloatBytes(9)));
      error_seqs.push_back(static_cast<uint64_t>(t + 1));
    }
  }
  requests.push_back(CloseRequest());
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome outcome = RunStream(*stub, requests);
  ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
  std::vector<uint64_t> got_error_seqs;
  int64_t next = 0;
  for (const auto& response : outcome.responses) {
    if (response.has_opened()) continue;
    if (response.has_error()) {
      EXPECT_EQ(response.error().status().code(), grpc::StatusCode::INVALID_ARGUMENT);
      got_error_seqs.push_back(response.error().seq());
      continue;
    }
    ASSERT_TRUE(response.has_outputs());
    const float* got = reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
    for (uint32_t i = 0; i < response.outputs().count(); ++i, ++next) {
      ASSERT_EQ(response.outputs().first_seq() + i, static_cast<uint64_t>(next));
      const auto want = model_testing::ExtractFrame(model.expected, out, next, 4);
      for (size_t e = 0; e < want.size(); ++e) {
        ASSERT_TRUE(Near(got[i * out.frame_size + e], want[e])) << "frame " << next;
      }
    }
  }
  EXPECT_EQ(next, model.frames());
  EXPECT_EQ(got_error_seqs, error_seqs);
}

// NaN and Inf are not validated (frame_codec.cc copies the values as they are): they are accepted
// like any number and propagate through the model. Observed and asserted here:
//  - lstm2 (recurrent): a NaN frame makes its output all NaN and poisons the state, so every later
//    output is NaN too, until a Reset; after the Reset the outputs equal the reference again.
//    An Inf frame is accepted the same way (an output comes, no Error).
//  - espdl_tcn_block (causal convs, receptive field 5 frames): a NaN frame makes its own output
//    NaN; the outputs from 5 frames later on equal the reference again (the window forgot it).
BAD_CASE(NanAndInfAreAcceptedAndPropagate) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  {
    const ReferenceModel& model = env->lstm2;
    const streaming::StreamSpec& in = model.program->input;
    const streaming::StreamSpec& out = model.program->outputs[0];
    std::vector<v1::StreamRequest> requests = {OpenRequest("lstm2")};
    for (int64_t t = 0; t < 3; ++t) {
      requests.push_back(
          FramesRequest({model_testing::ExtractFrame(model.input, in, t, 0)}, in.frame_shape));
    }
    std::vector<float> poisoned = model_testing::ExtractFrame(model.input, in, 3, 0);
    poisoned[4] = nan;
    requests.push_back(FramesRequest({poisoned}, in.frame_shape));  // seq 3
    for (int64_t t = 4; t < 6; ++t) {                               // seq 4, 5
      requests.push_back(
          FramesRequest({model_testing::ExtractFrame(model.input, in, t, 0)}, in.frame_shape));
    }
    requests.push_back(ResetRequest());
    for (int64_t t = 0; t < 4; ++t) {  // seq 6..9 = frames 0..3 of a fresh state
      requests.push_back(
          FramesRequest({model_testing::ExtractFrame(model.input, in, t, 0)}, in.frame_shape));
    }
    requests.push_back(ResetRequest());
    requests.push_back(FramesRequest({std::vector<float>(10, inf)}, in.frame_shape));  // seq 10
    requests.push_back(CloseRequest());
    auto stub = v1::Streaming::NewStub(env->NewChannel());
    const StreamOutcome outcome = RunStream(*stub, requests);
    ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
    std::vector<std::vector<float>> outputs;
    for (const auto& response : outcome.responses) {
      ASSERT_FALSE(response.has_error()) << response.DebugString();
      if (!response.has_outputs()) continue;
      const float* got =
          reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
      for (uint32_t i = 0; i < response.outputs().count(); ++i) {
        ASSERT_EQ(response.outputs().first_seq() + i, outputs.size());
        outputs.emplace_back(got + i * out.frame_size, got + (i + 1) * out.frame_size);
      }
    }
    ASSERT_EQ(outputs.size(), 11u);
    auto expect_reference = [&](size_t seq, int64_t t) {
      const auto want = model_testing::ExtractFrame(model.expected, out, t, 0);
      for (size_t e = 0; e < want.size(); ++e) {
        EXPECT_TRUE(Near(outputs[seq][e], want[e])) << "seq " << seq << " element " << e;
      }
    };
    for (size_t seq = 0; seq < 3; ++seq) expect_reference(seq, static_cast<int64_t>(seq));
    for (size_t seq = 3; seq < 6; ++seq) {
      for (float v : outputs[seq]) EXPECT_TRUE(std::isnan(v)) << "seq " << seq << ": " << v;
    }
    for (size_t seq = 6; seq < 10; ++seq) expect_reference(seq, static_cast<int64_t>(seq - 6));
    EXPECT_EQ(outputs[10].size(), static_cast<size_t>(out.frame_size));
  }
  {
    const ReferenceModel& model = env->espdl;
    const streaming::StreamSpec& in = model.program->input;
    const streaming::StreamSpec& out = model.program->outputs[0];
    constexpr int64_t kNanAt = 4;
    constexpr int64_t kReceptiveField = 5;
    std::vector<std::vector<float>> frames;
    for (int64_t t = 0; t < model.frames(); ++t) {
      frames.push_back(model_testing::ExtractFrame(model.input, in, t, 1));
    }
    frames[kNanAt][0] = nan;
    auto stub = v1::Streaming::NewStub(env->NewChannel());
    const StreamOutcome outcome = RunStream(
        *stub,
        {OpenRequest("espdl_tcn_block"), FramesRequest(frames, in.frame_shape), CloseRequest()});
    ASSERT_TRUE(outcome.status.ok()) << outcome.status.error_message();
    int64_t next = 0;
    for (size_t r = 1; r < outcome.responses.size(); ++r) {
      const auto& response = outcome.responses[r];
      ASSERT_TRUE(response.has_outputs()) << response.DebugString();
      const float* got =
          reinterpret_cast<const float*>(response.outputs().tensors(0).data().data());
      for (uint32_t i = 0; i < response.outputs().count(); ++i, ++next) {
        const float* frame = got + i * out.frame_size;
        if (next == kNanAt) {
          for (int64_t e = 0; e < out.frame_size; ++e) EXPECT_TRUE(std::isnan(frame[e]));
        } else if (next < kNanAt || next >= kNanAt + kReceptiveField) {
          const auto want = model_testing::ExtractFrame(model.expected, out, next, 1);
          for (size_t e = 0; e < want.size(); ++e) {
            EXPECT_TRUE(Near(frame[e], want[e])) << "frame " << next << " element " << e;
          }
        }
      }
    }
    EXPECT_EQ(next, model.frames());
  }
}

// After Close the server reads nothing more from the stream (session.cc stops reading once a
// close is queued): a second Close, frames, a Reset or an Open sent after it are never read, get
// neither an output nor an Error, and the stream ends with OK after the outputs of the frames sent
// before the Close.
BAD_CASE(CloseTwiceAndRequestsAfterClose) {
  const std::vector<std::vector<v1::StreamRequest>> tails = {
      {CloseRequest()},
      {Lstm2Frames(4), CloseRequest()},
      {ResetRequest(), Lstm2Frames(1)},
      {OpenRequest("lstm2"), Lstm2Frames(2)},
  };
  for (const auto& tail : tails) {
    std::vector<v1::StreamRequest> requests = {OpenRequest("lstm2"), Lstm2Frames(3),
                                               CloseRequest()};
    requests.insert(requests.end(), tail.begin(), tail.end());
    auto stub = v1::Streaming::NewStub(env->NewChannel());
    const StreamOutcome outcome = RunStream(*stub, requests);
    EXPECT_TRUE(outcome.status.ok())
        << outcome.status.error_code() << " " << outcome.status.error_message();
    ASSERT_TRUE(outcome.opened());
    uint64_t outputs = 0;
    for (size_t r = 1; r < outcome.responses.size(); ++r) {
      const auto& response = outcome.responses[r];
      ASSERT_TRUE(response.has_outputs()) << response.DebugString();
      EXPECT_EQ(response.outputs().first_seq(), outputs);
      outputs += response.outputs().count();
    }
    EXPECT_EQ(outputs, 3u);
  }
}

// ---- native stream: the transport ----

// A generic (untyped) bidi call on /sluice.v1.Streaming/Stream: raw messages in, raw out.
struct RawOutcome {
  grpc::Status status;
  std::vector<std::string> responses;
};

RawOutcome RawCall(const std::vector<std::string>& messages) {
  grpc::GenericStub stub(env->NewChannel());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  grpc::CompletionQueue cq;
  RawOutcome outcome;
  auto call = stub.PrepareCall(&context, "/sluice.v1.Streaming/Stream", &cq);
  void* tag = nullptr;
  bool ok = false;
  auto next = [&]() {
    EXPECT_TRUE(cq.Next(&tag, &ok));
    return ok;
  };
  call->StartCall(reinterpret_cast<void*>(1));
  bool writable = next();
  for (const std::string& message : messages) {
    if (!writable) break;
    grpc::Slice slice(message.data(), message.size());
    call->Write(grpc::ByteBuffer(&slice, 1), reinterpret_cast<void*>(2));
    writable = next();
  }
  if (writable) {
    call->WritesDone(reinterpret_cast<void*>(3));
    next();
  }
  while (true) {
    grpc::ByteBuffer buffer;
    call->Read(&buffer, reinterpret_cast<void*>(4));
    if (!next()) break;
    std::vector<grpc::Slice> slices;
    std::string bytes;
    if (buffer.Dump(&slices).ok()) {
      for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    outcome.responses.push_back(bytes);
  }
  call->Finish(&outcome.status, reinterpret_cast<void*>(5));
  next();
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return outcome;
}

// Bytes that are no protobuf at all: field 1 with wire type 7, which does not exist.
const std::string kGarbage = std::string("\x0f\xff\xff\xff\xff\x07garbage", 12);

// gRPC cannot parse the message, so the server's read fails; before Open that ends the stream as
// a stream closed before Open (CANCELLED). The server carries on.
BAD_CASE(GarbageBytesBeforeOpen) {
  const RawOutcome outcome = RawCall({kGarbage});
  EXPECT_STATUS(outcome.status, grpc::StatusCode::CANCELLED, "the stream closed before Open");
  EXPECT_TRUE(outcome.responses.empty());
}

// The client's deadline passes while its session waits for more: the client sees
// DEADLINE_EXCEEDED, the server ends the session and gives its place back.
BAD_CASE(ClientDeadlineExceeded) {
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&opened] {
      auto stub = v1::Streaming::NewStub(env->NewChannel());
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(50));
      auto stream = stub->Stream(&context);
      stream->Write(OpenRequest("gru_tanh"));
      v1::StreamResponse response;
      while (stream->Read(&response)) {
        if (response.has_opened()) opened.fetch_add(1);
      }
      EXPECT_STATUS(stream->Finish(), grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
    });
  }
  // One more that keeps sending frames (never reading) when the deadline hits.
  threads.emplace_back([] {
    auto stub = v1::Streaming::NewStub(env->NewChannel());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
    auto stream = stub->Stream(&context);
    stream->Write(OpenRequest("gru_tanh"));
    const v1::StreamRequest frames =
        FramesRequest(std::vector<std::vector<float>>(16, std::vector<float>(12, 0.5f)), {1, 12});
    while (stream->Write(frames)) {
    }
    v1::StreamResponse response;
    while (stream->Read(&response)) {
    }
    EXPECT_STATUS(stream->Finish(), grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
  });
  for (auto& thread : threads) thread.join();
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (env->Active("gru_tanh") != 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(env->Active("gru_tanh"), 0) << "sessions whose client deadline passed are still open";
}

// The client cancels while its session has a full queue and a full outbox (it writes without ever
// reading until gRPC flow control holds it): the session ends and sessions_active goes back to 0.
BAD_CASE(ClientCancelMidBatch) {
  const ReferenceModel& model = env->cnn_tiny;
  const streaming::StreamSpec& in = model.program->input;
  server::ModelMetrics* metrics = env->server->metrics().ForModel("cnn_tiny");
  const int64_t frames_in_before = metrics->frames_in.load();
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("cnn_tiny")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened());
  std::atomic<int64_t> written{0};
  std::thread writer([&] {
    const v1::StreamRequest request =
        FramesRequest(std::vector<std::vector<float>>(16, std::vector<float>(in.frame_size, 0.1f)),
                      in.frame_shape);
    while (s->Write(request)) written.fetch_add(16);
  });
  // Wait until the server has taken more frames than its outbox and queue hold together and the
  // writer is held back.
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  int64_t last = -1;
  absl::Time last_change = absl::Now();
  while (absl::Now() < deadline) {
    const int64_t now_written = written.load();
    if (now_written != last) {
      last = now_written;
      last_change = absl::Now();
    } else if (metrics->frames_in.load() - frames_in_before >= 256 + 64 &&
               absl::Now() - last_change > absl::Milliseconds(300)) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_GE(metrics->frames_in.load() - frames_in_before, 256 + 64);
  EXPECT_EQ(env->Active("cnn_tiny"), 1);
  s->context.TryCancel();
  writer.join();
  while (s->Read(&response)) {
  }
  EXPECT_STATUS(s->stream->Finish(), grpc::StatusCode::CANCELLED, "CANCELLED");
  const absl::Time released = absl::Now() + absl::Seconds(5);
  while (env->Active("cnn_tiny") != 0 && absl::Now() < released) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(env->Active("cnn_tiny"), 0);
  const HttpResult scraped = CurlGet(env->server->http_port(), "/metrics");
  EXPECT_EQ(
      command_testing::SampleValue(scraped.body, "sluice_sessions_active{model=\"cnn_tiny\"}"), 0)
      << scraped.body;
}

// ---- models that fail to load ----

BAD_CASE(InvalidConfigNamesTheFieldOrLine) {
  const std::string root = env->repository;
  ExpectNotReady("bad_value", "model bad_value: config field max_batch = 0 is outside [1, 4096]");
  ExpectNotReady("bad_negative", "model bad_negative: config field max_sessions is negative");
  ExpectNotReady("bad_syntax", absl::StrCat(root, "/bad_syntax/config.pbtxt: line 2, column "),
                 "max_batchh");
  ExpectNotReady("bad_type", absl::StrCat(root, "/bad_type/config.pbtxt: line 1, column "), "two");
}

BAD_CASE(CorruptOrMissingModelFile) {
  ExpectNotReady("corrupt", "model corrupt: ", "not a valid ONNX model");
  ExpectNotReady("truncated", "model truncated: ", "not a valid ONNX model");
  ExpectNotReady("empty_onnx", "model empty_onnx: ");
  ExpectNotReady("missing_onnx", absl::StrCat("model missing_onnx: no model.onnx in ",
                                              env->repository, "/missing_onnx"));
}

// Models that cannot stream are refused at load with the node and the reason (the manifest's
// node and reason keyword).
BAD_CASE(NonCausalModelsAreRefusedNamingNodeAndReason) {
  const auto rows = RefusedRows();
  ASSERT_GE(rows.size(), 8u);
  for (const auto& row : rows) {
    SCOPED_TRACE(row.name);
    const std::string name = absl::StrCat("refused_", row.name);
    ExpectNotReady(name, absl::StrCat("model ", name, ": node ", row.node), row.reason);
  }
}

// Models that failed to load are listed as such while the others serve side by side.
BAD_CASE(FailedModelsWhileOthersServe) {
  v1::ListModelsResponse list;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ASSERT_TRUE(env->stub->ListModels(&context, {}, &list).ok());
  }
  int failed = 0;
  for (const auto& summary : list.models()) {
    const bool should_serve = std::find(ReadyModels().begin(), ReadyModels().end(),
                                        summary.name()) != ReadyModels().end() ||
                              summary.name() == "alias";
    EXPECT_EQ(summary.ready(), should_serve) << summary.name() << ": " << summary.state();
    if (!should_serve) {
      ++failed;
      EXPECT_TRUE(absl::StartsWith(summary.state(), "failed: ")) << summary.state();
    } else {
      EXPECT_EQ(summary.state(), "ready");
    }
  }
  EXPECT_GE(failed, 16);
  const HttpResult ready = CurlGet(env->server->http_port(), "/readyz");
  EXPECT_EQ(ready.code, 200) << ready.body;
  EXPECT_TRUE(absl::StartsWith(ready.body, "ready: ")) << ready.body;
  EXPECT_NE(ready.body.find("; not ready: "), std::string::npos) << ready.body;
  EXPECT_EQ(CurlGet(env->server->http_port(), "/v2/models/corrupt/ready").code, 400);
  EXPECT_EQ(CurlGet(env->server->http_port(), "/v2/models/gru_tanh/ready").code, 200);
  // A session on another model streams while a failed one is opened.
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("gru_tanh")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened());
  ExpectNotReady("corrupt", "model corrupt: ");
  ASSERT_TRUE(s->Write(FramesRequest({std::vector<float>(12, 0.5f)}, {1, 12})));
  ASSERT_TRUE(s->Read(&response));
  EXPECT_TRUE(response.has_outputs()) << response.DebugString();
  s->Write(CloseRequest());
  s->stream->WritesDone();
  while (s->Read(&response)) {
  }
  EXPECT_TRUE(s->stream->Finish().ok());
}

// ---- OIP gRPC (inference.GRPCInferenceService) ----

inference::ModelInferRequest OipRequest(const std::string& model, int64_t frames = 1) {
  inference::ModelInferRequest request;
  request.set_model_name(model);
  auto* input = request.add_inputs();
  input->set_name("x");
  input->set_datatype("FP32");
  for (int64_t d : {frames, int64_t{1}, int64_t{10}}) input->add_shape(d);
  request.add_raw_input_contents(FloatBytes(frames * 10));
  return request;
}

inference::ModelInferRequest& WithParam(inference::ModelInferRequest& request,
                                        const std::string& name, int64_t value) {
  (*request.mutable_parameters())[name].set_int64_param(value);
  return request;
}
inference::ModelInferRequest& WithParam(inference::ModelInferRequest& request,
                                        const std::string& name, bool value) {
  (*request.mutable_parameters())[name].set_bool_param(value);
  return request;
}
inference::ModelInferRequest& WithParam(inference::ModelInferRequest& request,
                                        const std::string& name, const std::string& value) {
  (*request.mutable_parameters())[name].set_string_param(value);
  return request;
}

grpc::Status OipInfer(const inference::ModelInferRequest& request,
                      inference::ModelInferResponse* response = nullptr) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  inference::ModelInferResponse ignored;
  return env->oip->ModelInfer(&context, request, response != nullptr ? response : &ignored);
}

BAD_CASE(OipNewSequenceWithoutStart) {
  auto request = OipRequest("lstm2");
  EXPECT_STATUS(OipInfer(WithParam(request, "sequence_id", int64_t{424200})),
                grpc::StatusCode::INVALID_ARGUMENT,
                "sequence_id 424200 is not active on model lstm2; send sequence_start to begin a "
                "sequence");
  auto by_name = OipRequest("lstm2");
  EXPECT_STATUS(OipInfer(WithParam(by_name, "sequence_id", std::string("ghost-seq"))),
                grpc::StatusCode::INVALID_ARGUMENT,
                "sequence_id \"ghost-seq\" is not active on model lstm2");
  // sequence_end alone on an id that was never started.
  auto end_only = OipRequest("lstm2");
  WithParam(end_only, "sequence_id", int64_t{424202});
  EXPECT_STATUS(OipInfer(WithParam(end_only, "sequence_end", true)),
                grpc::StatusCode::INVALID_ARGUMENT, "sequence_id 424202 is not active on model");
}

BAD_CASE(OipSequenceIdZeroWithStartOrEnd) {
  const std::string message =
      "sequence_start and sequence_end need a non-zero sequence_id (or a non-empty string one)";
  for (const char* flag : {"sequence_end", "sequence_start"}) {
    auto zero = OipRequest("lstm2");
    WithParam(zero, "sequence_id", int64_t{0});
    EXPECT_STATUS(OipInfer(WithParam(zero, flag, true)), grpc::StatusCode::INVALID_ARGUMENT,
                  message);
    auto empty_string = OipRequest("lstm2");
    WithParam(empty_string, "sequence_id", std::string());
    EXPECT_STATUS(OipInfer(WithParam(empty_string, flag, true)), grpc::StatusCode::INVALID_ARGUMENT,
                  message);
    auto no_id = OipRequest("lstm2");
    EXPECT_STATUS(OipInfer(WithParam(no_id, flag, true)), grpc::StatusCode::INVALID_ARGUMENT,
                  message);
  }
}

BAD_CASE(OipSequenceUsedAfterItsEnd) {
  auto whole = OipRequest("lstm2", 3);
  WithParam(whole, "sequence_id", int64_t{424201});
  WithParam(whole, "sequence_start", true);
  const grpc::Status first = OipInfer(WithParam(whole, "sequence_end", true));
  ASSERT_TRUE(first.ok()) << first.error_message();
  auto again = OipRequest("lstm2");
  EXPECT_STATUS(OipInfer(WithParam(again, "sequence_id", int64_t{424201})),
                grpc::StatusCode::INVALID_ARGUMENT, "sequence_id 424201 is not active on model");
}

BAD_CASE(OipBadSequenceParameterTypes) {
  auto negative = OipRequest("lstm2");
  WithParam(negative, "sequence_id", int64_t{-5});
  EXPECT_STATUS(OipInfer(WithParam(negative, "sequence_start", true)),
                grpc::StatusCode::INVALID_ARGUMENT, "sequence_id -5 is negative");
  auto bool_id = OipRequest("lstm2");
  EXPECT_STATUS(OipInfer(WithParam(bool_id, "sequence_id", true)),
                grpc::StatusCode::INVALID_ARGUMENT,
                "parameter 'sequence_id' must be an unsigned integer or a string");
  auto int_start = OipRequest("lstm2");
  WithParam(int_start, "sequence_id", int64_t{424203});
  EXPECT_STATUS(OipInfer(WithParam(int_start, "sequence_start", int64_t{1})),
                grpc::StatusCode::INVALID_ARGUMENT, "parameter 'sequence_start' must be a bool");
  auto string_end = OipRequest("lstm2");
  WithParam(string_end, "sequence_id", int64_t{424203});
  EXPECT_STATUS(OipInfer(WithParam(string_end, "sequence_end", std::string("true"))),
                grpc::StatusCode::INVALID_ARGUMENT, "parameter 'sequence_end' must be a bool");
}

BAD_CASE(OipWrongDatatypeShapeAndBytes) {
  auto fp64 = OipRequest("lstm2");
  fp64.mutable_inputs(0)->set_datatype("FP64");
  EXPECT_STATUS(OipInfer(fp64), grpc::StatusCode::INVALID_ARGUMENT,
                "input 'x' has datatype FP64; model lstm2 takes FP32");
  auto shape = OipRequest("lstm2");
  shape.mutable_inputs(0)->set_shape(2, 9);
  shape.set_raw_input_contents(0, FloatBytes(9));
  EXPECT_STATUS(OipInfer(shape), grpc::StatusCode::INVALID_ARGUMENT,
                "input 'x' has shape [1,1,9]; model lstm2 takes [-1,1,10]");
  auto rank = OipRequest("lstm2");
  rank.mutable_inputs(0)->mutable_shape()->RemoveLast();
  EXPECT_STATUS(OipInfer(rank), grpc::StatusCode::INVALID_ARGUMENT,
                "input 'x' has shape [1,1]; model lstm2 takes [-1,1,10]");
  auto bytes = OipRequest("lstm2");
  bytes.set_raw_input_contents(0, FloatBytes(3));
  EXPECT_STATUS(OipInfer(bytes), grpc::StatusCode::INVALID_ARGUMENT,
                "input 'x' holds 12 bytes; shape [1,1,10] of FP32 needs 1 x 40");
  auto name = OipRequest("lstm2");
  name.mutable_inputs(0)->set_name("input");
  EXPECT_STATUS(OipInfer(name), grpc::StatusCode::INVALID_ARGUMENT,
                "model lstm2 has no input 'input'; its input is 'x'");
  auto output = OipRequest("lstm2");
  output.add_outputs()->set_name("z");
  EXPECT_STATUS(OipInfer(output), grpc::StatusCode::INVALID_ARGUMENT,
                "model lstm2 has no output 'z'");
  auto empty = OipRequest("lstm2", 0);
  EXPECT_STATUS(OipInfer(empty), grpc::StatusCode::INVALID_ARGUMENT,
                "a request without sequence_id is a whole sequence and needs at least one frame");
}

BAD_CASE(OipUnknownOrUnreadyModelAndOversizeRequest) {
  EXPECT_STATUS(OipInfer(OipRequest("no_such_model")), grpc::StatusCode::NOT_FOUND,
                "unknown model 'no_such_model'");
  auto version = OipRequest("lstm2");
  version.set_model_version("2");
  EXPECT_STATUS(OipInfer(version), grpc::StatusCode::NOT_FOUND, "model 'lstm2' has no version '2'");
  EXPECT_STATUS(OipInfer(OipRequest("bad_value")), grpc::StatusCode::UNAVAILABLE,
                "model bad_value is not ready: ");
  EXPECT_STATUS(OipInfer(OipRequest("lstm2", kMaxMessageBytes / 40 + 100)),
                grpc::StatusCode::RESOURCE_EXHAUSTED, "Received message larger than max");
}

// On ModelStreamInfer a bad request gets an error response and the stream goes on.
BAD_CASE(OipStreamErrorsAreInStream) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  auto stream = env->oip->ModelStreamInfer(&context);
  auto orphan = OipRequest("lstm2");
  orphan.set_id("orphan");
  WithParam(orphan, "sequence_id", int64_t{424210});
  ASSERT_TRUE(stream->Write(orphan));
  auto good = OipRequest("lstm2", 2);
  good.set_id("good");
  WithParam(good, "sequence_id", int64_t{424211});
  WithParam(good, "sequence_start", true);
  WithParam(good, "sequence_end", true);
  ASSERT_TRUE(stream->Write(good));
  stream->WritesDone();
  std::vector<inference::ModelStreamInferResponse> responses;
  inference::ModelStreamInferResponse response;
  while (stream->Read(&response)) responses.push_back(response);
  EXPECT_TRUE(stream->Finish().ok());
  ASSERT_EQ(responses.size(), 2u);
  int errors = 0, answers = 0;
  for (const auto& r : responses) {
    if (!r.error_message().empty()) {
      ++errors;
      EXPECT_TRUE(
          absl::StartsWith(r.error_message(), "sequence_id 424210 is not active on model lstm2"))
          << r.error_message();
    } else {
      ++answers;
      EXPECT_EQ(r.infer_response().id(), "good");
      EXPECT_EQ(r.infer_response().raw_output_contents_size(), 1);
    }
  }
  EXPECT_EQ(errors, 1);
  EXPECT_EQ(answers, 1);
}

// ---- admin HTTP ----

HttpResult Http(const std::string& method, const std::string& path,
                std::optional<std::string> body = std::nullopt) {
  HttpRequestSpec request;
  request.method = method;
  request.url = env->HttpUrl(path);
  request.body = std::move(body);
  return Curl(request);
}

void ExpectJsonError(const HttpResult& result, int code, const std::string& prefix) {
  EXPECT_EQ(result.code, code) << result.body;
  EXPECT_TRUE(absl::StartsWith(result.Header("Content-Type"), "application/json"))
      << result.raw_headers;
  EXPECT_TRUE(absl::StartsWith(result.body, absl::StrCat("{\"error\":\"", prefix)))
      << "body '" << result.body << "' does not start with the error '" << prefix << "'";
}

BAD_CASE(HttpUnknownPaths) {
  ExpectJsonError(Http("GET", "/nope"), 404, "no route for GET /nope\"}");
  ExpectJsonError(Http("GET", "/v2/models"), 404, "no route for GET /v2/models\"}");
  ExpectJsonError(Http("POST", "/v2/models/lstm2/infer/extra", "{}"), 404,
                  "no route for POST /v2/models/lstm2/infer/extra");
  ExpectJsonError(Http("GET", "/v2/models/no_such_model"), 404, "unknown model 'no_such_model'");
  ExpectJsonError(Http("GET", "/v2/models/no_such_model/ready"), 404,
                  "unknown model 'no_such_model'");
}

BAD_CASE(HttpWrongMethods) {
  for (const auto& [method, path, allow] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"POST", "/metrics", "GET, HEAD"},
           {"DELETE", "/healthz", "GET, HEAD"},
           {"PUT", "/v2/models/lstm2", "GET, HEAD"},
           {"GET", "/v2/models/lstm2/infer", "POST"},
           {"DELETE", "/v2/models/lstm2/infer", "POST"},
       }) {
    SCOPED_TRACE(absl::StrCat(method, " ", path));
    const HttpResult result =
        Http(method, path, method == "GET" ? std::nullopt : std::optional<std::string>("{}"));
    ExpectJsonError(
        result, 405,
        absl::StrCat("method ", method, " is not allowed on ", path, " (allowed: ", allow, ")"));
    EXPECT_EQ(result.Header("Allow"), allow);
  }
}

BAD_CASE(HttpBadInferBodies) {
  const std::string infer = "/v2/models/lstm2/infer";
  ExpectJsonError(Http("POST", infer, "{not json"), 400, "the body is not a JSON object: ");
  ExpectJsonError(Http("POST", infer, ""), 400, "the body is not a JSON object: ");
  ExpectJsonError(Http("POST", infer, "[1,2,3]"), 400, "the body is not a JSON object: ");
  ExpectJsonError(Http("POST", infer, "{}"), 400, "the body has no \\\"inputs\\\" list");
  ExpectJsonError(Http("POST", infer,
                       R"({"inputs":[{"name":"x","shape":[1,1,9],)"
                       R"("datatype":"FP32","data":[0,0,0,0,0,0,0,0,0]}]})"),
                  400, "input 'x' has shape [1,1,9]; model lstm2 takes [-1,1,10]");
  ExpectJsonError(Http("POST", infer,
                       R"({"inputs":[{"name":"x","shape":[1,1,10],)"
                       R"("datatype":"FP32"}]})"),
                  400, "input 'x': no \\\"data\\\"");
  ExpectJsonError(Http("POST", infer, R"({"id":7,"inputs":[]})"), 400,
                  "\\\"id\\\" must be a string");
  ExpectJsonError(Http("POST", "/v2/models/no_such_model/infer",
                       R"({"inputs":[{"name":"x","shape":[1,1,10],"datatype":"FP32",)"
                       R"("data":[0,0,0,0,0,0,0,0,0,0]}]})"),
                  404, "unknown model 'no_such_model'");
  ExpectJsonError(Http("POST", "/v2/models/bad_value/infer",
                       R"({"inputs":[{"name":"x","shape":[1,1,10],"datatype":"FP32",)"
                       R"("data":[0,0,0,0,0,0,0,0,0,0]}]})"),
                  503, "model bad_value is not ready: ");
}

BAD_CASE(HttpBadSequenceFlags) {
  const std::string frame =
      R"("inputs":[{"name":"x","shape":[1,1,10],"datatype":"FP32","data":[0,0,0,0,0,0,0,0,0,0]}])";
  ExpectJsonError(
      Http("POST", "/v2/models/lstm2/infer",
           absl::StrCat(R"({"parameters":{"sequence_id":0,"sequence_end":true},)", frame, "}")),
      400, "sequence_start and sequence_end need a non-zero sequence_id");
  ExpectJsonError(Http("POST", "/v2/models/lstm2/infer",
                       absl::StrCat(R"({"parameters":{"sequence_id":424220},)", frame, "}")),
                  400, "sequence_id 424220 is not active on model lstm2");
  ExpectJsonError(
      Http("POST", "/v2/models/lstm2/infer",
           absl::StrCat(R"({"parameters":{"sequence_id":424221,"sequence_start":"yes"},)", frame,
                        "}")),
      400, "parameter 'sequence_start' must be a bool");
}

// ---- the tests ----

class BadInputCaseTest : public BadInputTest, public ::testing::WithParamInterface<BadCase> {};

TEST_P(BadInputCaseTest, ExactStatusAndTheServerCarriesOn) {
  GetParam().run();
  ExpectServerCarriesOn();
}

INSTANTIATE_TEST_SUITE_P(Matrix, BadInputCaseTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<BadCase>& info) {
                           return info.param.name;
                         });

TEST_F(BadInputTest, MatrixHasAtLeastThirtyCases) { EXPECT_GE(Cases().size(), 30u); }

// One healthy session streams across every case of the matrix in one run.
TEST_F(BadInputTest, WholeMatrixWithOneHealthySession) {
  for (const BadCase& bad : Cases()) {
    SCOPED_TRACE(bad.name);
    bad.run();
    ExpectServerCarriesOn();
  }
}

// Garbage after Open ends the client's requests the way a half-close does; as no Close came, the
// stream ends with INVALID_ARGUMENT (not OK) once the frames before it are answered.
TEST_F(BadInputTest, GarbageBytesAfterOpenEndTheStreamWithAnError) {
  const RawOutcome outcome =
      RawCall({OpenRequest("lstm2").SerializeAsString(), Lstm2Frames(2).SerializeAsString(),
               kGarbage, Lstm2Frames(3).SerializeAsString()});
  ASSERT_FALSE(outcome.responses.empty());
  v1::StreamResponse opened;
  ASSERT_TRUE(opened.ParseFromString(outcome.responses.front()));
  EXPECT_TRUE(opened.has_opened());
  uint32_t outputs = 0;
  for (size_t r = 1; r < outcome.responses.size(); ++r) {
    v1::StreamResponse response;
    ASSERT_TRUE(response.ParseFromString(outcome.responses[r]));
    if (response.has_outputs()) outputs += response.outputs().count();
  }
  EXPECT_LE(outputs, 2u) << "frames sent after the garbage were served";
  EXPECT_FALSE(outcome.status.ok())
      << "garbage bytes after Open ended the stream with OK (taken for a half-close)";
  EXPECT_EQ(outcome.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(
      absl::StartsWith(outcome.status.error_message(), "the request stream ended without Close"))
      << outcome.status.error_message();
  ExpectServerCarriesOn();
}

// A bad request right behind Open (pipelined, as gRPC allows) is answered after Opened, which
// waits for the session's slot.
TEST_F(BadInputTest, InStreamErrorsNeverOvertakeOpened) {
  constexpr int kStreams = 40;
  std::atomic<int> overtaken{0};
  std::string example;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      auto stub = v1::Streaming::NewStub(env->NewChannel());
      for (int i = 0; i < kStreams / 4; ++i) {
        const StreamOutcome outcome =
            RunStream(*stub, {OpenRequest("lstm2"),
                              RawFrames(v1::FLOAT32, {1, 1, 9}, FloatBytes(9)), CloseRequest()});
        EXPECT_TRUE(outcome.status.ok()) << outcome.status.error_message();
        if (!outcome.opened()) {
          overtaken.fetch_add(1);
          std::lock_guard<std::mutex> lock(mu);
          example = outcome.Kinds();
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(overtaken.load(), 0) << overtaken.load() << " of " << kStreams
                                 << " streams got a response before Opened, e.g. '" << example
                                 << "' (O = Opened, E = Error)";
  ExpectServerCarriesOn();
}

// config.pbtxt's `name` is the name clients open: folder "folder_name" with `name: "alias"` is
// served as "alias".
TEST_F(BadInputTest, ConfigNameIsTheServedName) {
  auto stub = v1::Streaming::NewStub(env->NewChannel());
  const StreamOutcome alias = RunStream(*stub, {OpenRequest("alias"), CloseRequest()});
  EXPECT_TRUE(alias.status.ok()) << alias.status.error_code() << " "
                                 << alias.status.error_message();
  EXPECT_TRUE(alias.opened());
  const StreamOutcome folder = RunStream(*stub, {OpenRequest("folder_name"), CloseRequest()});
  EXPECT_EQ(folder.status.error_code(), grpc::StatusCode::NOT_FOUND);
  ExpectServerCarriesOn();
}

}  // namespace
}  // namespace sluice::server_testing
