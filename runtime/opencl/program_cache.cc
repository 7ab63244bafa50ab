#include "runtime/opencl/program_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/common/status_macros.h"
#include "spdlog/spdlog.h"

namespace sluice::opencl {
namespace {

namespace fs = std::filesystem;

// The sluice binary container (cache entries and saved binaries): magic, u64 length + metadata
// text, u64 length + driver binary, u64 FNV-1a of the binary. Little-endian host order.
constexpr char kMagic[8] = {'S', 'L', 'C', 'L', 'B', 'I', 'N', '1'};
constexpr char kPoclMagic[8] = {'p', 'o', 'c', 'l', 'b', 'i', 'n', '\0'};
constexpr size_t kMaxLogChars = 6000;

std::string BuildLog(cl_program program, cl_device_id device) {
  size_t size = 0;
  if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, nullptr, &size) !=
          CL_SUCCESS ||
      size == 0) {
    return "";
  }
  std::string log(size, '\0');
  if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log.data(), nullptr) !=
      CL_SUCCESS) {
    return "";
  }
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  if (log.size() > kMaxLogChars) log = absl::StrCat(log.substr(0, kMaxLogChars), "\n...");
  return log;
}

// clBuildProgram; a failure carries the build log.
absl::Status Build(cl_program program, const DeviceInfo& device, const std::string& options,
                   const std::string& what) {
  const cl_int code = clBuildProgram(program, 1, &device.device, options.c_str(), nullptr, nullptr);
  if (code == CL_SUCCESS) return absl::OkStatus();
  const absl::Status status = ClStatus(code, absl::StrCat("building ", what, " for ", device.name));
  const std::string log = BuildLog(program, device.device);
  if (log.empty()) return status;
  return absl::Status(status.code(), absl::StrCat(status.message(), "; build log:\n", log));
}

// Identifies the device and driver a binary is for (the first line is checked on load).
std::string DeviceMeta(const DeviceInfo& device) {
  return absl::StrFormat("device=%s\nvendor=%s\ndevice_version=%s\ndriver=%s\nplatform=%s %s\n",
                         device.name, device.vendor, device.version, device.driver_version,
                         device.platform_name, device.platform_version);
}

std::string CacheKey(const DeviceInfo& device, const std::string& source,
                     const std::string& options) {
  return absl::StrFormat("%soptions=%s\nsource_fnv=%016x\nsource_bytes=%d\n", DeviceMeta(device),
                         options, Fnv1a64(source), source.size());
}

void AppendU64(std::string* out, uint64_t value) {
  out->append(reinterpret_cast<const char*>(&value), sizeof(value));
}

bool ReadU64(std::string_view data, size_t* pos, uint64_t* value) {
  if (data.size() - *pos < sizeof(uint64_t)) return false;
  std::memcpy(value, data.data() + *pos, sizeof(uint64_t));
  *pos += sizeof(uint64_t);
  return true;
}

std::string Wrap(const std::string& meta, std::string_view binary) {
  std::string out(kMagic, sizeof(kMagic));
  AppendU64(&out, meta.size());
  out += meta;
  AppendU64(&out, binary.size());
  out.append(binary.data(), binary.size());
  AppendU64(&out, Fnv1a64(binary));
  return out;
}

bool IsContainer(std::string_view data) {
  return data.size() >= sizeof(kMagic) && std::memcmp(data.data(), kMagic, sizeof(kMagic)) == 0;
}

struct Unwrapped {
  std::string_view meta;
  std::string_view binary;
};

// The parts of a container; InvalidArgument naming what is wrong when it is damaged.
absl::StatusOr<Unwrapped> Unwrap(std::string_view data) {
  size_t pos = sizeof(kMagic);
  uint64_t meta_size = 0;
  uint64_t binary_size = 0;
  uint64_t check = 0;
  if (!ReadU64(data, &pos, &meta_size) || data.size() - pos < meta_size) {
    return absl::InvalidArgumentError("truncated (metadata)");
  }
  Unwrapped parts;
  parts.meta = data.substr(pos, meta_size);
  pos += meta_size;
  if (!ReadU64(data, &pos, &binary_size) || data.size() - pos < binary_size) {
    return absl::InvalidArgumentError("truncated (binary)");
  }
  parts.binary = data.substr(pos, binary_size);
  pos += binary_size;
  if (!ReadU64(data, &pos, &check)) return absl::InvalidArgumentError("truncated (checksum)");
  if (pos != data.size()) return absl::InvalidArgumentError("trailing bytes");
  if (binary_size == 0) return absl::InvalidArgumentError("no binary");
  if (check != Fnv1a64(parts.binary)) return absl::InvalidArgumentError("checksum mismatch");
  return parts;
}

// The section and program header tables of an ELF image (the Intel FPGA .aocx) lie inside it.
absl::Status CheckElf(std::string_view data) {
  if (data.size() < 52) return absl::InvalidArgumentError("truncated ELF header");
  const bool is64 = data[4] == 2;
  if (data[4] != 1 && !is64) return absl::InvalidArgumentError("bad ELF class");
  if (data[5] != 1) return absl::InvalidArgumentError("not a little-endian ELF image");
  if (is64 && data.size() < 64) return absl::InvalidArgumentError("truncated ELF header");
  const auto read = [&](size_t offset, size_t bytes) {
    uint64_t value = 0;
    std::memcpy(&value, data.data() + offset, bytes);
    return value;
  };
  const uint64_t phoff = is64 ? read(32, 8) : read(28, 4);
  const uint64_t shoff = is64 ? read(40, 8) : read(32, 4);
  const uint64_t phentsize = read(is64 ? 54 : 42, 2);
  const uint64_t phnum = read(is64 ? 56 : 44, 2);
  const uint64_t shentsize = read(is64 ? 58 : 46, 2);
  const uint64_t shnum = read(is64 ? 60 : 48, 2);
  if (phoff > data.size() || phentsize * phnum > data.size() - phoff || shoff > data.size() ||
      shentsize * shnum > data.size() - shoff) {
    return absl::InvalidArgumentError("ELF tables lie outside the file (truncated?)");
  }
  for (uint64_t i = 0; i < shnum && shentsize >= (is64 ? 40u : 24u); ++i) {
    const size_t header = shoff + i * shentsize;
    const uint32_t type = static_cast<uint32_t>(read(header + 4, 4));
    const uint64_t offset = is64 ? read(header + 24, 8) : read(header + 16, 4);
    const uint64_t size = is64 ? read(header + 32, 8) : read(header + 20, 4);
    if (type != 8 /* SHT_NOBITS */ && (offset > data.size() || size > data.size() - offset)) {
      return absl::InvalidArgumentError("an ELF section lies outside the file (truncated?)");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open program binary ", path));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read program binary ", path));
  return data;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& data) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat("cannot create ", temp));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return absl::DataLossError(absl::StrCat("cannot write ", temp));
  }
  std::error_code error;
  fs::rename(temp, path, error);
  if (error) {
    fs::remove(temp, error);
    return absl::PermissionDeniedError(absl::StrCat("cannot rename ", temp, " to ", path));
  }
  return absl::OkStatus();
}

absl::Span<const uint8_t> Bytes(std::string_view data) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(data.data()), data.size());
}

}  // namespace

std::string DefaultCacheDir() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && xdg[0] != '\0') {
    return absl::StrCat(xdg, "/sluice");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0') {
    return absl::StrCat(home, "/.cache/sluice");
  }
  return "";
}

absl::StatusOr<ClProgram> ProgramFromBinary(cl_context context, const DeviceInfo& device,
                                            absl::Span<const uint8_t> binary,
                                            const std::string& options, const std::string& origin) {
  if (binary.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("program binary ", origin, " is empty"));
  }
  const unsigned char* bytes = binary.data();
  const size_t size = binary.size();
  cl_int binary_status = CL_SUCCESS;
  cl_int code = CL_SUCCESS;
  ClProgram program(
      clCreateProgramWithBinary(context, 1, &device.device, &size, &bytes, &binary_status, &code));
  if (code == CL_SUCCESS && binary_status != CL_SUCCESS) code = binary_status;
  if (code != CL_SUCCESS) {
    const absl::Status status = ClStatus(code, "clCreateProgramWithBinary");
    return absl::Status(status.code(), absl::StrCat("program binary ", origin, " (", size,
                                                    " bytes) is not a valid binary for ",
                                                    device.name, ": ", status.message()));
  }
  RETURN_IF_ERROR(Build(program.get(), device, options, absl::StrCat("program binary ", origin)));
  return program;
}

absl::StatusOr<ClProgram> LoadProgramBinaryFile(cl_context context, const DeviceInfo& device,
                                                const std::string& path,
                                                const std::string& options) {
  ASSIGN_OR_RETURN(const std::string data, ReadFile(path));
  const std::string_view view(data);
  if (view.empty())
    return absl::InvalidArgumentError(absl::StrCat("program binary ", path, " is empty"));
  if (IsContainer(view)) {
    auto parts = Unwrap(view);
    if (!parts.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("program binary ", path, " is damaged: ", parts.status().message()));
    }
    const std::string expected = DeviceMeta(device);
    const std::string first_line(parts->meta.substr(0, parts->meta.find('\n')));
    if (expected.compare(0, first_line.size() + 1, first_line + "\n") != 0) {
      return absl::InvalidArgumentError(absl::StrCat("program binary ", path, " was built for ",
                                                     first_line.substr(first_line.find('=') + 1),
                                                     ", not ", device.name));
    }
    return ProgramFromBinary(context, device, Bytes(parts->binary), options, path);
  }
  if (view.size() >= 4 && view.substr(0, 4) ==
                              "\x7f"
                              "ELF") {  // Intel FPGA .aocx
    if (absl::Status elf = CheckElf(view); !elf.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("program binary ", path, " is not a valid ELF image: ", elf.message()));
    }
  } else if (view.size() >= sizeof(kPoclMagic) &&
             std::memcmp(view.data(), kPoclMagic, sizeof(kPoclMagic)) == 0) {
    // PoCL 3.1 trusts the lengths inside its binaries and crashes on a damaged one, so sluice
    // only loads them inside its checksummed container.
    return absl::InvalidArgumentError(absl::StrCat(
        "program binary ", path,
        " is a bare PoCL binary; save it with SaveProgramBinary (sluice-opencl --save_binary), "
        "which adds the integrity check PoCL lacks"));
  }
  return ProgramFromBinary(context, device, Bytes(view), options, path);
}

absl::StatusOr<std::vector<uint8_t>> GetProgramBinary(cl_program program, cl_device_id device) {
  cl_uint device_count = 0;
  CL_RETURN_IF_ERROR(clGetProgramInfo(program, CL_PROGRAM_NUM_DEVICES, sizeof(device_count),
                                      &device_count, nullptr));
  std::vector<cl_device_id> devices(device_count);
  CL_RETURN_IF_ERROR(clGetProgramInfo(
      program, CL_PROGRAM_DEVICES, device_count * sizeof(cl_device_id), devices.data(), nullptr));
  std::vector<size_t> sizes(device_count);
  CL_RETURN_IF_ERROR(clGetProgramInfo(program, CL_PROGRAM_BINARY_SIZES,
                                      device_count * sizeof(size_t), sizes.data(), nullptr));
  std::vector<std::vector<uint8_t>> binaries(device_count);
  std::vector<unsigned char*> pointers(device_count);
  for (cl_uint i = 0; i < device_count; ++i) {
    binaries[i].resize(sizes[i]);
    pointers[i] = binaries[i].data();
  }
  CL_RETURN_IF_ERROR(clGetProgramInfo(program, CL_PROGRAM_BINARIES,
                                      device_count * sizeof(unsigned char*), pointers.data(),
                                      nullptr));
  for (cl_uint i = 0; i < device_count; ++i) {
    if (devices[i] == device) {
      if (binaries[i].empty()) return absl::UnavailableError("the driver returned no binary");
      return std::move(binaries[i]);
    }
  }
  return absl::InvalidArgumentError("the program was not built for this device");
}

absl::Status SaveProgramBinaryFile(cl_program program, const DeviceInfo& device,
                                   const std::string& path) {
  ASSIGN_OR_RETURN(std::vector<uint8_t> binary, GetProgramBinary(program, device.device));
  return WriteFileAtomically(
      path, Wrap(DeviceMeta(device),
                 std::string_view(reinterpret_cast<const char*>(binary.data()), binary.size())));
}

absl::StatusOr<BuildResult> BuildProgram(cl_context context, const DeviceInfo& device,
                                         const std::string& source, const std::string& options,
                                         const std::string& cache_dir) {
  BuildResult result;
  const std::string key = CacheKey(device, source, options);
  if (!cache_dir.empty()) {
    std::error_code error;
    fs::create_directories(cache_dir, error);
    if (error) {
      spdlog::warn("OpenCL program cache {} unusable ({}); building from source", cache_dir,
                   error.message());
    } else {
      result.cache_file = absl::StrFormat("%s/%016x.clbin", cache_dir, Fnv1a64(key));
    }
  }
  if (!result.cache_file.empty()) {
    auto data = ReadFile(result.cache_file);
    if (data.ok()) {
      auto parts =
          IsContainer(*data) ? Unwrap(*data) : absl::InvalidArgumentError("not a sluice container");
      if (parts.ok() && parts->meta == key) {
        auto program =
            ProgramFromBinary(context, device, Bytes(parts->binary), options, result.cache_file);
        if (program.ok()) {
          result.program = *std::move(program);
          result.from_cache = true;
          return result;
        }
        spdlog::warn("OpenCL program cache entry rejected, rebuilding: {}",
                     std::string(program.status().message()));
      } else {
        spdlog::warn(
            "OpenCL program cache entry {} is damaged ({}); rebuilding", result.cache_file,
            parts.ok() ? std::string("key mismatch") : std::string(parts.status().message()));
      }
    }
  }
  const char* text = source.c_str();
  const size_t length = source.size();
  cl_int code = CL_SUCCESS;
  result.program.reset(clCreateProgramWithSource(context, 1, &text, &length, &code));
  CL_RETURN_IF_ERROR(code);
  RETURN_IF_ERROR(Build(result.program.get(), device, options, "OpenCL kernels"));
  if (!result.cache_file.empty()) {
    auto binary = GetProgramBinary(result.program.get(), device.device);
    absl::Status stored = binary.status();
    if (binary.ok()) {
      stored = WriteFileAtomically(
          result.cache_file,
          Wrap(key,
               std::string_view(reinterpret_cast<const char*>(binary->data()), binary->size())));
    }
    if (!stored.ok()) {
      spdlog::warn("OpenCL program cache not written: {}", std::string(stored.message()));
      result.cache_file.clear();
    }
  }
  return result;
}

}  // namespace sluice::opencl
