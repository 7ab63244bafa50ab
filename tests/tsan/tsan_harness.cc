// The serving core under concurrency, driven the way gRPC drives it, without gRPC: Sessions
// (server/session), two Scheduler instances (server/scheduler) on the CPU backend, one of which
// loses its "device" after a few dozen steps and falls back to a new CPU backend with every
// session migrating (runtime/fault_injecting_backend.h), and the metrics they update.
//
// Threads: each scheduler's own; a pool of transport threads that complete the reads and writes
// sessions start, in whatever thread and order they come (as gRPC's callback threads do: a
// stream's read and write completions may run at once on different threads), handling each
// request as the StreamReactor does; opener threads that start sessions; a canceller that cuts
// some sessions short (client cancel, idle reaping) at random moments; and an observer polling
// what the admin endpoint and the registry read (metrics, scheduler counters, session state).
//
// Checks, after every thread is joined: every stream finished exactly once; streams never cut
// short ended OK with exactly the outputs the session gets alone on a CPU backend (bitwise, in
// seq order, tags included), every ResetDone and in-stream Error; cut-short streams ended OK or
// CANCELLED/DEADLINE_EXCEEDED with a prefix of those outputs (a stream whose requests end
// without Close ends INVALID_ARGUMENT after all its outputs). Exit 0 when all hold. The replay
// oracle is tests/common/stream_oracle.h, shared with the session fuzzer.
//
// Built in every build (ctest runs `tsan_harness --sessions=60` as a unit test); its purpose is
// `scripts/sanitize.sh thread`, where it runs under TSan with tests/tsan/absl_tsan_annotations.cc
// making Abseil's mutexes visible. --self-test=<case> runs one check of that annotation layer
// instead: "race" and "wrong_lock" must be reported, "mutex", "await", "condvar", "status" and
// "reader" must not.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/fault_injecting_backend.h"
#include "runtime/onnx/importer.h"
#include "runtime/streaming/transform.h"
#include "server/admin/metrics.h"
#include "server/api/frame_codec.h"
#include "server/scheduler/scheduler.h"
#include "server/session/session.h"
#include "sluice/v1/streaming.pb.h"
#include "tests/common/stream_oracle.h"
#include "tests/fuzz/tiny_model.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SLUICE_TSAN 1
#endif
#endif

#ifdef SLUICE_TSAN
namespace sluice_tsan {
// Defined by absl_tsan_annotations.cc (linked into TSan builds).
extern std::atomic<bool> annotations_active;
}  // namespace sluice_tsan
#endif

namespace sluice::tsan {
namespace {

#define HARNESS_CHECK(cond, ...)                                                              \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "tsan_harness: %s:%d: check failed: %s: %s\n", __FILE__, __LINE__, \
                   #cond, absl::StrCat(__VA_ARGS__).c_str());                                 \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

struct Options {
  int sessions = 400;
  int concurrency = 24;
  int transport_threads = 4;
  uint32_t seed = 1;
};

// ---------------------------------------------------------------------------------------------
// What a client sends on one stream after Open.
struct Request {
  enum class Kind { kFrames, kBadFrames, kReset, kEmpty, kClose } kind = Kind::kFrames;
  v1::StreamRequest proto;
};

std::vector<Request> MakeScript(std::mt19937& rng) {
  std::vector<Request> script;
  const int length = std::uniform_int_distribution<int>(1, 14)(rng);
  for (int i = 0; i < length; ++i) {
    Request request;
    const int pick = std::uniform_int_distribution<int>(0, 19)(rng);
    if (pick < 14) {
      const int count = std::uniform_int_distribution<int>(1, 5)(rng);
      const bool offline = pick % 3 == 0;
      const bool int16 = pick == 5;
      const bool tags = pick % 2 == 1;
      v1::Frames* frames = request.proto.mutable_frames();
      v1::Tensor* tensor = frames->mutable_tensor();
      tensor->set_dtype(int16 ? v1::INT16 : v1::FLOAT32);
      if (offline) {
        frames->set_layout(v1::Frames::OFFLINE);
        for (int64_t d : {1, 2, count}) tensor->add_shape(d);
      } else {
        for (int64_t d : {count, 1, 2}) tensor->add_shape(d);
      }
      std::uniform_real_distribution<float> value(-2.f, 2.f);
      for (int e = 0; e < 2 * count; ++e) {
        const float v = value(rng);
        if (int16) {
          const auto pcm = static_cast<int16_t>(v * 8000.f);
          tensor->mutable_data()->append(reinterpret_cast<const char*>(&pcm), 2);
        } else {
          tensor->mutable_data()->append(reinterpret_cast<const char*>(&v), 4);
        }
      }
      for (int t = 0; tags && t < count; ++t) frames->add_tags(absl::StrCat("tag", i, ".", t));
    } else if (pick < 16) {
      request.kind = Request::Kind::kReset;
      request.proto.mutable_reset();
    } else if (pick < 18) {
      request.kind = Request::Kind::kBadFrames;
      v1::Tensor* tensor = request.proto.mutable_frames()->mutable_tensor();
      tensor->set_dtype(v1::FLOAT32);
      for (int64_t d : {1, 1, 2}) tensor->add_shape(d);
      tensor->set_data("short");
    } else {
      request.kind = Request::Kind::kEmpty;
    }
    script.push_back(std::move(request));
  }
  if (std::uniform_int_distribution<int>(0, 1)(rng) == 0) {
    Request close;
    close.kind = Request::Kind::kClose;
    close.proto.mutable_close();
    script.push_back(std::move(close));
  }
  return script;
}

// ---------------------------------------------------------------------------------------------
class Transport;

// One stream: the transport's sink for its session, what the reactor accepted, and what the
// stream received.
struct Conn : public server::StreamSink {
  Conn(int id_in, Transport* transport_in) : id(id_in), transport(transport_in) {}

  void StartRead() override;
  void StartWrite(const v1::StreamResponse* response) override;
  void Finish(const absl::Status& status) override;

  const int id;
  Transport* const transport;
  std::shared_ptr<server::Session> session;
  std::vector<Request> script;
  int fail_write_at = -1;  // Complete this write (0-based) with ok=false: the client vanished.
  bool cancel_planned = false;

  // Reactor side: touched only by the thread completing this stream's read (reads are never
  // concurrent); ordered from one read to the next by the transport queue.
  size_t next_request = 0;
  uint64_t next_seq = 0;
  std::vector<stream_testing::Accepted> accepted;
  std::vector<stream_testing::StreamError> errors;
  bool close_sent = false;

  // Written by the sink methods (any thread) and the write completions.
  std::mutex mu;
  std::vector<v1::StreamResponse> responses;
  int writes_started = 0;
  bool read_pending = false;
  bool write_failed = false;
  int finishes = 0;
  absl::Status status;
  bool done = false;  // OnStreamDone delivered.
};

// The completion queue and its threads: plays gRPC for every stream.
class Transport {
 public:
  struct Event {
    enum class Kind { kRead, kWrite, kDone } kind;
    Conn* conn;
  };

  Transport(const streaming::Program& program, int threads, uint32_t seed) : program_(program) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, i, seed] { Loop(seed * 7919u + static_cast<uint32_t>(i)); });
    }
  }

  void Push(Event event) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(event);
    }
    cv_.notify_one();
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& thread : threads_) thread.join();
  }

  // Blocks until `count` streams are done.
  void WaitDone(int count) {
    std::unique_lock<std::mutex> lock(mu_);
    const bool ok =
        done_cv_.wait_for(lock, std::chrono::minutes(5), [&] { return done_ >= count; });
    HARNESS_CHECK(ok, "only ", done_, " of ", count, " streams finished (a hang?)");
  }
  int done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

 private:
  void Loop(uint32_t seed) {
    std::mt19937 rng(seed);
    while (true) {
      Event event;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;
        // Not always the oldest: completions arrive in no particular order across streams.
        const size_t pick = queue_.size() > 1 && rng() % 4 == 0 ? rng() % queue_.size() : 0;
        event = queue_[pick];
        queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(pick));
      }
      if (rng() % 8 == 0) std::this_thread::yield();
      switch (event.kind) {
        case Event::Kind::kRead:
          CompleteRead(*event.conn);
          break;
        case Event::Kind::kWrite:
          CompleteWrite(*event.conn);
          break;
        case Event::Kind::kDone: {
          bool read_pending;
          {
            std::lock_guard<std::mutex> lock(event.conn->mu);
            read_pending = event.conn->read_pending;
          }
          if (read_pending) {  // gRPC calls OnDone only once the failed read has completed.
            Push(event);
            break;
          }
          event.conn->session->OnStreamDone();  // gRPC's OnDone after Finish.
          {
            std::lock_guard<std::mutex> lock(event.conn->mu);
            event.conn->done = true;
          }
          {
            std::lock_guard<std::mutex> lock(mu_);
            ++done_;
          }
          done_cv_.notify_all();
          break;
        }
      }
    }
  }

  void CompleteWrite(Conn& conn) {
    bool ok = true;
    {
      std::lock_guard<std::mutex> lock(conn.mu);
      if (conn.fail_write_at >= 0 && conn.writes_started > conn.fail_write_at) {
        ok = false;
        conn.write_failed = true;
      }
    }
    conn.session->OnWriteDone(ok);
  }

  // StreamReactor::OnReadDone + HandleRequest.
  void CompleteRead(Conn& conn) {
    server::Session& session = *conn.session;
    bool finished;
    {
      std::lock_guard<std::mutex> lock(conn.mu);
      conn.read_pending = false;
      finished = conn.finishes > 0;
    }
    if (finished || conn.next_request >= conn.script.size()) {
      // The client half-closes, or the stream already finished and the read fails.
      session.OnReadClosed();  // The client half-closes.
      return;
    }
    const Request& request = conn.script[conn.next_request++];
    auto respond_error = [&](const absl::Status& status) {
      conn.errors.emplace_back(static_cast<int>(status.code()), conn.next_seq);
      session.RespondError(status);
    };
    switch (request.proto.kind_case()) {
      case v1::StreamRequest::kFrames: {
        std::vector<std::vector<float>> frames;
        const absl::Status status =
            server::DecodeFrames(request.proto.frames(), program_.input, &frames);
        if (!status.ok()) {
          HARNESS_CHECK(request.kind == Request::Kind::kBadFrames, status.ToString());
          respond_error(status);
          break;
        }
        HARNESS_CHECK(request.kind == Request::Kind::kFrames, "bad frames accepted");
        std::vector<std::string> tags(request.proto.frames().tags().begin(),
                                      request.proto.frames().tags().end());
        std::vector<stream_testing::Accepted> accepted;
        for (size_t i = 0; i < frames.size(); ++i) {
          stream_testing::Accepted item;
          item.seq = conn.next_seq + i;
          item.frame = frames[i];
          if (i < tags.size()) item.tag = tags[i];
          accepted.push_back(std::move(item));
        }
        const size_t count = frames.size();
        // As the reactor does: this transport thread may run a lone session's turn itself.
        if (!session.EnqueueFrames(std::move(frames), std::move(tags), /*may_step_here=*/true)) {
          // A cancel closed the session first: the reactor reports it in-stream.
          respond_error(absl::UnavailableError("the session is closing"));
          break;
        }
        for (auto& item : accepted) conn.accepted.push_back(std::move(item));
        conn.next_seq += count;
        break;
      }
      case v1::StreamRequest::kReset: {
        stream_testing::Accepted reset;
        reset.reset = true;
        reset.seq = conn.next_seq;
        conn.accepted.push_back(std::move(reset));
        session.EnqueueReset();
        break;
      }
      case v1::StreamRequest::kClose:
        conn.close_sent = true;
        session.EnqueueClose(absl::OkStatus());
        break;
      default:
        respond_error(absl::InvalidArgumentError("empty StreamRequest"));
        break;
    }
    session.OnReadDone();
  }

  const streaming::Program& program_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable done_cv_;
  std::deque<Event> queue_;
  bool stopping_ = false;
  int done_ = 0;
  std::vector<std::thread> threads_;
};

void Conn::StartRead() {
  {
    std::lock_guard<std::mutex> lock(mu);
    HARNESS_CHECK(!read_pending && finishes == 0, "stream ", id, ": bad StartRead");
    read_pending = true;
  }
  transport->Push({Transport::Event::Kind::kRead, this});
}

void Conn::StartWrite(const v1::StreamResponse* response) {
  {
    std::lock_guard<std::mutex> lock(mu);
    HARNESS_CHECK(finishes == 0, "stream ", id, ": StartWrite after Finish");
    responses.push_back(*response);
    ++writes_started;
  }
  transport->Push({Transport::Event::Kind::kWrite, this});
}

void Conn::Finish(const absl::Status& final_status) {
  {
    std::lock_guard<std::mutex> lock(mu);
    ++finishes;
    status = final_status;
  }
  transport->Push({Transport::Event::Kind::kDone, this});
}

// ---------------------------------------------------------------------------------------------
// Checks one finished stream; returns whether it was cut short.
bool Verify(const Conn& conn, Backend& reference) {
  HARNESS_CHECK(conn.finishes == 1 && conn.done, "stream ", conn.id, ": ", conn.finishes,
                " Finish calls, done ", conn.done);
  const bool cut_short = conn.write_failed || conn.cancel_planned;
  const absl::StatusCode code = conn.status.code();
  // A stream whose requests end without Close gets its outputs, then INVALID_ARGUMENT.
  const absl::StatusCode normal =
      conn.close_sent ? absl::StatusCode::kOk : absl::StatusCode::kInvalidArgument;
  if (cut_short) {
    HARNESS_CHECK(code == normal || code == absl::StatusCode::kCancelled ||
                      code == absl::StatusCode::kDeadlineExceeded,
                  "stream ", conn.id, " (cut short) ended with ", conn.status.ToString());
  } else {
    HARNESS_CHECK(code == normal, "stream ", conn.id, " ended with ", conn.status.ToString());
  }
  const absl::Status checked = stream_testing::CheckStream(
      reference, conn.accepted, conn.errors, conn.responses,
      cut_short ? stream_testing::StreamEnd::kCutShort : stream_testing::StreamEnd::kComplete);
  HARNESS_CHECK(checked.ok(), "stream ", conn.id, ": ", checked.ToString());
  return cut_short;
}

int RunHarness(const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  auto graph = onnx_import::ImportModel(fuzz::TinyConvModel(), "tiny");
  HARNESS_CHECK(graph.ok(), graph.status().ToString());
  auto built = streaming::BuildProgram(*graph, {});
  HARNESS_CHECK(built.ok(), built.status().ToString());
  auto program = std::make_shared<const streaming::Program>(*std::move(built));

  server::Metrics metrics;
  server::ModelMetrics* model_metrics = metrics.ForModel("tiny");
  BackendOptions backend_options;
  backend_options.max_batch = 8;
  auto make_cpu = [program, backend_options]() -> absl::StatusOr<std::unique_ptr<Backend>> {
    auto backend = cpu::CpuBackend::Create(program, backend_options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(*std::move(backend));
  };
  std::vector<std::unique_ptr<server::Scheduler>> schedulers;
  for (int i = 0; i < 2; ++i) {
    server::SchedulerOptions scheduler_options;
    scheduler_options.model = "tiny";
    scheduler_options.max_batch = backend_options.max_batch;
    scheduler_options.snapshot_interval_frames = 5;
    auto primary = make_cpu();
    HARNESS_CHECK(primary.ok(), primary.status().ToString());
    std::unique_ptr<Backend> backend = *std::move(primary);
    if (i == 1) {
      // Instance 1 loses its device mid-run: every session moves to a CPU fallback.
      backend = std::make_unique<FaultInjectingBackend>(std::move(backend), 40);
      scheduler_options.make_fallback = make_cpu;
      scheduler_options.max_queue_delay = absl::Microseconds(200);
    }
    schedulers.push_back(std::make_unique<server::Scheduler>(scheduler_options, program,
                                                             std::move(backend), model_metrics));
    schedulers.back()->Start();
  }

  Transport transport(*program, options.transport_threads, options.seed);
  std::vector<std::unique_ptr<Conn>> conns;
  std::mt19937 rng(options.seed);
  for (int i = 0; i < options.sessions; ++i) {
    auto conn = std::make_unique<Conn>(i, &transport);
    conn->script = MakeScript(rng);
    if (rng() % 10 == 0) conn->fail_write_at = static_cast<int>(rng() % 4);
    conn->cancel_planned = rng() % 8 == 0;
    conns.push_back(std::move(conn));
  }

  std::atomic<bool> stop_observing{false};
  std::atomic<int> started{0};
  // The canceller: cancels sessions marked for it once they are running (OnCancel, or the
  // registry reaping an idle session).
  std::thread canceller([&] {
    std::mt19937 local(options.seed + 17);
    int next = 0;
    while (next < options.sessions) {
      const int limit = started.load();
      for (; next < limit; ++next) {
        Conn& conn = *conns[next];
        if (!conn.cancel_planned) continue;
        if (local() % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(local() % 300));
        conn.session->EnqueueClose(local() % 2 == 0 ? absl::CancelledError("the client cancelled")
                                                    : absl::DeadlineExceededError("idle"),
                                   /*drop_pending=*/true);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  });
  // The observer: what /metrics, /readyz and the registry's reaper read while all this runs.
  std::thread observer([&] {
    std::mt19937 local(options.seed + 31);
    while (!stop_observing.load()) {
      const int limit = started.load();
      if (limit > 0) {
        server::Session& session = *conns[local() % limit]->session;
        (void)session.next_seq();
        (void)session.last_activity();
        (void)session.finished();
      }
      for (auto& scheduler : schedulers) {
        (void)scheduler->steps();
        (void)scheduler->frames();
        (void)scheduler->backend_name();
        (void)scheduler->degraded_reason();
      }
      HARNESS_CHECK(!metrics.RenderPrometheus().empty(), "empty metrics");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });

  // Openers: keep `concurrency` streams open, starting each on an opener thread (the reactor's
  // HandleOpen runs on a gRPC thread too).
  server::SessionLimits limits;
  limits.queue_frames = 3;
  limits.outbox_frames = 6;
  limits.max_frames_per_response = 4;
  std::mutex open_mu;
  int next_open = 0;
  auto opener = [&] {
    while (true) {
      int index;
      {
        std::lock_guard<std::mutex> lock(open_mu);
        if (next_open >= options.sessions) return;
        // Stay within the concurrency budget: wait for earlier streams to finish.
        if (next_open - transport.done() >= options.concurrency) {
          index = -1;
        } else {
          index = next_open++;
        }
      }
      if (index < 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        continue;
      }
      Conn& conn = *conns[index];
      conn.session = std::make_shared<server::Session>(absl::StrCat("s", index), "tiny", "",
                                                       schedulers[index % 2].get(), &conn, limits);
      v1::StreamResponse opened;
      opened.mutable_opened()->set_session_id(conn.session->id());
      *opened.mutable_opened()->mutable_input() = server::ToTensorSpec(program->input);
      // Published before Start so the canceller and observer only see started sessions.
      conn.session->Start(std::move(opened));
      int expected = index;
      while (!started.compare_exchange_weak(expected, index + 1)) {
        if (expected > index) break;
        expected = index;
        std::this_thread::yield();
      }
    }
  };
  std::vector<std::thread> openers;
  for (int i = 0; i < 2; ++i) openers.emplace_back(opener);
  for (std::thread& thread : openers) thread.join();
  transport.WaitDone(options.sessions);
  canceller.join();
  stop_observing.store(true);
  observer.join();
  transport.Stop();
  for (auto& scheduler : schedulers) scheduler->Stop();

  BackendOptions reference_options;
  reference_options.max_batch = 1;
  auto reference = cpu::CpuBackend::Create(program, reference_options);
  HARNESS_CHECK(reference.ok(), reference.status().ToString());
  int cut_short = 0;
  for (auto& conn : conns) cut_short += Verify(*conn, **reference) ? 1 : 0;
  HARNESS_CHECK(schedulers[1]->degraded_reason() != "" || schedulers[1]->steps() < 40,
                "instance 1 never fell back after its device fault");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "tsan_harness: %d streams (%d cut short) on 2 instances, %lld + %lld steps, fallback: %s; "
      "all checks passed in %.1f s\n",
      options.sessions, cut_short, static_cast<long long>(schedulers[0]->steps()),
      static_cast<long long>(schedulers[1]->steps()),
      schedulers[1]->degraded_reason().empty() ? "no" : "yes", seconds);
  return 0;
}

// ---------------------------------------------------------------------------------------------
// Checks of the annotation layer: a TSan build must report the first two and none of the rest.
int SelfTest(const std::string& name) {
  constexpr int kIterations = 20000;
  int plain = 0;
  absl::Mutex mu;
  absl::Mutex other_mu;
  auto run_two = [](const std::function<void()>& a, const std::function<void()>& b) {
    std::thread ta(a);
    std::thread tb(b);
    ta.join();
    tb.join();
  };
  if (name == "race") {  // No lock at all.
    run_two(
        [&] {
          for (int i = 0; i < kIterations; ++i) plain = plain + 1;
        },
        [&] {
          for (int i = 0; i < kIterations; ++i) plain = plain + 1;
        });
  } else if (name == "wrong_lock") {  // Each thread holds a different mutex.
    run_two(
        [&] {
          for (int i = 0; i < kIterations; ++i) {
            absl::MutexLock lock(&mu);
            plain = plain + 1;
          }
        },
        [&] {
          for (int i = 0; i < kIterations; ++i) {
            absl::MutexLock lock(&other_mu);
            plain = plain + 1;
          }
        });
  } else if (name == "mutex") {
    auto work = [&] {
      for (int i = 0; i < kIterations; ++i) {
        absl::MutexLock lock(&mu);
        plain = plain + 1;
      }
    };
    run_two(work, work);
    HARNESS_CHECK(plain == 2 * kIterations, "lost updates: ", plain);
  } else if (name == "reader") {  // Writers and readers of a value published under the lock.
    std::vector<int> data(16, 0);
    run_two(
        [&] {
          for (int i = 1; i <= kIterations / 10; ++i) {
            absl::MutexLock lock(&mu);
            for (int& v : data) v = i;
          }
        },
        [&] {
          for (int i = 0; i < kIterations / 10; ++i) {
            absl::ReaderMutexLock lock(&mu);
            for (int v : data) HARNESS_CHECK(v == data[0], "torn read");
          }
        });
  } else if (name == "await") {  // Hand-offs through Await and AwaitWithTimeout.
    std::deque<std::unique_ptr<std::string>> queue;
    run_two(
        [&] {
          for (int i = 0; i < kIterations / 10; ++i) {
            auto item = std::make_unique<std::string>(absl::StrCat("item", i));
            absl::MutexLock lock(&mu);
            queue.push_back(std::move(item));
          }
        },
        [&] {
          for (int i = 0; i < kIterations / 10; ++i) {
            absl::MutexLock lock(&mu);
            auto nonempty = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !queue.empty(); };
            if (i % 2 == 0) {
              mu.Await(absl::Condition(&nonempty));
            } else {
              while (!mu.AwaitWithTimeout(absl::Condition(&nonempty), absl::Milliseconds(1))) {
              }
            }
            std::unique_ptr<std::string> item = std::move(queue.front());
            queue.pop_front();
            HARNESS_CHECK(*item == absl::StrCat("item", i), "out of order");
          }
        });
  } else if (name == "condvar") {
    absl::CondVar cv;
    bool ready = false;
    std::string payload;
    run_two(
        [&] {
          payload = "written before the signal";
          absl::MutexLock lock(&mu);
          ready = true;
          cv.Signal();
        },
        [&] {
          absl::MutexLock lock(&mu);
          while (!ready) cv.Wait(&mu);
          HARNESS_CHECK(payload == "written before the signal", "payload");
        });
  } else if (name == "status") {
    // A non-OK status shared by two threads that each take a reference under the lock, read it
    // after unlocking, and drop it: whichever drops the last reference frees the rep while the
    // other's read is ordered before only by the reference count.
    for (int round = 0; round < 200; ++round) {
      absl::Status shared = absl::CancelledError(absl::StrCat("cancelled ", round));
      auto reader = [&] {
        absl::Status local;
        {
          absl::MutexLock lock(&mu);
          local = shared;
        }
        // OK when the main thread reset it first.
        HARNESS_CHECK(local.ok() || local.message() == absl::StrCat("cancelled ", round),
                      "message");
      };
      std::thread ta(reader);
      std::thread tb(reader);
      {
        absl::MutexLock lock(&mu);
        shared = absl::OkStatus();
      }
      ta.join();
      tb.join();
    }
  } else {
    std::fprintf(stderr, "tsan_harness: unknown self-test '%s'\n", name.c_str());
    return 2;
  }
  std::printf("tsan_harness: self-test %s ran\n", name.c_str());
  return 0;
}

}  // namespace
}  // namespace sluice::tsan

int main(int argc, char** argv) {
  using sluice::tsan::Options;
  Options options;
  std::string self_test;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](const char* flag, auto* out) {
      const std::string prefix = absl::StrCat("--", flag, "=");
      if (arg.rfind(prefix, 0) != 0) return false;
      if (!absl::SimpleAtoi(arg.substr(prefix.size()), out)) {
        std::fprintf(stderr, "tsan_harness: bad value in %s\n", arg.c_str());
        std::exit(2);
      }
      return true;
    };
    if (arg.rfind("--self-test=", 0) == 0) {
      self_test = arg.substr(12);
    } else if (!value("sessions", &options.sessions) &&
               !value("concurrency", &options.concurrency) &&
               !value("transport_threads", &options.transport_threads) &&
               !value("seed", &options.seed)) {
      std::fprintf(stderr,
                   "usage: tsan_harness [--sessions=N] [--concurrency=N] [--transport_threads=N] "
                   "[--seed=N] | --self-test=race|wrong_lock|mutex|reader|await|condvar|status\n");
      return 2;
    }
  }
#ifdef SLUICE_TSAN
  {
    absl::Mutex probe;
    absl::MutexLock lock(&probe);
  }
  if (!sluice_tsan::annotations_active.load()) {
    std::fprintf(stderr, "tsan_harness: the Abseil TSan annotations are not active\n");
    return 1;
  }
#endif
  if (!self_test.empty()) return sluice::tsan::SelfTest(self_test);
  return sluice::tsan::RunHarness(options);
}
