#include "client/cli/soak_session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "client/lib/frame_layout.h"
#include "client/lib/status_util.h"

namespace sluice::client {
namespace {

constexpr int64_t kTargetFramesInFlight = 64;  // Outside bursts.
constexpr int kMaxChunk = 8;                   // Frames per Frames request: 1..kMaxChunk.
// Reading pauses past this many unread responses, so that a stalled reader soon makes the
// server's flow control engage.
constexpr int kMaxQueuedResponses = 32;
constexpr int kResponsesPerPoll = 64;
// New frames per poll outside bursts and stalls, so one pass of a worker over its sessions stays
// short however many it drives.
constexpr int64_t kFramesPerPoll = 16;
// How long a poll waits for a dropped stream to end (a cancelled one ends within milliseconds).
constexpr absl::Duration kDrainWait = absl::Milliseconds(50);
constexpr size_t kMaxSamples = 10;
constexpr absl::Duration kDisconnectTimeout = absl::Seconds(30);
constexpr absl::Duration kResumeTimeout = absl::Seconds(30);
constexpr absl::Duration kFirstBackoff = absl::Milliseconds(10);
constexpr absl::Duration kMaxBackoff = absl::Seconds(1);
// The status message of a stream the server ends, or an Open it refuses, while it drains
// (SluiceServer::Drain, StreamReactor::HandleOpen).
constexpr absl::string_view kShutdownMessage = "the server is shutting down";

// SplitMix64: a well-mixed 64-bit hash of `x`.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Frame `seq` of a stream attempt: uniform values in [-1, 1) that depend on (seed, seq) only,
// so a resumed stream can send a frame again without keeping it.
void FillFrame(uint64_t seed, uint64_t seq, float* out, int64_t size) {
  const uint64_t base = Mix(seed ^ Mix(seq));
  for (int64_t i = 0; i < size; ++i) {
    out[i] = static_cast<float>(Mix(base + static_cast<uint64_t>(i)) >> 40) * 0x1p-23f - 1.0f;
  }
}

}  // namespace

void SoakTally::Add(int64_t SoakCounts::*field, int64_t n) {
  if (n == 0) return;
  absl::MutexLock lock(&mu_);
  counts_.*field += n;
}

void SoakTally::Max(int64_t SoakCounts::*field, int64_t value) {
  absl::MutexLock lock(&mu_);
  counts_.*field = std::max(counts_.*field, value);
}

void SoakTally::Error(const std::string& code, std::string line) {
  absl::MutexLock lock(&mu_);
  ++counts_.errors[code];
  if (samples_.size() < kMaxSamples) samples_.push_back(std::move(line));
}

void SoakTally::Sample(std::string line) {
  absl::MutexLock lock(&mu_);
  if (samples_.size() < kMaxSamples) samples_.push_back(std::move(line));
}

SoakCounts SoakTally::counts() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::vector<std::string> SoakTally::samples() const {
  absl::MutexLock lock(&mu_);
  return samples_;
}

std::vector<SoakSession::ChaosEvent> SoakSession::MakePlan(uint64_t seed, int64_t frames,
                                                           bool own_connection) {
  std::vector<ChaosEvent> plan;
  if (frames < 2) return plan;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> at(1, frames - 1);
  std::uniform_int_distribution<int> up_to_two(0, 2);
  std::uniform_int_distribution<int> stall_ms(50, 500);
  std::uniform_int_distribution<int64_t> burst(32, 256);
  std::uniform_int_distribution<int> percent(0, 99);
  for (int i = up_to_two(rng); i > 0; --i) {
    ChaosEvent event;
    event.kind = ChaosEvent::kStall;
    event.seq = at(rng);
    event.stall = absl::Milliseconds(stall_ms(rng));
    plan.push_back(event);
  }
  for (int i = up_to_two(rng); i > 0; --i) {
    ChaosEvent event;
    event.kind = ChaosEvent::kBurst;
    event.seq = at(rng);
    event.burst = burst(rng);
    plan.push_back(event);
  }
  // 0, 1 or 2 drops (40/40/20 %); 70 % are resumed, the rest restart from scratch.
  const int roll = percent(rng);
  for (int i = roll < 40 ? 0 : roll < 80 ? 1 : 2; i > 0; --i) {
    ChaosEvent event;
    event.kind = ChaosEvent::kDisconnect;
    event.seq = at(rng);
    event.resume = percent(rng) < 70;
    event.reset = own_connection && percent(rng) < 75;
    plan.push_back(event);
  }
  std::stable_sort(plan.begin(), plan.end(),
                   [](const ChaosEvent& a, const ChaosEvent& b) { return a.seq < b.seq; });
  return plan;
}

SoakSession::SoakSession(const SoakContext& context, int index, std::string model,
                         ReferenceModel* reference, SoakTally* tally, int route)
    : context_(context),
      index_(index),
      model_(std::move(model)),
      reference_(reference),
      tally_(tally),
      route_(route),
      seed_(Mix(context.options->seed ^ Mix(static_cast<uint64_t>(index) + 1))),
      rng_(seed_) {
  if (context_.options->chaos)
    plan_ = MakePlan(Mix(seed_ + 1), context_.options->frames, route >= 0);
}

SoakSession::~SoakSession() {
  stream_.reset();  // Cancels an unfinished stream and waits for gRPC to let go of it.
  if (slot_ >= 0) reference_->FreeSlot(slot_).IgnoreError();
}

std::string SoakSession::Name() const {
  return absl::StrCat("session ", index_, " (", model_, ", attempt ", attempt_, ")");
}

bool SoakSession::EnsureClient() {
  if (route_ < 0 || own_client_ != nullptr) return true;
  ClientOptions options = context_.options->client_options;
  options.connections = 1;
  absl::StatusOr<std::unique_ptr<StreamingClient>> client =
      StreamingClient::Create(absl::StrCat("127.0.0.1:", route_), options);
  if (!client.ok()) {
    Fail(client.status(), "client through the chaos proxy");
    return false;
  }
  own_client_ = *std::move(client);
  return true;
}

std::unique_ptr<Session> SoakSession::NewStream() {
  SessionOptions options;
  options.max_queued_responses = kMaxQueuedResponses;
  return client()->NewSession(std::move(options));
}

bool SoakSession::Poll() {
  switch (state_) {
    case State::kOpen:
      OpenNew();
      return true;
    case State::kResuming:
      if (absl::Now() < retry_at_) return false;
      TryResume();
      return true;
    case State::kDisconnecting:
      return Drain();
    case State::kStreaming:
    case State::kClosing: {
      bool progress = absl::Now() >= stall_until_ && Read(absl::ZeroDuration());
      if (state_ == State::kStreaming) progress |= Send();
      // A drop just played is seen through at once: the session must resume within the
      // server's grace period, however long the worker's pass over its other sessions takes.
      if (state_ == State::kDisconnecting) Drain();
      return progress;
    }
    case State::kDone:
    case State::kFailed:
      return false;
  }
  return false;
}

void SoakSession::OpenNew() {
  if (!EnsureClient()) return;
  if (slot_ < 0) {
    absl::StatusOr<SlotId> slot = reference_->AllocateSlot();
    if (!slot.ok()) {
      Fail(slot.status(), "reference slot");
      return;
    }
    slot_ = *slot;
  }
  stream_ = NewStream();
  absl::StatusOr<v1::Opened> opened = stream_->Open(
      model_, absl::StrCat("soak-", index_, "-", attempt_), context_.options->open_timeout);
  if (!opened.ok()) {
    if (context_.options->expect_drain) {
      // Once this session's stream was drained the server may be gone: any UNAVAILABLE refuses.
      if (absl::IsUnavailable(opened.status()) &&
          (saw_drain_ || opened.status().message() == kShutdownMessage)) {
        Refused();
        return;
      }
      // An Open that reaches the server once the drain is over and its gRPC server is shutting
      // down is cancelled by gRPC itself; this client never cancels an Open.
      if (saw_drain_ && absl::IsCancelled(opened.status())) {
        tally_->Add(&SoakCounts::opens_cancelled);
        Refused();
        return;
      }
    }
    Fail(opened.status(), "Open");
    return;
  }
  if (saw_drain_) {
    tally_->Add(&SoakCounts::drain_violations);
    End("DRAIN", "a new session opened after the server had drained this session's stream");
    return;
  }
  if (absl::Status status = CheckOpenedMatches(reference_->program(), *opened); !status.ok()) {
    Fail(status, "Open");
    return;
  }
  opened_ = *std::move(opened);
  verifier_ = OutputVerifier(static_cast<uint64_t>(opened_.warmup_frames()));
  tally_->Add(&SoakCounts::sessions_opened);
  state_ = State::kStreaming;
}

void SoakSession::TryResume() {
  if (!EnsureClient()) return;
  stream_ = NewStream();
  const std::optional<uint64_t> last = verifier_.last_received();
  absl::StatusOr<v1::Opened> opened =
      stream_->Resume(opened_.resume_token(), last, model_, context_.options->open_timeout);
  if (!opened.ok()) {
    stream_.reset();
    // UNAVAILABLE: the old stream is still closing on the server (or, through the proxy, the
    // connection is being re-established).
    if (absl::IsUnavailable(opened.status()) && absl::Now() < resume_deadline_) {
      tally_->Add(&SoakCounts::resume_retries);
      retry_at_ = absl::Now() + backoff_;
      backoff_ = std::min(2 * backoff_, kMaxBackoff);
      own_client_.reset();
      return;
    }
    Fail(opened.status(), absl::StrCat("resume ", absl::FormatDuration(absl::Now() - dropped_at_),
                                       " after the drop"));
    return;
  }
  const int64_t next = static_cast<int64_t>(opened->next_seq());
  if (!opened->resumed() || next > sent_ ||
      (last.has_value() && next <= static_cast<int64_t>(*last))) {
    FailProtocol(absl::StrCat("resumed=", opened->resumed(), " next_seq ", next, " after ", sent_,
                              " frames sent and outputs through seq ",
                              last.has_value() ? absl::StrCat(*last) : "(none)", " received"));
    return;
  }
  resend_next_ = next;
  tally_->Add(&SoakCounts::sessions_resumed);
  tally_->Max(&SoakCounts::resume_ms_max, absl::ToInt64Milliseconds(absl::Now() - dropped_at_));
  state_ = State::kStreaming;
}

bool SoakSession::Drain() {
  const bool progress = Read(kDrainWait);
  if (state_ == State::kResuming) {
    TryResume();
    return true;
  }
  if (state_ != State::kDisconnecting || absl::Now() <= disconnect_deadline_) return progress;
  if (cancelled_) {
    Fail(absl::DeadlineExceededError("the cancelled stream did not end"), "disconnect");
    return true;
  }
  // The reset went unnoticed: drop the stream the ordinary way.
  stream_->Cancel();
  cancelled_ = true;
  disconnect_deadline_ = absl::Now() + kDisconnectTimeout;
  return true;
}

bool SoakSession::Read(absl::Duration wait) {
  bool progress = false;
  for (int i = 0; i < kResponsesPerPoll; ++i) {
    // Next() says DEADLINE_EXCEEDED both for "nothing yet" and for a stream that ended so; it
    // is the latter only when the stream had ended before the call.
    const bool ended = stream_->done();
    absl::StatusOr<std::optional<v1::StreamResponse>> next =
        stream_->Next(i == 0 ? wait : absl::ZeroDuration());
    if (!next.ok()) {
      if (!ended && absl::IsDeadlineExceeded(next.status())) return progress;
      StreamEnded(next.status());
      return true;
    }
    if (!next->has_value()) {
      StreamEnded(absl::OkStatus());
      return true;
    }
    if (!HandleResponse(**next)) return true;
    progress = true;
  }
  return progress;
}

void SoakSession::StreamEnded(const absl::Status& status) {
  if (context_.options->expect_drain && absl::IsUnavailable(status) &&
      status.message() == kShutdownMessage &&
      (state_ == State::kStreaming || state_ == State::kClosing)) {
    ServerDrained();
  } else if (refused_seq_.has_value()) {
    FailProtocol(absl::StrCat("frames refused from seq ", *refused_seq_,
                              ", then the stream ended with ", status.ToString(),
                              " instead of the drain's UNAVAILABLE"));
  } else if (state_ == State::kClosing && status.ok()) {
    Complete();
  } else if (state_ == State::kDisconnecting && !status.ok()) {
    // A cancel ends the stream CANCELLED, a reset connection UNAVAILABLE. Anything else is a
    // failure of its own.
    if (absl::IsCancelled(status) || (reset_ && absl::IsUnavailable(status))) {
      FinishDisconnect();
    } else {
      Fail(status, "stream ended while being dropped");
    }
  } else if (status.ok()) {
    FailProtocol("the stream ended OK before Close");
  } else {
    Fail(status, "stream");
  }
}

bool SoakSession::HandleResponse(const v1::StreamResponse& response) {
  switch (response.kind_case()) {
    case v1::StreamResponse::kOutputs:
      return CheckOutputs(response.outputs());
    case v1::StreamResponse::kError:
      // A draining server refuses the frames it reads after closing the session; the stream's
      // end tells whether that was the drain (StreamEnded).
      if (context_.options->expect_drain && !refused_seq_.has_value() &&
          absl::IsUnavailable(FromWireStatus(response.error().status()))) {
        refused_seq_ = response.error().seq();
        return true;
      }
      Fail(FromWireStatus(response.error().status()),
           absl::StrCat("Error response for seq ", response.error().seq()));
      return false;
    default:
      FailProtocol(absl::StrCat("unexpected response kind ", response.kind_case()));
      return false;
  }
}

bool SoakSession::CheckOutputs(const v1::Outputs& outputs) {
  const int model_outputs = opened_.outputs_size();
  if (outputs.tensors_size() != model_outputs) {
    FailProtocol(absl::StrCat("Outputs with ", outputs.tensors_size(), " tensors for ",
                              model_outputs, " model outputs"));
    return false;
  }
  decoded_.resize(model_outputs);
  for (int j = 0; j < model_outputs; ++j) {
    int64_t count = 0;
    absl::StatusOr<std::vector<float>> frames =
        UnpackFrames(opened_.outputs(j), outputs.tensors(j), &count);
    if (!frames.ok() || count != outputs.count()) {
      FailProtocol(absl::StrCat(
          "Outputs tensor ", j, " for seq ", outputs.first_seq(), " + ", outputs.count(), ": ",
          frames.ok() ? absl::StrCat(count, " frames") : frames.status().ToString()));
      return false;
    }
    decoded_[j] = *std::move(frames);
  }
  SoakCounts delta;
  for (uint32_t i = 0; i < outputs.count(); ++i) {
    output_.clear();
    for (int j = 0; j < model_outputs; ++j) {
      const int64_t size = static_cast<int64_t>(decoded_[j].size()) / outputs.count();
      output_.insert(output_.end(), decoded_[j].begin() + i * size,
                     decoded_[j].begin() + (i + 1) * size);
    }
    const uint64_t seq = outputs.first_seq() + i;
    const Verdict verdict = verifier_.Receive(seq, output_);
    if (verdict.reordered) {
      ++delta.outputs_reordered;
      tally_->Sample(absl::StrCat(Name(), ": output seq ", seq, " arrived after a later one"));
    }
    switch (verdict.kind) {
      case Verdict::kVerified:
        ++delta.outputs_verified;
        break;
      case Verdict::kMismatched:
        ++delta.outputs_mismatched;
        tally_->Sample(absl::StrFormat("%s: output seq %d element %d is %g, the reference has %g",
                                       Name(), seq, verdict.element, verdict.got, verdict.want));
        break;
      case Verdict::kDuplicated:
        ++delta.outputs_duplicated;
        tally_->Sample(absl::StrCat(Name(), ": output seq ", seq, " arrived twice"));
        break;
      case Verdict::kUnexpected:
        ++delta.outputs_unexpected;
        tally_->Sample(absl::StrCat(Name(), ": output seq ", seq, " for no frame sent (", sent_,
                                    " sent, warm-up ", opened_.warmup_frames(), ")"));
        break;
    }
  }
  tally_->Add(&SoakCounts::outputs_verified, delta.outputs_verified);
  tally_->Add(&SoakCounts::outputs_mismatched, delta.outputs_mismatched);
  tally_->Add(&SoakCounts::outputs_duplicated, delta.outputs_duplicated);
  tally_->Add(&SoakCounts::outputs_unexpected, delta.outputs_unexpected);
  tally_->Add(&SoakCounts::outputs_reordered, delta.outputs_reordered);
  return true;
}

void SoakSession::MakeFrames(int64_t first, int64_t count) {
  const int64_t size = reference_->program().input.frame_size;
  frames_.resize(count * size);
  const uint64_t seed = Mix(seed_ + static_cast<uint64_t>(attempt_));
  for (int64_t k = 0; k < count; ++k) {
    FillFrame(seed, static_cast<uint64_t>(first + k), frames_.data() + k * size, size);
  }
}

bool SoakSession::SendFrames(int64_t count) {
  // Mostly STACKED; OFFLINE now and then, so the server's transposing decoder is soaked too.
  const v1::Frames::Layout layout = rng_() % 4 == 0 ? v1::Frames::OFFLINE : v1::Frames::STACKED;
  // A refused send means the stream is ending; Read() reports how.
  return stream_->SendFrames(frames_.data(), static_cast<int>(count), {}, layout).ok();
}

bool SoakSession::Send() {
  const int64_t frames = context_.options->frames;
  auto next_chunk = [this] {
    if (chunk_ == 0) chunk_ = static_cast<int64_t>(rng_() % kMaxChunk) + 1;
    return chunk_;
  };
  bool progress = false;
  // After a resume: the frames the server had not accepted when the old stream dropped. Their
  // outputs are already expected, so they count as in flight already.
  while (resend_next_ < sent_) {
    const int64_t count = std::min(next_chunk(), sent_ - resend_next_);
    MakeFrames(resend_next_, count);
    if (!SendFrames(count)) return true;
    chunk_ = 0;
    resend_next_ += count;
    tally_->Add(&SoakCounts::frames_resent, count);
    progress = true;
  }
  int64_t sent_now = 0;
  while (true) {
    if (next_event_ < plan_.size() && plan_[next_event_].seq <= sent_) {
      progress = true;
      if (!Play(plan_[next_event_++])) return true;
      continue;
    }
    if (sent_ >= frames) break;
    int64_t count = std::min(next_chunk(), frames - sent_);
    if (next_event_ < plan_.size()) count = std::min(count, plan_[next_event_].seq - sent_);
    const int64_t in_flight = sent_ - static_cast<int64_t>(verifier_.OldestPending(sent_));
    // A burst, or a stalled reader that keeps sending until the server's outbox and queue fill
    // and flow control holds the sender back, may go up to the hard limit.
    const bool wide = burst_left_ > 0 || absl::Now() < stall_until_;
    const int64_t limit = wide ? kSoakMaxFramesInFlight : kTargetFramesInFlight;
    if (in_flight + count > limit || (!wide && sent_now >= kFramesPerPoll)) break;
    MakeFrames(sent_, count);
    const int64_t size = reference_->program().input.frame_size;
    for (int64_t k = 0; k < count; ++k) {
      absl::StatusOr<bool> ready = reference_->Step(slot_, frames_.data() + k * size, &output_);
      if (!ready.ok()) {
        Fail(ready.status(), "reference step");
        return true;
      }
      if (*ready) verifier_.Expect(static_cast<uint64_t>(sent_ + k), output_);
    }
    // The reference has stepped these frames whether or not the send succeeds: a refused send
    // ends the session anyway.
    const bool sent = SendFrames(count);
    sent_ += count;
    resend_next_ = sent_;
    chunk_ = 0;
    burst_left_ = std::max<int64_t>(0, burst_left_ - count);
    sent_now += count;
    tally_->Add(&SoakCounts::frames_sent, count);
    progress = true;
    if (!sent) return true;
  }
  if (sent_ == frames && state_ == State::kStreaming) {
    // A refused Close means the stream is ending; Read() reports how.
    stream_->Close().IgnoreError();
    state_ = State::kClosing;
    progress = true;
  }
  return progress;
}

bool SoakSession::Play(const ChaosEvent& event) {
  switch (event.kind) {
    case ChaosEvent::kStall:
      stall_until_ = absl::Now() + event.stall;
      tally_->Add(&SoakCounts::stalls);
      return true;
    case ChaosEvent::kBurst:
      burst_left_ = event.burst;
      tally_->Add(&SoakCounts::bursts);
      return true;
    case ChaosEvent::kDisconnect:
      break;
  }
  // Without a resume token (the server keeps no sessions) a drop can only be a restart.
  resume_next_ = event.resume && !opened_.resume_token().empty();
  reset_ = event.reset && route_ >= 0;
  cancelled_ = !reset_;
  if (reset_) {
    context_.proxy->Reset(route_);
    tally_->Add(&SoakCounts::connection_resets);
  } else {
    stream_->Cancel();
    tally_->Add(&SoakCounts::disconnects);
  }
  stall_until_ = absl::InfinitePast();
  dropped_at_ = absl::Now();
  disconnect_deadline_ = dropped_at_ + kDisconnectTimeout;
  state_ = State::kDisconnecting;
  return false;
}

void SoakSession::FinishDisconnect() {
  stream_.reset();
  if (reset_) own_client_.reset();  // Its connection is gone; the next stream gets a new one.
  if (!resume_next_) {
    Restart();
    return;
  }
  state_ = State::kResuming;
  retry_at_ = absl::Now();
  resume_deadline_ = retry_at_ + kResumeTimeout;
  backoff_ = kFirstBackoff;
}

void SoakSession::Restart() {
  tally_->Add(&SoakCounts::frames_abandoned, sent_);
  tally_->Add(&SoakCounts::sessions_restarted);
  if (absl::Status status = reference_->ResetSlot(slot_); !status.ok()) {
    Fail(status, "reference reset");
    return;
  }
  ++attempt_;
  sent_ = resend_next_ = 0;
  burst_left_ = 0;
  // The new attempt streams without further chaos, so every session ends.
  plan_.clear();
  next_event_ = 0;
  state_ = State::kOpen;
}

void SoakSession::ServerDrained() {
  const std::optional<uint64_t> served_through = stream_->served_through();
  DrainedStream drained = CheckDrainedStream(verifier_, sent_, refused_seq_, served_through);
  // A drain drops nothing the session accepted, so the server always names where it stopped.
  if (drained.violation.empty() && !served_through.has_value()) {
    drained.violation = "the drained stream ended without the sluice-next-seq trailer";
  }
  tally_->Add(&SoakCounts::sessions_drained);
  tally_->Add(&SoakCounts::frames_answered, drained.frames_answered);
  tally_->Add(&SoakCounts::frames_unanswered, drained.frames_unanswered);
  tally_->Add(&SoakCounts::frames_refused, drained.frames_refused);
  tally_->Add(&SoakCounts::outputs_lost, drained.outputs_lost);
  stream_.reset();
  if (!drained.violation.empty()) {
    tally_->Add(&SoakCounts::drain_violations);
    End("DRAIN", absl::StrCat("drained after ", sent_, " frames sent: ", drained.violation));
    return;
  }
  saw_drain_ = true;
  state_ = State::kOpen;
}

void SoakSession::Refused() {
  tally_->Add(&SoakCounts::sessions_refused);
  stream_.reset();
  state_ = State::kDone;
}

void SoakSession::Complete() {
  if (const int64_t lost = verifier_.pending(); lost > 0) {
    tally_->Add(&SoakCounts::outputs_lost, lost);
    tally_->Sample(absl::StrCat(Name(), ": the stream ended OK with ", lost,
                                " outputs missing, the oldest seq ", verifier_.OldestPending(0)));
  }
  tally_->Add(&SoakCounts::sessions_completed);
  stream_.reset();
  state_ = State::kDone;
}

void SoakSession::Fail(const absl::Status& status, const std::string& what) {
  End(absl::StatusCodeToString(status.code()), absl::StrCat(what, ": ", status.ToString()));
}

void SoakSession::FailProtocol(const std::string& what) { End("PROTOCOL", what); }

void SoakSession::End(const std::string& code, const std::string& what) {
  tally_->Error(code, absl::StrCat(Name(), ": ", what));
  tally_->Add(&SoakCounts::sessions_failed);
  if (stream_ != nullptr) stream_->Cancel();
  stream_.reset();
  state_ = State::kFailed;
}

void SoakSession::Abort(const absl::Status& status) {
  if (!finished()) Fail(status, "stopped");
}

}  // namespace sluice::client
