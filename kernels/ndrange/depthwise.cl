// Depthwise window convolution (GROUPS == CIN == COUT), NDRange, VEC channels per work-item.
// Fuses the ring-window update, bias and activation (see conv.cl for the ring protocol).
//
// Defines: KNAME C KERNEL DIL TAPS LAG STATE_OFFSET VEC VTYPE VLOAD VSTORE LOCAL_X POST
// Geometry: global (C / VEC, batch), local (LOCAL_X, 1).
__kernel __attribute__((reqd_work_group_size(LOCAL_X, 1, 1)))
void KNAME(__global const float* restrict in,      // [batch][C]
           __global float* restrict out,           // [batch][C]
           __global const float* restrict weight,  // [KERNEL][C]
           __global const float* restrict bias,    // [C]
           __global uchar* restrict pool,
           __global const int* restrict slots,
           const int batch) {
  const int c = get_global_id(0) * VEC;
  const int b = get_global_id(1);
  const int index = slots[b];
  __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
  const int head = (int)*(__global const long*)(slot + STATE_OFFSET);
  __global float* ring = (__global float*)(slot + STATE_OFFSET + CONV_HEADER);
  __global const float* window = ring + (head + 1) * C + c;
  const bool taking = sl_step(slot) >= LAG;  // Before LAG the window is the stored frames.
  const VTYPE x_new = taking ? VLOAD(0, in + b * C + c) : VLOAD(0, window + (TAPS - 1) * C);
  VTYPE acc = VLOAD(0, bias + c);
  for (int i = 0; i < KERNEL - 1; ++i) {
    acc += VLOAD(0, weight + i * C + c) * VLOAD(0, window + i * DIL * C);
  }
  acc += VLOAD(0, weight + (KERNEL - 1) * C + c) * x_new;
  if (index > 0 && taking) {
    VSTORE(x_new, 0, ring + head * C + c);
    VSTORE(x_new, 0, ring + (head + TAPS) * C + c);
  }
  VSTORE(POST(acc), 0, out + b * C + c);
}
