// Frame layout of a streamed tensor (a v1::TensorSpec): converts between frame-major buffers
// (k frames one after another, each in frame_shape row-major order) and the wire tensors of
// Frames requests (layout STACKED: [k, frame_shape...], or exactly frame_shape for one frame;
// layout OFFLINE: the model's offline layout with the time dim = k) and of Outputs
// ([count, frame_shape...]). Data bytes are little-endian, as on the wire; the library assumes a
// little-endian host (x86-64, AArch64).
#ifndef SLUICE_CLIENT_LIB_FRAME_LAYOUT_H_
#define SLUICE_CLIENT_LIB_FRAME_LAYOUT_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::client {

// Bytes per element of `dtype`; 0 for DATA_TYPE_UNSPECIFIED or an unknown value.
int64_t DataTypeSize(v1::DataType dtype);

// Elements per frame: the product of spec.frame_shape.
int64_t FrameSize(const v1::TensorSpec& spec);

// The batch axis of spec.offline_shape: the first axis that is not the time axis (axis 0, or 1
// when time is axis 0) when its size is 1 and the rank is at least 2; otherwise -1. This is the
// rule the runtime uses for inputs whose batch dim is static (TensorSpec has no batch-axis field).
int BatchAxis(const v1::TensorSpec& spec);

// spec.offline_shape with the time dim set to `frames`.
std::vector<int64_t> ChunkShape(const v1::TensorSpec& spec, int64_t frames);

// The tensor of a Frames request with `count` >= 1 frames of `dtype` (FLOAT32 or INT16) taken
// from the frame-major buffer `frames` (count * FrameSize(spec) elements of that type), encoded
// in `layout`: STACKED gives shape frame_shape for one frame, else [count, frame_shape...] (the
// bytes as they are); OFFLINE gives ChunkShape(spec, count), the data transposed to match.
// Set Frames.layout to the same value. InvalidArgument for a bad count, dtype or spec.
absl::StatusOr<v1::Tensor> PackFrames(const v1::TensorSpec& spec, v1::DataType dtype,
                                      const void* frames, int64_t count,
                                      v1::Frames::Layout layout = v1::Frames::STACKED);

// The frames of an Outputs tensor (or of a STACKED Frames tensor) as frame-major float32 values
// (INT16 elements are scaled by 1/32768). Accepts shape [k, frame_shape...] or exactly
// frame_shape (k = 1); `count`, when given, receives k. InvalidArgument when the shape or the
// byte size does not match `spec`.
absl::StatusOr<std::vector<float>> UnpackFrames(const v1::TensorSpec& spec,
                                                const v1::Tensor& tensor, int64_t* count = nullptr);

}  // namespace sluice::client

#endif  // SLUICE_CLIENT_LIB_FRAME_LAYOUT_H_
