// Unit tests of DecodeFrames (server/api/frame_codec.h): the STACKED and OFFLINE layouts, the
// INT16 scaling, and one InvalidArgument per kind of malformed Frames request.
#include "server/api/frame_codec.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace sluice::server {
namespace {

// A model input shaped like a conv model's: offline [1, channels, -1], time axis 2, so a frame
// is [1, channels].
streaming::StreamSpec ConvSpec(int64_t channels) {
  streaming::StreamSpec spec;
  spec.offline_shape = {1, channels, -1};
  spec.time_axis = 2;
  spec.batch_axis = 0;
  spec.frame_shape = {1, channels};
  spec.frame_size = channels;
  return spec;
}

// An RNN-like input: offline [-1, 1, features], time axis 0.
streaming::StreamSpec RnnSpec(int64_t features) {
  streaming::StreamSpec spec;
  spec.offline_shape = {-1, 1, features};
  spec.time_axis = 0;
  spec.batch_axis = 1;
  spec.frame_shape = {1, features};
  spec.frame_size = features;
  return spec;
}

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

std::string Int16Bytes(const std::vector<int16_t>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(int16_t));
}

v1::Frames MakeFrames(v1::DataType dtype, const std::vector<int64_t>& shape, std::string data,
                      v1::Frames::Layout layout = v1::Frames::STACKED) {
  v1::Frames frames;
  frames.set_layout(layout);
  frames.mutable_tensor()->set_dtype(dtype);
  for (int64_t d : shape) frames.mutable_tensor()->add_shape(d);
  frames.mutable_tensor()->set_data(std::move(data));
  return frames;
}

// Decodes and expects InvalidArgument whose message contains every one of `needles`; also checks
// that `out` is left untouched.
void ExpectInvalid(const v1::Frames& frames, const streaming::StreamSpec& spec,
                   const std::vector<std::string>& needles) {
  std::vector<std::vector<float>> out = {{42.f}};
  absl::Status status;
  try {
    status = DecodeFrames(frames, spec, &out);
  } catch (const std::exception& e) {
    FAIL() << "DecodeFrames threw " << e.what() << " (a bad request must be an InvalidArgument, "
           << "not an exception that terminates the server)";
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  for (const std::string& needle : needles) {
    EXPECT_NE(status.message().find(needle), std::string::npos)
        << "message '" << status.message() << "' does not mention '" << needle << "'";
  }
  ASSERT_EQ(out.size(), 1u) << "out was modified on error";
  EXPECT_EQ(out[0], std::vector<float>{42.f}) << "out was modified on error";
}

TEST(DecodeFramesTest, StackedSingleFrameWithoutLeadingK) {
  const streaming::StreamSpec spec = ConvSpec(3);
  std::vector<std::vector<float>> out;
  ASSERT_TRUE(
      DecodeFrames(MakeFrames(v1::FLOAT32, {1, 3}, FloatBytes({1.f, 2.f, 3.f})), spec, &out).ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (std::vector<float>{1.f, 2.f, 3.f}));
}

TEST(DecodeFramesTest, StackedSingleFrameWithLeadingOne) {
  const streaming::StreamSpec spec = ConvSpec(3);
  std::vector<std::vector<float>> out;
  ASSERT_TRUE(
      DecodeFrames(MakeFrames(v1::FLOAT32, {1, 1, 3}, FloatBytes({4.f, 5.f, 6.f})), spec, &out)
          .ok());
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], (std::vector<float>{4.f, 5.f, 6.f}));
}

TEST(DecodeFramesTest, StackedKFramesInOrder) {
  const streaming::StreamSpec spec = ConvSpec(3);
  std::vector<float> data;
  for (int t = 0; t < 4; ++t) {
    for (int c = 0; c < 3; ++c) data.push_back(static_cast<float>(10 * t + c));
  }
  std::vector<std::vector<float>> out;
  const absl::Status status =
      DecodeFrames(MakeFrames(v1::FLOAT32, {4, 1, 3}, FloatBytes(data)), spec, &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 4u);
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(out[t], (std::vector<float>{10.f * t, 10.f * t + 1, 10.f * t + 2})) << "frame " << t;
  }
}

TEST(DecodeFramesTest, OfflineLayoutWithTimeLastTransposesToFrames) {
  // Offline [1, C=3, T=4] row-major: element (c, t) is at c * 4 + t. Frame t must be
  // [x(0,t), x(1,t), x(2,t)], not 3 consecutive floats.
  const streaming::StreamSpec spec = ConvSpec(3);
  std::vector<float> data(12);
  for (int c = 0; c < 3; ++c) {
    for (int t = 0; t < 4; ++t) data[c * 4 + t] = static_cast<float>(100 * c + t);
  }
  std::vector<std::vector<float>> out;
  const absl::Status status = DecodeFrames(
      MakeFrames(v1::FLOAT32, {1, 3, 4}, FloatBytes(data), v1::Frames::OFFLINE), spec, &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 4u);
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(out[t], (std::vector<float>{static_cast<float>(t), 100.f + t, 200.f + t}))
        << "frame " << t;
  }
}

TEST(DecodeFramesTest, OfflineLayoutWithTimeFirstIsContiguous) {
  const streaming::StreamSpec spec = RnnSpec(2);
  std::vector<std::vector<float>> out;
  const absl::Status status = DecodeFrames(
      MakeFrames(v1::FLOAT32, {3, 1, 2}, FloatBytes({1, 2, 3, 4, 5, 6}), v1::Frames::OFFLINE), spec,
      &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (std::vector<float>{1, 2}));
  EXPECT_EQ(out[1], (std::vector<float>{3, 4}));
  EXPECT_EQ(out[2], (std::vector<float>{5, 6}));
}

TEST(DecodeFramesTest, OfflineLayoutWithBatchOneBeforeTimeIsContiguous) {
  // Offline [1, T, C] (time axis 1): only a size-1 axis precedes time, so frame t is the t-th run
  // of C values.
  streaming::StreamSpec spec;
  spec.offline_shape = {1, -1, 3};
  spec.time_axis = 1;
  spec.batch_axis = 0;
  spec.frame_shape = {1, 3};
  spec.frame_size = 3;
  std::vector<std::vector<float>> out;
  const absl::Status status = DecodeFrames(
      MakeFrames(v1::FLOAT32, {1, 2, 3}, FloatBytes({1, 2, 3, 4, 5, 6}), v1::Frames::OFFLINE), spec,
      &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(out[1], (std::vector<float>{4, 5, 6}));
}

TEST(DecodeFramesTest, Int16IsScaledBy1Over32768) {
  const streaming::StreamSpec spec = ConvSpec(4);
  std::vector<std::vector<float>> out;
  const absl::Status status = DecodeFrames(
      MakeFrames(v1::INT16, {2, 1, 4}, Int16Bytes({-32768, 0, 16384, 32767, 1, -1, -16384, 8192})),
      spec, &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0][0], -1.0f);
  EXPECT_EQ(out[0][1], 0.0f);
  EXPECT_EQ(out[0][2], 0.5f);
  EXPECT_FLOAT_EQ(out[0][3], 32767.f / 32768.f);
  EXPECT_FLOAT_EQ(out[1][0], 1.f / 32768.f);
  EXPECT_FLOAT_EQ(out[1][1], -1.f / 32768.f);
  EXPECT_EQ(out[1][2], -0.5f);
  EXPECT_EQ(out[1][3], 0.25f);
}

TEST(DecodeFramesTest, Int16OfflineLayout) {
  const streaming::StreamSpec spec = ConvSpec(2);
  std::vector<std::vector<float>> out;
  // [1, C=2, T=2]: (0,0)=-32768 (0,1)=16384 (1,0)=0 (1,1)=-16384.
  const absl::Status status = DecodeFrames(
      MakeFrames(v1::INT16, {1, 2, 2}, Int16Bytes({-32768, 16384, 0, -16384}), v1::Frames::OFFLINE),
      spec, &out);
  ASSERT_TRUE(status.ok()) << status;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (std::vector<float>{-1.f, 0.f}));
  EXPECT_EQ(out[1], (std::vector<float>{0.5f, -0.5f}));
}

TEST(DecodeFramesTest, TagsOnePerFrameAreAccepted) {
  const streaming::StreamSpec spec = ConvSpec(1);
  v1::Frames frames = MakeFrames(v1::FLOAT32, {2, 1, 1}, FloatBytes({1, 2}));
  frames.add_tags("a");
  frames.add_tags("b");
  std::vector<std::vector<float>> out;
  EXPECT_TRUE(DecodeFrames(frames, spec, &out).ok());
  EXPECT_EQ(out.size(), 2u);
}

TEST(DecodeFramesTest, WrongDtypeIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(3);
  ExpectInvalid(MakeFrames(v1::DATA_TYPE_UNSPECIFIED, {1, 3}, FloatBytes({1, 2, 3})), spec,
                {"dtype", "DATA_TYPE_UNSPECIFIED"});
  ExpectInvalid(MakeFrames(static_cast<v1::DataType>(7), {1, 3}, FloatBytes({1, 2, 3})), spec,
                {"dtype"});
}

TEST(DecodeFramesTest, WrongStackedShapeIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(3);
  ExpectInvalid(MakeFrames(v1::FLOAT32, {1, 4}, FloatBytes({1, 2, 3, 4})), spec,
                {"shape", "[1,4]", "[1,3]"});
  ExpectInvalid(MakeFrames(v1::FLOAT32, {2, 3}, FloatBytes({1, 2, 3, 4, 5, 6})), spec,
                {"shape", "[2,3]"});
  ExpectInvalid(MakeFrames(v1::FLOAT32, {}, ""), spec, {"shape"});
}

TEST(DecodeFramesTest, WrongOfflineShapeIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(3);
  // Stacked-style shape sent as OFFLINE: [k, 1, 3] against offline [1, 3, -1].
  ExpectInvalid(
      MakeFrames(v1::FLOAT32, {2, 1, 3}, FloatBytes({1, 2, 3, 4, 5, 6}), v1::Frames::OFFLINE), spec,
      {"shape", "offline", "[1,3,-1]"});
  ExpectInvalid(MakeFrames(v1::FLOAT32, {1, 3}, FloatBytes({1, 2, 3}), v1::Frames::OFFLINE), spec,
                {"shape"});
}

TEST(DecodeFramesTest, ByteLengthMismatchIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(3);
  // Too few bytes for the shape (2 frames x 3 floats = 24 bytes).
  ExpectInvalid(MakeFrames(v1::FLOAT32, {2, 1, 3}, FloatBytes({1, 2, 3, 4, 5})), spec,
                {"20 bytes"});
  // INT16 data sized as if it were float32.
  ExpectInvalid(MakeFrames(v1::INT16, {1, 3}, FloatBytes({1, 2, 3})), spec,
                {"12 bytes", "INT16", "needs 6"});
  // Too many bytes.
  ExpectInvalid(MakeFrames(v1::FLOAT32, {1, 3}, FloatBytes({1, 2, 3}) + "x"), spec, {"13 bytes"});
}

TEST(DecodeFramesTest, TagCountMismatchIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(1);
  v1::Frames frames = MakeFrames(v1::FLOAT32, {3, 1, 1}, FloatBytes({1, 2, 3}));
  frames.add_tags("a");
  frames.add_tags("b");
  ExpectInvalid(frames, spec, {"2 tags", "3 frames"});
}

TEST(DecodeFramesTest, ZeroFramesIsInvalidArgument) {
  const streaming::StreamSpec spec = ConvSpec(3);
  ExpectInvalid(MakeFrames(v1::FLOAT32, {0, 1, 3}, ""), spec, {"no frames"});
  ExpectInvalid(MakeFrames(v1::FLOAT32, {1, 3, 0}, "", v1::Frames::OFFLINE), spec, {"no frames"});
  // A negative frame count is not a count either.
  ExpectInvalid(MakeFrames(v1::FLOAT32, {-2, 1, 3}, ""), spec, {});
}

// A frame count so large that count * frame_size * 4 wraps around int64 to the (empty) data
// length must still be rejected: otherwise DecodeFrames tries to allocate 2^62 frames, and the
// exception escapes a gRPC callback and terminates the server. One small message from any
// client would be enough to kill it.
TEST(DecodeFramesTest, HugeFrameCountThatOverflowsTheByteLengthIsInvalidArgument) {
  // frame_size 1, float32: 2^62 frames * 1 * 4 bytes = 2^64 == 0 (mod 2^64).
  ExpectInvalid(MakeFrames(v1::FLOAT32, {int64_t{1} << 62, 1, 1}, ""), ConvSpec(1), {});
  // frame_size 128 (cnn_tiny), float32: 2^55 * 128 * 4 = 2^64.
  ExpectInvalid(MakeFrames(v1::FLOAT32, {int64_t{1} << 55, 1, 128}, ""), ConvSpec(128), {});
  // The same through the OFFLINE layout's time dimension.
  ExpectInvalid(MakeFrames(v1::FLOAT32, {1, 1, int64_t{1} << 62}, "", v1::Frames::OFFLINE),
                ConvSpec(1), {});
}

}  // namespace
}  // namespace sluice::server
