// Shared by the fuzz targets: oracle failures (FUZZ_CHECK), and seed inputs. Every target
// defines sluice::fuzz::Seeds() (valid inputs made from the repository's own models and
// configs, so no corpus is committed); `SLUICE_FUZZ_WRITE_SEEDS=dir <fuzzer>` writes them to
// dir and exits (scripts/fuzz.sh), and the ctest replay runs them through the target.
#ifndef SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

// FUZZ_CHECK(cond, message parts...): the parts are absl::StrCat arguments. Prints and aborts,
// so that libFuzzer saves the input as a crasher and the ctest replay fails on it.
#define FUZZ_CHECK(cond, ...)                                                               \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      const std::string fuzz_message_ = absl::StrCat(__VA_ARGS__);                          \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond, \
                   fuzz_message_.c_str());                                                  \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

#ifndef SLUICE_SOURCE_DIR
#error "SLUICE_SOURCE_DIR must name the repository root"
#endif

namespace sluice::fuzz {

// Valid inputs of this target (defined by each target).
std::vector<std::string> Seeds();

inline std::string SourcePath(const std::string& relative) {
  return absl::StrCat(SLUICE_SOURCE_DIR, "/", relative);
}

// The bytes of a file ("" when unreadable: a missing seed only weakens the corpus).
inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

// Called from LLVMFuzzerInitialize: with SLUICE_FUZZ_WRITE_SEEDS=dir, writes Seeds() as
// dir/seed_<i> and exits.
inline void WriteSeedsIfAsked() {
  const char* dir = std::getenv("SLUICE_FUZZ_WRITE_SEEDS");
  if (dir == nullptr || *dir == '\0') return;
  const std::vector<std::string> seeds = Seeds();
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream out(absl::StrCat(dir, "/seed_", i), std::ios::binary);
    out << seeds[i];
    if (!out) {
      std::fprintf(stderr, "cannot write seeds to %s\n", dir);
      std::exit(1);
    }
  }
  std::fprintf(stderr, "wrote %zu seeds to %s\n", seeds.size(), dir);
  std::exit(0);
}

}  // namespace sluice::fuzz

#endif  // SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_H_
