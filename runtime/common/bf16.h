// bfloat16: the top 16 bits of an IEEE float (8 exponent bits, 7 mantissa bits). Weights stored
// as bf16 halve the bytes a step streams; widening one back to float is exact (a 16-bit shift).
#ifndef SLUICE_RUNTIME_COMMON_BF16_H_
#define SLUICE_RUNTIME_COMMON_BF16_H_

#include <bit>
#include <cstdint>

namespace sluice {

// Rounds to the nearest bf16, ties to even; NaN stays NaN (quiet), overflow becomes infinity.
inline uint16_t Bf16FromFloat(float x) {
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

inline float FloatFromBf16(uint16_t bf16) {
  return std::bit_cast<float>(static_cast<uint32_t>(bf16) << 16);
}

// x rounded to the nearest value a bf16 can hold, as a float.
inline float RoundToBf16(float x) { return FloatFromBf16(Bf16FromFloat(x)); }

}  // namespace sluice

#endif  // SLUICE_RUNTIME_COMMON_BF16_H_
