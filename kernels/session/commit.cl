// Ends one session's step; runs after every op of the step, so all of them saw this step's
// counter. For a live row: advances the head of every conv ring that took a frame, writes the
// ready flag (step >= WARMUP) and increments the step counter. Padding rows: ready = 0.
// Defines: KNAME WARMUP COMMIT_HEADS(slot, step)
static void KNAME(__global uchar* restrict pool,
                  __global const int* restrict slots,
                  __global int* restrict ready,  // [batch]
                  const int b) {
  const int index = slots[b];
  if (index <= 0) {
    ready[b] = 0;
    return;
  }
  __global uchar* slot = pool + (size_t)index * SLOT_STRIDE;
  const long step = sl_step(slot);
  COMMIT_HEADS(slot, step)
  ready[b] = step >= WARMUP ? 1 : 0;
  *(__global long*)slot = step + 1;
}
