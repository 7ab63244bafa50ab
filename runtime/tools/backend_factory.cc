#include "runtime/tools/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "runtime/cpu/cpu_backend.h"
#include "runtime/opencl/opencl_backend.h"

namespace sluice::tools {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    std::shared_ptr<const streaming::Program> program, const BackendSpec& spec,
    const BackendOptions& backend_options) {
  BackendOptions options = backend_options;
  options.precision = spec.precision;
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
