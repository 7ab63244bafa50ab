// Ends one session's step; runs after every op of the step, so all of them saw this step's
// counter. For a live row: advances the head of every conv ring that took a frame, writes the
// ready flag (step >= WARMUP), increments the step counter and, when the host asked for it,
// copies the step counter and every LSTM/GRU state region (h, c) into `mirror` so they reach
// the host with the step's outputs (to rebuild the session elsewhere if the device dies).
// Padding rows: ready = 0.
// Defines: KNAME WARMUP COMMIT_HEADS(slot, step) MIRROR_WORDS MIRROR_COPY(slot, dst)
static void KNAME(__global uchar* restrict pool,
                  __global const int* restrict slots,
                  __global int* restrict ready,    // [batch]
                  __global uint* restrict mirror,  // [batch][MIRROR_WORDS], or null
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
  MIRROR_COPY(slot, mirror + b * MIRROR_WORDS)
}
