// Layer normalisation of each of OUTER rows of AXIS values of one session's frame.
// Defines: KNAME OUTER AXIS EPSILON POST
static void KNAME(__global const float* restrict in,     // [batch][OUTER][AXIS]
                  __global float* restrict out,          // same shape
                  __global const float* restrict scale,  // [AXIS]
                  __global const float* restrict bias,   // [AXIS]
                  const int b) {
  for (int row = 0; row < OUTER; ++row) {
    __global const float* x = in + (b * OUTER + row) * AXIS;
    __global float* y = out + (b * OUTER + row) * AXIS;
    float mean = 0.0f;
    for (int i = 0; i < AXIS; ++i) mean += x[i];
    mean /= (float)AXIS;
    float var = 0.0f;
    for (int i = 0; i < AXIS; ++i) var += (x[i] - mean) * (x[i] - mean);
    var /= (float)AXIS;
    const float inv = 1.0f / sqrt(var + EPSILON);
    for (int i = 0; i < AXIS; ++i) y[i] = POST((x[i] - mean) * inv * scale[i] + bias[i]);
  }
}
