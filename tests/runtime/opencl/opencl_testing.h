// Shared by the OpenCL tests: a writable PoCL cache under the build tree (set before the first
// OpenCL call: without it PoCL finds no device), the options that select PoCL's CPU device, and
// backends loaded once per test binary and reused.
#ifndef SLUICE_TESTS_RUNTIME_OPENCL_OPENCL_TESTING_H_
#define SLUICE_TESTS_RUNTIME_OPENCL_OPENCL_TESTING_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "runtime/opencl/opencl_backend.h"
#include "runtime/streaming/program.h"

#ifndef SLUICE_OPENCL_TEST_CACHE
#error "SLUICE_OPENCL_TEST_CACHE must name a writable directory (tests/runtime/opencl defines it)"
#endif

namespace sluice::opencl::testing {

// The directory shared by every OpenCL test: PoCL's kernel cache and sluice's program cache.
inline std::string TestCacheDir() { return SLUICE_OPENCL_TEST_CACHE; }

// Points POCL_CACHE_DIR at the test cache before main() runs (so before any OpenCL call).
struct PoclCacheEnvironment {
  PoclCacheEnvironment() {
    const std::string pocl = absl::StrCat(TestCacheDir(), "/pocl");
    std::error_code error;
    std::filesystem::create_directories(pocl, error);
    setenv("POCL_CACHE_DIR", pocl.c_str(), /*overwrite=*/1);
  }
};
inline const PoclCacheEnvironment kPoclCacheEnvironment;

// PoCL's CPU device (or the device SLUICE_TEST_OPENCL_DEVICE names), `variant` kernels.
inline OpenClOptions TestOptions(KernelVariant variant = KernelVariant::kNdRange) {
  OpenClOptions options;
  const char* device = std::getenv("SLUICE_TEST_OPENCL_DEVICE");
  options.device = device != nullptr && device[0] != '\0' ? device : "cpu";
  options.variant = variant;
  options.cache_dir = absl::StrCat(TestCacheDir(), "/sluice");
  return options;
}

// A backend for (program, variant, max_batch) loaded once per test binary. Tests allocate and
// free their own slots on it and must leave no slot allocated.
inline absl::StatusOr<OpenClBackend*> SharedBackend(
    const std::string& key, std::shared_ptr<const streaming::Program> program,
    KernelVariant variant, int max_batch = 64) {
  static auto* backends =
      new std::map<std::tuple<std::string, KernelVariant, int>, std::unique_ptr<OpenClBackend>>();
  auto& slot = (*backends)[{key, variant, max_batch}];
  if (slot == nullptr) {
    BackendOptions options;
    options.max_batch = max_batch;
    auto backend = OpenClBackend::Create(std::move(program), options, TestOptions(variant));
    if (!backend.ok()) return backend.status();
    slot = *std::move(backend);
  }
  return slot.get();
}

inline std::string VariantSuffix(KernelVariant variant) {
  return variant == KernelVariant::kSingleWorkItem ? "swi" : "ndrange";
}

}  // namespace sluice::opencl::testing

#endif  // SLUICE_TESTS_RUNTIME_OPENCL_OPENCL_TESTING_H_
