#include "client/cli/soak_verifier.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"

namespace sluice::client {

bool OutputClose(float got, float want) {
  return std::fabs(got - want) <= 1e-4f + 1e-4f * std::fabs(want);
}

void OutputVerifier::Expect(uint64_t seq, std::vector<float> want) {
  if (entries_.empty()) front_seq_ = seq;
  entries_.push_back(Entry{std::move(want), false});
  ++pending_;
}

Verdict OutputVerifier::Receive(uint64_t seq, absl::Span<const float> got) {
  Verdict verdict;
  const uint64_t end_seq = front_seq_ + entries_.size();
  if (seq < first_seq_ || seq >= end_seq) {
    // Below front_seq_ (and past the warm-up) it arrived before and was forgotten.
    verdict.kind =
        seq >= first_seq_ && seq < front_seq_ ? Verdict::kDuplicated : Verdict::kUnexpected;
    return verdict;
  }
  Entry& entry = entries_[seq - front_seq_];
  if (entry.received) {
    verdict.kind = Verdict::kDuplicated;
    return verdict;
  }
  verdict.reordered = last_received_.has_value() && seq < *last_received_;
  if (!last_received_.has_value() || seq > *last_received_) last_received_ = seq;
  entry.received = true;
  --pending_;
  if (got.size() != entry.want.size()) {
    verdict.kind = Verdict::kMismatched;
    verdict.element = static_cast<int64_t>(std::min(got.size(), entry.want.size()));
  } else {
    for (size_t i = 0; i < got.size(); ++i) {
      if (!OutputClose(got[i], entry.want[i])) {
        verdict.kind = Verdict::kMismatched;
        verdict.element = static_cast<int64_t>(i);
        verdict.got = got[i];
        verdict.want = entry.want[i];
        break;
      }
    }
  }
  while (!entries_.empty() && entries_.front().received) {
    entries_.pop_front();
    ++front_seq_;
  }
  return verdict;
}

uint64_t OutputVerifier::OldestPending(uint64_t otherwise) const {
  return entries_.empty() ? otherwise : front_seq_;
}

int64_t OutputVerifier::PendingBefore(uint64_t seq) const {
  if (seq <= front_seq_) return 0;
  const uint64_t end = std::min<uint64_t>(seq - front_seq_, entries_.size());
  int64_t n = 0;
  for (uint64_t i = 0; i < end; ++i) n += entries_[i].received ? 0 : 1;
  return n;
}

DrainedStream CheckDrainedStream(const OutputVerifier& verifier, int64_t frames_sent,
                                 std::optional<uint64_t> refused_seq,
                                 std::optional<uint64_t> served_through) {
  DrainedStream stream;
  const std::optional<uint64_t> last = verifier.last_received();
  const int64_t through_last = last.has_value() ? static_cast<int64_t>(*last) + 1 : 0;
  if (refused_seq.has_value()) {
    stream.frames_refused = std::max<int64_t>(0, frames_sent - static_cast<int64_t>(*refused_seq));
  }
  // Where the server said the served frames end: the trailer, else the refusal.
  const std::optional<uint64_t> end = served_through.has_value() ? served_through : refused_seq;
  const char* const end_source = served_through.has_value() ? "its trailer" : "its refusal";
  if (!end.has_value()) {
    stream.frames_answered = through_last;
    stream.outputs_lost = verifier.PendingBefore(static_cast<uint64_t>(through_last));
    if (stream.outputs_lost > 0) {
      stream.violation =
          absl::StrCat(stream.outputs_lost, " output(s) missing before seq ", *last,
                       ", the last one received, from seq ", verifier.OldestPending(0), " on");
    }
  } else {
    const auto served = static_cast<int64_t>(*end);
    stream.frames_answered = std::min(served, frames_sent);
    stream.outputs_lost = verifier.PendingBefore(*end);
    if (served_through.has_value() && refused_seq.has_value() && *served_through != *refused_seq) {
      stream.violation = absl::StrCat("the stream's trailer says frames before seq ",
                                      *served_through, " were served, but the server refused ",
                                      "frames from seq ", *refused_seq, " on");
    } else if (served > frames_sent) {
      stream.violation =
          absl::StrCat("the server says (", end_source, ") it served the frames before seq ",
                       served, ", but only ", frames_sent, " were sent");
    } else if (through_last > served) {
      stream.violation =
          absl::StrCat("outputs through seq ", *last, " arrived, but the server says (", end_source,
                       ") it served only the frames before seq ", served);
    } else if (stream.outputs_lost > 0) {
      stream.violation = absl::StrCat(
          stream.outputs_lost, " output(s) missing for frames the server served (before seq ",
          served, "), from seq ", verifier.OldestPending(0), " on");
    }
  }
  stream.frames_unanswered = frames_sent - stream.frames_answered;
  return stream;
}

}  // namespace sluice::client
