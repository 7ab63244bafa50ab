#include "runtime/common/frame_layout.h"

namespace sluice {

std::vector<int64_t> FrameOffsets(const std::vector<int64_t>& shape, int time_axis, int batch_axis,
                                  int64_t t, int64_t r) {
  const int rank = static_cast<int>(shape.size());
  std::vector<int64_t> strides(rank, 1);
  for (int d = rank - 2; d >= 0; --d) strides[d] = strides[d + 1] * shape[d + 1];
  std::vector<int64_t> offsets{0};
  for (int d = 0; d < rank; ++d) {
    if (d == time_axis || d == batch_axis) {
      const int64_t index = d == time_axis ? t : r;
      for (int64_t& o : offsets) o += index * strides[d];
      continue;
    }
    std::vector<int64_t> next;
    next.reserve(offsets.size() * shape[d]);
    for (int64_t o : offsets) {
      for (int64_t i = 0; i < shape[d]; ++i) next.push_back(o + i * strides[d]);
    }
    offsets = std::move(next);
  }
  return offsets;
}

}  // namespace sluice
