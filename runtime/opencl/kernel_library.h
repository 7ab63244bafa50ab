// The OpenCL C sources of kernels/ (common.cl, ndrange/*.cl, fpga/*.cl), embedded into the
// library at build time (embed_kernels.cmake), so a deployed binary needs no source tree.
#ifndef SLUICE_RUNTIME_OPENCL_KERNEL_LIBRARY_H_
#define SLUICE_RUNTIME_OPENCL_KERNEL_LIBRARY_H_

#include <optional>
#include <string_view>

namespace sluice::opencl {

// The text of kernels/<path> (e.g. "ndrange/conv.cl"), or nullopt when there is no such file.
std::optional<std::string_view> KernelFileText(std::string_view path);

namespace internal {
struct KernelFile {
  const char* path;
  const char* text;
};
extern const KernelFile kKernelFiles[];
extern const int kKernelFileCount;
}  // namespace internal

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_KERNEL_LIBRARY_H_
