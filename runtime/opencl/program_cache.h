// Getting an OpenCL program onto a device: built from source (with an on-disk cache of the
// device binary), or loaded from a precompiled binary file (the Intel FPGA SDK's .aocx, or any
// driver's own program binary) through clCreateProgramWithBinary.
#ifndef SLUICE_RUNTIME_OPENCL_PROGRAM_CACHE_H_
#define SLUICE_RUNTIME_OPENCL_PROGRAM_CACHE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "runtime/opencl/cl_status.h"
#include "runtime/opencl/device.h"
#include "runtime/opencl/kernel_source.h"

namespace sluice::opencl {

// `$XDG_CACHE_HOME/sluice`, else `$HOME/.cache/sluice`, else "" (no cache).
std::string DefaultCacheDir();

struct BuildResult {
  ClProgram program;
  bool from_cache = false;  // The binary came from the cache (no source compile).
  std::string cache_file;   // The cache entry read or written; "" without a cache.
};

// Builds `source` with `options` for `device`. With a non-empty `cache_dir`, the device binary
// is looked up under a key of (device name, driver and platform versions, source hash,
// options) and stored after a miss. A cache that cannot be read or written only costs a source
// build (a warning is logged); a damaged entry is rebuilt and replaced. InvalidArgument with
// the build log when the source does not compile; Unavailable for device failures.
absl::StatusOr<BuildResult> BuildProgram(cl_context context, const DeviceInfo& device,
                                         const std::string& source, const std::string& options,
                                         const std::string& cache_dir);

// A program from a device binary (clCreateProgramWithBinary + clBuildProgram with `options`).
// `origin` names the binary in errors. InvalidArgument when the driver rejects the bytes.
absl::StatusOr<ClProgram> ProgramFromBinary(cl_context context, const DeviceInfo& device,
                                            absl::Span<const uint8_t> binary,
                                            const std::string& options, const std::string& origin);

// A program from a binary file: an Intel FPGA .aocx (an ELF image, checked for truncation before
// the driver sees it), a binary written by SaveProgramBinaryFile (sluice's container: device
// check and checksum, then the driver binary inside), or any other driver binary as is.
// NotFound when the file cannot be read; InvalidArgument, never a crash, for an empty,
// truncated or damaged file, a binary for another device, or a bare PoCL binary (PoCL 3.1
// crashes on damaged ones, so they are only loaded inside the container).
absl::StatusOr<ClProgram> LoadProgramBinaryFile(cl_context context, const DeviceInfo& device,
                                                const std::string& path,
                                                const std::string& options);

// The device binary of a built program (CL_PROGRAM_BINARIES for `device`).
absl::StatusOr<std::vector<uint8_t>> GetProgramBinary(cl_program program, cl_device_id device);

// Writes the program's device binary to `path` in sluice's container (device description,
// length, checksum), atomically (a temporary file, then rename).
absl::Status SaveProgramBinaryFile(cl_program program, const DeviceInfo& device,
                                   const std::string& path);

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_PROGRAM_CACHE_H_
