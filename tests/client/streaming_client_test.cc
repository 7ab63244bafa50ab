// StreamingClient's unary calls against the in-process fake service.
#include "client/lib/streaming_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/client/fake_streaming_service.h"
#include "tests/common/status_matchers.h"

namespace sluice::client {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

TEST(StreamingClient, CreateRejectsBadOptions) {
  EXPECT_THAT(StreamingClient::Create(""), StatusIs(absl::StatusCode::kInvalidArgument));
  ClientOptions options;
  options.connections = 0;
  EXPECT_THAT(StreamingClient::Create("127.0.0.1:1", options),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(StreamingClient, ListModelsAndModelInfo) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  ASSERT_OK_AND_ASSIGN(v1::ListModelsResponse list, client->ListModels());
  ASSERT_EQ(list.models_size(), 2);
  EXPECT_EQ(list.models(0).name(), "double");
  EXPECT_TRUE(list.models(0).ready());
  EXPECT_FALSE(list.models(1).ready());
  ASSERT_OK_AND_ASSIGN(v1::ModelInfoResponse info, client->ModelInfo("double"));
  EXPECT_EQ(info.warmup_frames(), testing::kFakeWarmup);
  EXPECT_EQ(info.input().time_axis(), 2);
  EXPECT_THAT(client->ModelInfo("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST(StreamingClient, HealthFollowsTheServingStatus) {
  testing::FakeStreamingServer server;
  ASSERT_OK_AND_ASSIGN(auto client, StreamingClient::Create(server.address()));
  ASSERT_OK_AND_ASSIGN(ServingStatus status, client->Health());
  EXPECT_EQ(status, ServingStatus::kServing);
  EXPECT_EQ(ServingStatusName(status), "SERVING");
  server.SetServing(false);
  ASSERT_OK_AND_ASSIGN(status, client->Health());
  EXPECT_EQ(status, ServingStatus::kNotServing);
  EXPECT_THAT(client->Health("no.such.Service"), StatusIs(absl::StatusCode::kNotFound));
}

TEST(StreamingClient, UnreachableServerIsUnavailable) {
  int port = 0;
  {
    // Take a free port and release it: nothing listens there afterwards.
    testing::FakeStreamingServer server;
    port = std::stoi(server.address().substr(server.address().rfind(':') + 1));
  }
  ClientOptions options;
  options.rpc_timeout = absl::Seconds(5);
  ASSERT_OK_AND_ASSIGN(auto client,
                       StreamingClient::Create("127.0.0.1:" + std::to_string(port), options));
  EXPECT_THAT(client->Health(), StatusIs(absl::StatusCode::kUnavailable));
  EXPECT_THAT(client->NewSession()->Open("double"), StatusIs(absl::StatusCode::kUnavailable));
}

}  // namespace
}  // namespace sluice::client
