// Unit tests of the Scheduler (server/scheduler/scheduler.h) driving Sessions
// (server/session/session.h), with a fake Backend that records every call and a fake StreamSink
// that plays the transport. Deterministic: where batch composition is asserted, every session's
// entries are queued before the scheduler thread starts, so each turn's membership follows from
// the FIFO ready queue alone. The only waiting is for the scheduler thread's progress, by polling
// recorded state (1 ms naps, bounded by a generous deadline that only a hang would reach).
#include "server/scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/session/session.h"

namespace sluice::server {
namespace {

constexpr int64_t kFrameSize = 2;

// What the fake backend saw, shared with the test (the scheduler owns the backend).
struct BackendLog {
  struct StepRecord {
    std::vector<SlotId> slots;
    std::vector<float> first_values;  // frame[0] of each item, in batch order.
    std::thread::id thread;           // The thread that called Step.
  };

  absl::Mutex mu;
  std::vector<StepRecord> steps ABSL_GUARDED_BY(mu);
  // "alloc 3", "step 1,2", "reset 3", "free 3", "step-failed 1,2", in call order.
  std::vector<std::string> events ABSL_GUARDED_BY(mu);
  std::set<SlotId> live ABSL_GUARDED_BY(mu);
  std::vector<std::string> violations ABSL_GUARDED_BY(mu);
  // Step fails (and is not recorded in `steps`) when a frame's first value equals this.
  float poison = -12345.f;
  int max_slots = 1000;

  std::vector<StepRecord> Steps() {
    absl::MutexLock lock(&mu);
    return steps;
  }
  std::vector<std::string> Events() {
    absl::MutexLock lock(&mu);
    return events;
  }
  std::set<SlotId> Live() {
    absl::MutexLock lock(&mu);
    return live;
  }
  std::vector<std::string> Violations() {
    absl::MutexLock lock(&mu);
    return violations;
  }
  size_t StepCount() {
    absl::MutexLock lock(&mu);
    return steps.size();
  }
};

// A Backend whose output is input + 1 elementwise; every frame produces an output (no warm-up).
class FakeBackend : public Backend {
 public:
  FakeBackend(std::shared_ptr<const streaming::Program> program, std::shared_ptr<BackendLog> log)
      : program_(std::move(program)), log_(std::move(log)) {}

  std::string name() const override { return "fake"; }
  absl::Status Load(std::shared_ptr<const streaming::Program> program,
                    const BackendOptions& /*options*/) override {
    program_ = std::move(program);
    return absl::OkStatus();
  }
  const streaming::Program& program() const override { return *program_; }

  absl::StatusOr<SlotId> AllocateSlot() override {
    absl::MutexLock lock(&log_->mu);
    if (static_cast<int>(log_->live.size()) >= log_->max_slots) {
      log_->events.push_back("alloc-exhausted");
      return absl::ResourceExhaustedError("fake backend: no free slot");
    }
    const SlotId slot = next_slot_++;
    log_->live.insert(slot);
    log_->events.push_back(absl::StrCat("alloc ", slot));
    return slot;
  }
  absl::Status ResetSlot(SlotId slot) override {
    absl::MutexLock lock(&log_->mu);
    if (log_->live.count(slot) == 0) log_->violations.push_back(absl::StrCat("reset dead ", slot));
    log_->events.push_back(absl::StrCat("reset ", slot));
    return absl::OkStatus();
  }
  absl::Status FreeSlot(SlotId slot) override {
    absl::MutexLock lock(&log_->mu);
    if (log_->live.erase(slot) == 0) {
      log_->violations.push_back(absl::StrCat("free of a slot not live: ", slot));
    }
    log_->events.push_back(absl::StrCat("free ", slot));
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<uint8_t>> ExportSlot(SlotId /*slot*/) override {
    return absl::UnimplementedError("fake");
  }
  absl::Status ImportSlot(SlotId /*slot*/, absl::Span<const uint8_t> /*state*/) override {
    return absl::UnimplementedError("fake");
  }

  absl::Status Step(absl::Span<const StepItem> batch, absl::Span<float* const> outputs,
                    absl::Span<uint8_t> ready) override {
    absl::MutexLock lock(&log_->mu);
    BackendLog::StepRecord record;
    record.thread = std::this_thread::get_id();
    std::set<SlotId> seen;
    bool poisoned = false;
    for (const StepItem& item : batch) {
      if (!seen.insert(item.slot).second) {
        log_->violations.push_back(absl::StrCat("slot ", item.slot, " twice in one batch"));
      }
      if (log_->live.count(item.slot) == 0) {
        log_->violations.push_back(absl::StrCat("step of a slot not live: ", item.slot));
      }
      record.slots.push_back(item.slot);
      record.first_values.push_back(item.frame[0]);
      if (item.frame[0] == log_->poison) poisoned = true;
    }
    if (ready.size() < batch.size()) log_->violations.push_back("ready span too small");
    if (poisoned) {
      log_->events.push_back(absl::StrCat("step-failed ", absl::StrJoin(record.slots, ",")));
      return absl::DataLossError("fake device fell over");
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      for (int64_t e = 0; e < kFrameSize; ++e) {
        outputs[0][i * kFrameSize + e] = batch[i].frame[e] + 1.f;
      }
      ready[i] = 1;
    }
    log_->events.push_back(absl::StrCat("step ", absl::StrJoin(record.slots, ",")));
    log_->steps.push_back(std::move(record));
    return absl::OkStatus();
  }

 private:
  std::shared_ptr<const streaming::Program> program_;
  std::shared_ptr<BackendLog> log_;
  SlotId next_slot_ = 0;
};

// Plays the gRPC reactor: records each operation; write completions are delivered by the test
// (Harness::PumpTransport), never inline, as gRPC does.
class FakeSink : public StreamSink {
 public:
  void StartRead() override {
    absl::MutexLock lock(&mu_);
    CheckUsable("StartRead");
    if (read_pending_) violations_.push_back("StartRead with a read already pending");
    read_pending_ = true;
    ++reads_started_;
  }
  void StartWrite(const v1::StreamResponse* response) override {
    absl::MutexLock lock(&mu_);
    CheckUsable("StartWrite");
    if (write_pending_) violations_.push_back("StartWrite with a write already pending");
    write_pending_ = true;
    written_.push_back(*response);
  }
  void Finish(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    CheckUsable("Finish");
    if (write_pending_) violations_.push_back("Finish with a write pending");
    finished_ = true;
    status_ = status;
  }

  // Takes the pending write completion, if any (and acks are enabled).
  bool TakeWriteCompletion() {
    absl::MutexLock lock(&mu_);
    if (!write_pending_ || hold_writes_) return false;
    write_pending_ = false;
    return true;
  }
  // Takes the pending read (the test then delivers a request or a half-close).
  bool TakeRead() {
    absl::MutexLock lock(&mu_);
    if (!read_pending_) return false;
    read_pending_ = false;
    return true;
  }
  void set_hold_writes(bool hold) {
    absl::MutexLock lock(&mu_);
    hold_writes_ = hold;
  }
  bool read_pending() {
    absl::MutexLock lock(&mu_);
    return read_pending_;
  }
  bool finished() {
    absl::MutexLock lock(&mu_);
    return finished_;
  }
  absl::Status status() {
    absl::MutexLock lock(&mu_);
    return status_;
  }
  std::vector<v1::StreamResponse> written() {
    absl::MutexLock lock(&mu_);
    return written_;
  }
  std::vector<std::string> violations() {
    absl::MutexLock lock(&mu_);
    return violations_;
  }

 private:
  void CheckUsable(const char* op) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) violations_.push_back(absl::StrCat(op, " after Finish"));
  }

  absl::Mutex mu_;
  bool read_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_writes_ ABSL_GUARDED_BY(mu_) = false;
  int reads_started_ ABSL_GUARDED_BY(mu_) = 0;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::StreamResponse> written_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
};

// One output frame as the client would see it.
struct SeenOutput {
  uint64_t seq;
  std::vector<float> values;
};

std::vector<SeenOutput> OutputsOf(const std::vector<v1::StreamResponse>& written) {
  std::vector<SeenOutput> out;
  for (const v1::StreamResponse& r : written) {
    if (!r.has_outputs()) continue;
    const v1::Outputs& o = r.outputs();
    EXPECT_EQ(o.tensors_size(), 1);
    if (o.tensors_size() != 1) continue;
    const v1::Tensor& t = o.tensors(0);
    EXPECT_EQ(t.dtype(), v1::FLOAT32);
    EXPECT_EQ(t.shape_size(), 2);
    EXPECT_EQ(t.shape(0), o.count());
    EXPECT_EQ(t.shape(1), kFrameSize);
    EXPECT_EQ(t.data().size(), o.count() * kFrameSize * sizeof(float));
    for (uint32_t i = 0; i < o.count(); ++i) {
      SeenOutput s;
      s.seq = o.first_seq() + i;
      s.values.resize(kFrameSize);
      std::memcpy(s.values.data(), t.data().data() + i * kFrameSize * sizeof(float),
                  kFrameSize * sizeof(float));
      out.push_back(std::move(s));
    }
  }
  return out;
}

// Frame values encode (session, seq) so the backend log shows whose frame it stepped.
std::vector<float> FrameFor(int session, int seq) {
  return {static_cast<float>(1000 * session + seq), static_cast<float>(-seq)};
}

struct TestSession {
  std::unique_ptr<FakeSink> sink;
  std::shared_ptr<Session> session;
  int index = 0;
  bool stream_done = false;
};

// A scheduler on a fake backend plus sessions on it. Destruction stops the scheduler thread
// before the sinks go away.
class Harness {
 public:
  explicit Harness(int max_batch, SessionLimits limits = {},
                   absl::Duration max_queue_delay = absl::ZeroDuration())
      : limits_(limits) {
    auto program = std::make_shared<streaming::Program>();
    program->input.name = std::string("x");
    program->input.offline_shape = {-1, kFrameSize};
    program->input.time_axis = 0;
    program->input.frame_shape = {kFrameSize};
    program->input.frame_size = kFrameSize;
    program->outputs.push_back(program->input);
    log_ = std::make_shared<BackendLog>();
    SchedulerOptions options;
    options.model = "fake";
    options.max_batch = max_batch;
    options.max_queue_delay = max_queue_delay;
    std::shared_ptr<const streaming::Program> shared = std::move(program);
    scheduler_ = std::make_unique<Scheduler>(options, shared,
                                             std::make_unique<FakeBackend>(shared, log_), nullptr);
  }
  ~Harness() {
    scheduler_->Stop();
    for (auto& s : sessions_) {
      if (!s->stream_done) s->session->OnStreamDone();
    }
    scheduler_.reset();
  }

  BackendLog& log() { return *log_; }
  Scheduler& scheduler() { return *scheduler_; }
  void StartScheduler() { scheduler_->Start(); }

  // A new session, started (its Open queued), with its first read pending.
  TestSession& Open() {
    auto s = std::make_unique<TestSession>();
    s->index = static_cast<int>(sessions_.size());
    s->sink = std::make_unique<FakeSink>();
    s->session = std::make_shared<Session>(absl::StrCat("s", s->index), "fake", "",
                                           scheduler_.get(), s->sink.get(), limits_);
    v1::StreamResponse opened;
    opened.mutable_opened()->set_session_id(s->session->id());
    s->session->Start(std::move(opened));
    sessions_.push_back(std::move(s));
    return *sessions_.back();
  }

  // Delivers a Frames request with frames seq first..first+count-1 of `s`, as the transport
  // does: into the pending read, then OnReadDone. `may_step_here` as the native stream service
  // passes it (the test thread then plays the gRPC callback thread).
  void DeliverFrames(TestSession& s, int first, int count, bool may_step_here = false) {
    ASSERT_TRUE(s.sink->TakeRead()) << "no read pending on session " << s.index;
    std::vector<std::vector<float>> frames;
    for (int i = 0; i < count; ++i) frames.push_back(FrameFor(s.index, first + i));
    s.session->EnqueueFrames(std::move(frames), {}, may_step_here);
    s.session->OnReadDone();
  }
  void DeliverReset(TestSession& s) {
    ASSERT_TRUE(s.sink->TakeRead()) << "no read pending on session " << s.index;
    s.session->EnqueueReset();
    s.session->OnReadDone();
  }
  void DeliverClose(TestSession& s) {
    ASSERT_TRUE(s.sink->TakeRead()) << "no read pending on session " << s.index;
    s.session->EnqueueClose(absl::OkStatus());
    s.session->OnReadDone();
  }
  // After Finish, the reactor's OnDone.
  void StreamDone(TestSession& s) {
    s.stream_done = true;
    s.session->OnStreamDone();
  }

  // Completes every pending write (of sinks that do not hold them). True if any.
  bool PumpTransport() {
    bool any = false;
    for (auto& s : sessions_) {
      if (s->sink->TakeWriteCompletion()) {
        s->session->OnWriteDone(true);
        any = true;
      }
    }
    return any;
  }

  // Polls `done` while completing writes; fails the test after a deadline only a hang reaches.
  ::testing::AssertionResult WaitFor(const std::function<bool()>& done, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (true) {
      PumpTransport();
      if (done()) return ::testing::AssertionSuccess();
      if (std::chrono::steady_clock::now() > deadline) {
        return ::testing::AssertionFailure() << "timed out waiting for " << what;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

  ::testing::AssertionResult WaitForOutputs(TestSession& s, size_t count) {
    return WaitFor([&] { return OutputsOf(s.sink->written()).size() >= count; },
                   absl::StrCat(count, " outputs on session ", s.index));
  }

  void ExpectNoViolations() {
    for (const std::string& v : log_->Violations()) ADD_FAILURE() << "backend: " << v;
    for (auto& s : sessions_) {
      for (const std::string& v : s->sink->violations()) {
        ADD_FAILURE() << "sink of session " << s->index << ": " << v;
      }
    }
  }

  // The slot the scheduler gave the session (-1 before its Open is processed or after close).
  SlotId SlotOf(TestSession& s) { return s.session->slot(); }

 private:
  SessionLimits limits_;
  std::shared_ptr<BackendLog> log_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<std::unique_ptr<TestSession>> sessions_;
};

// The outputs of session `s` must be seqs first..first+n-1 in order, each equal to its frame + 1.
void ExpectOutputs(TestSession& s, int n, int seq_offset = 0) {
  const std::vector<SeenOutput> outputs = OutputsOf(s.sink->written());
  ASSERT_EQ(static_cast<int>(outputs.size()), n) << "session " << s.index;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(outputs[i].seq, static_cast<uint64_t>(i + seq_offset)) << "session " << s.index;
    const std::vector<float> frame = FrameFor(s.index, i + seq_offset);
    EXPECT_EQ(outputs[i].values, (std::vector<float>{frame[0] + 1, frame[1] + 1}))
        << "session " << s.index << " output " << i;
  }
}

// For every step, the frame of session `s` in it (if any) is identified by its encoded value;
// returns the seqs of `s` in step order and checks a session is never twice in a step.
std::vector<int> SeqsInStepOrder(const std::vector<BackendLog::StepRecord>& steps, int session) {
  std::vector<int> seqs;
  for (const auto& step : steps) {
    int mine = 0;
    for (float v : step.first_values) {
      const int value = static_cast<int>(v);
      if (value / 1000 == session) {
        seqs.push_back(value % 1000);
        ++mine;
      }
    }
    EXPECT_LE(mine, 1) << "session " << session << " has " << mine << " frames in one step";
  }
  return seqs;
}

std::vector<int> Iota(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

TEST(SchedulerTest, SessionsWithQueuedFramesFormFullBatchesOneFramePerSessionPerStep) {
  constexpr int kSessions = 5;
  constexpr int kFrames = 6;
  Harness h(/*max_batch=*/256);
  std::vector<TestSession*> sessions;
  for (int i = 0; i < kSessions; ++i) sessions.push_back(&h.Open());
  for (TestSession* s : sessions) ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(*s, 0, kFrames));
  h.StartScheduler();
  for (TestSession* s : sessions) ASSERT_TRUE(h.WaitForOutputs(*s, kFrames));

  const auto steps = h.log().Steps();
  ASSERT_EQ(steps.size(), static_cast<size_t>(kFrames))
      << "expected one step per frame index, each batching all sessions";
  for (const auto& step : steps) EXPECT_EQ(step.slots.size(), static_cast<size_t>(kSessions));
  for (TestSession* s : sessions) {
    EXPECT_EQ(SeqsInStepOrder(steps, s->index), Iota(kFrames)) << "session " << s->index;
    ExpectOutputs(*s, kFrames);
    const auto written = s->sink->written();
    ASSERT_FALSE(written.empty());
    EXPECT_TRUE(written.front().has_opened()) << "Opened must be the first response";
  }
  EXPECT_EQ(h.scheduler().frames(), kSessions * kFrames);
  EXPECT_EQ(h.scheduler().steps(), kFrames);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, MaxBatchCapsTheBatch) {
  constexpr int kSessions = 7;
  constexpr int kFrames = 4;
  constexpr int kMaxBatch = 3;
  Harness h(kMaxBatch);
  std::vector<TestSession*> sessions;
  for (int i = 0; i < kSessions; ++i) sessions.push_back(&h.Open());
  for (TestSession* s : sessions) ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(*s, 0, kFrames));
  h.StartScheduler();
  for (TestSession* s : sessions) ASSERT_TRUE(h.WaitForOutputs(*s, kFrames));

  const auto steps = h.log().Steps();
  size_t total = 0;
  size_t largest = 0;
  for (const auto& step : steps) {
    EXPECT_LE(step.slots.size(), static_cast<size_t>(kMaxBatch));
    total += step.slots.size();
    largest = std::max(largest, step.slots.size());
  }
  EXPECT_EQ(total, static_cast<size_t>(kSessions * kFrames));
  EXPECT_EQ(largest, static_cast<size_t>(kMaxBatch));
  // Work-conserving: with 7 sessions always ready the batches stay (nearly all) full.
  EXPECT_LE(steps.size(), static_cast<size_t>(kSessions * kFrames / kMaxBatch + 3));
  for (TestSession* s : sessions) {
    EXPECT_EQ(SeqsInStepOrder(steps, s->index), Iota(kFrames)) << "session " << s->index;
    ExpectOutputs(*s, kFrames);
  }
  h.ExpectNoViolations();
}

// Delivered as the stream service does (may_step_here): a lone session's frames go both ways,
// on the delivering thread when the backend is idle and through the scheduler thread otherwise.
TEST(SchedulerTest, OutputsComeBackInOrderAcrossRequestsWithTheRightSeqs) {
  Harness h(/*max_batch=*/16);
  h.StartScheduler();
  TestSession& s = h.Open();
  int sent = 0;
  for (int request = 0; request < 5; ++request) {
    const int count = 1 + request;  // 1, 2, 3, 4, 5 frames.
    ASSERT_TRUE(h.WaitFor([&] { return s.sink->read_pending(); }, "a pending read"));
    ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, sent, count, /*may_step_here=*/true));
    sent += count;
  }
  ASSERT_TRUE(h.WaitForOutputs(s, sent));
  ExpectOutputs(s, sent);
  const auto steps = h.log().Steps();
  EXPECT_EQ(steps.size(), static_cast<size_t>(sent));  // One session: one frame per step.
  EXPECT_EQ(SeqsInStepOrder(steps, s.index), Iota(sent));
  h.ExpectNoViolations();
}

TEST(SchedulerTest, LoneSessionFrameIsSteppedOnTheDeliveringThreadWhenTheBackendIsIdle) {
  Harness h(/*max_batch=*/16);
  h.StartScheduler();
  TestSession& s = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return !s.sink->written().empty(); }, "Opened"));
  // The last turn stepped no frame (it was the Open): the first frame goes to the scheduler.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 0, 1, /*may_step_here=*/true));
  // steps() counts a turn once its token is given back: the backend is idle after this.
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler().steps() == 1; }, "the first step"));
  h.PumpTransport();  // Completes output 0's write, so output 1 can be written at once.
  // Now the last turn stepped one frame of this session alone: the next one runs right here,
  // and its output is written before EnqueueFrames returns.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 1, 1, /*may_step_here=*/true));
  EXPECT_EQ(OutputsOf(s.sink->written()).size(), 2u);
  const auto steps = h.log().Steps();
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_NE(steps[0].thread, std::this_thread::get_id());
  EXPECT_EQ(steps[1].thread, std::this_thread::get_id());
  ASSERT_TRUE(h.WaitForOutputs(s, 2));
  ExpectOutputs(s, 2);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, FramesOfSessionsTakingTurnsAreSteppedByTheSchedulerThread) {
  Harness h(/*max_batch=*/16);
  h.StartScheduler();
  TestSession& a = h.Open();
  TestSession& b = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return !a.sink->written().empty() && !b.sink->written().empty(); },
                        "both Opened"));
  // Each frame finds the backend idle, but the last turn stepped the other session's frame:
  // with two sessions active, batching beats the saved hand-off, so none runs here.
  for (int i = 0; i < 6; ++i) {
    TestSession& s = i % 2 == 0 ? a : b;
    ASSERT_TRUE(h.WaitFor([&] { return s.sink->read_pending(); }, "a pending read"));
    ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, i / 2, 1, /*may_step_here=*/true));
    ASSERT_TRUE(h.WaitFor([&] { return h.scheduler().steps() == i + 1; }, "the step"));
  }
  for (const auto& step : h.log().Steps()) EXPECT_NE(step.thread, std::this_thread::get_id());
  ASSERT_TRUE(h.WaitForOutputs(a, 3));
  ASSERT_TRUE(h.WaitForOutputs(b, 3));
  ExpectOutputs(a, 3);
  ExpectOutputs(b, 3);
  h.ExpectNoViolations();
}

// The delay is an hour: a step before every session is ready would hang the test.
TEST(SchedulerTest, MaxQueueDelayWaitsOnlyUntilEverySessionWithASlotIsReady) {
  Harness h(/*max_batch=*/16, SessionLimits{}, /*max_queue_delay=*/absl::Hours(1));
  h.StartScheduler();
  TestSession& a = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return !a.sink->written().empty(); }, "Opened"));
  // Alone, the session waits for nobody: the scheduler thread steps its first frame at once,
  // and the next one runs on the delivering thread, as without a delay.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(a, 0, 1, /*may_step_here=*/true));
  ASSERT_TRUE(h.WaitFor([&] { return h.scheduler().steps() == 1; }, "the first step"));
  h.PumpTransport();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(a, 1, 1, /*may_step_here=*/true));
  EXPECT_EQ(OutputsOf(a.sink->written()).size(), 2u);
  TestSession& b = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return !b.sink->written().empty(); }, "Opened"));
  // With two sessions, a's frame waits for b's, and both go in one step.
  ASSERT_TRUE(h.WaitFor([&] { return a.sink->read_pending(); }, "a pending read"));
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(a, 2, 1, /*may_step_here=*/true));
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(b, 0, 1, /*may_step_here=*/true));
  ASSERT_TRUE(h.WaitForOutputs(a, 3));
  ASSERT_TRUE(h.WaitForOutputs(b, 1));
  const auto steps = h.log().Steps();
  ASSERT_EQ(steps.size(), 3u);
  EXPECT_NE(steps[0].thread, std::this_thread::get_id());
  EXPECT_EQ(steps[1].thread, std::this_thread::get_id());
  EXPECT_NE(steps[2].thread, std::this_thread::get_id());
  EXPECT_EQ(steps[2].slots.size(), 2u);
  ExpectOutputs(a, 3);
  ExpectOutputs(b, 1);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, ResetBetweenFramesResetsTheSlotAndAnswersResetDoneWithNextSeq) {
  Harness h(/*max_batch=*/16);
  TestSession& s = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 0, 2));
  ASSERT_NO_FATAL_FAILURE(h.DeliverReset(s));
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 2, 1));
  h.StartScheduler();
  ASSERT_TRUE(h.WaitForOutputs(s, 3));

  const SlotId slot = h.SlotOf(s);
  ASSERT_GE(slot, 0);
  const std::vector<std::string> expected_events = {
      absl::StrCat("alloc ", slot), absl::StrCat("step ", slot), absl::StrCat("step ", slot),
      absl::StrCat("reset ", slot), absl::StrCat("step ", slot)};
  EXPECT_EQ(h.log().Events(), expected_events);

  // Responses: Opened, outputs 0..1, ResetDone{next_seq 2}, output 2 -- in that order.
  const auto written = s.sink->written();
  std::vector<std::string> kinds;
  for (const auto& r : written) {
    if (r.has_opened()) kinds.push_back("opened");
    if (r.has_reset_done()) {
      kinds.push_back(absl::StrCat("reset_done ", r.reset_done().next_seq()));
    }
    if (r.has_outputs()) {
      for (uint32_t i = 0; i < r.outputs().count(); ++i) {
        kinds.push_back(absl::StrCat("output ", r.outputs().first_seq() + i));
      }
    }
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"opened", "output 0", "output 1", "reset_done 2",
                                             "output 2"}));
  ExpectOutputs(s, 3);
  EXPECT_EQ(s.session->next_seq(), 3u);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, CloseAfterFramesDeliversTheirOutputsFreesTheSlotAndFinishesOk) {
  Harness h(/*max_batch=*/16);
  h.StartScheduler();
  TestSession& s = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 0, 3));
  ASSERT_TRUE(h.WaitFor([&] { return s.sink->read_pending(); }, "a pending read"));
  ASSERT_NO_FATAL_FAILURE(h.DeliverClose(s));
  ASSERT_TRUE(h.WaitFor([&] { return s.sink->finished(); }, "Finish"));
  EXPECT_TRUE(s.sink->status().ok()) << s.sink->status();
  ExpectOutputs(s, 3);
  EXPECT_TRUE(h.log().Live().empty()) << "the closed session's slot was not freed";
  const auto events = h.log().Events();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().rfind("free ", 0), 0u) << absl::StrJoin(events, "; ");
  EXPECT_EQ(s.session->slot(), -1);
  h.StreamDone(s);
  // OnStreamDone after a processed close must not free the slot again (checked as a
  // violation by the fake) -- give the scheduler a session that must run after it.
  TestSession& other = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(other, 0, 1));
  ASSERT_TRUE(h.WaitForOutputs(other, 1));
  h.ExpectNoViolations();
}

// Without Close the client cannot tell a finished stream from a lost or unparsable request:
// every frame is answered, then the stream ends with INVALID_ARGUMENT.
TEST(SchedulerTest, HalfCloseWithoutCloseAnswersEveryFrameThenInvalidArgument) {
  Harness h(/*max_batch=*/16);
  TestSession& s = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 0, 4));
  // The client half-closes (the read fails) before the scheduler has run anything.
  ASSERT_TRUE(s.sink->TakeRead());
  s.session->OnReadClosed();
  h.StartScheduler();
  ASSERT_TRUE(h.WaitFor([&] { return s.sink->finished(); }, "Finish"));
  EXPECT_EQ(s.sink->status().code(), absl::StatusCode::kInvalidArgument) << s.sink->status();
  ExpectOutputs(s, 4);
  EXPECT_TRUE(h.log().Live().empty());
  h.ExpectNoViolations();
}

TEST(SchedulerTest, BackendStepErrorEndsTheSessionsOfThatBatchWithInternalAndFreesSlots) {
  Harness h(/*max_batch=*/16);
  h.log().poison = FrameFor(1, 0)[0];  // Session 1's first frame makes the step fail.
  TestSession& a = h.Open();
  TestSession& b = h.Open();
  TestSession& c = h.Open();  // Has nothing queued when the step fails.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(a, 0, 1));
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(b, 0, 1));
  h.StartScheduler();
  ASSERT_TRUE(h.WaitFor([&] { return a.sink->finished() && b.sink->finished(); },
                        "both sessions of the failed batch to finish"));
  for (TestSession* s : {&a, &b}) {
    EXPECT_EQ(s->sink->status().code(), absl::StatusCode::kInternal) << s->sink->status();
    EXPECT_NE(s->sink->status().message().find("fake device fell over"), std::string::npos)
        << s->sink->status();
    EXPECT_TRUE(OutputsOf(s->sink->written()).empty());
  }
  const SlotId slot_c = h.SlotOf(c);
  ASSERT_TRUE(h.WaitFor([&] { return h.log().Live() == std::set<SlotId>{slot_c}; },
                        "only session c's slot to stay live"));
  EXPECT_FALSE(c.sink->finished());
  // Exactly one failed step, holding a's and b's slots, and each of them freed after it.
  const auto events = h.log().Events();
  std::vector<std::string> failed_slots;
  size_t failed_at = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].rfind("step-failed ", 0) == 0) {
      EXPECT_TRUE(failed_slots.empty()) << "more than one failed step";
      failed_slots = absl::StrSplit(events[i].substr(12), ',');
      failed_at = i;
    }
  }
  ASSERT_EQ(failed_slots.size(), 2u) << absl::StrJoin(events, "; ");
  for (const std::string& slot : failed_slots) {
    EXPECT_NE(slot, absl::StrCat(slot_c));
    EXPECT_NE(std::find(events.begin() + failed_at, events.end(), absl::StrCat("free ", slot)),
              events.end())
        << "slot " << slot << " of the failed batch was not freed: " << absl::StrJoin(events, "; ");
  }
  h.StreamDone(a);
  h.StreamDone(b);
  // The other session goes on.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(c, 0, 2));
  ASSERT_TRUE(h.WaitForOutputs(c, 2));
  ExpectOutputs(c, 2);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, FailedSlotAllocationFinishesTheStreamWithoutOpened) {
  Harness h(/*max_batch=*/16);
  h.log().max_slots = 1;
  h.StartScheduler();
  TestSession& first = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return !first.sink->written().empty(); }, "Opened"));
  TestSession& second = h.Open();
  ASSERT_TRUE(h.WaitFor([&] { return second.sink->finished(); }, "the refused session's Finish"));
  EXPECT_EQ(second.sink->status().code(), absl::StatusCode::kResourceExhausted);
  for (const auto& r : second.sink->written()) EXPECT_FALSE(r.has_opened());
  h.StreamDone(second);
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(first, 0, 1));
  ASSERT_TRUE(h.WaitForOutputs(first, 1));
  h.ExpectNoViolations();
}

TEST(SchedulerTest, FullOutboxStopsSteppingTheSessionUntilWritesComplete) {
  SessionLimits limits;
  limits.outbox_frames = 4;
  limits.max_frames_per_response = 1;
  Harness h(/*max_batch=*/16, limits);
  TestSession& a = h.Open();
  a.sink->set_hold_writes(true);  // The client of `a` reads nothing.
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(a, 0, 10));
  h.StartScheduler();
  ASSERT_TRUE(h.WaitFor([&] { return h.log().StepCount() >= 4; }, "4 steps of session a"));
  // Another session's step now shows whether `a` is still being scheduled: a runnable session
  // is in every turn, so it would share that step.
  TestSession& b = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(b, 0, 1));
  ASSERT_TRUE(h.WaitForOutputs(b, 1));
  {
    const auto steps = h.log().Steps();
    EXPECT_EQ(SeqsInStepOrder(steps, a.index), Iota(4))
        << "session a kept stepping with 4 undelivered outputs (outbox limit 4)";
    const SlotId slot_b = h.SlotOf(b);
    for (const auto& step : steps) {
      if (std::find(step.slots.begin(), step.slots.end(), slot_b) != step.slots.end()) {
        EXPECT_EQ(step.slots.size(), 1u) << "session a stepped alongside b";
      }
    }
  }
  // The client reads again: everything arrives, in order.
  a.sink->set_hold_writes(false);
  ASSERT_TRUE(h.WaitForOutputs(a, 10));
  ExpectOutputs(a, 10);
  h.ExpectNoViolations();
}

TEST(SchedulerTest, FullInputQueueStopsReadingUntilTheSchedulerCatchesUp) {
  SessionLimits limits;
  limits.queue_frames = 4;
  Harness h(/*max_batch=*/16, limits);
  TestSession& s = h.Open();
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 0, 3));
  EXPECT_TRUE(s.sink->read_pending()) << "3 of 4 queued frames: the session must read on";
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 3, 2));
  EXPECT_FALSE(s.sink->read_pending())
      << "5 queued frames (limit 4): the session must stop reading";
  h.StartScheduler();
  ASSERT_TRUE(h.WaitFor([&] { return s.sink->read_pending(); }, "reading to resume"));
  ASSERT_NO_FATAL_FAILURE(h.DeliverFrames(s, 5, 1));
  ASSERT_TRUE(h.WaitForOutputs(s, 6));
  ExpectOutputs(s, 6);
  h.ExpectNoViolations();
}

}  // namespace
}  // namespace sluice::server
