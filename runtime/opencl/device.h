// OpenCL platform and device discovery and selection.
//
// Selection by substring (case-insensitive): `platform` matches the platform name or vendor,
// `device` the device name, vendor or type ("cpu", "gpu", "accelerator"). With neither given
// (or "auto"), the preference is an Intel FPGA platform (name contains "Intel(R) FPGA"), then
// any ACCELERATOR device, then any GPU; a CPU device (PoCL) is only chosen when asked for
// explicitly, so `--backend auto` on a machine with only PoCL falls back to the CPU backend.
#ifndef SLUICE_RUNTIME_OPENCL_DEVICE_H_
#define SLUICE_RUNTIME_OPENCL_DEVICE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/opencl/cl_status.h"

namespace sluice::opencl {

struct DeviceInfo {
  cl_platform_id platform = nullptr;
  cl_device_id device = nullptr;
  int platform_index = 0;
  int device_index = 0;
  std::string platform_name;
  std::string platform_vendor;
  std::string platform_version;
  std::string name;
  std::string vendor;
  std::string version;         // CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ...".
  std::string driver_version;  // CL_DRIVER_VERSION.
  cl_device_type type = 0;
  bool intel_fpga_platform = false;

  // "CPU", "GPU", "ACCELERATOR", "CUSTOM" or "DEFAULT".
  std::string TypeName() const;
  // True for the Intel FPGA platform or an ACCELERATOR device: the single-work-item kernels.
  bool PrefersSingleWorkItem() const;
  // One line: "[p.d] name (type, vendor; version; driver ...) on platform".
  std::string Describe() const;
};

// Every device of every platform. Unavailable when no OpenCL platform is installed (or PoCL
// found no device because it has no writable cache dir: set POCL_CACHE_DIR).
absl::StatusOr<std::vector<DeviceInfo>> EnumerateDevices();

// A human-readable listing for `sluice-server --list_devices`: each device, and which one
// `auto` would choose. Never fails; problems are part of the text.
std::string ListDevices();

// The device matching `platform` / `device` (see the file comment). NotFound, naming what was
// asked for and listing what exists, when nothing matches or `auto` finds no accelerator.
absl::StatusOr<DeviceInfo> SelectDevice(const std::string& platform, const std::string& device);

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_DEVICE_H_
