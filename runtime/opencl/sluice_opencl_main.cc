// sluice-opencl: the OpenCL side of sluice from the command line.
//   sluice-opencl --list_devices
//   sluice-opencl --model M.onnx --variant single_work_item --emit_source model.cl
//   sluice-opencl --model M.onnx --device cpu --save_binary model.bin
// --emit_source writes the OpenCL C program generated for the model (what the Intel FPGA
// offline compiler needs, see kernels/fpga/build_aocx.sh); --save_binary builds it on a device
// and writes the driver's program binary (loadable with OpenClOptions::binary_path).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "runtime/opencl/device.h"
#include "runtime/opencl/kernel_source.h"
#include "runtime/opencl/opencl_backend.h"
#include "runtime/streaming/transform.h"

ABSL_FLAG(bool, list_devices, false, "List OpenCL platforms and devices, and what auto selects.");
ABSL_FLAG(std::string, model, "", "ONNX model to generate kernels for.");
ABSL_FLAG(std::string, variant, "single_work_item",
          "Kernel variant: ndrange or single_work_item (auto: by device, with --save_binary).");
ABSL_FLAG(std::string, emit_source, "", "Write the generated OpenCL C source here.");
ABSL_FLAG(std::string, save_binary, "", "Build on the selected device and write the binary here.");
ABSL_FLAG(bool, load, false,
          "Load the model on the selected device (build, upload, warm every bucket) and report.");
ABSL_FLAG(int, max_batch, 256, "max_batch for --load.");
ABSL_FLAG(std::string, opencl_platform, "", "Platform substring (for --save_binary).");
ABSL_FLAG(std::string, opencl_device, "", "Device substring (for --save_binary).");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "sluice-opencl: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "OpenCL devices and kernels of sluice.\n"
      "  sluice-opencl --list_devices\n"
      "  sluice-opencl --model M.onnx [--variant single_work_item] --emit_source model.cl\n"
      "  sluice-opencl --model M.onnx --opencl_device cpu --variant ndrange --save_binary m.bin");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_list_devices)) {
    std::fputs(sluice::opencl::ListDevices().c_str(), stdout);
    return 0;
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) return Fail("give --list_devices or --model (see --help)");
  auto variant = sluice::opencl::ParseKernelVariant(absl::GetFlag(FLAGS_variant));
  if (!variant.ok()) return Fail(std::string(variant.status().message()));
  auto program = sluice::streaming::LoadProgram(model, {});
  if (!program.ok()) return Fail(std::string(program.status().message()));
  if (const std::string path = absl::GetFlag(FLAGS_emit_source); !path.empty()) {
    if (*variant == sluice::opencl::KernelVariant::kAuto) {
      return Fail("--emit_source needs --variant ndrange or single_work_item");
    }
    sluice::opencl::KernelOptions kernel_options;
    kernel_options.variant = *variant;
    auto kernels = sluice::opencl::GenerateKernelProgram(*program, kernel_options);
    if (!kernels.ok()) return Fail(std::string(kernels.status().message()));
    std::ofstream out(path);
    out << kernels->source;
    if (!out) return Fail("cannot write " + path);
    std::printf("%s: %zu kernels launched per step, fingerprint %s\n", path.c_str(),
                kernels->stages.size(), kernels->fingerprint.c_str());
  }
  const std::string binary_path = absl::GetFlag(FLAGS_save_binary);
  if (!binary_path.empty() || absl::GetFlag(FLAGS_load)) {
    sluice::opencl::OpenClOptions options;
    options.platform = absl::GetFlag(FLAGS_opencl_platform);
    options.device = absl::GetFlag(FLAGS_opencl_device);
    options.variant = *variant;
    sluice::BackendOptions backend_options;
    backend_options.max_batch = binary_path.empty() ? absl::GetFlag(FLAGS_max_batch) : 1;
    backend_options.max_slots = 1;
    const auto start = std::chrono::steady_clock::now();
    auto backend = sluice::opencl::OpenClBackend::Create(
        std::make_shared<const sluice::streaming::Program>(*std::move(program)), backend_options,
        options);
    if (!backend.ok()) return Fail(std::string(backend.status().message()));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("loaded on %s (%s kernels) in %.2f s: %zu buckets, %zu launches per step\n",
                (*backend)->device().name.c_str(),
                sluice::opencl::KernelVariantName((*backend)->variant()), seconds,
                (*backend)->buckets().size(), (*backend)->launches_per_step());
    if (!binary_path.empty()) {
      if (auto saved = (*backend)->SaveProgramBinary(binary_path); !saved.ok()) {
        return Fail(std::string(saved.message()));
      }
      std::printf("%s: program binary written\n", binary_path.c_str());
    }
  }
  return 0;
}
