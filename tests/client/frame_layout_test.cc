#include "client/lib/frame_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/common/status_matchers.h"

namespace sluice::client {
namespace {

using ::sluice::status_testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

v1::TensorSpec MakeSpec(std::vector<int64_t> offline, int time_axis) {
  v1::TensorSpec spec;
  spec.set_name("x");
  spec.set_dtype(v1::FLOAT32);
  spec.set_time_axis(time_axis);
  for (size_t d = 0; d < offline.size(); ++d) {
    spec.add_offline_shape(offline[d]);
    if (static_cast<int>(d) != time_axis) spec.add_frame_shape(offline[d]);
  }
  return spec;
}

std::vector<float> Floats(const v1::Tensor& tensor) {
  std::vector<float> values(tensor.data().size() / 4);
  std::memcpy(values.data(), tensor.data().data(), tensor.data().size());
  return values;
}

TEST(FrameLayout, SpecHelpers) {
  const v1::TensorSpec nct = MakeSpec({1, 3, -1}, 2);
  EXPECT_EQ(FrameSize(nct), 3);
  EXPECT_EQ(BatchAxis(nct), 0);
  EXPECT_THAT(ChunkShape(nct, 5), ElementsAre(1, 3, 5));
  EXPECT_EQ(BatchAxis(MakeSpec({-1, 1, 10}, 0)), 1);
  EXPECT_EQ(BatchAxis(MakeSpec({-1, 4}, 0)), -1);
  EXPECT_EQ(DataTypeSize(v1::INT16), 2);
  EXPECT_EQ(DataTypeSize(v1::DATA_TYPE_UNSPECIFIED), 0);
}

TEST(FrameLayout, StackedFramesKeepTheirBytes) {
  const v1::TensorSpec spec = MakeSpec({1, 3, -1}, 2);
  // Frame-major: frame t = {10t, 10t+1, 10t+2}.
  const std::vector<float> frames = {0, 1, 2, 10, 11, 12};
  ASSERT_OK_AND_ASSIGN(v1::Tensor tensor, PackFrames(spec, v1::FLOAT32, frames.data(), 2));
  EXPECT_THAT(tensor.shape(), ElementsAre(2, 1, 3));
  EXPECT_THAT(Floats(tensor), ElementsAreArray(frames));
  int64_t count = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<float> back, UnpackFrames(spec, tensor, &count));
  EXPECT_EQ(count, 2);
  EXPECT_THAT(back, ElementsAreArray(frames));
}

TEST(FrameLayout, OneStackedFrameUsesTheFrameShape) {
  const v1::TensorSpec spec = MakeSpec({1, 3, -1}, 2);
  const std::vector<float> frame = {1, 2, 3};
  ASSERT_OK_AND_ASSIGN(v1::Tensor tensor, PackFrames(spec, v1::FLOAT32, frame.data(), 1));
  EXPECT_THAT(tensor.shape(), ElementsAre(1, 3));
  int64_t count = 0;
  ASSERT_OK_AND_ASSIGN(std::vector<float> back, UnpackFrames(spec, tensor, &count));
  EXPECT_EQ(count, 1);
  EXPECT_THAT(back, ElementsAreArray(frame));
}

TEST(FrameLayout, OfflineChannelsFirstChunkIsTransposed) {
  const v1::TensorSpec spec = MakeSpec({1, 3, -1}, 2);
  const std::vector<float> frames = {0, 1, 2, 10, 11, 12};
  ASSERT_OK_AND_ASSIGN(v1::Tensor tensor,
                       PackFrames(spec, v1::FLOAT32, frames.data(), 2, v1::Frames::OFFLINE));
  EXPECT_THAT(tensor.shape(), ElementsAre(1, 3, 2));
  EXPECT_THAT(Floats(tensor), ElementsAre(0, 10, 1, 11, 2, 12));
  // One frame in the offline layout keeps the time dim.
  ASSERT_OK_AND_ASSIGN(tensor,
                       PackFrames(spec, v1::FLOAT32, frames.data(), 1, v1::Frames::OFFLINE));
  EXPECT_THAT(tensor.shape(), ElementsAre(1, 3, 1));
}

TEST(FrameLayout, OfflineTimeFirstAndBatchFirstLayoutsNeedNoTranspose) {
  for (const auto& [offline, axis] : {std::pair{std::vector<int64_t>{-1, 1, 2}, 0},
                                      std::pair{std::vector<int64_t>{1, -1, 2}, 1}}) {
    const v1::TensorSpec spec = MakeSpec(offline, axis);
    const std::vector<float> frames = {1, 2, 3, 4, 5, 6};
    ASSERT_OK_AND_ASSIGN(v1::Tensor tensor,
                         PackFrames(spec, v1::FLOAT32, frames.data(), 3, v1::Frames::OFFLINE));
    EXPECT_THAT(Floats(tensor), ElementsAreArray(frames));
    EXPECT_EQ(tensor.shape(axis), 3);
  }
}

TEST(FrameLayout, Int16FramesUnpackScaled) {
  const v1::TensorSpec spec = MakeSpec({1, 2, -1}, 2);
  const std::vector<int16_t> frames = {16384, -32768, 0, 8192};
  ASSERT_OK_AND_ASSIGN(v1::Tensor tensor, PackFrames(spec, v1::INT16, frames.data(), 2));
  EXPECT_EQ(tensor.dtype(), v1::INT16);
  EXPECT_EQ(tensor.data().size(), 8u);
  ASSERT_OK_AND_ASSIGN(std::vector<float> back, UnpackFrames(spec, tensor));
  EXPECT_THAT(back, ElementsAre(0.5f, -1.f, 0.f, 0.25f));
}

TEST(FrameLayout, BadInputsAreInvalidArgument) {
  const v1::TensorSpec spec = MakeSpec({1, 3, -1}, 2);
  const std::vector<float> frames(6);
  EXPECT_THAT(PackFrames(spec, v1::FLOAT32, frames.data(), 0),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(PackFrames(spec, v1::DATA_TYPE_UNSPECIFIED, frames.data(), 1),
              StatusIs(absl::StatusCode::kInvalidArgument));
  v1::Tensor tensor;
  tensor.set_dtype(v1::FLOAT32);
  tensor.add_shape(2);
  tensor.add_shape(1);
  tensor.add_shape(4);
  tensor.set_data(std::string(32, '\0'));
  EXPECT_THAT(UnpackFrames(spec, tensor), StatusIs(absl::StatusCode::kInvalidArgument));
  tensor.set_shape(2, 3);
  EXPECT_THAT(UnpackFrames(spec, tensor), StatusIs(absl::StatusCode::kInvalidArgument));  // Size.
  tensor.set_data(std::string(24, '\0'));
  EXPECT_OK(UnpackFrames(spec, tensor));
}

}  // namespace
}  // namespace sluice::client
