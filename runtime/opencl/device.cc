#include "runtime/opencl/device.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "runtime/common/status_macros.h"

namespace sluice::opencl {
namespace {

std::string PlatformString(cl_platform_id platform, cl_platform_info what) {
  size_t size = 0;
  if (clGetPlatformInfo(platform, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string text(size, '\0');
  if (clGetPlatformInfo(platform, what, size, text.data(), nullptr) != CL_SUCCESS) return "";
  text.resize(text.find('\0') == std::string::npos ? size : text.find('\0'));
  return text;
}

std::string DeviceString(cl_device_id device, cl_device_info what) {
  size_t size = 0;
  if (clGetDeviceInfo(device, what, 0, nullptr, &size) != CL_SUCCESS || size == 0) return "";
  std::string text(size, '\0');
  if (clGetDeviceInfo(device, what, size, text.data(), nullptr) != CL_SUCCESS) return "";
  text.resize(text.find('\0') == std::string::npos ? size : text.find('\0'));
  return text;
}

bool ContainsIgnoreCase(const std::string& text, const std::string& part) {
  return absl::AsciiStrToLower(text).find(absl::AsciiStrToLower(part)) != std::string::npos;
}

bool IsAuto(const std::string& selector) {
  return selector.empty() || absl::EqualsIgnoreCase(selector, "auto");
}

bool Matches(const DeviceInfo& info, const std::string& platform, const std::string& device) {
  if (!IsAuto(platform) && !ContainsIgnoreCase(info.platform_name, platform) &&
      !ContainsIgnoreCase(info.platform_vendor, platform)) {
    return false;
  }
  if (!IsAuto(device) && !ContainsIgnoreCase(info.name, device) &&
      !ContainsIgnoreCase(info.vendor, device) &&
      !absl::EqualsIgnoreCase(info.TypeName(), device)) {
    return false;
  }
  return true;
}

// Lower is better; nullopt: `auto` never picks it.
std::optional<int> AutoRank(const DeviceInfo& info) {
  if (info.intel_fpga_platform) return 0;
  if (info.type & CL_DEVICE_TYPE_ACCELERATOR) return 1;
  if (info.type & CL_DEVICE_TYPE_GPU) return 2;
  return std::nullopt;
}

std::string Listing(const std::vector<DeviceInfo>& devices) {
  if (devices.empty()) return "(no OpenCL devices)";
  std::vector<std::string> lines;
  for (const DeviceInfo& info : devices) lines.push_back(info.Describe());
  return absl::StrJoin(lines, "; ");
}

}  // namespace

std::string DeviceInfo::TypeName() const {
  if (type & CL_DEVICE_TYPE_ACCELERATOR) return "ACCELERATOR";
  if (type & CL_DEVICE_TYPE_GPU) return "GPU";
  if (type & CL_DEVICE_TYPE_CPU) return "CPU";
  if (type & CL_DEVICE_TYPE_CUSTOM) return "CUSTOM";
  return "DEFAULT";
}

bool DeviceInfo::PrefersSingleWorkItem() const {
  return intel_fpga_platform || (type & CL_DEVICE_TYPE_ACCELERATOR) != 0;
}

std::string DeviceInfo::Describe() const {
  return absl::StrCat("[", platform_index, ".", device_index, "] ", name, " (", TypeName(), ", ",
                      vendor, "; ", version, "; driver ", driver_version, ") on platform '",
                      platform_name, "' (", platform_version, ")");
}

absl::StatusOr<std::vector<DeviceInfo>> EnumerateDevices() {
  cl_uint platform_count = 0;
  const cl_int code = clGetPlatformIDs(0, nullptr, &platform_count);
  if (code == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ ||
      (code == CL_SUCCESS && platform_count == 0)) {
    return absl::UnavailableError(
        "no OpenCL platform found: install an OpenCL ICD (e.g. pocl-opencl-icd) and check "
        "/etc/OpenCL/vendors");
  }
  CL_RETURN_IF_ERROR(code);
  std::vector<cl_platform_id> platforms(platform_count);
  CL_RETURN_IF_ERROR(clGetPlatformIDs(platform_count, platforms.data(), nullptr));
  std::vector<DeviceInfo> devices;
  for (cl_uint p = 0; p < platform_count; ++p) {
    cl_uint device_count = 0;
    const cl_int device_code =
        clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, 0, nullptr, &device_count);
    if (device_code == CL_DEVICE_NOT_FOUND || device_count == 0) continue;
    CL_RETURN_IF_ERROR(device_code);
    std::vector<cl_device_id> ids(device_count);
    CL_RETURN_IF_ERROR(
        clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, device_count, ids.data(), nullptr));
    for (cl_uint d = 0; d < device_count; ++d) {
      DeviceInfo info;
      info.platform = platforms[p];
      info.device = ids[d];
      info.platform_index = static_cast<int>(p);
      info.device_index = static_cast<int>(d);
      info.platform_name = PlatformString(platforms[p], CL_PLATFORM_NAME);
      info.platform_vendor = PlatformString(platforms[p], CL_PLATFORM_VENDOR);
      info.platform_version = PlatformString(platforms[p], CL_PLATFORM_VERSION);
      info.name = DeviceString(ids[d], CL_DEVICE_NAME);
      info.vendor = DeviceString(ids[d], CL_DEVICE_VENDOR);
      info.version = DeviceString(ids[d], CL_DEVICE_VERSION);
      info.driver_version = DeviceString(ids[d], CL_DRIVER_VERSION);
      CL_RETURN_IF_ERROR(
          clGetDeviceInfo(ids[d], CL_DEVICE_TYPE, sizeof(info.type), &info.type, nullptr));
      info.intel_fpga_platform = absl::StrContains(info.platform_name, "Intel(R) FPGA");
      devices.push_back(std::move(info));
    }
  }
  if (devices.empty()) {
    return absl::UnavailableError(
        "OpenCL platforms found but no device (PoCL reports none without a writable cache "
        "dir: set POCL_CACHE_DIR)");
  }
  return devices;
}

std::string ListDevices() {
  auto devices = EnumerateDevices();
  if (!devices.ok()) return absl::StrCat("OpenCL: ", devices.status().message(), "\n");
  std::string out = "OpenCL devices:\n";
  for (const DeviceInfo& info : *devices) absl::StrAppend(&out, "  ", info.Describe(), "\n");
  auto chosen = SelectDevice("", "");
  absl::StrAppend(
      &out, "auto selects: ",
      chosen.ok() ? chosen->Describe() : "none (no FPGA, accelerator or GPU): the CPU backend",
      "\n");
  return out;
}

absl::StatusOr<DeviceInfo> SelectDevice(const std::string& platform, const std::string& device) {
  ASSIGN_OR_RETURN(std::vector<DeviceInfo> devices, EnumerateDevices());
  const bool automatic = IsAuto(platform) && IsAuto(device);
  const DeviceInfo* best = nullptr;
  int best_rank = 0;
  for (const DeviceInfo& info : devices) {
    if (!Matches(info, platform, device)) continue;
    if (!automatic) return info;  // First match in platform/device order.
    const std::optional<int> rank = AutoRank(info);
    if (rank && (best == nullptr || *rank < best_rank)) {
      best = &info;
      best_rank = *rank;
    }
  }
  if (best != nullptr) return *best;
  if (automatic) {
    return absl::NotFoundError(absl::StrCat(
        "no OpenCL accelerator (Intel FPGA, ACCELERATOR or GPU device) for automatic selection; "
        "CPU devices are only used when named. Devices: ",
        Listing(devices)));
  }
  return absl::NotFoundError(absl::StrCat("no OpenCL device matches platform '", platform,
                                          "' and device '", device,
                                          "'. Devices: ", Listing(devices)));
}

}  // namespace sluice::opencl
