// Program loading: the on-disk binary cache, and precompiled binaries through the same
// clCreateProgramWithBinary path the Intel FPGA .aocx takes, exercised with PoCL's own binary.
#include "runtime/opencl/program_cache.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "runtime/opencl/opencl_backend.h"
#include "tests/common/status_matchers.h"
#include "tests/runtime/model_testing.h"
#include "tests/runtime/opencl/opencl_testing.h"

namespace sluice::opencl {
namespace {

namespace fs = std::filesystem;
using ::sluice::model_testing::LoadReferenceModel;
using ::sluice::model_testing::ReferenceModel;
using ::sluice::model_testing::StepBatch;
using ::sluice::model_testing::StepResult;
using ::sluice::opencl::testing::TestCacheDir;
using ::sluice::opencl::testing::TestOptions;
using ::sluice::status_testing::IsOk;
using ::sluice::status_testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

class ProgramCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_OK_AND_ASSIGN(model_, LoadReferenceModel("chomp_tcn"));
    dir_ = absl::StrCat(TestCacheDir(), "/program_cache_test/",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  absl::StatusOr<std::unique_ptr<OpenClBackend>> NewBackend(const OpenClOptions& options,
                                                            const ReferenceModel& model) {
    BackendOptions backend_options;
    backend_options.max_batch = 4;
    return OpenClBackend::Create(model.program, backend_options, options);
  }
  absl::StatusOr<std::unique_ptr<OpenClBackend>> NewBackend(const OpenClOptions& options) {
    return NewBackend(options, model_);
  }

  // Outputs of `steps` steps of one session fed a fixed random sequence.
  std::vector<float> Run(Backend& backend, int steps) {
    std::vector<float> all;
    auto slot = backend.AllocateSlot();
    EXPECT_THAT(slot, IsOk());
    if (!slot.ok()) return all;
    std::mt19937 rng(1);
    std::normal_distribution<float> dist;
    for (int t = 0; t < steps; ++t) {
      std::vector<float> frame(model_.program->input.frame_size);
      for (float& x : frame) x = dist(rng);
      const StepItem item{*slot, frame.data()};
      auto result = StepBatch(backend, {&item, 1});
      EXPECT_THAT(result, IsOk());
      if (!result.ok()) break;
      all.insert(all.end(), result->frames[0].begin(), result->frames[0].end());
    }
    EXPECT_THAT(backend.FreeSlot(*slot), IsOk());
    return all;
  }

  static void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  static std::string ReadFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

  ReferenceModel model_;
  std::string dir_;
};

TEST_F(ProgramCacheTest, SavedBinaryLoadsBackAndRunsTheSame) {
  for (KernelVariant variant : {KernelVariant::kNdRange, KernelVariant::kSingleWorkItem}) {
    SCOPED_TRACE(KernelVariantName(variant));
    ASSERT_OK_AND_ASSIGN(auto from_source, NewBackend(TestOptions(variant)));
    const std::string path = absl::StrCat(dir_, "/", KernelVariantName(variant), ".bin");
    ASSERT_THAT(from_source->SaveProgramBinary(path), IsOk());
    ASSERT_GT(fs::file_size(path), 0u);
    OpenClOptions options = TestOptions(variant);
    options.binary_path = path;
    ASSERT_OK_AND_ASSIGN(auto from_binary, NewBackend(options));
    const std::vector<float> want = Run(*from_source, 12);
    const std::vector<float> got = Run(*from_binary, 12);
    ASSERT_EQ(got.size(), want.size());
    EXPECT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)));
  }
}

TEST_F(ProgramCacheTest, CorruptBinaryIsAClearError) {
  ASSERT_OK_AND_ASSIGN(auto from_source, NewBackend(TestOptions()));
  const std::string good = absl::StrCat(dir_, "/good.bin");
  ASSERT_THAT(from_source->SaveProgramBinary(good), IsOk());
  const std::string bytes = ReadFile(good);
  ASSERT_GT(bytes.size(), 64u);

  // The driver's own bytes without sluice's container (magic, meta length, meta, length).
  uint64_t meta_size = 0;
  std::memcpy(&meta_size, bytes.data() + 8, sizeof(meta_size));
  std::string flipped = bytes;  // Damage inside the driver binary.
  for (size_t i = 8 + 8 + meta_size + 8 + 32; i < flipped.size() - 8; i += 97) {
    flipped[i] = static_cast<char>(~flipped[i]);
  }
  const std::string bare =
      bytes.substr(8 + 8 + meta_size + 8, bytes.size() - 8 - 8 - meta_size - 16);
  std::string other_device = bytes;
  other_device.replace(16, 10, "device=XYZ");
  // An ELF header whose section table lies past the end of the file.
  std::string elf(64, '\0');
  elf.replace(0, 6,
              "\x7f"
              "ELF\x02\x01");
  elf[40] = 100;  // e_shoff
  elf[58] = 64;   // e_shentsize
  elf[60] = 3;    // e_shnum
  const std::vector<std::tuple<std::string, std::string, std::string>> cases = {
      {"garbage", std::string(4096, 'x'), "not a valid binary"},
      {"empty", "", "empty"},
      {"truncated", bytes.substr(0, bytes.size() / 2), "truncated"},
      {"header_only", bytes.substr(0, 16), "truncated"},
      {"flipped", flipped, "checksum"},
      {"bare_pocl", bare, "bare PoCL binary"},
      {"other_device", other_device, "was built for XYZ"},
      {"truncated_elf", elf, "ELF"},
  };
  for (const auto& [name, content, reason] : cases) {
    SCOPED_TRACE(name);
    const std::string path = absl::StrCat(dir_, "/", name, ".bin");
    WriteFile(path, content);
    OpenClOptions options = TestOptions();
    options.binary_path = path;
    EXPECT_THAT(NewBackend(options), StatusIs(absl::StatusCode::kInvalidArgument,
                                              AllOf(HasSubstr(path), HasSubstr(reason))));
  }
  OpenClOptions missing = TestOptions();
  missing.binary_path = absl::StrCat(dir_, "/missing.aocx");
  EXPECT_THAT(NewBackend(missing),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("missing.aocx")));
}

TEST_F(ProgramCacheTest, BinaryOfAnotherModelOrVariantIsRejected) {
  ASSERT_OK_AND_ASSIGN(auto from_source, NewBackend(TestOptions()));
  const std::string path = absl::StrCat(dir_, "/chomp_tcn.bin");
  ASSERT_THAT(from_source->SaveProgramBinary(path), IsOk());
  ASSERT_OK_AND_ASSIGN(ReferenceModel other, LoadReferenceModel("lstm2"));
  OpenClOptions options = TestOptions();
  options.binary_path = path;
  EXPECT_THAT(NewBackend(options, other),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("not built for this model"), HasSubstr(path))));
  options.variant = KernelVariant::kSingleWorkItem;
  EXPECT_THAT(NewBackend(options),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("single_work_item")));
}

TEST_F(ProgramCacheTest, SourceBuildIsCachedAndADamagedEntryRebuilt) {
  OpenClOptions options = TestOptions();
  options.cache = OpenClOptions::Cache::kOn;
  options.cache_dir = dir_;
  ASSERT_OK_AND_ASSIGN(auto first, NewBackend(options));
  EXPECT_FALSE(first->program_from_cache());
  std::vector<std::string> entries;
  for (const auto& entry : fs::directory_iterator(dir_)) entries.push_back(entry.path());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_THAT(entries[0], HasSubstr(".clbin"));

  ASSERT_OK_AND_ASSIGN(auto second, NewBackend(options));
  EXPECT_TRUE(second->program_from_cache());
  const std::vector<float> want = Run(*first, 8);
  EXPECT_EQ(Run(*second, 8), want);

  // Damage the entry: the next load rebuilds from source (no error) and rewrites it.
  std::string bytes = ReadFile(entries[0]);
  WriteFile(entries[0], bytes.substr(0, bytes.size() - 10));
  ASSERT_OK_AND_ASSIGN(auto third, NewBackend(options));
  EXPECT_FALSE(third->program_from_cache());
  EXPECT_EQ(Run(*third, 8), want);
  ASSERT_OK_AND_ASSIGN(auto fourth, NewBackend(options));
  EXPECT_TRUE(fourth->program_from_cache());

  // Another variant is another key.
  options.variant = KernelVariant::kSingleWorkItem;
  ASSERT_OK_AND_ASSIGN(auto other, NewBackend(options));
  EXPECT_FALSE(other->program_from_cache());
}

TEST_F(ProgramCacheTest, CacheOffByDefaultOnCpuDevices) {
  OpenClOptions options = TestOptions();
  options.cache_dir = dir_;
  ASSERT_OK_AND_ASSIGN(auto backend, NewBackend(options));
  EXPECT_TRUE(fs::is_empty(dir_)) << "PoCL caches kernels itself (see OpenClOptions::Cache)";
}

TEST_F(ProgramCacheTest, BuildErrorCarriesTheLog) {
  ASSERT_OK_AND_ASSIGN(DeviceInfo device, SelectDevice("", "cpu"));
  cl_int code = CL_SUCCESS;
  ClContext context(clCreateContext(nullptr, 1, &device.device, nullptr, nullptr, &code));
  ASSERT_EQ(code, CL_SUCCESS);
  EXPECT_THAT(BuildProgram(context.get(), device,
                           "__kernel void k(__global float* x) { x[0] = y; }", "-cl-std=CL1.2", ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("CL_BUILD_PROGRAM_FAILURE"), HasSubstr("build log"))));
  EXPECT_THAT(BuildProgram(context.get(), device, "__kernel void k() {}", "-no-such-option", ""),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace sluice::opencl
