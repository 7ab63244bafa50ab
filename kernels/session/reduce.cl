// Reduction over the middle axis of one session's frame viewed as [OUTER][AXIS][INNER].
// Defines: KNAME OUTER AXIS INNER REDUCE_INIT REDUCE_STEP(acc, x) REDUCE_FINAL(acc) POST
static void KNAME(__global const float* restrict in,  // [batch][OUTER][AXIS][INNER]
                  __global float* restrict out,       // [batch][OUTER][INNER]
                  const int b) {
  for (int e = 0; e < OUTER * INNER; ++e) {
    const int o = e / INNER;
    const int i = e - o * INNER;
    __global const float* p = in + b * (OUTER * AXIS * INNER) + o * AXIS * INNER + i;
    float acc = REDUCE_INIT;
    for (int a = 0; a < AXIS; ++a) {
      const float x = p[a * INNER];
      REDUCE_STEP(acc, x);
    }
    out[b * (OUTER * INNER) + e] = POST(REDUCE_FINAL(acc));
  }
}
