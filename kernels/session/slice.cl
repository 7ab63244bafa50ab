// Strided slice of the middle axis of one session's frame viewed as [OUTER][AXIS][INNER].
// Defines: KNAME OUTER AXIS INNER START STEP COUNT POST
static void KNAME(__global const float* restrict in,  // [batch][OUTER][AXIS][INNER]
                  __global float* restrict out,       // [batch][OUTER][COUNT][INNER]
                  const int b) {
  for (int o = 0; o < OUTER; ++o) {
    for (int c = 0; c < COUNT; ++c) {
      for (int i = 0; i < INNER; ++i) {
        out[((b * OUTER + o) * COUNT + c) * INNER + i] =
            POST(in[b * (OUTER * AXIS * INNER) + (o * AXIS + START + c * STEP) * INNER + i]);
      }
    }
  }
}
