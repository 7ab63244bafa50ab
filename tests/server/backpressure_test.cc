// Backpressure end to end: a client that sends 100,000 frames without reading any output must be
// held back by gRPC flow control (the server stops reading its stream once the session's queue and
// outbox are full), the server's memory must stay bounded while it is, and once the client reads,
// every output must arrive exactly once, in order, equal to a local reference.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "server/server.h"
#include "tests/runtime/model_testing.h"
#include "tests/server/server_fixture.h"

namespace sluice::server_testing {
namespace {

// VmRSS of this process in bytes (the server runs in-process), or -1.
int64_t ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;
  }
  return -1;
}

constexpr int kMessages = 1000;
constexpr int kFramesPerMessage = 100;
constexpr int kTotalFrames = kMessages * kFramesPerMessage;  // 100,000.
// The input repeats with this period, so the reference needs computing only over a few periods
// and nothing of size 100,000 frames has to be held by the test itself (it would blur the RSS
// measurement). cnn_tiny is three causal convs of kernel 8 and no recurrence, so output t depends
// only on inputs t-21..t; for every t >= kPeriod (> 21) that window is a shifted copy of one seen
// one period earlier, so output(t) == output(kPeriod + (t - kPeriod) % kPeriod). The test checks
// this on the reference itself. 97 is prime and does not divide 100, so consecutive messages carry
// different content (a reordered or repeated message would show).
constexpr int kPeriod = 97;
// Growth of the process RSS while the writer is stalled. If the server (or the client library)
// buffered the whole stream, that is at least 100,000 x 128 floats of input (51 MB) and as much
// output (another 51 MB). A bounded server holds one session queue (64 frames + one 100-frame
// message), an outbox of at most 256 output frames, and the HTTP/2 flow-control windows of one
// stream in each direction (a few MB at most with gRPC's BDP probing), plus allocator slack.
constexpr int64_t kMaxStalledGrowthBytes = 40ll << 20;

class BackpressureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    repository_ = MakeRepository({{"cnn_tiny", "cnn_tiny", ""}});
    server::ServerOptions options;
    options.model_repository = repository_;
    options.host = "127.0.0.1";
    options.grpc_port = 0;
    options.http_port = -1;
    auto server = server::SluiceServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(repository_);
  }

  std::string repository_;
  std::unique_ptr<server::SluiceServer> server_;
};

TEST_F(BackpressureTest, NonReadingClientIsFlowControlledAndGetsEveryOutputOnceItReads) {
  auto program =
      streaming::LoadProgram(model_testing::SourcePath("tests/models/cnn_tiny/model.onnx"), {});
  ASSERT_TRUE(program.ok()) << program.status();
  auto shared_program = std::make_shared<const streaming::Program>(*std::move(program));
  const streaming::StreamSpec& in = shared_program->input;
  const streaming::StreamSpec& out = shared_program->outputs[0];
  ASSERT_EQ(in.frame_size, 128);
  ASSERT_EQ(out.frame_size, 128);
  ASSERT_EQ(shared_program->warmup_frames, 0);

  // The periodic input and, from the CPU backend directly, its reference output over 3 periods.
  std::mt19937 rng(20240607);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::vector<std::vector<float>> pattern(kPeriod, std::vector<float>(in.frame_size));
  for (auto& frame : pattern) {
    for (float& v : frame) v = uniform(rng);
  }
  std::vector<std::vector<float>> reference;
  {
    auto backend = cpu::CpuBackend::Create(shared_program);
    ASSERT_TRUE(backend.ok()) << backend.status();
    auto slot = (*backend)->AllocateSlot();
    ASSERT_TRUE(slot.ok()) << slot.status();
    for (int t = 0; t < 3 * kPeriod; ++t) {
      const StepItem item{*slot, pattern[t % kPeriod].data()};
      auto result = model_testing::StepBatch(**backend, absl::MakeConstSpan(&item, 1));
      ASSERT_TRUE(result.ok()) << result.status();
      ASSERT_EQ(result->ready[0], 1);
      reference.push_back(result->frames[0]);
    }
  }
  for (int t = kPeriod; t < 2 * kPeriod; ++t) {
    for (int64_t i = 0; i < out.frame_size; ++i) {
      ASSERT_NEAR(reference[t][i], reference[t + kPeriod][i], 1e-5f)
          << "the reference output is not periodic (frame " << t << ")";
    }
  }
  auto expected = [&](int64_t t) -> const std::vector<float>& {
    return t < 2 * kPeriod ? reference[t] : reference[kPeriod + (t - kPeriod) % kPeriod];
  };

  auto stub = v1::Streaming::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", server_->grpc_port()), grpc::InsecureChannelCredentials()));
  auto s = StartStream(*stub);
  ASSERT_TRUE(s->Write(OpenRequest("cnn_tiny")));
  v1::StreamResponse response;
  ASSERT_TRUE(s->Read(&response));
  ASSERT_TRUE(response.has_opened()) << response.DebugString();

  const int64_t baseline_rss = ResidentBytes();
  ASSERT_GT(baseline_rss, 0);

  // The writer: 1,000 STACKED messages of 100 frames, each built just before it is written (so
  // the client holds one message at a time), as fast as Write returns.
  std::atomic<int> messages_written{0};
  std::atomic<bool> write_failed{false};
  std::thread writer([&] {
    for (int m = 0; m < kMessages; ++m) {
      std::vector<std::vector<float>> frames;
      frames.reserve(kFramesPerMessage);
      for (int i = 0; i < kFramesPerMessage; ++i) {
        frames.push_back(pattern[(m * kFramesPerMessage + i) % kPeriod]);
      }
      if (!s->Write(FramesRequest(frames, in.frame_shape))) {
        write_failed.store(true);
        return;
      }
      messages_written.fetch_add(1);
    }
  });

  // Nobody reads. The writer must stall: wait until it has made no progress for 500 ms, and
  // stop waiting after 3 s or once it has written everything (which fails below).
  const auto start = std::chrono::steady_clock::now();
  int last = -1;
  auto last_change = start;
  while (true) {
    const int now_written = messages_written.load();
    const auto now = std::chrono::steady_clock::now();
    if (now_written != last) {
      last = now_written;
      last_change = now;
    }
    if (now_written == kMessages || write_failed.load()) break;
    if (now - start >= std::chrono::seconds(1) &&
        now - last_change >= std::chrono::milliseconds(500))
      break;
    if (now - start >= std::chrono::seconds(3)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int stalled_at = messages_written.load();
  const int64_t stalled_rss = ResidentBytes();
  const double waited_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_FALSE(write_failed.load()) << "a Write failed while nobody was reading";
  EXPECT_LT(stalled_at, kMessages)
      << "after " << waited_s << " s without reading, the client wrote all " << kTotalFrames
      << " frames: nothing held it back";
  const int64_t growth = stalled_rss - baseline_rss;
  RecordProperty("stalled_after_messages", stalled_at);
  RecordProperty("stalled_rss_growth_bytes", static_cast<int>(growth));
  std::cerr << "writer stalled after " << stalled_at << " messages ("
            << stalled_at * kFramesPerMessage << " frames) in " << waited_s << " s; RSS "
            << baseline_rss / (1 << 20) << " MB -> " << stalled_rss / (1 << 20) << " MB\n";
  EXPECT_LT(growth, kMaxStalledGrowthBytes)
      << "RSS grew by " << growth / (1 << 20) << " MB while the writer was stalled";

  // Now read everything: every seq exactly once, in order, with the reference values.
  int64_t next_seq = 0;
  int64_t max_rss = stalled_rss;
  int64_t mismatches = 0;
  int responses = 0;
  while (next_seq < kTotalFrames) {
    if (!s->Read(&response)) {
      ADD_FAILURE() << "the stream ended after " << next_seq << " outputs";
      break;
    }
    ASSERT_TRUE(response.has_outputs()) << response.DebugString();
    const v1::Outputs& outputs = response.outputs();
    ASSERT_EQ(outputs.first_seq(), static_cast<uint64_t>(next_seq))
        << "outputs out of order, lost or repeated";
    ASSERT_EQ(outputs.tensors_size(), 1);
    const v1::Tensor& tensor = outputs.tensors(0);
    ASSERT_EQ(tensor.data().size(), outputs.count() * out.frame_size * sizeof(float));
    const float* got = reinterpret_cast<const float*>(tensor.data().data());
    for (uint32_t i = 0; i < outputs.count(); ++i) {
      const std::vector<float>& want = expected(next_seq + i);
      for (int64_t e = 0; e < out.frame_size; ++e) {
        const float g = got[i * out.frame_size + e];
        if (!(std::fabs(g - want[e]) <= 1e-4f + 1e-4f * std::fabs(want[e]))) {
          if (mismatches++ < 5) {
            ADD_FAILURE() << "seq " << next_seq + i << " element " << e << ": got " << g
                          << ", want " << want[e];
          }
        }
      }
    }
    next_seq += outputs.count();
    if (++responses % 64 == 0) max_rss = std::max(max_rss, ResidentBytes());
  }
  writer.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(next_seq, kTotalFrames);
  EXPECT_FALSE(write_failed.load());
  EXPECT_EQ(messages_written.load(), kMessages);
  std::cerr << "peak RSS while reading " << max_rss / (1 << 20) << " MB\n";
  EXPECT_LT(max_rss - baseline_rss, kMaxStalledGrowthBytes)
      << "RSS grew by " << (max_rss - baseline_rss) / (1 << 20) << " MB while reading";

  v1::StreamRequest close;
  close.mutable_close();
  ASSERT_TRUE(s->Write(close));
  s->stream->WritesDone();
  while (s->Read(&response)) {
    ADD_FAILURE() << "unexpected response after the last output: " << response.DebugString();
  }
  const grpc::Status status = s->stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
}

}  // namespace
}  // namespace sluice::server_testing
