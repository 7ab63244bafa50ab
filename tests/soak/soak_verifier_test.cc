// The soak's output check: every output by seq, once, within the fp32 tolerance; and the rule a
// stream the server drained must keep.
#include "client/cli/soak_verifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <optional>
#include <vector>

namespace sluice::client {
namespace {

using ::testing::HasSubstr;

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

// A verifier that expects outputs for frames [warmup, sent) and received those for `received`.
OutputVerifier Streamed(uint64_t warmup, uint64_t sent, const std::vector<uint64_t>& received) {
  OutputVerifier verifier(warmup);
  for (uint64_t seq = warmup; seq < sent; ++seq) verifier.Expect(seq, Frame(seq));
  for (uint64_t seq : received) verifier.Receive(seq, Frame(seq));
  return verifier;
}

TEST(OutputVerifierTest, PendingBeforeCountsOnlyMissingOutputsBelowTheSeq) {
  const OutputVerifier verifier = Streamed(2, 8, {2, 4, 5});
  EXPECT_EQ(verifier.PendingBefore(2), 0);
  EXPECT_EQ(verifier.PendingBefore(4), 1);  // 3.
  EXPECT_EQ(verifier.PendingBefore(7), 2);  // 3 and 6.
  EXPECT_EQ(verifier.PendingBefore(99), 3);
}

TEST(CheckDrainedStreamTest, AnsweredPrefixWithoutRefusal) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3}), 10, {});
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 4);
  EXPECT_EQ(drained.frames_unanswered, 6);
  EXPECT_EQ(drained.frames_refused, 0);
  EXPECT_EQ(drained.outputs_lost, 0);
}

TEST(CheckDrainedStreamTest, NothingAnsweredIsAnEmptyPrefix) {
  const DrainedStream drained = CheckDrainedStream(Streamed(4, 10, {}), 10, {});
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 0);
  EXPECT_EQ(drained.frames_unanswered, 10);
}

TEST(CheckDrainedStreamTest, WarmUpFramesCountOnceALaterOutputArrived) {
  const DrainedStream drained = CheckDrainedStream(Streamed(4, 10, {4, 5}), 10, {});
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 6);
  EXPECT_EQ(drained.frames_unanswered, 4);
}

TEST(CheckDrainedStreamTest, AGapBeforeTheLastOutputIsAViolation) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 3}), 10, {});
  EXPECT_NE(drained.violation, "");
  EXPECT_EQ(drained.outputs_lost, 1);
}

TEST(CheckDrainedStreamTest, TheRefusalSeqEndsThePrefix) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3, 4, 5}), 10, 6);
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 6);
  EXPECT_EQ(drained.frames_unanswered, 4);
  EXPECT_EQ(drained.frames_refused, 4);
}

TEST(CheckDrainedStreamTest, ARefusalWithinTheWarmUpNeedsNoOutput) {
  const DrainedStream drained = CheckDrainedStream(Streamed(4, 10, {}), 10, 3);
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 3);
  EXPECT_EQ(drained.frames_refused, 7);
}

TEST(CheckDrainedStreamTest, AnAcceptedFrameWithoutItsOutputIsAViolation) {
  // The server accepted frames 0..5 but the outputs stop after seq 3.
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3}), 10, 6);
  EXPECT_NE(drained.violation, "");
  EXPECT_EQ(drained.outputs_lost, 2);
}

TEST(CheckDrainedStreamTest, AnOutputForARefusedFrameIsAViolation) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3, 4}), 10, 3);
  EXPECT_NE(drained.violation, "");
}

TEST(CheckDrainedStreamTest, TheTrailerEndsThePrefixExactly) {
  const DrainedStream drained =
      CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3}), 10, std::nullopt, 4);
  EXPECT_EQ(drained.violation, "");
  EXPECT_EQ(drained.frames_answered, 4);
  EXPECT_EQ(drained.frames_unanswered, 6);
  EXPECT_EQ(drained.frames_refused, 0);
}

TEST(CheckDrainedStreamTest, TheTrailerCatchesLostOutputsAtTheEndOfThePrefix) {
  // Without the trailer, outputs 0..2 would pass as a prefix; the server served frames 0..4.
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2}), 10, std::nullopt, 5);
  EXPECT_NE(drained.violation, "");
  EXPECT_EQ(drained.outputs_lost, 2);
}

TEST(CheckDrainedStreamTest, AnOutputAfterTheTrailersSeqIsAViolation) {
  const DrainedStream drained =
      CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3, 4}), 10, std::nullopt, 4);
  EXPECT_THAT(drained.violation, HasSubstr("its trailer"));
}

TEST(CheckDrainedStreamTest, TheTrailerAndTheRefusalMustAgree) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 10, {0, 1, 2, 3, 4}), 10, 6, 5);
  EXPECT_THAT(drained.violation, HasSubstr("refused frames from seq 6"));
  EXPECT_EQ(drained.frames_refused, 4);
}

TEST(CheckDrainedStreamTest, ARefusalPastTheFramesSentIsAViolation) {
  const DrainedStream drained = CheckDrainedStream(Streamed(0, 5, {0, 1, 2, 3, 4}), 5, 7);
  EXPECT_NE(drained.violation, "");
}

}  // namespace
}  // namespace sluice::client
