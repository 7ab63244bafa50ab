// Where one frame of a streamed tensor sits inside its offline (whole-sequence) layout.
#ifndef SLUICE_RUNTIME_COMMON_FRAME_LAYOUT_H_
#define SLUICE_RUNTIME_COMMON_FRAME_LAYOUT_H_

#include <cstdint>
#include <vector>

namespace sluice {

// Element offsets, in row-major order of the remaining axes (the frame's own layout), of the
// frame at time index `t` and batch row `r` of a row-major tensor shaped `shape`.
// `batch_axis` may be -1 (then `r` is ignored).
std::vector<int64_t> FrameOffsets(const std::vector<int64_t>& shape, int time_axis, int batch_axis,
                                  int64_t t, int64_t r);

}  // namespace sluice

#endif  // SLUICE_RUNTIME_COMMON_FRAME_LAYOUT_H_
