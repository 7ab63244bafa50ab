// One LSTM (gates i, o, f, c) or GRU (gates z, r, h) layer step, NDRange: the gate GEMMs over
// x and h and the cell, fused. One work-group per session; a work-item owns VEC hidden units.
// h is read by every work-item of the session, so it is overwritten only after a barrier.
//
// Defines: KNAME INPUT HIDDEN GATES GRU LBR LAG STATE_OFFSET VEC VTYPE VLOAD VSTORE LOCAL_X POST
// Geometry: global (HIDDEN / VEC, batch), local (HIDDEN / VEC, 1).
__kernel __attribute__((reqd_work_group_size(LOCAL_X, 1, 1)))
void KNAME(__global const float* restrict in,      // [batch][INPUT]
           __global float* restrict out,           // [batch][HIDDEN]
           __global const float* restrict w,       // [INPUT][GATES * HIDDEN]
           __global const float* restrict r,       // [HIDDEN][GATES * HIDDEN]
           __global const float* restrict w_bias,  // [GATES * HIDDEN]
           __global const float* restrict r_bias,  // [GATES * HIDDEN]
           __global uchar* restrict pool,
           __global const int* restrict slots,
           const int batch) {
#if GRU && !LBR
  __local float reset_h[HIDDEN];
#endif
  const int j = get_global_id(0) * VEC;
  const int b = get_global_id(1);
  const int index = slots[b];
  __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
  __global float* h = (__global float*)(slot + STATE_OFFSET);
  const bool update = index > 0 && sl_step(slot) >= LAG;
  __global const float* x = in + b * INPUT;
  VTYPE ax[GATES];
  VTYPE ah[GATES];
#pragma unroll
  for (int g = 0; g < GATES; ++g) {
    ax[g] = VLOAD(0, w_bias + g * HIDDEN + j);
    ah[g] = VLOAD(0, r_bias + g * HIDDEN + j);
  }
  for (int k = 0; k < INPUT; ++k) {
    const float xk = x[k];
#pragma unroll
    for (int g = 0; g < GATES; ++g) ax[g] += xk * VLOAD(0, w + k * (GATES * HIDDEN) + g * HIDDEN + j);
  }
  for (int k = 0; k < HIDDEN; ++k) {
    const float hk = h[k];
#pragma unroll
    for (int g = 0; g < GATES; ++g) ah[g] += hk * VLOAD(0, r + k * (GATES * HIDDEN) + g * HIDDEN + j);
  }
  const VTYPE h_old = VLOAD(0, h + j);
#if GRU
  const VTYPE z = SL_SIGMOID(ax[0] + ah[0]);
  const VTYPE rg = SL_SIGMOID(ax[1] + ah[1]);
#if LBR
  const VTYPE n = tanh(ax[2] + rg * ah[2]);
#else
  VSTORE(rg * h_old, 0, reset_h + j);
  barrier(CLK_LOCAL_MEM_FENCE);
  VTYPE gn = VLOAD(0, r_bias + 2 * HIDDEN + j);
  for (int k = 0; k < HIDDEN; ++k) {
    gn += reset_h[k] * VLOAD(0, r + k * (GATES * HIDDEN) + 2 * HIDDEN + j);
  }
  const VTYPE n = tanh(ax[2] + gn);
#endif
  const VTYPE y = (1.0f - z) * n + z * h_old;
#else
  const VTYPE ig = SL_SIGMOID(ax[0] + ah[0]);
  const VTYPE og = SL_SIGMOID(ax[1] + ah[1]);
  const VTYPE fg = SL_SIGMOID(ax[2] + ah[2]);
  const VTYPE cell = tanh(ax[3] + ah[3]);
  __global float* c = h + HIDDEN;
  const VTYPE c_next = fg * VLOAD(0, c + j) + ig * cell;
  const VTYPE y = og * tanh(c_next);
  if (update) VSTORE(c_next, 0, c + j);
#endif
  VSTORE(POST(y), 0, out + b * HIDDEN + j);
  barrier(CLK_GLOBAL_MEM_FENCE);  // Every work-item of this session has read h.
  if (update) VSTORE(y, 0, h + j);
}
