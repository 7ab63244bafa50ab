// GMock matchers and assertion macros for absl::Status and absl::StatusOr<T> (Debian's Abseil
// 20220623 ships no absl/status/status_matchers.h).
//
//   EXPECT_THAT(DoThing(), IsOk());
//   EXPECT_THAT(LoadThing(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
//   EXPECT_THAT(LoadThing(path), StatusIs(absl::StatusCode::kNotFound));
//   ASSERT_OK_AND_ASSIGN(Thing thing, LoadThing(path));
//   ASSERT_OK(DoThing());
//
// Both matchers accept absl::Status and absl::StatusOr<T> of any T. On a mismatch gtest prints
// the actual status (code and message); a StatusOr prints as its status.
#ifndef SLUICE_TESTS_COMMON_STATUS_MATCHERS_H_
#define SLUICE_TESTS_COMMON_STATUS_MATCHERS_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::status_testing {
namespace internal {

inline const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

// IsOk(): polymorphic over Status / StatusOr<T>.
class IsOkMatcher {
 public:
  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual,
                       ::testing::MatchResultListener* /*listener*/) const {
    return GetStatus(actual).ok();
  }
  void DescribeTo(std::ostream* os) const { *os << "is OK"; }
  void DescribeNegationTo(std::ostream* os) const { *os << "is not OK"; }
};

// StatusIs(code_matcher, message_matcher): polymorphic over Status / StatusOr<T>.
class StatusIsMatcher {
 public:
  StatusIsMatcher(::testing::Matcher<absl::StatusCode> code,
                  ::testing::Matcher<const std::string&> message)
      : code_(std::move(code)), message_(std::move(message)) {}

  template <typename StatusType>
  bool MatchAndExplain(const StatusType& actual, ::testing::MatchResultListener* listener) const {
    const absl::Status& status = GetStatus(actual);
    if (!code_.Matches(status.code())) {
      *listener << "whose code does not match";
      return false;
    }
    const std::string message(status.message());
    ::testing::StringMatchResultListener inner;
    if (!message_.MatchAndExplain(message, &inner)) {
      *listener << "whose message does not match";
      if (!inner.str().empty()) *listener << " (" << inner.str() << ")";
      return false;
    }
    return true;
  }
  void DescribeTo(std::ostream* os) const {
    *os << "has a status code that ";
    code_.DescribeTo(os);
    *os << " and a message that ";
    message_.DescribeTo(os);
  }
  void DescribeNegationTo(std::ostream* os) const {
    *os << "has a status code that ";
    code_.DescribeNegationTo(os);
    *os << " or a message that ";
    message_.DescribeNegationTo(os);
  }

 private:
  ::testing::Matcher<absl::StatusCode> code_;
  ::testing::Matcher<const std::string&> message_;
};

}  // namespace internal

// Matches an OK absl::Status or an absl::StatusOr<T> holding a value.
inline ::testing::PolymorphicMatcher<internal::IsOkMatcher> IsOk() {
  return ::testing::MakePolymorphicMatcher(internal::IsOkMatcher());
}

// Matches a status (or StatusOr's status) whose code is `code` and whose message matches
// `message_matcher` (a matcher such as HasSubstr("x"), or a string for an exact match). `code`
// may itself be a matcher: StatusIs(AnyOf(kInvalidArgument, kUnimplemented), HasSubstr("x")).
template <typename CodeMatcher, typename MessageMatcher>
::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(
    CodeMatcher&& code, MessageMatcher&& message_matcher) {
  return ::testing::MakePolymorphicMatcher(internal::StatusIsMatcher(
      ::testing::SafeMatcherCast<absl::StatusCode>(std::forward<CodeMatcher>(code)),
      ::testing::SafeMatcherCast<const std::string&>(
          std::forward<MessageMatcher>(message_matcher))));
}

// Matches a status (or StatusOr's status) whose code is (or matches) `code`, whatever its
// message.
template <typename CodeMatcher>
::testing::PolymorphicMatcher<internal::StatusIsMatcher> StatusIs(CodeMatcher&& code) {
  return StatusIs(std::forward<CodeMatcher>(code), ::testing::_);
}

}  // namespace sluice::status_testing

// Abseil before 20230802 has no printer for StatusOr, so gtest would dump its bytes.
#if defined(ABSL_LTS_RELEASE_VERSION) && ABSL_LTS_RELEASE_VERSION < 20230802
namespace absl {
ABSL_NAMESPACE_BEGIN
template <typename T>
void PrintTo(const StatusOr<T>& status_or, std::ostream* os) {
  *os << "StatusOr with status " << status_or.status();
}
ABSL_NAMESPACE_END
}  // namespace absl
#endif

#define SLUICE_TESTING_CONCAT_INNER(a, b) a##b
#define SLUICE_TESTING_CONCAT(a, b) SLUICE_TESTING_CONCAT_INNER(a, b)

#define EXPECT_OK(expr) EXPECT_THAT((expr), ::sluice::status_testing::IsOk())
#define ASSERT_OK(expr) ASSERT_THAT((expr), ::sluice::status_testing::IsOk())

// `ASSERT_OK_AND_ASSIGN(auto x, MakeX());` declares x from an OK StatusOr, or fails the test
// (fatally, returning from the current function) with the status. `lhs` may also be an existing
// variable. Use only in functions returning void (as ASSERT_* requires).
#define ASSERT_OK_AND_ASSIGN(lhs, rexpr) \
  SLUICE_ASSERT_OK_AND_ASSIGN_IMPL(SLUICE_TESTING_CONCAT(sluice_statusor_, __LINE__), lhs, rexpr)

#define SLUICE_ASSERT_OK_AND_ASSIGN_IMPL(statusor, lhs, rexpr)               \
  auto statusor = (rexpr);                                                   \
  ASSERT_TRUE(statusor.ok()) << #rexpr << " returned " << statusor.status(); \
  lhs = std::move(statusor).value()

#endif  // SLUICE_TESTS_COMMON_STATUS_MATCHERS_H_
