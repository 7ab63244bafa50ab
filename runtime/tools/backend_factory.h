// The backends a command-line tool can ask for by name (--backend, --precision, the OpenCL
// device flags), created the same way for every mode of sluice-run.
#ifndef SLUICE_RUNTIME_TOOLS_BACKEND_FACTORY_H_
#define SLUICE_RUNTIME_TOOLS_BACKEND_FACTORY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "runtime/backend.h"
#include "runtime/common/precision.h"
#include "runtime/streaming/program.h"

namespace sluice::tools {

struct BackendSpec {
  std::string kind = "cpu";  // "cpu" or "opencl".
  Precision precision = Precision::kFp32;
  // OpenCL device selection by substring (runtime/opencl/device.h); empty picks an accelerator.
  std::string opencl_platform;
  std::string opencl_device;
};

// Loads `program` on the backend `spec` names, in spec.precision (which overrides
// options.precision). InvalidArgument for an unknown kind; otherwise the backend's own Create
// errors.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(
    std::shared_ptr<const streaming::Program> program, const BackendSpec& spec,
    const BackendOptions& options);

}  // namespace sluice::tools

#endif  // SLUICE_RUNTIME_TOOLS_BACKEND_FACTORY_H_
