// Reading and writing NumPy .npy files (version 1.0/2.0, little-endian float32, C order).
#ifndef SLUICE_RUNTIME_COMMON_NPY_H_
#define SLUICE_RUNTIME_COMMON_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sluice {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;  // Row-major, product(shape) elements.
};

// Reads a float32 array; any other dtype or Fortran order is an InvalidArgument error.
absl::StatusOr<NpyArray> ReadNpy(const std::string& path);
// Parses .npy bytes already in memory.
absl::StatusOr<NpyArray> ParseNpy(const std::string& bytes, const std::string& what);
absl::Status WriteNpy(const std::string& path, const NpyArray& array);

}  // namespace sluice

#endif  // SLUICE_RUNTIME_COMMON_NPY_H_
