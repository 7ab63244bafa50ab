// Wire <-> runtime conversions for the native API: decoding Frames requests into float frames
// and describing a model's tensors.
#ifndef SLUICE_SERVER_API_FRAME_CODEC_H_
#define SLUICE_SERVER_API_FRAME_CODEC_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "runtime/streaming/program.h"
#include "sluice/v1/streaming.pb.h"

namespace sluice::server {

// Decodes `frames` for a model whose input is `spec` into one float vector per frame, in time
// order. FLOAT32 and INT16 (scaled by 1/32768) are accepted. InvalidArgument names the
// mismatch (dtype, shape, byte length, tag count, layout); `out` is untouched on error.
absl::Status DecodeFrames(const v1::Frames& frames, const streaming::StreamSpec& spec,
                          std::vector<std::vector<float>>* out);

v1::TensorSpec ToTensorSpec(const streaming::StreamSpec& spec);

}  // namespace sluice::server

#endif  // SLUICE_SERVER_API_FRAME_CODEC_H_
