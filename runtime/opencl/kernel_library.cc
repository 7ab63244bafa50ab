#include "runtime/opencl/kernel_library.h"

namespace sluice::opencl {

std::optional<std::string_view> KernelFileText(std::string_view path) {
  for (int i = 0; i < internal::kKernelFileCount; ++i) {
    if (path == internal::kKernelFiles[i].path) return internal::kKernelFiles[i].text;
  }
  return std::nullopt;
}

}  // namespace sluice::opencl
