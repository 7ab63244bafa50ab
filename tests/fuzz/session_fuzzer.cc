// libFuzzer target: arbitrary sluice.v1.StreamRequest sequences on two interleaved streams,
// through the layer below the gRPC reactor: the frame codec (server/api/frame_codec.h), a
// Session (server/session/session.h) and a real Scheduler with the CPU backend, on a tiny
// conv model built here (warm-up 1, so outputs, warm-up and Reset all show).
//
// The harness plays StreamReactor (server/api/stream_service.cc: the same request handling,
// without gRPC) and a transport that completes every read and write. Input format, repeated:
// one byte (bit 0: which stream), a varint length, that many bytes of one StreamRequest.
//
// Oracles, per stream: it finishes (no hang) with the status the reactor's rules give; the
// Outputs carry exactly the seqs of the accepted frames past each warm-up, in order (a prefix
// when a second Open dropped queued frames), with their tags and the shapes the spec gives;
// every rejected request got its Error with the right seq; ResetDone next_seq values match;
// and every output equals, bit for bit, what a separate CPU backend computes for that session
// alone (batch invariance and session isolation through the scheduler). The replay oracle is
// tests/common/stream_oracle.h, shared with the TSan harness.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/transform.h"
#include "server/api/frame_codec.h"
#include "server/scheduler/scheduler.h"
#include "server/session/session.h"
#include "sluice/v1/streaming.pb.h"
#include "tests/common/stream_oracle.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/tiny_model.h"

namespace sluice::fuzz {
namespace {

constexpr char kModel[] = "tiny";
constexpr int kMaxRecords = 64;
constexpr auto kHangDeadline = std::chrono::seconds(8);  // Under libFuzzer's -timeout=10.

// What every input shares: the program, a scheduler (with its thread and CPU backend) that
// serves the streams, and a second CPU backend that computes the expected outputs.
struct Shared {
  std::shared_ptr<const streaming::Program> program;
  server::Scheduler* scheduler = nullptr;
  std::unique_ptr<cpu::CpuBackend> reference;
};

Shared& GetShared() {
  static Shared* shared = [] {
    auto* s = new Shared;
    auto graph = onnx_import::ImportModel(TinyConvModel(), "tiny");
    FUZZ_CHECK(graph.ok(), graph.status().ToString());
    auto program = streaming::BuildProgram(*graph, {});
    FUZZ_CHECK(program.ok(), program.status().ToString());
    FUZZ_CHECK(program->warmup_frames == 1, "warm-up ", program->warmup_frames);
    s->program = std::make_shared<const streaming::Program>(*std::move(program));
    BackendOptions options;
    options.max_batch = 4;
    auto backend = cpu::CpuBackend::Create(s->program, options);
    FUZZ_CHECK(backend.ok(), backend.status().ToString());
    server::SchedulerOptions scheduler_options;
    scheduler_options.model = kModel;
    scheduler_options.max_batch = options.max_batch;
    // Never destroyed: its thread serves every input of the run.
    s->scheduler = new server::Scheduler(scheduler_options, s->program, *std::move(backend),
                                         /*metrics=*/nullptr);
    s->scheduler->Start();
    BackendOptions reference_options;
    reference_options.max_batch = 1;
    auto reference = cpu::CpuBackend::Create(s->program, reference_options);
    FUZZ_CHECK(reference.ok(), reference.status().ToString());
    s->reference = *std::move(reference);
    return s;
  }();
  return *shared;
}

// The transport: records what the session asks for; the harness completes it.
class FakeSink : public server::StreamSink {
 public:
  explicit FakeSink(std::mutex* mu, std::condition_variable* changed)
      : mu_(mu), changed_(changed) {}

  void StartRead() override {
    std::lock_guard<std::mutex> lock(*mu_);
    FUZZ_CHECK(!finished_ && !read_pending_, "StartRead while finished or reading");
    read_pending_ = true;
    changed_->notify_all();
  }
  void StartWrite(const v1::StreamResponse* response) override {
    std::lock_guard<std::mutex> lock(*mu_);
    FUZZ_CHECK(!finished_ && !write_pending_, "StartWrite while finished or writing");
    write_pending_ = true;
    responses_.push_back(*response);
    changed_->notify_all();
  }
  void Finish(const absl::Status& status) override {
    std::lock_guard<std::mutex> lock(*mu_);
    FUZZ_CHECK(!finished_ && !write_pending_, "Finish while finished or writing");
    finished_ = true;
    status_ = status;
    changed_->notify_all();
  }

  // Caller holds *mu_.
  bool TakeRead() { return std::exchange(read_pending_, false); }
  bool TakeWrite() { return std::exchange(write_pending_, false); }
  bool finished() const { return finished_; }
  const absl::Status& status() const { return status_; }
  const std::vector<v1::StreamResponse>& responses() const { return responses_; }

 private:
  std::mutex* const mu_;
  std::condition_variable* const changed_;
  bool read_pending_ = false;
  bool write_pending_ = false;
  bool finished_ = false;
  absl::Status status_;
  std::vector<v1::StreamResponse> responses_;
};

// One stream, as the reactor sees it, and what the oracles expect of it.
struct Stream {
  explicit Stream(std::mutex* mu, std::condition_variable* changed) : sink(mu, changed) {}

  FakeSink sink;
  std::shared_ptr<server::Session> session;
  bool finished_without_session = false;
  bool reading_done = false;  // No request will be delivered any more.
  bool dropped = false;       // The session was closed with drop_pending.
  absl::StatusCode expected_code = absl::StatusCode::kOk;
  uint64_t next_seq = 0;
  std::vector<stream_testing::Accepted> accepted;
  std::vector<stream_testing::StreamError> errors;  // The in-stream Errors sent.
};

// StreamReactor::HandleOpen without the registry and metrics.
void HandleOpen(Stream& stream, const v1::StreamRequest& request, int index) {
  const Shared& shared = GetShared();
  auto finish = [&](absl::StatusCode code) {
    stream.sink.Finish(absl::Status(code, "refused before Open"));
    stream.finished_without_session = true;
    stream.reading_done = true;
    stream.expected_code = code;
  };
  if (request.kind_case() != v1::StreamRequest::kOpen) {
    return finish(absl::StatusCode::kFailedPrecondition);
  }
  if (request.open().model() != kModel) return finish(absl::StatusCode::kNotFound);
  server::SessionLimits limits;
  limits.queue_frames = 3;  // Small: reading stops and resumes often.
  limits.outbox_frames = 5;
  limits.max_frames_per_response = 4;
  stream.session = std::make_shared<server::Session>(absl::StrCat("s", index), kModel,
                                                     request.open().session_tag(), shared.scheduler,
                                                     &stream.sink, limits);
  v1::StreamResponse opened;
  opened.mutable_opened()->set_session_id(stream.session->id());
  *opened.mutable_opened()->mutable_input() = server::ToTensorSpec(shared.program->input);
  stream.session->Start(std::move(opened));
}

// StreamReactor::HandleRequest.
void HandleRequest(Stream& stream, const v1::StreamRequest& request) {
  server::Session& session = *stream.session;
  auto respond_error = [&](const absl::Status& status) {
    stream.errors.emplace_back(static_cast<int>(status.code()), stream.next_seq);
    session.RespondError(status);
  };
  switch (request.kind_case()) {
    case v1::StreamRequest::kFrames: {
      std::vector<std::vector<float>> frames;
      const absl::Status status =
          server::DecodeFrames(request.frames(), GetShared().program->input, &frames);
      if (!status.ok()) {
        FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument, status.ToString());
        FUZZ_CHECK(frames.empty(), "DecodeFrames wrote frames and failed");
        return respond_error(status);
      }
      FUZZ_CHECK(!frames.empty(), "DecodeFrames accepted no frames");
      std::vector<std::string> tags(request.frames().tags().begin(), request.frames().tags().end());
      for (size_t i = 0; i < frames.size(); ++i) {
        FUZZ_CHECK(static_cast<int64_t>(frames[i].size()) == GetShared().program->input.frame_size,
                   "decoded frame of ", frames[i].size(), " floats");
        stream_testing::Accepted accepted;
        accepted.seq = stream.next_seq + i;
        accepted.frame = frames[i];
        if (i < tags.size()) accepted.tag = tags[i];
        stream.accepted.push_back(std::move(accepted));
      }
      const size_t count = frames.size();
      FUZZ_CHECK(session.EnqueueFrames(std::move(frames), std::move(tags)),
                 "EnqueueFrames refused frames before any Close");
      stream.next_seq += count;
      FUZZ_CHECK(session.next_seq() == stream.next_seq, "session next_seq ", session.next_seq(),
                 ", expected ", stream.next_seq);
      return;
    }
    case v1::StreamRequest::kReset: {
      stream_testing::Accepted reset;
      reset.reset = true;
      reset.seq = stream.next_seq;
      stream.accepted.push_back(std::move(reset));
      session.EnqueueReset();
      return;
    }
    case v1::StreamRequest::kClose:
      stream.reading_done = true;
      session.EnqueueClose(absl::OkStatus());
      return;
    case v1::StreamRequest::kOpen:
      stream.reading_done = true;
      stream.dropped = true;
      stream.expected_code = absl::StatusCode::kFailedPrecondition;
      session.EnqueueClose(absl::FailedPreconditionError("Open sent twice"), true);
      return;
    default:
      return respond_error(absl::InvalidArgumentError("empty StreamRequest"));
  }
}

// Checks a finished stream against what the reactor accepted.
void Verify(const Stream& stream) {
  const FakeSink& sink = stream.sink;
  FUZZ_CHECK(sink.status().code() == stream.expected_code, "stream ended with ",
             sink.status().ToString(), ", expected code ",
             absl::StatusCodeToString(stream.expected_code));
  if (stream.finished_without_session) {
    FUZZ_CHECK(sink.responses().empty(), "responses before Open");
    return;
  }
  // A second Open closes with drop_pending after the last request read: outputs may be cut.
  const absl::Status checked = stream_testing::CheckStream(
      *GetShared().reference, stream.accepted, stream.errors, sink.responses(),
      stream.dropped ? stream_testing::StreamEnd::kDropped : stream_testing::StreamEnd::kComplete);
  FUZZ_CHECK(checked.ok(), checked.ToString());
}

std::vector<std::pair<int, v1::StreamRequest>> ParseRecords(const uint8_t* data, size_t size) {
  std::vector<std::pair<int, v1::StreamRequest>> records;
  google::protobuf::io::CodedInputStream in(data, static_cast<int>(size));
  while (static_cast<int>(records.size()) < kMaxRecords) {
    uint8_t selector;
    uint32_t length;
    std::string bytes;
    if (!in.ReadRaw(&selector, 1) || !in.ReadVarint32(&length) || !in.ReadString(&bytes, length)) {
      break;
    }
    v1::StreamRequest request;
    if (!request.ParseFromString(bytes)) break;  // gRPC would end the stream: stop here.
    records.emplace_back(selector & 1, std::move(request));
  }
  return records;
}

void Run(const uint8_t* data, size_t size) {
  const auto records = ParseRecords(data, size);
  if (records.empty()) return;
  std::mutex mu;
  std::condition_variable changed;
  std::unique_ptr<Stream> streams[2];
  const auto deadline = std::chrono::steady_clock::now() + kHangDeadline;
  size_t next = 0;
  std::unique_lock<std::mutex> lock(mu);
  while (true) {
    bool progress = false;
    // Complete writes (outside the lock: the session pumps the next operation inline).
    for (auto& stream : streams) {
      if (stream && stream->session && stream->sink.TakeWrite()) {
        lock.unlock();
        stream->session->OnWriteDone(true);
        lock.lock();
        progress = true;
      }
    }
    if (next < records.size()) {
      const auto& [index, request] = records[next];
      if (!streams[index]) {
        streams[index] = std::make_unique<Stream>(&mu, &changed);
        lock.unlock();
        HandleOpen(*streams[index], request, index);
        lock.lock();
        ++next;
        progress = true;
      } else if (streams[index]->reading_done) {
        ++next;  // The client may send more, but the server reads no further.
        progress = true;
      } else if (streams[index]->sink.TakeRead()) {
        lock.unlock();
        HandleRequest(*streams[index], request);
        streams[index]->session->OnReadDone();
        lock.lock();
        ++next;
        progress = true;
      }
    } else {
      bool all_finished = true;
      for (auto& stream : streams) {
        if (!stream) continue;
        if (!stream->reading_done && stream->sink.TakeRead()) {
          // The client half-closes without Close: outputs, then INVALID_ARGUMENT.
          stream->reading_done = true;
          stream->expected_code = absl::StatusCode::kInvalidArgument;
          lock.unlock();
          stream->session->OnReadClosed();
          lock.lock();
          progress = true;
        }
        all_finished = all_finished && stream->sink.finished();
      }
      if (all_finished) break;
    }
    if (progress) continue;
    if (changed.wait_until(lock, deadline) == std::cv_status::timeout) {
      std::string state;
      for (auto& stream : streams) {
        if (!stream) continue;
        absl::StrAppend(&state, " [finished ", stream->sink.finished(), ", reading_done ",
                        stream->reading_done, ", accepted ", stream->accepted.size(),
                        ", responses ", stream->sink.responses().size(), "]");
      }
      FUZZ_CHECK(false, "streams hung after ", next, " of ", records.size(), " requests:", state);
    }
  }
  lock.unlock();
  for (auto& stream : streams) {
    if (!stream) continue;
    if (stream->session) {
      stream->session->OnStreamDone();  // gRPC's OnDone.
      FUZZ_CHECK(stream->session->finished(), "session not finished after Finish");
    }
    Verify(*stream);
  }
}

// Builders of seed inputs.
void AddRecord(std::string* out, int stream, const v1::StreamRequest& request) {
  google::protobuf::io::StringOutputStream raw(out);
  google::protobuf::io::CodedOutputStream coded(&raw);
  const uint8_t selector = static_cast<uint8_t>(stream);
  coded.WriteRaw(&selector, 1);
  const std::string bytes = request.SerializeAsString();
  coded.WriteVarint32(static_cast<uint32_t>(bytes.size()));
  coded.WriteString(bytes);
}

v1::StreamRequest Open(const std::string& model) {
  v1::StreamRequest request;
  request.mutable_open()->set_model(model);
  request.mutable_open()->set_session_tag("seed");
  return request;
}

v1::StreamRequest Frames(int count, bool offline, bool int16, bool tags, float base) {
  v1::StreamRequest request;
  v1::Frames* frames = request.mutable_frames();
  v1::Tensor* tensor = frames->mutable_tensor();
  tensor->set_dtype(int16 ? v1::INT16 : v1::FLOAT32);
  if (offline) {
    frames->set_layout(v1::Frames::OFFLINE);
    for (int64_t d : {1, 2, count}) tensor->add_shape(d);
  } else {
    for (int64_t d : {count, 1, 2}) tensor->add_shape(d);
  }
  for (int i = 0; i < 2 * count; ++i) {
    const float v = base + 0.5f * static_cast<float>(i);
    if (int16) {
      const int16_t pcm = static_cast<int16_t>(v * 1000.f);
      tensor->mutable_data()->append(reinterpret_cast<const char*>(&pcm), 2);
    } else {
      tensor->mutable_data()->append(reinterpret_cast<const char*>(&v), 4);
    }
  }
  for (int i = 0; tags && i < count; ++i) frames->add_tags(absl::StrCat("t", i));
  return request;
}

v1::StreamRequest Reset() {
  v1::StreamRequest request;
  request.mutable_reset();
  return request;
}

v1::StreamRequest Close() {
  v1::StreamRequest request;
  request.mutable_close();
  return request;
}

}  // namespace

std::vector<std::string> Seeds() {
  std::vector<std::string> seeds;
  std::string s;
  // Two interleaved sessions: stacked, offline, INT16, tagged frames, a reset, a bad frame.
  AddRecord(&s, 0, Open(kModel));
  AddRecord(&s, 1, Open(kModel));
  AddRecord(&s, 0, Frames(3, false, false, true, 0.f));
  AddRecord(&s, 1, Frames(2, true, false, false, 1.f));
  AddRecord(&s, 0, Reset());
  AddRecord(&s, 1, Frames(4, false, true, false, -1.f));
  v1::StreamRequest bad = Frames(2, false, false, false, 0.f);
  bad.mutable_frames()->mutable_tensor()->mutable_data()->pop_back();
  AddRecord(&s, 0, bad);
  AddRecord(&s, 0, Frames(5, true, false, true, 2.f));
  AddRecord(&s, 1, Close());
  seeds.push_back(s);
  // Many frames in one request (the queue fills; reading stops and resumes), half-close.
  s.clear();
  AddRecord(&s, 0, Open(kModel));
  AddRecord(&s, 0, Frames(40, false, false, false, 0.25f));
  AddRecord(&s, 0, v1::StreamRequest());  // Empty request: an in-stream error.
  AddRecord(&s, 0, Frames(1, false, false, false, 3.f));
  seeds.push_back(s);
  // Frames before Open; an unknown model; a second Open.
  s.clear();
  AddRecord(&s, 0, Frames(1, false, false, false, 0.f));
  AddRecord(&s, 1, Open("nope"));
  seeds.push_back(s);
  s.clear();
  AddRecord(&s, 0, Open(kModel));
  AddRecord(&s, 0, Frames(6, false, false, false, 0.f));
  AddRecord(&s, 0, Open(kModel));
  AddRecord(&s, 0, Frames(1, false, false, false, 0.f));
  seeds.push_back(s);
  return seeds;
}

}  // namespace sluice::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  sluice::fuzz::WriteSeedsIfAsked();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::fuzz::Run(data, size);
  return 0;
}
