#include "client/cli/soak_verifier.h"

#include <algorithm>
#include <cmath>
#include <utility>

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

}  // namespace sluice::client
