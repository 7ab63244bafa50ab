// A run of consecutive per-session ops (kernels/session/*.cl) fused into one single-work-item
// kernel: the rows of the bucket one after another, each row's ops in program order.
// Defines: KNAME FUSED_PARAMS (kernel parameters, each followed by a comma) FUSED_BODY(b)
SL_SWI __kernel void KNAME(FUSED_PARAMS const int batch) {
  for (int b = 0; b < batch; ++b) {
    FUSED_BODY(b)
  }
}
