#include "runtime/common/npy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/common/status_matchers.h"

namespace sluice {
namespace {

using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::HasSubstr;

std::string TempPath(const std::string& name) {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return absl::StrCat(::testing::TempDir(), "/npy_test_", info->name(), "_", name);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

// A .npy file as NumPy writes it: version 1.0, header padded with spaces to a multiple of 64.
std::string NpyBytes(const std::string& dict, const std::string& data, char major = 1) {
  std::string header = dict;
  const size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string bytes = "\x93NUMPY";
  bytes += major;
  bytes += '\0';
  const size_t len = header.size();
  bytes += static_cast<char>(len & 0xff);
  bytes += static_cast<char>((len >> 8) & 0xff);
  if (major != 1) {
    bytes += '\0';
    bytes += '\0';
  }
  return bytes + header + data;
}

std::string FloatBytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

NpyArray RandomArray(std::vector<int64_t> shape, uint32_t seed) {
  NpyArray array;
  array.shape = std::move(shape);
  int64_t count = 1;
  for (int64_t d : array.shape) count *= d;
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 3.f);
  for (int64_t i = 0; i < count; ++i) array.data.push_back(dist(rng));
  return array;
}

TEST(NpyTest, RoundTripsEveryRank) {
  const std::vector<std::vector<int64_t>> shapes = {
      {}, {1}, {7}, {3, 5}, {2, 3, 4}, {2, 1, 3, 2}, {1, 2, 1, 2, 3}, {0}, {4, 0, 2}};
  uint32_t seed = 1;
  for (const auto& shape : shapes) {
    SCOPED_TRACE(absl::StrCat("shape (", absl::StrJoin(shape, ","), ")"));
    const NpyArray original = RandomArray(shape, seed++);
    const std::string path = TempPath(absl::StrCat(seed, ".npy"));
    ASSERT_THAT(WriteNpy(path, original), IsOk());
    ASSERT_OK_AND_ASSIGN(NpyArray read, ReadNpy(path));
    EXPECT_EQ(read.shape, original.shape);
    ASSERT_EQ(read.data.size(), original.data.size());
    if (original.data.empty()) continue;
    EXPECT_EQ(0, std::memcmp(read.data.data(), original.data.data(),
                             original.data.size() * sizeof(float)));
  }
}

TEST(NpyTest, ZeroDimensionalArrayHoldsOneValue) {
  NpyArray scalar;
  scalar.data = {42.5f};
  const std::string path = TempPath("scalar.npy");
  ASSERT_THAT(WriteNpy(path, scalar), IsOk());
  ASSERT_OK_AND_ASSIGN(NpyArray read, ReadNpy(path));
  EXPECT_TRUE(read.shape.empty());
  EXPECT_THAT(read.data, ::testing::ElementsAre(42.5f));
}

TEST(NpyTest, RoundTripPreservesSpecialValuesBitwise) {
  NpyArray array;
  array.shape = {6};
  array.data = {-0.f,
                std::numeric_limits<float>::infinity(),
                -std::numeric_limits<float>::infinity(),
                std::numeric_limits<float>::quiet_NaN(),
                std::numeric_limits<float>::denorm_min(),
                std::numeric_limits<float>::max()};
  const std::string path = TempPath("special.npy");
  ASSERT_THAT(WriteNpy(path, array), IsOk());
  ASSERT_OK_AND_ASSIGN(NpyArray read, ReadNpy(path));
  ASSERT_EQ(read.data.size(), array.data.size());
  EXPECT_EQ(0, std::memcmp(read.data.data(), array.data.data(), array.data.size() * 4));
}

TEST(NpyTest, WritesNumpyCompatibleHeader) {
  NpyArray array = RandomArray({2, 3}, 7);
  const std::string path = TempPath("header.npy");
  ASSERT_THAT(WriteNpy(path, array), IsOk());
  const std::string bytes = ReadBytes(path);
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], 1);
  EXPECT_EQ(bytes[7], 0);
  const size_t header_len =
      static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
  // NumPy requires the data to start 64-byte aligned and the header to end with '\n'.
  EXPECT_EQ((10 + header_len) % 64, 0u);
  ASSERT_LE(10 + header_len, bytes.size());
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_THAT(header, HasSubstr("'descr': '<f4'"));
  EXPECT_THAT(header, HasSubstr("'fortran_order': False"));
  EXPECT_THAT(header, HasSubstr("'shape': (2, 3)"));
  EXPECT_EQ(bytes.size(), 10 + header_len + 6 * sizeof(float));
}

TEST(NpyTest, OneDimensionalShapeIsATuple) {
  NpyArray array = RandomArray({5}, 3);
  const std::string path = TempPath("vector.npy");
  ASSERT_THAT(WriteNpy(path, array), IsOk());
  // Python's one-element tuple needs the trailing comma: (5,) not (5).
  EXPECT_THAT(ReadBytes(path), HasSubstr("'shape': (5,)"));
}

TEST(NpyTest, ParsesFilesWrittenByNumpy) {
  const std::vector<float> values = {1.f, -2.f, 3.5f, 0.25f, 8.f, -0.5f};
  // Version 1.0 with NumPy's exact dict formatting, and version 2.0 (4-byte header length).
  for (char major : {1, 2}) {
    SCOPED_TRACE(absl::StrCat("version ", static_cast<int>(major)));
    const std::string bytes = NpyBytes(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }", FloatBytes(values), major);
    ASSERT_OK_AND_ASSIGN(NpyArray array, ParseNpy(bytes, "numpy.npy"));
    EXPECT_THAT(array.shape, ::testing::ElementsAre(3, 2));
    EXPECT_EQ(array.data, values);
  }
}

TEST(NpyTest, ReadsReferenceModelInput) {
  ASSERT_OK_AND_ASSIGN(NpyArray array,
                       ReadNpy(absl::StrCat(SLUICE_SOURCE_DIR, "/tests/models/lstm2/input.npy")));
  EXPECT_THAT(array.shape, ::testing::ElementsAre(40, 8, 10));
  EXPECT_EQ(array.data.size(), 40u * 8 * 10);
}

TEST(NpyTest, RejectsNonFloat32Dtypes) {
  for (const std::string descr : {"<f8", "<i4", "|u1", ">f4", "<f2", "|b1"}) {
    SCOPED_TRACE(descr);
    const std::string bytes =
        NpyBytes(absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (2,), }"),
                 std::string(descr == "<f8" ? 16 : 8, '\0'));
    EXPECT_THAT(ParseNpy(bytes, "typed.npy"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(descr)));
  }
}

TEST(NpyTest, RejectsNonFloatFileOnDisk) {
  const std::string path = TempPath("int.npy");
  WriteBytes(path, NpyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }",
                            std::string(16, '\0')));
  EXPECT_THAT(ReadNpy(path), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(path)));
}

TEST(NpyTest, RejectsFortranOrder) {
  const std::string bytes =
      NpyBytes("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", std::string(16, 0));
  EXPECT_THAT(ParseNpy(bytes, "f.npy"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Fortran")));
}

TEST(NpyTest, RejectsTruncatedData) {
  const std::string path = TempPath("full.npy");
  ASSERT_THAT(WriteNpy(path, RandomArray({4, 4}, 11)), IsOk());
  const std::string bytes = ReadBytes(path);
  const std::string truncated_path = TempPath("truncated.npy");
  WriteBytes(truncated_path, bytes.substr(0, bytes.size() - 5));
  EXPECT_THAT(ReadNpy(truncated_path),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(truncated_path)));
  // Trailing bytes are as wrong as missing ones.
  EXPECT_THAT(ParseNpy(bytes + "xxxx", "long.npy"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(NpyTest, RejectsTruncatedHeader) {
  const std::string path = TempPath("full.npy");
  ASSERT_THAT(WriteNpy(path, RandomArray({3}, 5)), IsOk());
  const std::string bytes = ReadBytes(path);
  for (size_t keep : {size_t{0}, size_t{5}, size_t{9}, size_t{11}, size_t{40}}) {
    SCOPED_TRACE(absl::StrCat("first ", keep, " bytes"));
    EXPECT_THAT(ParseNpy(bytes.substr(0, keep), "cut.npy"),
                StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(NpyTest, RejectsBadMagic) {
  const std::string good =
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", FloatBytes({1.f}));
  std::string bad = good;
  bad[1] = 'M';
  EXPECT_THAT(ParseNpy(bad, "bad.npy"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
  const std::string path = TempPath("text.npy");
  WriteBytes(path, "this is a text file, not an array\n");
  EXPECT_THAT(ReadNpy(path), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("magic")));
}

TEST(NpyTest, RejectsUnsupportedVersion) {
  std::string bytes =
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", FloatBytes({1.f}));
  bytes[6] = 9;
  EXPECT_THAT(ParseNpy(bytes, "v9.npy"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("version")));
}

TEST(NpyTest, RejectsMalformedShape) {
  for (const std::string shape : {"(2, x)", "(-1, 2)", "[2, 2]"}) {
    SCOPED_TRACE(shape);
    const std::string bytes =
        NpyBytes(absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': ", shape, ", }"),
                 std::string(16, '\0'));
    EXPECT_THAT(ParseNpy(bytes, "shape.npy"), StatusIs(absl::StatusCode::kInvalidArgument));
  }
}

TEST(NpyTest, RejectsShapeWhoseElementCountOverflows) {
  // 2^62 * 4 wraps to 0 in 64 bits: a reader must not accept an empty payload for it (the
  // result's shape would promise 2^64 elements that its data does not hold).
  const std::string bytes =
      NpyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }", "");
  EXPECT_THAT(ParseNpy(bytes, "huge.npy"), StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(NpyTest, MissingFileIsNotFound) {
  const std::string path = TempPath("does_not_exist.npy");
  EXPECT_THAT(ReadNpy(path), StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
}

TEST(NpyTest, WriteToUnwritablePathFails) {
  NpyArray array = RandomArray({2}, 1);
  const absl::Status status = WriteNpy("/nonexistent-dir/sub/out.npy", array);
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(std::string(status.message()), HasSubstr("/nonexistent-dir/sub/out.npy"));
}

}  // namespace
}  // namespace sluice
