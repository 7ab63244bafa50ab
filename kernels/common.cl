// sluice OpenCL kernels: shared prelude (plain OpenCL C 1.2).
//
// The host (runtime/opencl/kernel_source.cc) builds one program per model: this prelude; for the
// single-work-item variant fpga/prelude.cl; then, in program order, one kernel per conv, linear
// and LSTM/GRU op from the variant's templates (ndrange/*.cl for CPUs and GPUs, fpga/*.cl for the
// Intel FPGA), each wrapped in the op's #defines, and for every run of consecutive other ops
// (elementwise, reductions, softmax, layer norm, concat, slice, output copies, the step commit)
// one fused kernel (ndrange/fused.cl or fpga/fused.cl) calling the per-session functions of
// session/*.cl. Sizes are compile-time constants, so loops over channels, taps and gates are
// fully specialised.
//
// Program-wide defines set by the host:
//   SLOT_STRIDE  bytes between two session slots in the state pool.
// Per-op defines (see each template): KNAME (kernel or function name), sizes, VEC / VTYPE /
// VLOAD / VSTORE (explicit vector width), POST(x) (fused activation), state offset and LAG.
//
// Buffers every template shares:
//   pool   the state pool: slot i of the Backend lives at pool + (i + 1) * SLOT_STRIDE in the
//          byte layout of runtime/streaming/program.h (int64 step counter at 0, conv regions:
//          int64 head + mirrored ring of 2*TAPS frames at +64, RNN regions: h then c).
//          Pool index 0 is an always-zero dummy slot that padding rows point at.
//   slots  [batch] int: the pool index of each row of the bucket; 0 marks a padding row,
//          which computes on the dummy slot and never writes state.
//   batch  rows in this bucket (a power of two or max_batch).
//
// Warm-up: an op whose session step counter is below its LAG leaves its state untouched (and
// a conv then reads its stored window only), exactly like the CPU backend.

#ifdef __clang__
// PoCL's clang warns that float16 changes the ABI without AVX-512; kernels do not care.
#pragma clang diagnostic ignored "-Wpsabi"
#endif

#define CONV_HEADER 64

// The session's step counter (frames seen so far).
static inline long sl_step(__global const uchar* slot) { return *(__global const long*)slot; }

static inline float sl_add(float a, float b) { return a + b; }
static inline float sl_sub(float a, float b) { return a - b; }
static inline float sl_mul(float a, float b) { return a * b; }
static inline float sl_div(float a, float b) { return a / b; }
static inline float sl_pow(float a, float b) { return b == 2.0f ? a * a : pow(a, b); }
static inline float sl_min(float a, float b) { return a < b ? a : b; }
static inline float sl_max(float a, float b) { return a > b ? a : b; }

#define SL_SIGMOID(x) (1.0f / (1.0f + exp(-(x))))

// Advances a conv ring's head (the int64 at the start of its state region) by one frame.
static inline void sl_advance_head(__global uchar* region, long taps) {
  __global long* head = (__global long*)region;
  const long next = *head + 1;
  *head = next == taps ? 0 : next;
}

// Copies `words` 32-bit words of session state to `dst` (the recurrent-state read-back).
static inline void sl_copy_words(__global uint* dst, __global const uchar* src, int words) {
  __global const uint* from = (__global const uint*)src;
  for (int i = 0; i < words; ++i) dst[i] = from[i];
}
