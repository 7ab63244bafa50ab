// One LSTM (gates i, o, f, c) or GRU (gates z, r, h) layer step, single work-item: per row,
// every hidden unit's gate dot products (shift-register accumulators, GATES unrolled), the cell,
// and h (and c) written back once all units have read the old h.
// Defines: KNAME INPUT HIDDEN GATES GRU LBR LAG STATE_OFFSET POST
SL_SWI __kernel void KNAME(__global const float* restrict in,      // [batch][INPUT]
                           __global float* restrict out,           // [batch][HIDDEN]
                           __global const float* restrict w,       // [INPUT][GATES * HIDDEN]
                           __global const float* restrict r,       // [HIDDEN][GATES * HIDDEN]
                           __global const float* restrict w_bias,  // [GATES * HIDDEN]
                           __global const float* restrict r_bias,  // [GATES * HIDDEN]
                           __global uchar* restrict pool,
                           __global const int* restrict slots,
                           const int batch) {
  __local float y_buf[HIDDEN];
  __local float c_buf[HIDDEN];
  __local float rh_buf[HIDDEN];
  for (int b = 0; b < batch; ++b) {
    const int index = slots[b];
    __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
    __global float* h = (__global float*)(slot + STATE_OFFSET);
    const bool update = index > 0 && sl_step(slot) >= LAG;
    __global const float* x = in + b * INPUT;
#if GRU && !LBR
    // (r * h): needed by every unit's candidate gate, so computed for all units first.
    for (int j = 0; j < HIDDEN; ++j) {
      float sx[SR_DEPTH];
      float sh[SR_DEPTH];
      SL_SR_ZERO(sx);
      SL_SR_ZERO(sh);
      for (int k = 0; k < INPUT; ++k) SL_SR_ADD(sx, x[k] * w[k * (GATES * HIDDEN) + HIDDEN + j]);
      for (int k = 0; k < HIDDEN; ++k) SL_SR_ADD(sh, h[k] * r[k * (GATES * HIDDEN) + HIDDEN + j]);
      const float rg = SL_SIGMOID((w_bias[HIDDEN + j] + sl_sr_sum(sx)) +
                                  (r_bias[HIDDEN + j] + sl_sr_sum(sh)));
      rh_buf[j] = rg * h[j];
    }
#endif
    for (int j = 0; j < HIDDEN; ++j) {
      float sx[GATES][SR_DEPTH];
      float sh[GATES][SR_DEPTH];
#pragma unroll
      for (int g = 0; g < GATES; ++g) {
        SL_SR_ZERO(sx[g]);
        SL_SR_ZERO(sh[g]);
      }
      for (int k = 0; k < INPUT; ++k) {
        const float xk = x[k];
#pragma unroll
        for (int g = 0; g < GATES; ++g) SL_SR_ADD(sx[g], xk * w[k * (GATES * HIDDEN) + g * HIDDEN + j]);
      }
      for (int k = 0; k < HIDDEN; ++k) {
        const float hk = h[k];
#pragma unroll
        for (int g = 0; g < GATES; ++g) SL_SR_ADD(sh[g], hk * r[k * (GATES * HIDDEN) + g * HIDDEN + j]);
      }
      float ax[GATES];
      float ah[GATES];
#pragma unroll
      for (int g = 0; g < GATES; ++g) {
        ax[g] = w_bias[g * HIDDEN + j] + sl_sr_sum(sx[g]);
        ah[g] = r_bias[g * HIDDEN + j] + sl_sr_sum(sh[g]);
      }
#if GRU
      const float z = SL_SIGMOID(ax[0] + ah[0]);
      const float rg = SL_SIGMOID(ax[1] + ah[1]);
#if LBR
      const float n = tanh(ax[2] + rg * ah[2]);
#else
      float sn[SR_DEPTH];
      SL_SR_ZERO(sn);
      for (int k = 0; k < HIDDEN; ++k) SL_SR_ADD(sn, rh_buf[k] * r[k * (GATES * HIDDEN) + 2 * HIDDEN + j]);
      const float n = tanh(ax[2] + (r_bias[2 * HIDDEN + j] + sl_sr_sum(sn)));
#endif
      const float y = (1.0f - z) * n + z * h[j];
#else
      const float ig = SL_SIGMOID(ax[0] + ah[0]);
      const float og = SL_SIGMOID(ax[1] + ah[1]);
      const float fg = SL_SIGMOID(ax[2] + ah[2]);
      const float cell = tanh(ax[3] + ah[3]);
      const float c_next = fg * h[HIDDEN + j] + ig * cell;
      c_buf[j] = c_next;
      const float y = og * tanh(c_next);
#endif
      y_buf[j] = y;
      out[b * HIDDEN + j] = POST(y);
    }
    if (update) {
      for (int j = 0; j < HIDDEN; ++j) {
        h[j] = y_buf[j];
#if !GRU
        h[HIDDEN + j] = c_buf[j];
#endif
      }
    }
  }
}
