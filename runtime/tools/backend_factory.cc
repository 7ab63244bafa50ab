#include "runtime/tools/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/opencl/opencl_backend.h"

namespace sluice::tools {

absl::StatusOr<Precision> ParsePrecision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(absl::StrCat("unknown precision '", name, "' (fp32 or bf16)"));
}

const char* PrecisionName(Precision precision) {
  return precision == Precision::kFp32 ? "fp32" : "bf16";
}

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    std::shared_ptr<const streaming::Program> program, const BackendSpec& spec,
    const BackendOptions& options) {
  // The precision goes into BackendOptions once it has a field for it; until then only fp32.
  if (spec.precision != Precision::kFp32) {
    return absl::UnimplementedError(absl::StrCat("precision ", PrecisionName(spec.precision),
                                                 " is not available yet: the backends run "
                                                 "fp32 only"));
  }
  if (spec.kind == "cpu") {
    auto backend = cpu::CpuBackend::Create(std::move(program), options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(*std::move(backend));
  }
  if (spec.kind == "opencl") {
    opencl::OpenClOptions opencl_options;
    opencl_options.platform = spec.opencl_platform;
    opencl_options.device = spec.opencl_device;
    auto backend = opencl::OpenClBackend::Create(std::move(program), options, opencl_options);
    if (!backend.ok()) return backend.status();
    return std::unique_ptr<Backend>(*std::move(backend));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", spec.kind, "' (cpu or opencl)"));
}

}  // namespace sluice::tools
