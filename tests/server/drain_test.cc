// The real sluice-server binary as a subprocess: graceful drain on SIGTERM (accepted frames get
// their outputs, streams end UNAVAILABLE, new sessions are refused, exit code 0), and survival of
// a malformed request that must not be able to take the process down.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/lib/session.h"
#include "runtime/cpu/cpu_backend.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

#ifndef SLUICE_SERVER_BIN
#error "SLUICE_SERVER_BIN must name the sluice-server binary (tests/server/CMakeLists.txt)"
#endif

namespace sluice::server_testing {
namespace {

using Clock = std::chrono::steady_clock;

// sluice-server running as a child process; its stdout and stderr (spdlog writes to stdout) are
// collected by a thread. The destructor kills it if it is still running.
class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (log_thread_.joinable()) log_thread_.join();
    if (out_fd_ >= 0) close(out_fd_);
  }

  ::testing::AssertionResult Start(const std::vector<std::string>& flags) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return ::testing::AssertionFailure() << "pipe2 failed";
    std::vector<std::string> args = {SLUICE_SERVER_BIN};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return ::testing::AssertionFailure() << "fork failed";
    if (pid == 0) {
      // Child: only async-signal-safe calls until exec.
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(fds[1]);
    pid_ = pid;
    out_fd_ = fds[0];
    log_thread_ = std::thread([this] {
      char buffer[4096];
      ssize_t n;
      while ((n = read(out_fd_, buffer, sizeof(buffer))) > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        log_.append(buffer, static_cast<size_t>(n));
        cv_.notify_all();
      }
      std::lock_guard<std::mutex> lock(mu_);
      log_closed_ = true;
      cv_.notify_all();
    });
    return ::testing::AssertionSuccess();
  }

  // Waits until the log contains `needle`; returns the log text from it to the end of its line.
  std::optional<std::string> WaitForLog(const std::string& needle, std::chrono::seconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    size_t at = std::string::npos;
    cv_.wait_for(lock, timeout, [&] {
      at = log_.find(needle);
      return at != std::string::npos || log_closed_;
    });
    if (at == std::string::npos) return std::nullopt;
    const size_t end = log_.find('\n', at);
    return log_.substr(at, end == std::string::npos ? std::string::npos : end - at);
  }

  // The gRPC port, from "gRPC listening on HOST:PORT" (logged once the server is up).
  int WaitForGrpcPort() {
    const auto line = WaitForLog("gRPC listening on ", std::chrono::seconds(30));
    if (!line.has_value()) return -1;
    return PortOf(*line);
  }
  // The admin port, from the line with "HTTP" and "listening on HOST:PORT" (logged before the
  // gRPC one).
  int HttpPort() {
    for (absl::string_view line : absl::StrSplit(Log(), '\n')) {
      if (absl::StrContains(line, "HTTP") && absl::StrContains(line, "listening on ")) {
        return PortOf(line);
      }
    }
    return -1;
  }

  void Signal(int signal) { kill(pid_, signal); }

  bool Running() {
    if (exited_) return false;
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
      return false;
    }
    return true;
  }

  // The wait status once the process has exited within `timeout`.
  std::optional<int> WaitExit(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Running()) {
      if (Clock::now() > deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return status_;
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

 private:
  static int PortOf(absl::string_view line) {
    int port = -1;
    if (!absl::SimpleAtoi(line.substr(line.rfind(':') + 1), &port)) return -1;
    return port;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1;
  bool exited_ = false;
  int status_ = 0;
  std::thread log_thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string log_;
  bool log_closed_ = false;
};

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("killed by signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

std::shared_ptr<const streaming::Program> LoadModelProgram(const std::string& name) {
  auto program = streaming::LoadProgram(
      model_testing::SourcePath(absl::StrCat("tests/models/", name, "/model.onnx")), {});
  EXPECT_TRUE(program.ok()) << program.status();
  if (!program.ok()) return nullptr;
  return std::make_shared<const streaming::Program>(*std::move(program));
}

// The CPU backend's outputs (output 0) for `frames` streamed through one fresh session.
std::vector<std::vector<float>> Reference(std::shared_ptr<const streaming::Program> program,
                                          const std::vector<std::vector<float>>& frames) {
  std::vector<std::vector<float>> outputs;
  auto backend = cpu::CpuBackend::Create(program);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return outputs;
  auto slot = (*backend)->AllocateSlot();
  EXPECT_TRUE(slot.ok());
  for (const auto& frame : frames) {
    const StepItem item{*slot, frame.data()};
    auto result = model_testing::StepBatch(**backend, absl::MakeConstSpan(&item, 1));
    EXPECT_TRUE(result.ok()) << result.status();
    if (!result.ok()) break;
    if (result->ready[0]) outputs.push_back(result->frames[0]);
  }
  return outputs;
}

::testing::AssertionResult Close(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) {
    return ::testing::AssertionFailure() << "size " << got.size() << " != " << want.size();
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (!(std::fabs(got[i] - want[i]) <= 1e-4f + 1e-4f * std::fabs(want[i]))) {
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want " << want[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// One client session: a writer thread sending messages and a reader thread collecting outputs.
struct ClientSession {
  std::unique_ptr<TestStream> stream;
  std::vector<std::vector<float>> frames;  // Everything the writer may send, in order.
  int frames_per_message = 1;
  std::atomic<int> messages_written{0};
  std::atomic<bool> writer_done{false};
  std::atomic<bool> first_output{false};
  std::atomic<bool> reader_done{false};
  std::atomic<bool> release_reader{true};  // The reader waits for this before reading.
  std::vector<uint64_t> seqs;
  std::vector<std::vector<float>> outputs;
  std::vector<std::string> other_responses;
  grpc::Status status;
  int64_t warmup_frames = 0;
  // The stream's sluice-next-seq trailer, when it had one.
  std::optional<uint64_t> served_through;
  std::thread writer;
  std::thread reader;

  ::testing::AssertionResult Open(v1::Streaming::Stub& stub, const std::string& model) {
    stream = StartStream(stub);
    if (!stream->Write(OpenRequest(model))) return ::testing::AssertionFailure() << "Open write";
    v1::StreamResponse response;
    if (!stream->Read(&response) || !response.has_opened()) {
      return ::testing::AssertionFailure() << "no Opened: " << response.DebugString();
    }
    warmup_frames = response.opened().warmup_frames();
    return ::testing::AssertionSuccess();
  }

  void StartThreads(const std::vector<int64_t>& frame_shape, int64_t out_frame_size) {
    writer = std::thread([this, frame_shape] {
      for (size_t t = 0; t + frames_per_message <= frames.size(); t += frames_per_message) {
        std::vector<std::vector<float>> chunk(frames.begin() + t,
                                              frames.begin() + t + frames_per_message);
        if (!stream->Write(FramesRequest(chunk, frame_shape))) break;
        messages_written.fetch_add(1);
      }
      writer_done.store(true);
    });
    reader = std::thread([this, out_frame_size] {
      while (!release_reader.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      v1::StreamResponse r;
      while (stream->Read(&r)) {
        if (!r.has_outputs()) {
          other_responses.push_back(r.ShortDebugString());
          continue;
        }
        const v1::Outputs& o = r.outputs();
        const float* data = reinterpret_cast<const float*>(o.tensors(0).data().data());
        for (uint32_t i = 0; i < o.count(); ++i) {
          seqs.push_back(o.first_seq() + i);
          outputs.emplace_back(data + i * out_frame_size, data + (i + 1) * out_frame_size);
        }
        first_output.store(true);
      }
      reader_done.store(true);
    });
  }

  // Joins the reader (the server ends the stream), then the writer, and collects the status.
  void Join() {
    reader.join();
    // A writer blocked by flow control returns once the stream is finished.
    writer.join();
    status = stream->stream->Finish();
    // The client library's reading of the trailer, against the real server.
    served_through = client::ServedThroughFromTrailers(stream->context);
  }
};

// A drained stream's trailer names exactly the frames it served: every output before it arrived
// (one per frame past the warm-up), none after.
void ExpectServedThroughMatchesOutputs(const ClientSession& s, const std::string& name) {
  ASSERT_TRUE(s.served_through.has_value()) << name << ": no sluice-next-seq trailer";
  const int64_t served = static_cast<int64_t>(*s.served_through);
  EXPECT_EQ(static_cast<int64_t>(s.seqs.size()), std::max<int64_t>(0, served - s.warmup_frames))
      << name << ": the trailer says frames before seq " << served << " were served";
}

// Outputs are exactly seqs 0..n-1 (no gap, no repeat), n a whole number of messages, each equal
// to the reference. Returns n.
int64_t CheckContiguousOutputs(const ClientSession& s,
                               const std::vector<std::vector<float>>& reference,
                               const std::string& name) {
  for (size_t i = 0; i < s.seqs.size(); ++i) {
    EXPECT_EQ(s.seqs[i], i) << name << ": outputs out of order, lost or repeated";
    if (s.seqs[i] != i) break;
  }
  EXPECT_EQ(s.seqs.size() % s.frames_per_message, 0u)
      << name << ": " << s.seqs.size() << " outputs is not a whole number of "
      << s.frames_per_message << "-frame messages: a request was partly processed";
  EXPECT_LE(s.seqs.size(), reference.size()) << name;
  for (size_t i = 0; i < s.outputs.size() && i < reference.size(); ++i) {
    const auto close = Close(s.outputs[i], reference[i]);
    EXPECT_TRUE(close) << name << " seq " << i << ": " << close.message();
    if (!close) break;
  }
  // Frames that arrive after the drain began are refused out loud (an UNAVAILABLE Error whose
  // seq is the first seq not accepted), never dropped silently.
  for (const std::string& response : s.other_responses) {
    EXPECT_NE(response.find("code: 14"), std::string::npos) << name << ": " << response;
    EXPECT_NE(response.find(absl::StrCat("seq: ", s.seqs.size())), std::string::npos)
        << name << ": refused frames must start right after the last output: " << response;
  }
  return static_cast<int64_t>(s.seqs.size());
}

int64_t MetricValue(int http_port, const std::string& series) {
  FILE* pipe = popen(
      absl::StrCat("curl -sS --max-time 10 http://127.0.0.1:", http_port, "/metrics").c_str(), "r");
  if (pipe == nullptr) return -1;
  std::string body;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) body.append(buffer, n);
  pclose(pipe);
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::StartsWith(line, absl::StrCat(series, " "))) {
      int64_t value = -1;
      if (absl::SimpleAtoi(line.substr(series.size() + 1), &value)) return value;
    }
  }
  return -1;
}

int HttpStatus(int http_port, const std::string& path) {
  FILE* pipe = popen(absl::StrCat("curl -s --max-time 10 -o /dev/null -w '%{http_code}' "
                                  "http://127.0.0.1:",
                                  http_port, path)
                         .c_str(),
                     "r");
  if (pipe == nullptr) return -1;
  char buffer[16] = {0};
  const size_t n = fread(buffer, 1, sizeof(buffer) - 1, pipe);
  pclose(pipe);
  buffer[n] = 0;
  return std::atoi(buffer);
}

class DrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(SLUICE_SERVER_BIN)) << SLUICE_SERVER_BIN;
    repository_ = MakeRepository({{"lstm2", "lstm2", ""}, {"cnn_tiny", "cnn_tiny", ""}});
  }
  void TearDown() override { std::filesystem::remove_all(repository_); }

  ::testing::AssertionResult StartServer(ServerProcess& server, int drain_timeout_s) {
    auto started = server.Start({absl::StrCat("--model_repository=", repository_),
                                 "--host=127.0.0.1", "--grpc_port=0", "--http_port=0",
                                 absl::StrCat("--drain_timeout_s=", drain_timeout_s)});
    if (!started) return started;
    grpc_port_ = server.WaitForGrpcPort();
    http_port_ = server.HttpPort();
    if (grpc_port_ <= 0 || http_port_ <= 0) {
      return ::testing::AssertionFailure() << "no listening ports in the log:\n" << server.Log();
    }
    return ::testing::AssertionSuccess();
  }

  std::unique_ptr<v1::Streaming::Stub> NewStub() {
    return v1::Streaming::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", grpc_port_),
                                                      grpc::InsecureChannelCredentials()));
  }

  std::string repository_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

TEST_F(DrainTest, SigtermDrainsAcceptedFramesRefusesNewSessionsAndExitsZero) {
  constexpr int kSessions = 8;
  constexpr int kFrames = 200;
  constexpr int kDrainTimeoutS = 20;
  ServerProcess server;
  ASSERT_TRUE(StartServer(server, kDrainTimeoutS));
  auto lstm2 = LoadModelProgram("lstm2");
  auto cnn_tiny = LoadModelProgram("cnn_tiny");
  ASSERT_TRUE(lstm2 && cnn_tiny);
  auto stub = NewStub();

  // The holder: a cnn_tiny session whose client writes until flow control stops it and reads
  // nothing until told. Its session then has frames queued and a full outbox, so the drain cannot
  // complete before the holder reads: that keeps the server draining (not yet exited) while the
  // test checks that new sessions are refused, and makes "accepted frames are finished" observable
  // for a session whose outputs were held up.
  constexpr int kPeriod = 97;  // See backpressure_test.cc: cnn_tiny's output is then periodic.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  ClientSession holder;
  holder.frames_per_message = 10;
  holder.frames.reserve(40'000);
  for (int t = 0; t < 40'000; ++t) {
    if (t < kPeriod) {
      holder.frames.emplace_back(cnn_tiny->input.frame_size);
      for (float& v : holder.frames.back()) v = uniform(rng);
    } else {
      holder.frames.push_back(holder.frames[t % kPeriod]);
    }
  }
  const std::vector<std::vector<float>> holder_period_reference = Reference(
      cnn_tiny,
      std::vector<std::vector<float>>(holder.frames.begin(), holder.frames.begin() + 3 * kPeriod));
  ASSERT_EQ(holder_period_reference.size(), 3u * kPeriod);
  for (int t = kPeriod; t < 2 * kPeriod; ++t) {
    ASSERT_TRUE(Close(holder_period_reference[t + kPeriod], holder_period_reference[t]));
  }
  holder.release_reader.store(false);
  ASSERT_TRUE(holder.Open(*stub, "cnn_tiny"));
  holder.StartThreads(cnn_tiny->input.frame_shape, cnn_tiny->outputs[0].frame_size);
  {
    // Wait until the holder is stuck: neither its writer nor the server's output count for it
    // (sluice_frames_total{direction="out"}) has moved for 500 ms, and at least the 256 frames
    // of a full outbox were stepped. The scheduler has nothing else to do, so a runnable session
    // would be stepped every ~0.1 ms: 500 ms without a step means the outbox is full and stays
    // so until the client reads.
    const std::string out_series = "sluice_frames_total{model=\"cnn_tiny\",direction=\"out\"}";
    const auto start = Clock::now();
    int last_written = -1;
    int64_t last_out = -1;
    auto last_change = start;
    bool stuck = false;
    while (!stuck && Clock::now() - start < std::chrono::seconds(15)) {
      const int written = holder.messages_written.load();
      const int64_t out = MetricValue(http_port_, out_series);
      if (written != last_written || out != last_out) {
        last_written = written;
        last_out = out;
        last_change = Clock::now();
      } else if (out >= 256 && Clock::now() - last_change > std::chrono::milliseconds(500)) {
        stuck = true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(stuck) << "the holder session never got stuck (writer at " << last_written
                       << " messages, " << last_out << " outputs)";
    ASSERT_FALSE(holder.writer_done.load()) << "the holder's writer was never held back";
  }

  // The 8 sessions: 200 lstm2 frames each in 2-frame messages, as fast as possible, read at once.
  std::vector<std::unique_ptr<ClientSession>> sessions;
  std::vector<std::vector<std::vector<float>>> references;
  for (int i = 0; i < kSessions; ++i) {
    auto s = std::make_unique<ClientSession>();
    s->frames_per_message = 2;
    for (int t = 0; t < kFrames; ++t) {
      s->frames.emplace_back(lstm2->input.frame_size);
      for (float& v : s->frames.back()) v = uniform(rng);
    }
    references.push_back(Reference(lstm2, s->frames));
    ASSERT_TRUE(s->Open(*stub, "lstm2"));
    sessions.push_back(std::move(s));
  }
  for (auto& s : sessions) s->StartThreads(lstm2->input.frame_shape, lstm2->outputs[0].frame_size);

  // SIGTERM as soon as outputs flow.
  const auto wait_start = Clock::now();
  while (!std::all_of(sessions.begin(), sessions.end(),
                      [](const auto& s) { return s->first_output.load(); })) {
    ASSERT_LT(Clock::now() - wait_start, std::chrono::seconds(10)) << "no outputs";
    std::this_thread::yield();
  }
  server.Signal(SIGTERM);
  const auto sigterm_at = Clock::now();
  ASSERT_TRUE(server.WaitForLog("draining", std::chrono::seconds(10)).has_value()) << server.Log();

  // Every lstm2 stream ends by itself: its accepted frames are finished, then UNAVAILABLE.
  int64_t lstm2_outputs = 0;
  for (int i = 0; i < kSessions; ++i) {
    ClientSession& s = *sessions[i];
    s.Join();
    const std::string name = absl::StrCat("session ", i);
    EXPECT_EQ(s.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << name << ": " << s.status.error_message();
    lstm2_outputs += CheckContiguousOutputs(s, references[i], name);
    ExpectServedThroughMatchesOutputs(s, name);
  }
  std::cerr << "lstm2 sessions got " << lstm2_outputs << " of " << kSessions * kFrames
            << " outputs before the drain ended them\n";

  // Still draining (the holder is stuck): not ready, and a new session is refused.
  ASSERT_TRUE(server.Running()) << "the server exited while a session still had outputs to "
                                   "deliver:\n"
                                << server.Log();
  EXPECT_EQ(HttpStatus(http_port_, "/readyz"), 503);
  {
    auto probe_stub = NewStub();
    auto probe = StartStream(*probe_stub);
    probe->Write(OpenRequest("lstm2"));
    v1::StreamResponse response;
    bool opened = false;
    while (probe->Read(&response)) opened = opened || response.has_opened();
    const grpc::Status status = probe->stream->Finish();
    EXPECT_FALSE(opened) << "a session was opened after SIGTERM";
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
    EXPECT_NE(status.error_message().find("shutting down"), std::string::npos)
        << status.error_message();
  }
  // What the server says it accepted from the holder, while the holder still reads nothing.
  const int64_t holder_accepted =
      MetricValue(http_port_, "sluice_frames_total{model=\"cnn_tiny\",direction=\"in\"}");
  const int64_t lstm2_accepted =
      MetricValue(http_port_, "sluice_frames_total{model=\"lstm2\",direction=\"in\"}");

  // The holder reads: it gets the output of every frame the server accepted, then UNAVAILABLE.
  holder.release_reader.store(true);
  holder.Join();
  EXPECT_EQ(holder.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << holder.status.error_message();
  std::vector<std::vector<float>> holder_reference;
  for (size_t t = 0; t < holder.seqs.size(); ++t) {
    holder_reference.push_back(t < 2u * kPeriod
                                   ? holder_period_reference[t]
                                   : holder_period_reference[kPeriod + (t - kPeriod) % kPeriod]);
  }
  const int64_t holder_outputs = CheckContiguousOutputs(holder, holder_reference, "holder");
  ExpectServedThroughMatchesOutputs(holder, "holder");
  EXPECT_GE(holder_outputs, 256) << "the holder's outbox alone held 256 outputs";
  EXPECT_EQ(holder_outputs, holder_accepted)
      << "the server accepted " << holder_accepted << " holder frames but delivered "
      << holder_outputs << " outputs";
  // A message a session read after the drain began is counted as received but dropped unseen
  // (it gets no seq): the lstm2 sessions may thus have lost at most one message each.
  EXPECT_LE(lstm2_outputs, lstm2_accepted);
  EXPECT_LE(lstm2_accepted - lstm2_outputs, kSessions * 2)
      << "accepted " << lstm2_accepted << " lstm2 frames, delivered " << lstm2_outputs;
  std::cerr << "holder: accepted " << holder_accepted << ", delivered " << holder_outputs
            << "; lstm2: accepted " << lstm2_accepted << ", delivered " << lstm2_outputs << "\n";

  // Then the server exits by itself, cleanly, within the drain timeout.
  const auto status = server.WaitExit(std::chrono::seconds(kDrainTimeoutS));
  ASSERT_TRUE(status.has_value()) << "still running " << kDrainTimeoutS << " s after SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
      << DescribeWaitStatus(*status) << "\n"
      << server.Log();
  EXPECT_LT(Clock::now() - sigterm_at, std::chrono::seconds(kDrainTimeoutS));
  const std::string log = server.Log();
  EXPECT_EQ(log.find("still open after the drain timeout"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;

  // And nothing listens any more.
  auto after = StartStream(*stub);
  after->Write(OpenRequest("lstm2"));
  v1::StreamResponse response;
  EXPECT_FALSE(after->Read(&response));
  EXPECT_EQ(after->stream->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(DrainTest, IdleServerExitsZeroOnSigtermAndSigint) {
  for (int signal : {SIGTERM, SIGINT}) {
    ServerProcess server;
    ASSERT_TRUE(StartServer(server, 20));
    const auto start = Clock::now();
    server.Signal(signal);
    const auto status = server.WaitExit(std::chrono::seconds(10));
    ASSERT_TRUE(status.has_value()) << "no exit 10 s after signal " << signal << "\n"
                                    << server.Log();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << DescribeWaitStatus(*status);
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
  }
}

// A Frames request claiming 2^62 frames with no data: count * frame_size * 4 bytes wraps around
// int64 to 0, which equals the data length, so DecodeFrames' length check passes and it then tries
// to allocate 2^62 frames. The exception (std::length_error) escapes StreamReactor::OnReadDone;
// whatever gRPC does with it, the request must instead get an in-stream INVALID_ARGUMENT, the
// session must go on, and the server must still shut down cleanly.
TEST_F(DrainTest, HugeFrameCountInOneSmallMessageIsAnInStreamErrorNotAWedgedServer) {
  ServerProcess server;
  ASSERT_TRUE(StartServer(server, 5));
  auto stub = NewStub();
  auto s = std::make_unique<TestStream>();
  s->context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
  s->stream = stub->Stream(&s->context);
  ASSERT_TRUE(s->Write(OpenRequest("lstm2")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened());
  v1::StreamRequest evil;
  v1::Tensor* tensor = evil.mutable_frames()->mutable_tensor();
  tensor->set_dtype(v1::FLOAT32);
  tensor->add_shape(int64_t{1} << 62);  // lstm2 frames are [1,10]: 2^62 * 10 * 4 = 0 mod 2^64.
  tensor->add_shape(1);
  tensor->add_shape(10);
  ASSERT_TRUE(s->Write(evil));
  bool answered = s->Read(&response);
  EXPECT_TRUE(answered) << "no answer to the malformed request within 3 s";
  if (answered) {
    EXPECT_TRUE(response.has_error()) << response.DebugString();
    EXPECT_EQ(response.error().status().code(), grpc::StatusCode::INVALID_ARGUMENT);
    // The session goes on: a valid frame still gets its output.
    ASSERT_TRUE(s->Write(FramesRequest({std::vector<float>(10, 0.5f)}, {1, 10})));
    answered = s->Read(&response);
    EXPECT_TRUE(answered && response.has_outputs()) << response.DebugString();
  }
  s->context.TryCancel();
  const grpc::Status status = s->stream->Finish();
  std::cerr << "the stream ended with " << status.error_code() << " " << status.error_message()
            << "\n";
  ASSERT_TRUE(server.Running()) << "the server died:\n" << server.Log();
  // Graceful shutdown still works: no session is left, so the drain ends at once and gRPC's
  // shutdown takes at most its 1 s grace.
  server.Signal(SIGTERM);
  const auto exit = server.WaitExit(std::chrono::seconds(8));
  EXPECT_TRUE(exit.has_value()) << "the server did not exit within 8 s of SIGTERM (drain "
                                   "timeout 5 s):\n"
                                << server.Log();
  if (exit.has_value()) {
    EXPECT_TRUE(WIFEXITED(*exit) && WEXITSTATUS(*exit) == 0) << DescribeWaitStatus(*exit);
  }
}

}  // namespace
}  // namespace sluice::server_testing
