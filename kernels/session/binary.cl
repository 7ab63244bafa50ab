// Elementwise binary op with broadcast index maps or a constant operand, on one session's frame.
// Defines: KNAME SIZE BINOP LHS RHS POST, where LHS / RHS are expressions in i and b over in0,
// in1 ([batch][A_SIZE] / [batch][B_SIZE]), map_a, map_b ([SIZE] int) and cst ([SIZE]); the
// pointers an op does not use are null.
static void KNAME(__global const float* restrict in0,
                  __global const float* restrict in1,
                  __global const int* restrict map_a,
                  __global const int* restrict map_b,
                  __global const float* restrict cst,
                  __global float* restrict out,  // [batch][SIZE]
                  const int b) {
  for (int i = 0; i < SIZE; ++i) out[b * SIZE + i] = POST(BINOP(LHS, RHS));
}
