// sluice OpenCL kernels, single-work-item variant (Intel FPGA SDK for OpenCL; also runs on any
// OpenCL 1.2 device, which is how the tests check it on PoCL).
//
// Every kernel is one work-item (max_global_work_dim(0): launched as a task) that loops over
// the rows of the bucket; the compiler pipelines the loops. Inner loops over a fixed number of
// outputs are unrolled, and dot products accumulate into a shift register of SR_DEPTH partial
// sums so the floating-point add latency does not serialise the pipeline (initiation interval
// 1), summed once at the end.
//
// Optional: cl_intel_channels (only with the Intel compiler and -DSLUICE_FPGA_CHANNELS). The
// kernel chain passes values through global memory, which is what PoCL can verify; the channel
// macros below are the hook for streaming values kernel-to-kernel on the card.

#ifndef SR_DEPTH
#define SR_DEPTH 8
#endif

// Launched as a task (one work-item). Other compilers (PoCL's clang) ignore the attribute.
#define SL_SWI __attribute__((max_global_work_dim(0)))
#if defined(__clang__) && !defined(INTELFPGA_CL) && !defined(__INTELFPGA_COMPILER__)
#pragma clang diagnostic ignored "-Wunknown-attributes"
#endif

#if (defined(INTELFPGA_CL) || defined(__INTELFPGA_COMPILER__)) && defined(SLUICE_FPGA_CHANNELS)
#pragma OPENCL EXTENSION cl_intel_channels : enable
#define SL_CHANNEL(name, type, depth) channel type name __attribute__((depth(depth)))
#define SL_WRITE_CHANNEL(name, value) write_channel_intel(name, value)
#define SL_READ_CHANNEL(name) read_channel_intel(name)
#define SL_HAS_CHANNELS 1
#else
#define SL_HAS_CHANNELS 0
#endif

// A dot-product accumulator that tolerates the adder's latency: SR_DEPTH partial sums in a
// shift register. SL_SR_ZERO(sr) clears it, SL_SR_ADD(sr, v) adds one product, SL_SR_SUM(sr)
// reduces it.
#define SL_SR_ZERO(sr)                                    \
  _Pragma("unroll") for (int sl_d = 0; sl_d < SR_DEPTH; ++sl_d) sr[sl_d] = 0.0f
#define SL_SR_ADD(sr, v)                                                   \
  do {                                                                     \
    const float sl_sum = sr[SR_DEPTH - 1] + (v);                           \
    _Pragma("unroll") for (int sl_d = SR_DEPTH - 1; sl_d > 0; --sl_d) sr[sl_d] = sr[sl_d - 1]; \
    sr[0] = sl_sum;                                                        \
  } while (0)

static inline float sl_sr_sum(const float* sr) {
  float total = 0.0f;
#pragma unroll
  for (int d = 0; d < SR_DEPTH; ++d) total += sr[d];
  return total;
}
