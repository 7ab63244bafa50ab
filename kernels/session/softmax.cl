// (Log)softmax over the middle axis of one session's frame viewed as [OUTER][AXIS][INNER].
// Defines: KNAME OUTER AXIS INNER LOG POST
static void KNAME(__global const float* restrict in,  // [batch][OUTER][AXIS][INNER]
                  __global float* restrict out,       // same shape
                  const int b) {
  for (int e = 0; e < OUTER * INNER; ++e) {
    const int o = e / INNER;
    const int i = e - o * INNER;
    const int base = b * (OUTER * AXIS * INNER) + o * AXIS * INNER + i;
    float max_v = -INFINITY;
    for (int a = 0; a < AXIS; ++a) max_v = fmax(max_v, in[base + a * INNER]);
    float sum = 0.0f;
    for (int a = 0; a < AXIS; ++a) sum += exp(in[base + a * INNER] - max_v);
#if LOG
    const float log_sum = log(sum);
    for (int a = 0; a < AXIS; ++a) out[base + a * INNER] = POST(in[base + a * INNER] - max_v - log_sum);
#else
    const float inv = 1.0f / sum;
    for (int a = 0; a < AXIS; ++a) out[base + a * INNER] = POST(exp(in[base + a * INNER] - max_v) * inv);
#endif
  }
}
