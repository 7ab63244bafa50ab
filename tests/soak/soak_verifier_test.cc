// The soak's output check: every output by seq, once, within the fp32 tolerance.
#include "client/cli/soak_verifier.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace sluice::client {
namespace {

std::vector<float> Frame(float v) { return {v, -v, 2 * v}; }

TEST(OutputCloseTest, AbsoluteAndRelativeTolerance) {
  EXPECT_TRUE(OutputClose(1.0f, 1.0f));
  EXPECT_TRUE(OutputClose(0.0f, 0.9e-4f));
  EXPECT_FALSE(OutputClose(0.0f, 1.1e-4f));
  EXPECT_TRUE(OutputClose(1000.0f, 1000.1f));  // 1e-4 + 0.1
  EXPECT_FALSE(OutputClose(1000.0f, 1000.2f));
  EXPECT_FALSE(OutputClose(std::numeric_limits<float>::quiet_NaN(), 0.0f));
  EXPECT_FALSE(OutputClose(0.0f, std::numeric_limits<float>::quiet_NaN()));
}

TEST(OutputVerifierTest, InOrderOutputsVerifyAndAreForgotten) {
  OutputVerifier verifier;
  for (uint64_t seq = 0; seq < 4; ++seq) verifier.Expect(seq, Frame(seq));
  EXPECT_EQ(verifier.pending(), 4);
  EXPECT_EQ(verifier.OldestPending(99), 0u);
  for (uint64_t seq = 0; seq < 4; ++seq) {
    const Verdict verdict = verifier.Receive(seq, Frame(seq));
    EXPECT_EQ(verdict.kind, Verdict::kVerified);
    EXPECT_FALSE(verdict.reordered);
  }
  EXPECT_EQ(verifier.pending(), 0);
  EXPECT_EQ(verifier.OldestPending(99), 99u);
  EXPECT_EQ(verifier.last_received(), 3u);
}

TEST(OutputVerifierTest, MismatchNamesTheFirstBadElement) {
  OutputVerifier verifier;
  verifier.Expect(0, Frame(1));
  const Verdict verdict = verifier.Receive(0, std::vector<float>{1, -1, 2.5f});
  EXPECT_EQ(verdict.kind, Verdict::kMismatched);
  EXPECT_EQ(verdict.element, 2);
  EXPECT_EQ(verdict.got, 2.5f);
  EXPECT_EQ(verdict.want, 2.0f);
  EXPECT_EQ(verifier.pending(), 0);  // Arrived, if wrong.
}

TEST(OutputVerifierTest, WrongFrameSizeIsAMismatch) {
  OutputVerifier verifier;
  verifier.Expect(0, Frame(1));
  EXPECT_EQ(verifier.Receive(0, std::vector<float>{1, -1}).kind, Verdict::kMismatched);
}

TEST(OutputVerifierTest, DuplicatesBeforeAndAfterTheyAreForgotten) {
  OutputVerifier verifier;
  for (uint64_t seq = 0; seq < 3; ++seq) verifier.Expect(seq, Frame(seq));
  EXPECT_EQ(verifier.Receive(2, Frame(2)).kind, Verdict::kVerified);  // Kept: 0 and 1 pending.
  EXPECT_EQ(verifier.Receive(2, Frame(2)).kind, Verdict::kDuplicated);
  EXPECT_EQ(verifier.Receive(0, Frame(0)).kind, Verdict::kVerified);
  EXPECT_EQ(verifier.Receive(0, Frame(0)).kind, Verdict::kDuplicated);  // Forgotten by now.
  EXPECT_EQ(verifier.pending(), 1);
}

TEST(OutputVerifierTest, LateArrivalsAreReordered) {
  OutputVerifier verifier;
  for (uint64_t seq = 0; seq < 3; ++seq) verifier.Expect(seq, Frame(seq));
  EXPECT_FALSE(verifier.Receive(1, Frame(1)).reordered);
  EXPECT_EQ(verifier.OldestPending(99), 0u);
  const Verdict late = verifier.Receive(0, Frame(0));
  EXPECT_EQ(late.kind, Verdict::kVerified);
  EXPECT_TRUE(late.reordered);
  EXPECT_FALSE(verifier.Receive(2, Frame(2)).reordered);
  EXPECT_EQ(verifier.last_received(), 2u);
}

TEST(OutputVerifierTest, WarmUpAndUnsentFramesAreUnexpected) {
  OutputVerifier verifier(/*first_seq=*/4);                             // Four warm-up frames.
  EXPECT_EQ(verifier.Receive(4, Frame(4)).kind, Verdict::kUnexpected);  // Nothing sent yet.
  verifier.Expect(4, Frame(4));
  verifier.Expect(5, Frame(5));
  EXPECT_EQ(verifier.OldestPending(99), 4u);
  EXPECT_EQ(verifier.Receive(3, Frame(3)).kind, Verdict::kUnexpected);
  EXPECT_EQ(verifier.Receive(6, Frame(6)).kind, Verdict::kUnexpected);
  EXPECT_EQ(verifier.Receive(4, Frame(4)).kind, Verdict::kVerified);
  EXPECT_EQ(verifier.Receive(5, Frame(5)).kind, Verdict::kVerified);
  EXPECT_EQ(verifier.Receive(3, Frame(3)).kind, Verdict::kUnexpected);
  EXPECT_EQ(verifier.Receive(4, Frame(4)).kind, Verdict::kDuplicated);
}

TEST(OutputVerifierTest, ExpectAfterEverythingArrivedContinuesTheSeqs) {
  OutputVerifier verifier;
  verifier.Expect(0, Frame(0));
  EXPECT_EQ(verifier.Receive(0, Frame(0)).kind, Verdict::kVerified);
  verifier.Expect(1, Frame(1));
  EXPECT_EQ(verifier.OldestPending(99), 1u);
  EXPECT_EQ(verifier.Receive(1, Frame(1)).kind, Verdict::kVerified);
  EXPECT_EQ(verifier.Receive(0, Frame(0)).kind, Verdict::kDuplicated);
}

}  // namespace
}  // namespace sluice::client
