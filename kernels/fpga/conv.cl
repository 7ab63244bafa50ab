// Window convolution (dense, grouped or depthwise; any dilation), single work-item.
// Fuses the ring-window update, bias and activation.
//
// Defines: KNAME CIN COUT KERNEL DIL TAPS GROUPS CIN_G COUT_G LAG STATE_OFFSET VEC POST
// For each row: VEC outputs at a time (unrolled), each a dot product over the KERNEL * CIN_G
// window entries accumulated in a shift register. The window's newest frame is this step's
// input; after the row's outputs, the input enters the ring at head and head + TAPS (the
// commit kernel advances head).
SL_SWI __kernel void KNAME(__global const float* restrict in,      // [batch][CIN]
                           __global float* restrict out,           // [batch][COUT]
                           __global const float* restrict weight,  // [GROUPS][KERNEL][CIN_G][COUT_G]
                           __global const float* restrict bias,    // [COUT]
                           __global uchar* restrict pool,
                           __global const int* restrict slots,
                           const int batch) {
  for (int b = 0; b < batch; ++b) {
    const int index = slots[b];
    __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
    const int head = (int)*(__global const long*)(slot + STATE_OFFSET);
    __global float* ring = (__global float*)(slot + STATE_OFFSET + CONV_HEADER);
    __global const float* window = ring + (head + 1) * CIN;
    const bool taking = sl_step(slot) >= LAG;  // Before LAG the window is the stored frames.
    __global const float* frame = in + b * CIN;
    __global const float* newest = taking ? frame : window + (TAPS - 1) * CIN;
    for (int o0 = 0; o0 < COUT; o0 += VEC) {
      const int g = o0 / COUT_G;
      __global const float* w = weight + g * (KERNEL * CIN_G * COUT_G) + (o0 - g * COUT_G);
      float sr[VEC][SR_DEPTH];
#pragma unroll
      for (int v = 0; v < VEC; ++v) {
        SL_SR_ZERO(sr[v]);
      }
      for (int k = 0; k < KERNEL * CIN_G; ++k) {
        const int i = k / CIN_G;
        const int c = k - i * CIN_G;
        const float x = i < KERNEL - 1 ? window[i * DIL * CIN + g * CIN_G + c]
                                       : newest[g * CIN_G + c];
#pragma unroll
        for (int v = 0; v < VEC; ++v) SL_SR_ADD(sr[v], x * w[k * COUT_G + v]);
      }
#pragma unroll
      for (int v = 0; v < VEC; ++v) out[b * COUT + o0 + v] = POST(bias[o0 + v] + sl_sr_sum(sr[v]));
    }
    if (index > 0 && taking) {
#pragma unroll 4
      for (int c = 0; c < CIN; ++c) {
        ring[head * CIN + c] = frame[c];
        ring[(head + TAPS) * CIN + c] = frame[c];
      }
    }
  }
}
