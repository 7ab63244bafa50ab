// Elementwise unary op on one session's frame. Defines: KNAME SIZE UNARY(x) POST
static void KNAME(__global const float* restrict in,  // [batch][SIZE]
                  __global float* restrict out,       // [batch][SIZE]
                  const int b) {
  for (int i = 0; i < SIZE; ++i) out[b * SIZE + i] = POST(UNARY(in[b * SIZE + i]));
}
