// The OpenCL edge of the runtime: cl_int error codes as absl::Status (CL_RETURN_IF_ERROR), and
// owning handles for OpenCL objects. Every OpenCL call in runtime/opencl goes through these.
#ifndef SLUICE_RUNTIME_OPENCL_CL_STATUS_H_
#define SLUICE_RUNTIME_OPENCL_CL_STATUS_H_

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#include <string_view>
#include <utility>

#include "absl/status/status.h"

namespace sluice::opencl {

// "CL_OUT_OF_RESOURCES" for -5; "CL_ERROR(-1234)" for codes OpenCL 1.2..3.0 do not define.
const char* ClErrorName(cl_int code);

// OK for CL_SUCCESS. Otherwise InvalidArgument for errors a caller's input causes (a bad or
// mismatched program binary, build failure, bad build options, a missing kernel name, bad
// arguments) and Unavailable for everything else: the device, its memory or its queue failed.
// The message is "<what>: <CL_NAME> (<code>)".
absl::Status ClStatus(cl_int code, std::string_view what);

// Returns ClStatus(expr, #expr) from the enclosing function unless `expr` is CL_SUCCESS.
#define CL_RETURN_IF_ERROR(expr)                                 \
  do {                                                           \
    const cl_int sluice_cl_code_ = (expr);                       \
    if (sluice_cl_code_ != CL_SUCCESS) {                         \
      return ::sluice::opencl::ClStatus(sluice_cl_code_, #expr); \
    }                                                            \
  } while (0)

namespace internal {
inline void Release(cl_context h) { clReleaseContext(h); }
inline void Release(cl_command_queue h) { clReleaseCommandQueue(h); }
inline void Release(cl_mem h) { clReleaseMemObject(h); }
inline void Release(cl_program h) { clReleaseProgram(h); }
inline void Release(cl_kernel h) { clReleaseKernel(h); }
inline void Release(cl_event h) { clReleaseEvent(h); }
}  // namespace internal

// Owns one reference to an OpenCL object (released on destruction). Move-only.
template <typename T>
class ClHandle {
 public:
  ClHandle() = default;
  explicit ClHandle(T handle) : handle_(handle) {}
  ~ClHandle() { reset(); }
  ClHandle(ClHandle&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  ClHandle& operator=(ClHandle&& other) noexcept {
    if (this != &other) {
      reset();
      handle_ = std::exchange(other.handle_, nullptr);
    }
    return *this;
  }
  ClHandle(const ClHandle&) = delete;
  ClHandle& operator=(const ClHandle&) = delete;

  T get() const { return handle_; }
  // Address of the handle, for APIs that take a pointer to an array of handles.
  const T* address() const { return &handle_; }
  explicit operator bool() const { return handle_ != nullptr; }
  void reset(T handle = nullptr) {
    if (handle_ != nullptr) internal::Release(handle_);
    handle_ = handle;
  }

 private:
  T handle_ = nullptr;
};

using ClContext = ClHandle<cl_context>;
using ClQueue = ClHandle<cl_command_queue>;
using ClMem = ClHandle<cl_mem>;
using ClProgram = ClHandle<cl_program>;
using ClKernel = ClHandle<cl_kernel>;

}  // namespace sluice::opencl

#endif  // SLUICE_RUNTIME_OPENCL_CL_STATUS_H_
