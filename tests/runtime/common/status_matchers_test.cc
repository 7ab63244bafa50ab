#include "tests/common/status_matchers.h"

#include <gmock/gmock.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace sluice::status_testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

absl::StatusOr<int> Seven() { return 7; }
absl::StatusOr<int> Missing() { return absl::NotFoundError("no such thing: /tmp/x"); }
absl::StatusOr<std::unique_ptr<int>> MoveOnly() { return std::make_unique<int>(3); }

TEST(StatusMatchersTest, IsOkMatchesStatusAndStatusOr) {
  EXPECT_THAT(absl::OkStatus(), IsOk());
  EXPECT_THAT(Seven(), IsOk());
  EXPECT_THAT(absl::InternalError("boom"), Not(IsOk()));
  EXPECT_THAT(Missing(), Not(IsOk()));
  EXPECT_OK(absl::OkStatus());
  ASSERT_OK(Seven());
}

TEST(StatusMatchersTest, StatusIsChecksCodeAndMessage) {
  EXPECT_THAT(Missing(), StatusIs(absl::StatusCode::kNotFound));
  EXPECT_THAT(Missing(), StatusIs(absl::StatusCode::kNotFound, HasSubstr("/tmp/x")));
  EXPECT_THAT(Missing(), StatusIs(absl::StatusCode::kNotFound, "no such thing: /tmp/x"));
  EXPECT_THAT(Missing(), Not(StatusIs(absl::StatusCode::kInvalidArgument)));
  EXPECT_THAT(Missing(), Not(StatusIs(absl::StatusCode::kNotFound, HasSubstr("elsewhere"))));
  EXPECT_THAT(Missing(), Not(StatusIs(absl::StatusCode::kNotFound, "no such thing")));
  EXPECT_THAT(absl::UnimplementedError("x"), StatusIs(AnyOf(absl::StatusCode::kInvalidArgument,
                                                            absl::StatusCode::kUnimplemented)));
  EXPECT_THAT(Seven(), StatusIs(absl::StatusCode::kOk));
  EXPECT_THAT(Seven(), Not(StatusIs(absl::StatusCode::kNotFound)));
}

TEST(StatusMatchersTest, DescriptionsNameCodeAndMessage) {
  const ::testing::Matcher<absl::Status> matcher =
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("path"));
  const std::string description = ::testing::DescribeMatcher<absl::Status>(matcher);
  EXPECT_THAT(description, HasSubstr("NOT_FOUND"));
  EXPECT_THAT(description, HasSubstr("path"));
  ::testing::StringMatchResultListener listener;
  EXPECT_FALSE(matcher.MatchAndExplain(absl::NotFoundError("elsewhere"), &listener));
  EXPECT_THAT(listener.str(), HasSubstr("message"));
}

TEST(StatusMatchersTest, AssertOkAndAssignDeclaresOrAssigns) {
  ASSERT_OK_AND_ASSIGN(int seven, Seven());
  EXPECT_EQ(seven, 7);
  int reused = 0;
  ASSERT_OK_AND_ASSIGN(reused, Seven());
  EXPECT_EQ(reused, 7);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<int> owned, MoveOnly());
  ASSERT_NE(owned, nullptr);
  EXPECT_EQ(*owned, 3);
}

void AssignFromError() {
  ASSERT_OK_AND_ASSIGN(int value, Missing());
  (void)value;
}

TEST(StatusMatchersTest, AssertOkAndAssignFailsFatallyWithTheStatus) {
  EXPECT_FATAL_FAILURE(AssignFromError(), "no such thing: /tmp/x");
}

TEST(StatusMatchersTest, FailureMessagePrintsTheStatus) {
  EXPECT_NONFATAL_FAILURE(EXPECT_THAT(Missing(), IsOk()), "NOT_FOUND: no such thing");
}

}  // namespace
}  // namespace sluice::status_testing
