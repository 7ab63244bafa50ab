// Copies one session's frame of a value into a model output's part of the result buffer (for
// an output that is the model input or repeats another output). Defines: KNAME SIZE
static void KNAME(__global const float* restrict in,  // [batch][SIZE]
                  __global float* restrict out,       // [batch][SIZE]
                  const int b) {
  for (int i = 0; i < SIZE; ++i) out[b * SIZE + i] = in[b * SIZE + i];
}
