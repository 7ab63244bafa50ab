// A run of consecutive per-session ops (elementwise, reductions, softmax, layer norm, concat,
// slice, output copies and the step commit: kernels/session/*.cl) fused into one launch,
// NDRange: one work-item per session runs them in program order, so values pass between them
// through global memory without any synchronisation.
// Defines: KNAME FUSED_PARAMS (kernel parameters, each followed by a comma) FUSED_BODY(b)
// (the calls) LOCAL_X
// Geometry: global (batch rounded up to LOCAL_X), local (LOCAL_X).
__kernel __attribute__((reqd_work_group_size(LOCAL_X, 1, 1)))
void KNAME(FUSED_PARAMS const int batch) {
  const int b = get_global_id(0);
  if (b >= batch) return;
  FUSED_BODY(b)
}
