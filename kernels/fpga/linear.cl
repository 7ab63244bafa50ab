// Per-frame matrix product, single work-item: VEC outputs at a time (unrolled), each a dot
// product over IN accumulated in a shift register; bias and activation fused.
// Defines: KNAME ROWS IN OUT HAS_BIAS VEC POST
SL_SWI __kernel void KNAME(__global const float* restrict in,      // [batch * ROWS][IN]
                           __global float* restrict out,           // [batch * ROWS][OUT]
                           __global const float* restrict weight,  // [IN][OUT]
                           __global const float* restrict bias,    // [OUT] (unused without HAS_BIAS)
                           const int batch) {
  for (int row = 0; row < batch * ROWS; ++row) {
    __global const float* x = in + row * IN;
    for (int o0 = 0; o0 < OUT; o0 += VEC) {
      float sr[VEC][SR_DEPTH];
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        SL_SR_ZERO(sr[v]);
      }
      for (int k = 0; k < IN; ++k) {
        const float xk = x[k];
#pragma unroll
        for (int v = 0; v < VEC; ++v) SL_SR_ADD(sr[v], xk * weight[k * OUT + o0 + v]);
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const float acc = (HAS_BIAS ? bias[o0 + v] : 0.0f) + sl_sr_sum(sr[v]);
        out[row * OUT + o0 + v] = POST(acc);
      }
    }
  }
}
