// Reads an ONNX model (protobuf, the schema of Debian's libonnx-dev) into the IR graph.
#ifndef SLUICE_RUNTIME_ONNX_IMPORTER_H_
#define SLUICE_RUNTIME_ONNX_IMPORTER_H_

#include <string>

#include "absl/status/statusor.h"
#include "runtime/ir/graph.h"

namespace sluice::onnx_import {

// Parses a serialized ModelProto. Errors: InvalidArgument for bytes that are not a model, for
// external tensor data, unsupported element types, negative dims or graphs that are not
// topologically sorted; ResourceExhausted for a tensor over ir::kMaxTensorElements.
absl::StatusOr<ir::Graph> ImportModel(const std::string& bytes, const std::string& what);
// Reads and parses a model file; NotFound when the file is missing.
absl::StatusOr<ir::Graph> ImportModelFile(const std::string& path);

}  // namespace sluice::onnx_import

#endif  // SLUICE_RUNTIME_ONNX_IMPORTER_H_
