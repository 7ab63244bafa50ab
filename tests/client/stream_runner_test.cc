// StreamArray (sluice-client stream) against the fake "double" model: y = 2x, warm-up 2,
// layout [N, 3, T].
#include "client/cli/stream_runner.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <tuple>

#include "tests/client/fake_streaming_service.h"
#include "tests/common/status_matchers.h"

namespace sluice::client {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

NpyArray Input(int64_t rows, int64_t steps) {
  NpyArray x;
  x.shape = {rows, testing::kFakeChannels, steps};
  for (int64_t i = 0; i < rows * testing::kFakeChannels * steps; ++i) {
    x.data.push_back(0.5f * static_cast<float>(i % 97) - 7.f);
  }
  return x;
}

// x[:, :, warmup:] * 2.
std::vector<float> Expected(const NpyArray& x) {
  std::vector<float> y;
  const int64_t steps = x.shape[2];
  for (int64_t r = 0; r < x.shape[0]; ++r) {
    for (int64_t c = 0; c < x.shape[1]; ++c) {
      for (int64_t t = testing::kFakeWarmup; t < steps; ++t) {
        y.push_back(2.f * x.data[(r * x.shape[1] + c) * steps + t]);
      }
    }
  }
  return y;
}

class StreamRunnerTest : public ::testing::TestWithParam<std::tuple<int, v1::Frames::Layout>> {
 protected:
  testing::FakeStreamingServer server_;
};

TEST_P(StreamRunnerTest, RowsAreStreamedAndReassembledInTheOfflineLayout) {
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server_.address()));
  const NpyArray x = Input(3, 11);
  StreamRunOptions options;
  options.model = "double";
  options.chunk = std::get<0>(GetParam());
  options.layout = std::get<1>(GetParam());
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> y, StreamArray(*client, x, options));
  ASSERT_EQ(y.size(), 1u);
  EXPECT_THAT(y[0].shape, ElementsAre(3, 3, 9));
  EXPECT_EQ(y[0].data, Expected(x));
}

INSTANTIATE_TEST_SUITE_P(ChunksAndLayouts, StreamRunnerTest,
                         ::testing::Combine(::testing::Values(1, 4, 11, 64),
                                            ::testing::Values(v1::Frames::OFFLINE,
                                                              v1::Frames::STACKED)));

TEST(StreamRunner, ShorterThanTheWarmUpGivesAnEmptyTimeAxis) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  StreamRunOptions options;
  options.model = "double";
  ASSERT_OK_AND_ASSIGN(std::vector<NpyArray> y, StreamArray(*client, Input(1, 2), options));
  EXPECT_THAT(y[0].shape, ElementsAre(1, 3, 0));
}

TEST(StreamRunner, InputThatDoesNotFitTheModelIsInvalidArgument) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  StreamRunOptions options;
  options.model = "double";
  NpyArray x;
  x.shape = {1, 4, 5};
  x.data.assign(20, 0.f);
  EXPECT_THAT(StreamArray(*client, x, options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dim 1")));
  options.model = "nope";
  EXPECT_THAT(StreamArray(*client, Input(1, 4), options), StatusIs(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace sluice::client
