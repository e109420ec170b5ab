// Trusted (inside the enclave): the `teemate_isolate.node` addon.
//
// It owns a fixed pool of parked OS threads, one per TCS slot of the shared
// enclave. Each activation runs on the thread of its slot, in a new Node
// environment created there (activation.h), and its outcome is delivered to the
// owner's main thread through a thread-safe function. In the SGX build the same
// slots are entered by joining processes instead of being woken by run()
// (patches/); the activation code is identical.
//
// Prewarm budget: slots 0..K-1 (start(slots, {prewarm: K})) are "hot": each of
// their threads prepares the environment for its NEXT activation while it waits
// (created from the snapshot and bootstrapped by Node, nothing of any activation
// in it), so a run() only runs its script. The other slots are "cold": they
// create their environment on the request path and hold none while idle. The
// budget exists because every prepared environment costs ~4.4 MiB of resident
// memory; the owner hands out the lowest free slot first, so the low slots are
// the ones that see traffic. On every slot the result is delivered first and the
// used environment freed afterwards; an environment serves exactly one
// activation, only the moment it is made moves off the request path (what
// OpenWhisk does with prewarmed containers).
//
// The runtime may also hand start() a trusted prelude: its own code, run in
// every environment as part of preparing it (hot slots: before the request;
// cold slots: on the request path, like the rest of the environment), which
// builds everything of the activation plumbing that does not depend on the
// request and returns the entry function a run(slot, null, ...) then calls.
//
// With start(slots, {reuse: 'tenant'}) (off by default) each slot keeps its
// isolate for one tenant's activations, each still in a new context and Node
// environment of its own (activation.h, KeptIsolate); run()'s tenant says whose
// activation it is.
//
// JavaScript API (see README.md):
//   start(slots[, {prewarm, prelude, codeCache, reuse, pagePoolMB}])
//   run(slot, bootstrap|null, requestJSON, timeoutMs, heapLimitMB, cb[, tenant])
//   info()                              stop()
// activation.h (node.h) comes first: node_version.h defines NAPI_VERSION for
// this Node release, which node_api.h would otherwise default lower.
#include "activation.h"

#include <node_api.h>

#include "page_pool.h"

#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <uv.h>

namespace teemate {
namespace {

constexpr uint32_t kMaxSlots = 256;
constexpr double kMaxTimeoutMs = 24.0 * 3600 * 1000;
constexpr double kMinHeapMB = 16;       // a bare environment already uses ~5 MB
constexpr double kMaxHeapMB = 64 * 1024;
// Inputs beyond these are refused before any thread sees them (the gate caps
// payloads at 1 MiB; the bootstrap is the runtime's own code).
constexpr size_t kMaxRequestBytes = 64u << 20;
constexpr size_t kMaxBootstrapBytes = 64u << 20;
constexpr size_t kMaxTenantBytes = 256;  // an OpenWhisk namespace is far shorter
// The page pool (page_pool.h): the budget start() gives it unless told (a
// torn-down isolate frees ~4 MiB of pooled sizes), and the most start() accepts.
constexpr uint32_t kDefaultPagePoolMB = 16;
constexpr double kMaxPagePoolMB = 4096;
// How long a slot thread waits for the owner's thread to finish handling a
// result before it frees the used environment and prepares the next one anyway.
constexpr auto kMaxHandoffWait = std::chrono::milliseconds(20);

// Handoff tells the slot thread that the owner's thread is done with the
// result it delivered: the JavaScript callback returned (the enclave runtime
// writes its gate reply from inside it). Until then the slot thread leaves the
// CPU to the reply: freeing the used environment and preparing the next one
// (~1 + ~10 ms of CPU) would otherwise compete with it on a small machine.
// Shared because either side may be the last to hold it.
class Handoff {
 public:
  void Signal() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
  }
  void WaitFor(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, limit, [this] { return done_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

// One queued activation and, once finished, its outcome.
struct Job {
  ActivationRequest req;
  napi_threadsafe_function tsfn = nullptr;
  Clock::time_point queued;  // when run() accepted it
  ActivationResult res;
  // A prepared environment was waiting on the slot when run() queued the job
  // (so no environment work was left for its request path).
  bool prewarmed = false;
  // How long freeing the environment of the previous activation on this slot
  // took (after its result was delivered); negative when there was none.
  double last_teardown_ms = -1;
  std::shared_ptr<Handoff> handoff = std::make_shared<Handoff>();
  // start({reuse: 'tenant'}): whose activation this is ("": none, e.g. a sealed
  // one), and, once it ran, whether its isolate stays for that tenant's next one.
  std::string tenant;
  bool isolate_kept = false;
};

struct Slot {
  std::mutex mu;
  std::condition_variable cv;
  std::unique_ptr<Job> job;  // set by run(), taken by the slot thread
  // From run() until the result is handed to the owner's thread. The slot
  // thread may still free the used environment and prepare the next one after
  // that; a run() arriving meanwhile is queued and starts when it is done.
  bool busy = false;
  bool prepared = false;  // a fresh environment waits on this slot (info())
  bool quit = false;
  // Set once by start(), before the thread runs: this slot is within the
  // prewarm budget and keeps a prepared environment while idle.
  bool prewarm = false;
  ActivationGuard* guard = nullptr;  // the running activation, for stop()
  // The handoff the slot thread waits on after delivering, so stop() can end
  // the wait at once (the owner's thread is then busy joining, not delivering).
  std::shared_ptr<Handoff> handoff;
  std::thread thread;
};

// Process-wide: the slots stand for the enclave's TCSs, of which there is one
// set per process, whichever environment loaded the addon.
struct State {
  std::mutex mu;  // guards started/owner and the slots vector's shape
  bool started = false;
  uint32_t prewarm = 0;  // the budget K of the current start(): slots 0..K-1 keep one prepared
  // start({reuse: 'tenant'}): each slot keeps its isolate for one tenant (KeptIsolate).
  bool reuse = false;
  // The page pool of the current start() (nullptr: off, or not available,
  // page_pool_why says which).
  PagePool* page_pool = nullptr;
  std::string page_pool_why;
  napi_env owner = nullptr;
  Runtime runtime;
  Watchdog watchdog;
  std::vector<std::unique_ptr<Slot>> slots;
  // How many slots hold a prepared environment now (Slot::prepared true): a slot that prepares
  // the next one while none is waiting does it at full priority (see SlotMain).
  std::atomic<int> prepared_slots{0};
};

State& G() {
  static State* s = new State();  // never destroyed: threads may outlive statics
  return *s;
}

// ------------------------------------------------------------ napi helpers

napi_value Throw(napi_env env, const char* code, const std::string& msg, bool type_error = false) {
  if (type_error) {
    napi_throw_type_error(env, code, msg.c_str());
  } else {
    napi_throw_error(env, code, msg.c_str());
  }
  return nullptr;
}

#define NAPI_OK(env, call)                                                  \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      const napi_extended_error_info* info__ = nullptr;                     \
      napi_get_last_error_info((env), &info__);                             \
      bool pending__ = false;                                               \
      napi_is_exception_pending((env), &pending__);                         \
      if (!pending__)                                                       \
        napi_throw_error((env), "INTERNAL",                                 \
                         info__ && info__->error_message ? info__->error_message \
                                                         : "napi call failed"); \
      return nullptr;                                                       \
    }                                                                       \
  } while (0)

bool GetString(napi_env env, napi_value v, size_t max, std::string* out, const char* what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    Throw(env, "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a string", true);
    return false;
  }
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok) {
    Throw(env, "INTERNAL", std::string("cannot read ") + what);
    return false;
  }
  if (len > max) {
    Throw(env, "ERR_OUT_OF_RANGE",
          std::string(what) + " is too large (" + std::to_string(len) + " bytes, max " +
              std::to_string(max) + ")");
    return false;
  }
  out->resize(len + 1);
  size_t got = 0;
  if (napi_get_value_string_utf8(env, v, out->data(), len + 1, &got) != napi_ok) {
    Throw(env, "INTERNAL", std::string("cannot read ") + what);
    return false;
  }
  out->resize(got);
  return true;
}

bool GetNumber(napi_env env, napi_value v, double lo, double hi, bool integer, double* out,
               const char* what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    Throw(env, "ERR_INVALID_ARG_TYPE", std::string(what) + " must be a number", true);
    return false;
  }
  double d = 0;
  if (napi_get_value_double(env, v, &d) != napi_ok) {
    Throw(env, "INTERNAL", std::string("cannot read ") + what);
    return false;
  }
  if (!std::isfinite(d) || d < lo || d > hi || (integer && d != std::floor(d))) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s must be %s in [%g, %g]", what,
                  integer ? "an integer" : "a number", lo, hi);
    Throw(env, "ERR_OUT_OF_RANGE", buf);
    return false;
  }
  *out = d;
  return true;
}

// ------------------------------------------------------------ slot threads

// Runs on the owner's main thread: hands one outcome to the JS callback.
void DeliverResult(napi_env env, napi_value cb, void*, void* data) {
  std::unique_ptr<Job> job(static_cast<Job*>(data));
  // However this returns, the slot thread may go on freeing and preparing.
  struct SignalOnExit {
    Handoff* h;
    ~SignalOnExit() { h->Signal(); }
  } signal_on_exit{job->handoff.get()};
  if (env == nullptr || cb == nullptr) return;  // owner environment is going away
  const ActivationResult& r = job->res;

  napi_value undefined, err, result, stats, num;
  if (napi_get_undefined(env, &undefined) != napi_ok) return;
  err = undefined;
  result = undefined;
  if (r.status == ActivationStatus::kOk) {
    if (napi_create_string_utf8(env, r.result.data(), r.result.size(), &result) != napi_ok) {
      // The string came out of V8, so this only fails on exhaustion.
      result = undefined;
      napi_value code, msg;
      napi_create_string_utf8(env, "INTERNAL", NAPI_AUTO_LENGTH, &code);
      napi_create_string_utf8(env, "cannot pass the result to the owner", NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, code, msg, &err);
    }
  } else {
    napi_value code, msg;
    if (napi_create_string_utf8(env, StatusCode(r.status), NAPI_AUTO_LENGTH, &code) != napi_ok ||
        napi_create_string_utf8(env, r.message.data(), r.message.size(), &msg) != napi_ok ||
        napi_create_error(env, code, msg, &err) != napi_ok) {
      return;
    }
  }
  if (napi_create_object(env, &stats) != napi_ok) return;
  const std::pair<const char*, double> fields[] = {
      {"setupMs", r.setup_ms},
      {"runMs", r.run_ms},
      {"exitCode", static_cast<double>(r.exit_code)},
      {"createMs", r.create_ms},
      {"bootstrapMs", r.bootstrap_ms},
      {"preludeMs", r.prelude_ms},
      {"createCpuMs", r.create_cpu_ms},
      {"bootstrapCpuMs", r.bootstrap_cpu_ms},
      {"preludeCpuMs", r.prelude_cpu_ms},
      {"runCpuMs", r.run_cpu_ms},
      {"envId", static_cast<double>(r.env_id)},
      {"isolateId", static_cast<double>(r.isolate_id)}};
  for (const auto& [name, value] : fields) {
    if (napi_create_double(env, value, &num) != napi_ok ||
        napi_set_named_property(env, stats, name, num) != napi_ok) {
      return;
    }
  }
  // Every environment is freed after its result is delivered, so this
  // activation's teardown is not known yet: teardownMs is null, and the
  // previous activation's teardown on this slot is reported instead.
  napi_value null_value, prewarmed, last_teardown, prelude_cache, kept;
  if (napi_get_boolean(env, job->isolate_kept, &kept) != napi_ok ||
      napi_set_named_property(env, stats, "isolateKept", kept) != napi_ok) {
    return;
  }
  if (napi_create_string_utf8(env, r.prelude_cache, NAPI_AUTO_LENGTH, &prelude_cache) != napi_ok ||
      napi_set_named_property(env, stats, "preludeCache", prelude_cache) != napi_ok ||
      napi_get_null(env, &null_value) != napi_ok ||
      napi_set_named_property(env, stats, "teardownMs", null_value) != napi_ok ||
      napi_get_boolean(env, job->prewarmed, &prewarmed) != napi_ok ||
      napi_set_named_property(env, stats, "prewarmed", prewarmed) != napi_ok) {
    return;
  }
  if (job->last_teardown_ms >= 0) {
    if (napi_create_double(env, job->last_teardown_ms, &last_teardown) != napi_ok) return;
  } else {
    last_teardown = null_value;
  }
  if (napi_set_named_property(env, stats, "lastTeardownMs", last_teardown) != napi_ok) return;
  napi_value argv[] = {err, result, stats};
  // An exception thrown by the callback surfaces as the owner's own uncaught
  // exception, like any other callback's.
  napi_call_function(env, undefined, cb, 3, argv, nullptr);
}

// Hands a finished job to the owner's main thread. The handoff is signalled
// once the owner's callback has returned (or at once when nobody is left to
// tell).
void Deliver(std::unique_ptr<Job> job) {
  napi_threadsafe_function tsfn = job->tsfn;
  std::shared_ptr<Handoff> handoff = job->handoff;
  Job* raw = job.release();
  if (napi_call_threadsafe_function(tsfn, raw, napi_tsfn_nonblocking) != napi_ok) {
    delete raw;  // owner is closing; nobody is left to tell
    handoff->Signal();
  }
  napi_release_threadsafe_function(tsfn, napi_tsfn_release);
}

// A slot's background work (tearing a used environment down, preparing the next
// one ahead of any request) runs at a lower CPU priority, so on a busy machine it
// yields to the activations in flight instead of competing with them; the slot
// thread is back at the process's priority before it runs a job. That needs the
// right to raise a thread's priority again, which Start probes once: without it
// everything runs at the process's priority.
struct BackgroundPriority {
  bool usable = false;
  int base = 0;  // the process's nice value at start
};
BackgroundPriority& Background() {
  static BackgroundPriority bp;
  return bp;
}
constexpr int kBackgroundNice = 10;

// How long a cold slot must be idle before it returns its freed memory to the OS.
constexpr std::chrono::milliseconds kIdleTrimDelay{1000};

void SetBackground(bool background) {
  const BackgroundPriority& bp = Background();
  if (!bp.usable) return;
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  // Best effort: a failure leaves the priority as it was, which is only slower.
  setpriority(PRIO_PROCESS, tid, background ? bp.base + kBackgroundNice : bp.base);
}

// ProbeBackground checks, on a throwaway thread, that a thread can lower its
// priority and raise it back.
void ProbeBackground() {
  BackgroundPriority& bp = Background();
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, 0);
  if (errno != 0) return;
  bool ok = false;
  std::thread([&] {
    const auto tid = static_cast<id_t>(syscall(SYS_gettid));
    ok = setpriority(PRIO_PROCESS, tid, base + kBackgroundNice) == 0 &&
         setpriority(PRIO_PROCESS, tid, base) == 0;
  }).join();
  bp.base = base;
  bp.usable = ok;
}

void SlotMain(Slot* slot) {
  State& st = G();
  const bool prewarm = slot->prewarm;  // fixed before the thread started
  const bool reuse = st.reuse;         // likewise
  // reuse: the isolate this slot keeps, unbound until an activation with a
  // tenant runs in it, then that tenant's only (activation.h, KeptIsolate).
  KeptIsolatePtr kept;
  // An environment for the next job: in the kept isolate (made when there is
  // none) with reuse, in an isolate of its own otherwise.
  const auto prepare = [&](bool ahead, std::string* error) -> PreparedEnvPtr {
    if (!reuse) return PrepareEnvironment(st.runtime, error, ahead);
    if (!kept) kept = NewKeptIsolate(st.runtime, error);
    if (!kept) return nullptr;
    return PrepareEnvironment(st.runtime, error, ahead, kept);
  };
  PreparedEnvPtr ready;  // prewarm: the fresh environment for the next job
  double last_teardown_ms = -1;  // of the previous activation on this slot
  bool trim_pending = false;  // cold slot: freed environments' memory not yet returned
  bool drain_pending = false;  // any slot: the page pool may hold what its teardown freed
  for (;;) {
    if (prewarm && !ready) {
      bool quit;
      {
        std::lock_guard<std::mutex> lock(slot->mu);
        quit = slot->quit;
      }
      if (!quit) {
        // A failure here is not reported: the next job prepares on its own
        // request path and reports the error there. No retry loop until then.
        // Ahead of any request, so in the background, unless no other slot has an
        // environment waiting: then the next request would prepare one on its own path
        // (at full priority, and later), as under a burst or beside a busy neighbour.
        SetBackground(st.prepared_slots.load() > 0);
        std::string ignored;
        ready = prepare(/*ahead=*/true, &ignored);
        std::lock_guard<std::mutex> lock(slot->mu);
        slot->prepared = ready != nullptr;
        if (slot->prepared) st.prepared_slots.fetch_add(1);
      }
    }
    std::unique_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(slot->mu);
      const auto wake = [slot] { return slot->quit || slot->job != nullptr; };
      if ((trim_pending || drain_pending) && !slot->cv.wait_for(lock, kIdleTrimDelay, wake)) {
        lock.unlock();
        if (trim_pending) {
          // Idle for a while: return what the freed environments left cached in
          // this thread's malloc arena, so an idle cold slot holds nothing; with
          // reuse that includes its kept isolate (the next job makes a new one, as
          // a cold slot makes its environment).
          kept.reset();
          malloc_trim(0);
        }
        // The page pool is shared by the slots, hot and cold: emptied once no
        // slot has used it for as long (the last slot to go idle finds it so).
        if (PagePool* pool = G().page_pool) pool->DrainIfIdle(kIdleTrimDelay);
        trim_pending = drain_pending = false;
        lock.lock();
      }
      slot->cv.wait(lock, wake);
      if (slot->job == nullptr) {  // quit with nothing queued
        if (slot->prepared) st.prepared_slots.fetch_sub(1);
        slot->prepared = false;
        lock.unlock();
        TeardownEnvironment(std::move(ready));
        kept.reset();
        return;
      }
      job = std::move(slot->job);
      if (slot->prepared) st.prepared_slots.fetch_sub(1);
      slot->prepared = false;
    }
    SetBackground(false);  // the job, and a cold slot's preparation for it, run at full priority
    job->last_teardown_ms = last_teardown_ms;
    // The wall-clock limit starts when the slot thread takes the job, before
    // any environment work on the request path (all of it when cold).
    const auto deadline = Clock::now() + std::chrono::milliseconds(job->req.timeout_ms);
    ActivationGuard guard(deadline, static_cast<size_t>(job->req.heap_limit_mb) << 20);
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->guard = &guard;
      cancelled = slot->quit;
    }
    if (cancelled) guard.RequestStop(StopReason::kCancelled);
    st.watchdog.Arm(&guard);
    // reuse: an isolate that cannot take this job (another tenant's; for a
    // tenant-less job, one something ran in) is given up, with the environment
    // prepared in it, and freed after the answer; the job gets a new isolate.
    PreparedEnvPtr retired;
    KeptIsolatePtr retired_isolate;
    const auto fits = [&](const KeptIsolate& k) {
      if (k.spoiled) return false;
      if (k.served == 0) return true;  // pristine: anyone's
      return !job->tenant.empty() && k.tenant == job->tenant;
    };
    if (kept && !fits(*kept)) {
      retired = std::move(ready);
      retired_isolate = std::move(kept);
    }
    PreparedEnvPtr env = std::move(ready);
    if (!env) job->prewarmed = false;
    std::string error;
    if (!env) env = prepare(/*ahead=*/false, &error);
    if (env && !TakeForTenant(env.get(), job->tenant)) {
      // Never by construction (the check above gave such an isolate up); if it
      // ever happened, the job is refused and the isolate retired.
      retired = std::move(env);
      if (kept) kept->spoiled = true;
      error = "internal: the slot's isolate belongs to another tenant";
    }
    if (env) {
      job->res = RunPrepared(env.get(), job->req, &guard, job->queued);
      job->isolate_kept = reuse && kept && !job->tenant.empty() && !kept->spoiled;
    } else {
      job->res.status = ActivationStatus::kInternal;
      job->res.message = error;
      job->res.setup_ms = std::chrono::duration<double, std::milli>(Clock::now() - job->queued).count();
    }
    st.watchdog.Disarm(&guard);
    std::shared_ptr<Handoff> handoff = job->handoff;
    bool quit;
    {
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->guard = nullptr;
      slot->busy = false;  // before the callback, so it may queue the next run
      slot->handoff = handoff;
      quit = slot->quit;
    }
    Deliver(std::move(job));
    // The owner has the result: freeing the used environment (and, on a hot
    // slot, preparing the next one at the top of the loop) happens off its
    // request path, once it has handled the result (bounded wait). A run()
    // queued meanwhile waits for both. The used environment is never kept for
    // another job.
    if (!quit) handoff->WaitFor(kMaxHandoffWait);
    {
      std::lock_guard<std::mutex> lock(slot->mu);
      slot->handoff.reset();
    }
    SetBackground(true);  // teardown and the next preparation are off the request path
    const auto teardown_started = Clock::now();
    if (env) TeardownEnvironment(std::move(env));
    if (retired) TeardownEnvironment(std::move(retired));
    retired_isolate.reset();
    if (kept && !KeepIsolate(kept.get())) kept.reset();
    // A cold slot should hold nothing while idle, but glibc keeps what the
    // freed environment had malloc'ed cached in this thread's arena (16 slots
    // that each ran once: +18 MiB RSS without a trim, +6 MiB with it). The
    // trim waits until the slot has been idle for kIdleTrimDelay: trimming
    // after every activation cost ~6% of the owner's CPU under load (madvise,
    // TLB shootdowns, and the next environment faulting the pages back in).
    if (!prewarm) trim_pending = true;
    drain_pending = true;
    last_teardown_ms = std::chrono::duration<double, std::milli>(Clock::now() - teardown_started).count();
  }
}

// Stops every slot: running activations are terminated (their callbacks still
// fire, with INTERNAL "cancelled"), threads are joined. Main thread only.
void StopAll() {
  State& st = G();
  std::vector<std::unique_ptr<Slot>> slots;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (!st.started) return;
    slots.swap(st.slots);
    st.started = false;
  }
  for (auto& s : slots) {
    std::lock_guard<std::mutex> lock(s->mu);
    s->quit = true;
    if (s->guard != nullptr) s->guard->RequestStop(StopReason::kCancelled);
    // This thread joins instead of delivering: a slot waiting for its
    // result's handoff need not wait out the limit.
    if (s->handoff) s->handoff->Signal();
    s->cv.notify_all();
  }
  for (auto& s : slots) {
    if (s->thread.joinable()) s->thread.join();
    // A job queued but never started still owes its caller an answer.
    if (s->job) {
      std::unique_ptr<Job> job = std::move(s->job);
      job->res.status = ActivationStatus::kInternal;
      job->res.message = "activation cancelled: the isolate runtime is stopping";
      Deliver(std::move(job));
    }
  }
  st.watchdog.Shutdown();
}

void CleanupHook(void*) { StopAll(); }

napi_value StopJS(napi_env, napi_callback_info);

// process.exit() in the owner disposes the V8 platform without running env
// cleanup hooks; isolates still running on slot threads would then use a dead
// platform. An 'exit' listener stops and joins them first.
bool HookProcessExit(napi_env env) {
  napi_value global, process, on, event, listener, argv[2];
  if (napi_get_global(env, &global) != napi_ok ||
      napi_get_named_property(env, global, "process", &process) != napi_ok ||
      napi_get_named_property(env, process, "on", &on) != napi_ok ||
      napi_create_string_utf8(env, "exit", NAPI_AUTO_LENGTH, &event) != napi_ok ||
      napi_create_function(env, "teemateIsolateStop", NAPI_AUTO_LENGTH, StopJS, nullptr,
                           &listener) != napi_ok) {
    return false;
  }
  argv[0] = event;
  argv[1] = listener;
  return napi_call_function(env, process, on, 2, argv, nullptr) == napi_ok;
}

// ------------------------------------------------------------ JS functions

// Reads start()'s options: undefined or an object whose `prewarm`, if present
// and not undefined, is a boolean (true: every slot, false: none) or an integer
// budget K in [0, slots], and whose `prelude`, if present and not undefined, is
// a non-empty source string. Other keys are refused, so a typo does not
// silently fall back to the default. *prewarm holds the budget; it defaults to
// slots. *prelude stays empty without one.
bool GetStartOptions(napi_env env, napi_value v, uint32_t slots, uint32_t* prewarm,
                     std::string* prelude, bool* code_cache, bool* reuse, uint32_t* page_pool_mb) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return false;
  if (t == napi_undefined) return true;
  if (t != napi_object) {
    Throw(env, "ERR_INVALID_ARG_TYPE", "options must be an object", true);
    return false;
  }
  napi_value keys;
  uint32_t n = 0;
  if (napi_get_property_names(env, v, &keys) != napi_ok ||
      napi_get_array_length(env, keys, &n) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options");
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value k;
    std::string name;
    if (napi_get_element(env, keys, i, &k) != napi_ok ||
        !GetString(env, k, 256, &name, "option name")) {
      return false;
    }
    if (name != "prewarm" && name != "prelude" && name != "codeCache" && name != "reuse" &&
        name != "pagePoolMB") {
      Throw(env, "ERR_INVALID_ARG_VALUE",
            "unknown option '" + name + "' (known: prewarm, prelude, codeCache, reuse, pagePoolMB)");
      return false;
    }
  }
  napi_value mv;
  if (napi_get_named_property(env, v, "pagePoolMB", &mv) != napi_ok || napi_typeof(env, mv, &t) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options.pagePoolMB");
    return false;
  }
  if (t != napi_undefined) {
    double mb = 0;
    if (!GetNumber(env, mv, 0, kMaxPagePoolMB, true, &mb, "options.pagePoolMB")) return false;
    *page_pool_mb = static_cast<uint32_t>(mb);
  }
  napi_value rv;
  if (napi_get_named_property(env, v, "reuse", &rv) != napi_ok || napi_typeof(env, rv, &t) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options.reuse");
    return false;
  }
  if (t != napi_undefined) {
    std::string mode;
    if (!GetString(env, rv, 16, &mode, "options.reuse")) return false;
    if (mode != "none" && mode != "tenant") {
      Throw(env, "ERR_INVALID_ARG_VALUE", "options.reuse must be 'none' or 'tenant', not '" + mode + "'");
      return false;
    }
    *reuse = mode == "tenant";
  }
  napi_value cv;
  if (napi_get_named_property(env, v, "codeCache", &cv) != napi_ok ||
      napi_typeof(env, cv, &t) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options.codeCache");
    return false;
  }
  if (t != napi_undefined) {
    if (t != napi_boolean) {
      Throw(env, "ERR_INVALID_ARG_TYPE", "options.codeCache must be a boolean", true);
      return false;
    }
    if (napi_get_value_bool(env, cv, code_cache) != napi_ok) return false;
  }
  napi_value lv;
  if (napi_get_named_property(env, v, "prelude", &lv) != napi_ok ||
      napi_typeof(env, lv, &t) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options.prelude");
    return false;
  }
  if (t != napi_undefined) {
    if (!GetString(env, lv, kMaxBootstrapBytes, prelude, "options.prelude")) return false;
    if (prelude->empty()) {
      Throw(env, "ERR_INVALID_ARG_VALUE", "options.prelude must not be empty");
      return false;
    }
  }
  napi_value pv;
  if (napi_get_named_property(env, v, "prewarm", &pv) != napi_ok ||
      napi_typeof(env, pv, &t) != napi_ok) {
    Throw(env, "INTERNAL", "cannot read options.prewarm");
    return false;
  }
  if (t == napi_undefined) return true;
  if (t == napi_boolean) {
    bool all = true;
    if (napi_get_value_bool(env, pv, &all) != napi_ok) return false;
    *prewarm = all ? slots : 0;
    return true;
  }
  if (t != napi_number) {
    Throw(env, "ERR_INVALID_ARG_TYPE",
          "options.prewarm must be a boolean or the number of prewarmed slots", true);
    return false;
  }
  double k = 0;
  if (!GetNumber(env, pv, 0, slots, true, &k, "options.prewarm")) return false;
  *prewarm = static_cast<uint32_t>(k);
  return true;
}

napi_value Start(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 1) return Throw(env, "ERR_INVALID_ARG_TYPE", "start(slots): slots is required", true);
  double n = 0;
  if (!GetNumber(env, argv[0], 1, kMaxSlots, true, &n, "slots")) return nullptr;
  const auto slots = static_cast<uint32_t>(n);
  uint32_t prewarm = slots;
  std::string prelude;
  bool code_cache = true;
  bool reuse = false;
  uint32_t page_pool_mb = kDefaultPagePoolMB;
  if (argc >= 2 &&
      !GetStartOptions(env, argv[1], slots, &prewarm, &prelude, &code_cache, &reuse, &page_pool_mb)) {
    return nullptr;
  }

  State& st = G();
  std::lock_guard<std::mutex> lock(st.mu);
  if (st.started) return Throw(env, "ERR_ALREADY_STARTED", "start() was already called");
  if (st.owner != nullptr && st.owner != env) {
    return Throw(env, "ERR_WRONG_ENVIRONMENT", "the isolate runtime belongs to another environment");
  }

  if (st.runtime.platform == nullptr) {
    // The platform of the owner environment drives every isolate we create
    // (foreground tasks, GC helpers), exactly as for Node's own Workers.
    v8::Isolate* isolate = v8::Isolate::GetCurrent();
    if (isolate == nullptr) return Throw(env, "INTERNAL", "no current isolate");
    node::Environment* owner_env = node::GetCurrentEnvironment(isolate->GetCurrentContext());
    if (owner_env == nullptr) return Throw(env, "INTERNAL", "no current Node environment");
    node::MultiIsolatePlatform* platform = node::GetMultiIsolatePlatform(owner_env);
    if (platform == nullptr) return Throw(env, "INTERNAL", "the owner has no MultiIsolatePlatform");
    node::EmbedderSnapshotData::Pointer snap = node::EmbedderSnapshotData::BuiltinSnapshotData();
    if (!snap) return Throw(env, "INTERNAL", "this Node build has no built-in snapshot");
    char exe[4096];
    size_t exe_len = sizeof exe;
    st.runtime.exec_path = uv_exepath(exe, &exe_len) == 0 ? std::string(exe, exe_len) : "node";
    st.runtime.platform = platform;
    st.runtime.snapshot = std::move(snap);
    st.runtime.watchdog = &st.watchdog;
    NAPI_OK(env, napi_add_env_cleanup_hook(env, CleanupHook, nullptr));
    if (!HookProcessExit(env)) {
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (!pending) Throw(env, "INTERNAL", "cannot register the process 'exit' listener");
      return nullptr;
    }
    st.owner = env;
  }

  // No slot thread runs now (stop() joined them), so the prelude can change.
  st.runtime.prelude = std::move(prelude);
  // A new cache per start(): the prelude may have changed.
  st.runtime.prelude_cache =
      code_cache && !st.runtime.prelude.empty() ? std::make_shared<PreludeCodeCache>() : nullptr;
  st.watchdog.Start();
  st.slots.clear();
  // Every slot gets its parked thread now (an idle one costs ~16 KiB RSS;
  // in the SGX build each stands for a TCS that exists anyway). The budget
  // goes to the lowest slots, which the owner hands out first.
  ProbeBackground();
  st.reuse = reuse;  // read by the slot threads as they start
  // Before the first slot makes an isolate: every isolate takes V8's page
  // allocator as it is made. Without the hook the pool is only missing.
  st.page_pool = nullptr;
  st.page_pool_why = page_pool_mb == 0 ? "off" : "";
  if (page_pool_mb > 0) {
    const char* why = "";
    st.page_pool = PagePool::Install(static_cast<size_t>(page_pool_mb) << 20, &why);
    st.page_pool_why = why;
  } else if (PagePool* p = PagePool::Installed()) {
    p->SetBudget(0);  // installed by an earlier start(): keep nothing now
  }
  for (uint32_t i = 0; i < slots; i++) {
    auto s = std::make_unique<Slot>();
    Slot* raw = s.get();
    s->prewarm = i < prewarm;
    s->thread = std::thread([raw, i] {
      // Named so a profile (/proc/PID/task/*/comm, perf) tells slot threads
      // from V8's platform workers and libuv's pool; best effort.
      char name[16];
      snprintf(name, sizeof name, "tm-slot-%u", i);
      pthread_setname_np(pthread_self(), name);
      SlotMain(raw);
    });
    st.slots.push_back(std::move(s));
  }
  st.prewarm = prewarm;
  st.started = true;
  return nullptr;
}

napi_value Run(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr));
  if (argc < 6) {
    return Throw(env, "ERR_INVALID_ARG_TYPE",
                 "run(slot, bootstrapSource, requestJSON, timeoutMs, heapLimitMB, callback) "
                 "needs 6 arguments",
                 true);
  }
  napi_valuetype t;
  NAPI_OK(env, napi_typeof(env, argv[5], &t));
  if (t != napi_function) return Throw(env, "ERR_INVALID_ARG_TYPE", "callback must be a function", true);

  State& st = G();
  double slot_d = 0, timeout = 0, heap = 0;
  auto job = std::make_unique<Job>();
  {
    std::lock_guard<std::mutex> lock(st.mu);
    if (!st.started) return Throw(env, "ERR_NOT_STARTED", "start(slots) has not been called");
    if (!GetNumber(env, argv[0], 0, static_cast<double>(st.slots.size()) - 1, true, &slot_d, "slot"))
      return nullptr;
  }
  // null: call the prelude's entry (the runtime's request path); a string: run
  // it as the environment's main script.
  NAPI_OK(env, napi_typeof(env, argv[1], &t));
  job->req.entry = t == napi_null;
  if (!job->req.entry && !GetString(env, argv[1], kMaxBootstrapBytes, &job->req.bootstrap, "bootstrapSource")) {
    return nullptr;
  }
  if (!GetString(env, argv[2], kMaxRequestBytes, &job->req.request_json, "requestJSON") ||
      !GetNumber(env, argv[3], 1, kMaxTimeoutMs, false, &timeout, "timeoutMs") ||
      !GetNumber(env, argv[4], kMinHeapMB, kMaxHeapMB, true, &heap, "heapLimitMB")) {
    return nullptr;
  }
  // The tenant (optional): with start({reuse: 'tenant'}), activations of the same
  // tenant may share their slot's isolate; undefined or "" shares with no one.
  if (argc >= 7) {
    NAPI_OK(env, napi_typeof(env, argv[6], &t));
    if (t != napi_undefined && !GetString(env, argv[6], kMaxTenantBytes, &job->tenant, "tenant")) return nullptr;
  }
  job->req.timeout_ms = static_cast<uint32_t>(std::ceil(timeout));
  job->req.heap_limit_mb = static_cast<uint32_t>(heap);
  job->queued = Clock::now();

  std::lock_guard<std::mutex> lock(st.mu);
  if (!st.started) return Throw(env, "ERR_NOT_STARTED", "the isolate runtime was stopped");
  if (job->req.entry && st.runtime.prelude.empty()) {
    return Throw(env, "ERR_INVALID_ARG_VALUE",
                 "bootstrapSource is null but start() was given no prelude to provide the entry");
  }
  Slot* slot = st.slots[static_cast<size_t>(slot_d)].get();
  std::lock_guard<std::mutex> slot_lock(slot->mu);
  if (slot->busy) {
    return Throw(env, "BUSY", "slot " + std::to_string(static_cast<int>(slot_d)) + " is busy");
  }
  napi_value name;
  NAPI_OK(env, napi_create_string_utf8(env, "teemate.activation", NAPI_AUTO_LENGTH, &name));
  // The thread-safe function keeps the owner's loop alive until the callback ran.
  NAPI_OK(env, napi_create_threadsafe_function(env, argv[5], nullptr, name, 0, 1, nullptr, nullptr,
                                               nullptr, DeliverResult, &job->tsfn));
  slot->busy = true;
  job->prewarmed = slot->prepared;
  slot->job = std::move(job);
  slot->cv.notify_all();
  return nullptr;
}

napi_value Info(napi_env env, napi_callback_info) {
  State& st = G();
  napi_value obj, busy, v;
  NAPI_OK(env, napi_create_object(env, &obj));
  napi_value prepared;
  NAPI_OK(env, napi_create_array(env, &busy));
  NAPI_OK(env, napi_create_array(env, &prepared));
  uint32_t n = 0;
  uint32_t prewarm = 0;
  bool has_prelude = false;
  bool reuse = false;
  {
    std::lock_guard<std::mutex> lock(st.mu);
    n = static_cast<uint32_t>(st.slots.size());
    prewarm = st.started ? st.prewarm : 0;
    has_prelude = st.started && !st.runtime.prelude.empty();
    reuse = st.started && st.reuse;
    for (uint32_t i = 0; i < n; i++) {
      bool b, p;
      {
        std::lock_guard<std::mutex> slot_lock(st.slots[i]->mu);
        b = st.slots[i]->busy;
        p = st.slots[i]->prepared;
      }
      NAPI_OK(env, napi_get_boolean(env, b, &v));
      NAPI_OK(env, napi_set_element(env, busy, i, v));
      NAPI_OK(env, napi_get_boolean(env, p, &v));
      NAPI_OK(env, napi_set_element(env, prepared, i, v));
    }
  }
  NAPI_OK(env, napi_create_uint32(env, n, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "slots", v));
  NAPI_OK(env, napi_set_named_property(env, obj, "busy", busy));
  NAPI_OK(env, napi_set_named_property(env, obj, "prepared", prepared));
  NAPI_OK(env, napi_create_uint32(env, prewarm, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "prewarm", v));
  NAPI_OK(env, napi_get_boolean(env, has_prelude, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "prelude", v));
  NAPI_OK(env, napi_create_string_utf8(env, reuse ? "tenant" : "none", NAPI_AUTO_LENGTH, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "reuse", v));
  // pagePool: what the recycled heap pages did (page_pool.h), or why there are none.
  {
    PagePool* pool;
    std::string why;
    {
      std::lock_guard<std::mutex> lock(st.mu);
      pool = st.started ? st.page_pool : nullptr;
      why = st.started ? st.page_pool_why : "not started";
    }
    napi_value pp;
    NAPI_OK(env, napi_create_object(env, &pp));
    if (pool != nullptr) {
      const PagePool::Counts c = pool->counts();
      const std::pair<const char*, double> fields[] = {
          {"budgetBytes", static_cast<double>(c.budget_bytes)}, {"pooledBytes", static_cast<double>(c.pooled_bytes)},
          {"reused", static_cast<double>(c.reused)},            {"kept", static_cast<double>(c.kept)},
          {"released", static_cast<double>(c.released)}, {"zeroedBytes", static_cast<double>(c.zeroed_bytes)},
          {"uncommitsKept", static_cast<double>(c.uncommits_kept)}};
      for (const auto& [name, value] : fields) {
        NAPI_OK(env, napi_create_double(env, value, &v));
        NAPI_OK(env, napi_set_named_property(env, pp, name, v));
      }
    } else {
      NAPI_OK(env, napi_create_string_utf8(env, why.c_str(), why.size(), &v));
      NAPI_OK(env, napi_set_named_property(env, pp, "off", v));
    }
    NAPI_OK(env, napi_set_named_property(env, obj, "pagePool", pp));
  }
  NAPI_OK(env, napi_create_string_utf8(env, "addon", NAPI_AUTO_LENGTH, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "mode", v));
  const napi_node_version* ver = nullptr;
  NAPI_OK(env, napi_get_node_version(env, &ver));
  char buf[64];
  std::snprintf(buf, sizeof buf, "v%u.%u.%u", ver->major, ver->minor, ver->patch);
  NAPI_OK(env, napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v));
  NAPI_OK(env, napi_set_named_property(env, obj, "nodeVersion", v));
  return obj;
}

napi_value StopJS(napi_env, napi_callback_info) {
  StopAll();
  return nullptr;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"start", nullptr, Start, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"run", nullptr, Run, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"stop", nullptr, StopJS, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  NAPI_OK(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

}  // namespace
}  // namespace teemate

NAPI_MODULE(NODE_GYP_MODULE_NAME, teemate::Init)
