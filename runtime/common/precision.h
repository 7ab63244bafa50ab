// The arithmetic precision a model's weights run in, chosen per model (config.pbtxt `precision`)
// or per tool run (`sluice-run --precision`).
#ifndef SLUICE_RUNTIME_COMMON_PRECISION_H_
#define SLUICE_RUNTIME_COMMON_PRECISION_H_

#include <string>

#include "absl/status/statusor.h"

namespace sluice {

enum class Precision {
  kFp32,  // Everything in float.
  // Matrix weights (conv, linear, recurrent W and R) rounded to bf16; activations, biases, other
  // constants and every accumulation stay float. About 3 significant digits per weight; outputs
  // stay within atol 5e-3 / rtol 1e-3 of fp32 on the reference models (tested).
  kBf16,
};

// "fp32" or "bf16"; InvalidArgument otherwise.
absl::StatusOr<Precision> ParsePrecision(const std::string& name);
const char* PrecisionName(Precision precision);

}  // namespace sluice

#endif  // SLUICE_RUNTIME_COMMON_PRECISION_H_
