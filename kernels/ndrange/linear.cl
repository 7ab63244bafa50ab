// Per-frame matrix product (Gemm / MatMul), NDRange with explicit vectors; bias and activation
// fused. Each session's frame holds ROWS rows of IN features.
//
// Defines: KNAME ROWS IN OUT HAS_BIAS VEC VTYPE VLOAD VSTORE SB LOCAL_X POST
// Geometry: global (OUT / VEC, batch * ROWS / SB), local (LOCAL_X, 1): VEC outputs of SB rows.
__kernel __attribute__((reqd_work_group_size(LOCAL_X, 1, 1)))
void KNAME(__global const float* restrict in,      // [batch * ROWS][IN]
           __global float* restrict out,           // [batch * ROWS][OUT]
           __global const float* restrict weight,  // [IN][OUT]
           __global const float* restrict bias,    // [OUT] (unused without HAS_BIAS)
           const int batch) {
  const int o = get_global_id(0) * VEC;
  const int r0 = get_global_id(1) * SB;
  VTYPE acc[SB];
#pragma unroll
  for (int s = 0; s < SB; ++s) acc[s] = HAS_BIAS ? VLOAD(0, bias + o) : (VTYPE)(0.0f);
  for (int k = 0; k < IN; ++k) {
    const VTYPE wv = VLOAD(0, weight + k * OUT + o);
#pragma unroll
    for (int s = 0; s < SB; ++s) acc[s] += in[(r0 + s) * IN + k] * wv;
  }
#pragma unroll
  for (int s = 0; s < SB; ++s) VSTORE(POST(acc[s]), 0, out + (r0 + s) * OUT + o);
}
