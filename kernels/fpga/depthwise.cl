// Depthwise window convolution (GROUPS == CIN == COUT), single work-item; VEC channels per
// iteration (unrolled). Fuses the ring update, bias and activation (see conv.cl).
// Defines: KNAME C KERNEL DIL TAPS LAG STATE_OFFSET VEC POST
SL_SWI __kernel void KNAME(__global const float* restrict in,      // [batch][C]
                           __global float* restrict out,           // [batch][C]
                           __global const float* restrict weight,  // [KERNEL][C]
                           __global const float* restrict bias,    // [C]
                           __global uchar* restrict pool,
                           __global const int* restrict slots,
                           const int batch) {
  for (int b = 0; b < batch; ++b) {
    const int index = slots[b];
    __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
    const int head = (int)*(__global const long*)(slot + STATE_OFFSET);
    __global float* ring = (__global float*)(slot + STATE_OFFSET + CONV_HEADER);
    __global const float* window = ring + (head + 1) * C;
    const bool taking = sl_step(slot) >= LAG;  // Before LAG the window is the stored frames.
    __global const float* frame = in + b * C;
    __global const float* newest = taking ? frame : window + (TAPS - 1) * C;
    const bool update = index > 0 && taking;
    for (int c0 = 0; c0 < C; c0 += VEC) {
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        const int c = c0 + v;
        float acc = bias[c];
#pragma unroll
        for (int i = 0; i < KERNEL - 1; ++i) acc += weight[i * C + c] * window[i * DIL * C + c];
        acc += weight[(KERNEL - 1) * C + c] * newest[c];
        out[b * C + c] = POST(acc);
      }
    }
    if (update) {
      for (int c = 0; c < C; ++c) {
        ring[head * C + c] = frame[c];
        ring[(head + TAPS) * C + c] = frame[c];
      }
    }
  }
}
