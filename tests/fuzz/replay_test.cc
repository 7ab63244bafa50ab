// Replays a fuzz target's inputs as ordinary unit tests: its seeds (Seeds(), valid inputs the
// oracles must accept) and every file of tests/fuzz/regressions/<target>/ (inputs that once
// crashed or broke an oracle, kept after the fix). Built once per target with
// SLUICE_FUZZ_TARGET naming it, linked with that target's LLVMFuzzerTestOneInput; runs in the
// normal build and, instrumented, in the ASan+UBSan build (scripts/sanitize.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <ostream>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#if !defined(SLUICE_FUZZ_TARGET) || !defined(SLUICE_FUZZ_SUITE)
#error "SLUICE_FUZZ_TARGET and SLUICE_FUZZ_SUITE must name the fuzz target (see CMakeLists.txt)"
#endif

namespace sluice::fuzz {
namespace {

struct Input {
  std::string name;  // A gtest-safe name.
  std::string path;  // Empty for a seed.
  int seed = -1;

  friend void PrintTo(const Input& input, std::ostream* os) { *os << input.name; }
};

std::string SafeName(std::string name) {
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

std::vector<Input> Inputs() {
  std::vector<Input> inputs;
  const size_t seeds = Seeds().size();
  for (size_t i = 0; i < seeds; ++i) {
    inputs.push_back({absl::StrCat("seed_", i), "", static_cast<int>(i)});
  }
  const std::filesystem::path dir =
      SourcePath(absl::StrCat("tests/fuzz/regressions/", SLUICE_FUZZ_TARGET));
  std::error_code error;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.is_regular_file() && entry.path().filename() != "README.md") {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  for (const auto& file : files) {
    inputs.push_back({SafeName(file.filename().string()), file.string(), -1});
  }
  return inputs;
}

class ReplayTest : public ::testing::TestWithParam<Input> {};

TEST_P(ReplayTest, RunsCleanly) {
  const Input& input = GetParam();
  const std::string bytes = input.seed >= 0 ? Seeds()[input.seed] : ReadFileOrEmpty(input.path);
  if (input.seed >= 0) {
    ASSERT_FALSE(bytes.empty()) << "seed " << input.seed << " is empty (a missing file?)";
  }
  // A broken oracle or a crash aborts the process: ctest reports the test as failed.
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

// Named after the target (e.g. FuzzOnnx/ReplayTest.RunsCleanly/seed_0), so that the three
// replay binaries' tests have distinct ctest names.
INSTANTIATE_TEST_SUITE_P(SLUICE_FUZZ_SUITE, ReplayTest, ::testing::ValuesIn(Inputs()),
                         [](const ::testing::TestParamInfo<Input>& info) {
                           return info.param.name;
                         });

}  // namespace
}  // namespace sluice::fuzz
