// Concatenation of one session's frames, each viewed as [OUTER][part], into [OUTER][TOTAL].
// Defines: KNAME OUTER TOTAL CONCAT_PARAMS (the input pointers in0.., each followed by a comma)
//          CONCAT_FETCH(b, o, w) (element w of output row o) POST
static void KNAME(CONCAT_PARAMS
                  __global float* restrict out,  // [batch][OUTER][TOTAL]
                  const int b) {
  for (int o = 0; o < OUTER; ++o) {
    for (int w = 0; w < TOTAL; ++w) out[(b * OUTER + o) * TOTAL + w] = POST(CONCAT_FETCH(b, o, w));
  }
}
