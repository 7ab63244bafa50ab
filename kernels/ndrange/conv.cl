// Window convolution (dense or grouped, any dilation), NDRange with explicit vectors.
// Fuses the ring-window update, bias and activation.
//
// Defines: KNAME CIN COUT KERNEL DIL TAPS GROUPS CIN_G COUT_G LAG STATE_OFFSET
//          VEC VTYPE VLOAD VSTORE SB LOCAL_X POST
// Geometry: global (COUT / VEC, batch / SB), local (LOCAL_X, 1). A work-item computes VEC
// consecutive output channels (inside one group) for SB sessions, so each weight vector it
// loads feeds SB sessions.
//
// The window of TAPS frames is ring[head + 1 .. head + TAPS] (oldest first); its newest frame
// is this step's input, read from `in`. The input is written to ring positions head and
// head + TAPS, which no work-item reads in this launch; the commit kernel advances head.
// Before the op's LAG (warm-up) the ring is left alone and the window is the stored frames,
// exactly as on the CPU backend.
__kernel __attribute__((reqd_work_group_size(LOCAL_X, 1, 1)))
void KNAME(__global const float* restrict in,      // [batch][CIN]
           __global float* restrict out,           // [batch][COUT]
           __global const float* restrict weight,  // [GROUPS][KERNEL][CIN_G][COUT_G]
           __global const float* restrict bias,    // [COUT]
           __global uchar* restrict pool,
           __global const int* restrict slots,
           const int batch) {
  const int block = get_global_id(0);
  const int o = block * VEC;
  const int g = o / COUT_G;
  const int b0 = get_global_id(1) * SB;
  __global const float* window[SB];
  __global const float* newest[SB];
  VTYPE acc[SB];
  const VTYPE bias_v = VLOAD(0, bias + o);
#pragma unroll
  for (int s = 0; s < SB; ++s) {
    const int b = b0 + s;
    const int index = slots[b];
    __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
    const int head = (int)*(__global const long*)(slot + STATE_OFFSET);
    __global float* ring = (__global float*)(slot + STATE_OFFSET + CONV_HEADER);
    __global const float* frame = in + b * CIN;
    const bool taking = sl_step(slot) >= LAG;  // Before LAG the ring keeps its frames.
    window[s] = ring + (head + 1) * CIN + g * CIN_G;
    newest[s] = taking ? frame + g * CIN_G : ring + (head + TAPS) * CIN + g * CIN_G;
    acc[s] = bias_v;
    if (index > 0 && taking) {
      for (int c = block; c < CIN; c += COUT / VEC) {
        const float x = frame[c];
        ring[head * CIN + c] = x;
        ring[(head + TAPS) * CIN + c] = x;
      }
    }
  }
  __global const float* w = weight + g * (KERNEL * CIN_G * COUT_G) + (o - g * COUT_G);
  for (int i = 0; i < KERNEL - 1; ++i) {
    for (int c = 0; c < CIN_G; ++c) {
      const VTYPE wv = VLOAD(0, w + (i * CIN_G + c) * COUT_G);
#pragma unroll
      for (int s = 0; s < SB; ++s) acc[s] += window[s][i * DIL * CIN + c] * wv;
    }
  }
  for (int c = 0; c < CIN_G; ++c) {
    const VTYPE wv = VLOAD(0, w + ((KERNEL - 1) * CIN_G + c) * COUT_G);
#pragma unroll
    for (int s = 0; s < SB; ++s) acc[s] += newest[s][c] * wv;
  }
#pragma unroll
  for (int s = 0; s < SB; ++s) VSTORE(POST(acc[s]), 0, out + (b0 + s) * COUT + o);
}
