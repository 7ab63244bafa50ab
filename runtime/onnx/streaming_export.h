// Writes a streaming Program as a standard ONNX model that computes one step, with every piece of
// per-session state as an explicit input and output (the "cache I/O" form ESP-DL and similar
// runtimes use), so any ONNX runtime can stream the model by feeding the states back:
//
//   inputs   the frame (the program's frame shape, its batch dim = `batch`); "%step" [batch]
//            int64 when some stateful op starts after a warm-up (see below); then one tensor
//            per state, all zeros at the start of a stream: "%<v>.window"
//            [batch, in_channels, taps-1] for each conv wider than one frame (the taps-1
//            previous input frames, oldest first), "%<v>.h" and "%<v>.c" [1, batch, hidden] for
//            each LSTM/GRU (c: LSTM only), where %<v> is the op's output value in --describe.
//   outputs  the model outputs for that frame (frame shapes, batch dim = `batch`), then each
//            state's next value, named "<input name>.next", in input order.
//
// Warm-up: every step emits outputs, and for a model with warmup_frames W > 0 (valid convs) the
// outputs of the first W steps of a stream are to be ignored; output k of the offline model is
// the output of step k + W. Stateful ops behind a valid conv leave their state untouched during
// their own warm-up, as the program does, which is what the "%step" counter is for.
//
// Metadata (metadata_props): "sluice.warmup_frames", "sluice.batch", "sluice.flops_per_frame"
// (Program::FlopsPerFrame, for benchmarks), and for the frame input and each model output
// "sluice.time_axis.<name>" / "sluice.batch_axis.<name>": the offline layout (axis numbers in
// the offline tensor; -1 for no batch axis) the frames belong to.
#ifndef SLUICE_RUNTIME_ONNX_STREAMING_EXPORT_H_
#define SLUICE_RUNTIME_ONNX_STREAMING_EXPORT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/streaming/program.h"

namespace sluice::onnx_export {

struct StreamingExportOptions {
  // Sessions per Run() call: every tensor's batch dim. Above 1 the frame's batch axis must be
  // its first axis.
  int64_t batch = 1;
};

// The serialized ModelProto (opset 17). Errors: InvalidArgument for a batch below 1;
// Unimplemented for a batch above 1 when a frame's batch axis is not its first axis.
absl::StatusOr<std::string> ExportStreamingModel(const streaming::Program& program,
                                                 const StreamingExportOptions& options);

// ExportStreamingModel, written to `path`.
absl::Status WriteStreamingModel(const streaming::Program& program,
                                 const StreamingExportOptions& options, const std::string& path);

}  // namespace sluice::onnx_export

#endif  // SLUICE_RUNTIME_ONNX_STREAMING_EXPORT_H_
