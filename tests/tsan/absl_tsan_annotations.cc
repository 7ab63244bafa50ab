// Makes Debian's (uninstrumented) Abseil synchronization visible to ThreadSanitizer. Linked
// only into TSan builds of the harness (SLUICE_SANITIZE=thread).
//
// Why: libabsl_synchronization.so is built without -fsanitize=thread, so absl::Mutex takes and
// releases its lock with atomics and futexes TSan never sees, and every access that the mutex
// orders looks like a data race. Abseil's own TSan support (__tsan_mutex_* calls inside
// mutex.cc) exists only in an instrumented Abseil.
//
// How: this file defines the out-of-line absl::Mutex / absl::CondVar entry points the program
// calls. Being in the executable, these definitions interpose on the shared library's (calls
// from our code bind to them at link time; calls from inside the library go through the PLT
// and reach them too, since the linker exports what the library references). Each one wraps
// the real function (found with dlsym(RTLD_NEXT)) in the same __tsan_mutex_* annotations that
// an instrumented Abseil makes, so TSan models the mutex exactly: lock acquire/release,
// reader locks, try-locks, lock-order inversions. Inside an annotated operation TSan ignores
// memory accesses, which also covers the conditions Abseil evaluates while it locks, unlocks
// or waits (Await, LockWhen, and other threads' conditions evaluated by Unlock): those run with
// the real lock held, but at points where TSan cannot tell whether it is.
//
// absl::Status keeps a reference-counted heap rep for non-OK statuses; the last Unref (in the
// library, uninstrumented) deletes it, and TSan would report that free as racing with the
// other thread's earlier reads of the message. Status::UnrefNonInlined is therefore replaced
// by an instrumented copy of the same code (the rep's layout is Abseil's public
// status_internal.h). Not covered: absl::Notification (HasBeenNotified is an inline atomic load
// that pairs with a store inside the library) and absl::Cord; the harness and the code it
// drives use neither. The harness's --self-test cases check that this layer turns real races
// into reports and guarded accesses into silence.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

#ifndef ABSL_OPTION_INLINE_NAMESPACE_NAME
#error "expects Abseil built with an inline namespace (Debian's is absl::debian3)"
#endif

#define SLUICE_TSAN_STR2(x) #x
#define SLUICE_TSAN_STR(x) SLUICE_TSAN_STR2(x)

namespace sluice_tsan {

// Set once an interposed entry point has run: the harness checks that the layer is live.
std::atomic<bool> annotations_active{false};

// The library's definition of the Itanium-mangled absl::<inline namespace>::<rest>.
void* Real(const char* rest) {
  const std::string ns = SLUICE_TSAN_STR(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = "_ZN4absl" + std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_tsan_annotations: %s not found: %s\n", name.c_str(), dlerror());
    std::abort();
  }
  annotations_active.store(true, std::memory_order_relaxed);
  return fn;
}

// The library calls some of these entry points itself (AwaitWithTimeout calls
// AwaitWithDeadline, LockWhenWithTimeout LockWhenWithDeadline...), and those calls reach the
// interposers too: only the outermost call of a thread annotates.
thread_local int depth = 0;
struct Nested {
  Nested() { ++depth; }
  ~Nested() { --depth; }
};

}  // namespace sluice_tsan

// Looks the real function up once (`rest` is the mangled name after "_ZN4absl<ns>"); a call made
// from inside another interposed call goes straight to it.
#define REAL(type, rest, ...)                                               \
  static const auto real = reinterpret_cast<type>(sluice_tsan::Real(rest)); \
  if (sluice_tsan::depth > 0) return real(__VA_ARGS__);                     \
  sluice_tsan::Nested nested

namespace absl {
ABSL_NAMESPACE_BEGIN

namespace {
constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;
}  // namespace

Mutex::~Mutex() {
  static const auto real = reinterpret_cast<void (*)(Mutex*)>(sluice_tsan::Real("5MutexD2Ev"));
  if (sluice_tsan::depth == 0) __tsan_mutex_destroy(this, __tsan_mutex_not_static);
  sluice_tsan::Nested nested;
  real(this);
}

void Mutex::Lock() {
  REAL(void (*)(Mutex*), "5Mutex4LockEv", this);
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  REAL(void (*)(Mutex*), "5Mutex10ReaderLockEv", this);
  __tsan_mutex_pre_lock(this, kRead);
  real(this);
  __tsan_mutex_post_lock(this, kRead, 0);
}

bool Mutex::TryLock() {
  REAL(bool (*)(Mutex*), "5Mutex7TryLockEv", this);
  __tsan_mutex_pre_lock(this, kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, locked ? kTry : kTry | kTryFailed, 0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  REAL(bool (*)(Mutex*), "5Mutex13ReaderTryLockEv", this);
  __tsan_mutex_pre_lock(this, kRead | kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, locked ? kRead | kTry : kRead | kTry | kTryFailed, 0);
  return locked;
}

void Mutex::Unlock() {
  REAL(void (*)(Mutex*), "5Mutex6UnlockEv", this);
  __tsan_mutex_pre_unlock(this, 0);
  real(this);
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  REAL(void (*)(Mutex*), "5Mutex12ReaderUnlockEv", this);
  __tsan_mutex_pre_unlock(this, kRead);
  real(this);
  __tsan_mutex_post_unlock(this, kRead);
}

// LockWhen*: one lock operation; the condition is evaluated inside it.
void Mutex::LockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "5Mutex8LockWhenERKNS0_9ConditionE", this, cond);
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "5Mutex14ReaderLockWhenERKNS0_9ConditionE", this, cond);
  __tsan_mutex_pre_lock(this, kRead);
  real(this, cond);
  __tsan_mutex_post_lock(this, kRead, 0);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE", this, cond, timeout);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);  // Locked whether or not the condition became true.
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE", this, cond, timeout);
  __tsan_mutex_pre_lock(this, kRead);
  const bool result = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, kRead, 0);
  return result;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE", this, cond, deadline);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE", this, cond, deadline);
  __tsan_mutex_pre_lock(this, kRead);
  const bool result = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, kRead, 0);
  return result;
}

// Await*: called with the lock held; may release it, wait, and take it back. Annotated as an
// unlock followed by a lock, as an instrumented Abseil does; when the condition already holds
// the real call returns at once, which TSan sees as a release and re-acquire that adds no
// ordering of its own. (Await under a reader lock would need the read flags; sluice never does
// that, and TSan would report the mismatch rather than hide anything.)
void Mutex::Await(const Condition& cond) {
  REAL(void (*)(Mutex*, const Condition&), "5Mutex5AwaitERKNS0_9ConditionE", this, cond);
  __tsan_mutex_pre_unlock(this, 0);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  real(this, cond);
  __tsan_mutex_post_lock(this, 0, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  REAL(bool (*)(Mutex*, const Condition&, Duration),
       "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE", this, cond, timeout);
  __tsan_mutex_pre_unlock(this, 0);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, timeout);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  REAL(bool (*)(Mutex*, const Condition&, Time),
       "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE", this, cond, deadline);
  __tsan_mutex_pre_unlock(this, 0);
  __tsan_mutex_post_unlock(this, 0);
  __tsan_mutex_pre_lock(this, 0);
  const bool result = real(this, cond, deadline);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

// CondVar waits release `mu` and take it back before returning.
void CondVar::Wait(Mutex* mu) {
  REAL(void (*)(CondVar*, Mutex*), "7CondVar4WaitEPNS0_5MutexE", this, mu);
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  real(this, mu);
  __tsan_mutex_post_lock(mu, 0, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  REAL(bool (*)(CondVar*, Mutex*, Duration), "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE",
       this, mu, timeout);
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  const bool result = real(this, mu, timeout);
  __tsan_mutex_post_lock(mu, 0, 0);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  REAL(bool (*)(CondVar*, Mutex*, Time), "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE", this,
       mu, deadline);
  __tsan_mutex_pre_unlock(mu, 0);
  __tsan_mutex_post_unlock(mu, 0);
  __tsan_mutex_pre_lock(mu, 0);
  const bool result = real(this, mu, deadline);
  __tsan_mutex_post_lock(mu, 0, 0);
  return result;
}

// An instrumented copy of Abseil's Status::UnrefNonInlined (status.cc): the acquire/release
// decrement is what orders other threads' reads of the rep before its deletion.
void Status::UnrefNonInlined(uintptr_t rep) {
  status_internal::StatusRep* r = RepToPointer(rep);
  if (r->ref.load(std::memory_order_acquire) == 1 ||
      r->ref.fetch_sub(1, std::memory_order_acq_rel) - 1 == 0) {
    delete r;
  }
}

ABSL_NAMESPACE_END
}  // namespace absl
