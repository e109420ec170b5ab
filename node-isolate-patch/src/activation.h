// Trusted (inside the enclave): one activation = one fresh Node environment.
//
// This is the core that both the `teemate_isolate.node` addon and the SGX Node
// build (patches/) use: it creates a new V8 isolate + Node environment + libuv
// loop from Node's built-in snapshot on the *calling* thread, runs a bootstrap
// string in it, spins the loop until it drains, reads the result and frees
// everything again. The steps are separate (PrepareEnvironment, RunPrepared,
// TeardownEnvironment) so a slot thread can prepare the next environment before
// its request arrives and free the used one after answering; each environment
// still serves exactly one activation. It does not depend on N-API, so the LibOS join path can
// call it on a joined enclave thread without a JavaScript caller.
#ifndef TEEMATE_ACTIVATION_H_
#define TEEMATE_ACTIVATION_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <node.h>
#include <v8.h>

namespace teemate {

using Clock = std::chrono::steady_clock;

// Limits for one activation. Inputs arrive from the enclave runtime, which has
// already validated the host's request; they are checked again at the API edge.
struct ActivationRequest {
  // entry == false: `bootstrap` is a CommonJS-like source run as the
  // environment's main script; request_json is globalThis.__teemate_request and
  // the result is read from globalThis.__teemate_result.
  // entry == true: the function the runtime's prelude returned when the
  // environment was prepared is called as entry(request_json, deliver); the
  // result is the string passed to deliver() (no globals involved, and nothing
  // is compiled on the request path). `bootstrap` is unused.
  bool entry = false;
  std::string bootstrap;
  std::string request_json;
  uint32_t timeout_ms = 0;   // wall-clock limit from the start of setup
  uint32_t heap_limit_mb = 0;  // bound on the isolate's used heap + external memory
};

enum class ActivationStatus { kOk, kTimeout, kHeap, kInternal };

// Error codes exactly as the JavaScript API exposes them (err.code).
const char* StatusCode(ActivationStatus s);

struct ActivationResult {
  ActivationStatus status = ActivationStatus::kInternal;
  std::string result;   // globalThis.__teemate_result when status == kOk
  std::string message;  // human-readable reason when status != kOk
  int exit_code = 0;    // process.exit() code or the loop's exit code
  // setup_ms: environment work on the request path (creation + Node bootstrap
  // when cold; ~0 when a prepared environment was waiting). run_ms: the
  // bootstrap source and the loop. teardown_ms: freeing the environment on the
  // request path (0 when the caller frees it after delivering the result).
  double setup_ms = 0, run_ms = 0, teardown_ms = 0;
  // How the environment this activation ran in was made, wherever that
  // happened: CreateFromSnapshot, then Node's own bootstrap (no user code).
  // prelude_ms: the part of bootstrap_ms spent in the runtime's prelude.
  double create_ms = 0, bootstrap_ms = 0, prelude_ms = 0;
  // The same phases as CPU time of the thread that ran them (wall time on a
  // busy machine says little about what a phase costs); run_cpu_ms is the
  // request's own script and loop.
  double create_cpu_ms = 0, bootstrap_cpu_ms = 0, prelude_cpu_ms = 0, run_cpu_ms = 0;
  // What the prelude's code cache did for this environment (see
  // PreludeCodeCache): "produced", "consumed", "rejected", or "off" (no cache,
  // or no prelude).
  const char* prelude_cache = "off";
  uint64_t env_id = 0;  // process-unique id of that environment (0: none made)
  // Process-unique id of the isolate the environment lived in: one per
  // environment, except in a KeptIsolate, whose environments share its id.
  uint64_t isolate_id = 0;
  // The activation ended as activations normally do (a result delivered, no
  // stop from outside, no process.exit()): only then may a KeptIsolate it ran in
  // serve its tenant again.
  bool clean = false;
};

// Why an activation was stopped from outside its own JavaScript.
enum class StopReason : int { kNone = 0, kTimeout, kHeap, kCancelled, kUncaught };

// ActivationGuard is the thread-safe handle other threads (the watchdog, the
// owner's stop()) use to end a running activation. It lives on the stack of
// the thread running the activation and outlives the isolate it points to.
class ActivationGuard {
 public:
  ActivationGuard(Clock::time_point deadline, size_t heap_limit_bytes)
      : deadline_(deadline), heap_limit_bytes_(heap_limit_bytes) {}
  ActivationGuard(const ActivationGuard&) = delete;
  ActivationGuard& operator=(const ActivationGuard&) = delete;

  // Any thread. The first reason wins; later calls only re-request the stop.
  void RequestStop(StopReason reason);
  // Isolate thread: blocks until a stop is requested (the deadline at the
  // latest, since the watchdog keeps the guard armed).
  void WaitForStop();
  // Watchdog thread: asks the isolate thread to compare its heap to the limit.
  void RequestHeapCheck();
  // Isolate thread only (GC epilogue, interrupts).
  void CheckHeap(v8::Isolate* isolate);

  StopReason reason() const {
    return static_cast<StopReason>(reason_.load(std::memory_order_acquire));
  }
  bool stop_requested() const { return stop_requested_.load(std::memory_order_acquire); }
  Clock::time_point deadline() const { return deadline_; }

  // Isolate thread: publish / withdraw the environment that RequestStop acts on.
  void Attach(v8::Isolate* isolate, node::Environment* env);
  void Detach();

  // Set by the uncaught-exception reporter and the process.exit() handler.
  void SetUncaught(std::string message);
  std::string uncaught_message();
  void SetExit(int code) {
    exit_code_.store(code, std::memory_order_release);
    exited_.store(true, std::memory_order_release);
  }
  bool exited() const { return exited_.load(std::memory_order_acquire); }
  int exit_code() const { return exit_code_.load(std::memory_order_acquire); }

 private:
  const Clock::time_point deadline_;
  const size_t heap_limit_bytes_;
  std::atomic<int> reason_{static_cast<int>(StopReason::kNone)};
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> exited_{false};
  std::atomic<int> exit_code_{0};

  std::mutex mu_;  // guards isolate_, env_, uncaught_
  std::condition_variable stopped_cv_;  // RequestStop -> WaitForStop
  v8::Isolate* isolate_ = nullptr;
  node::Environment* env_ = nullptr;
  std::string uncaught_;
};

// Watchdog is one thread for all slots (in SGX every thread costs a TCS): it
// stops activations at their deadline and periodically asks running isolates
// to check their heap, which catches growth that triggers no GC (external
// memory) between collections.
class Watchdog {
 public:
  Watchdog() = default;
  ~Watchdog() { Shutdown(); }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void Start();
  void Shutdown();
  void Arm(ActivationGuard* guard);
  void Disarm(ActivationGuard* guard);

 private:
  void Loop();

  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ActivationGuard*> armed_;
  bool quit_ = false;
  bool running_ = false;
  std::thread thread_;
};

// PreludeCodeCache is V8's code cache of the runtime's prelude, shared by every
// environment of one start(): the first environment compiles the prelude (V8
// compiles lazily, so most of its functions are compiled while the prelude and
// warm() run) and, after that, serialises the bytecode of every function
// compiled so far; each later environment deserialises it instead of parsing
// and compiling the same code again, in its own new isolate. Only the runtime's
// own prelude goes in (trusted code, compiled before any request exists in that
// environment); V8 checks the cache against its version, flags and the source
// length and rejects a mismatch, after which it is made again. Thread-safe:
// slot threads prepare environments concurrently.
class PreludeCodeCache {
 public:
  using Data = std::shared_ptr<const std::vector<uint8_t>>;
  // The cache as it is now (null: none yet, or the last one was rejected).
  Data Get() {
    std::lock_guard<std::mutex> lock(mu_);
    return data_;
  }
  // Keeps `data` unless another environment got there first.
  void Offer(Data data) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!data_) data_ = std::move(data);
  }
  // V8 refused `data`: drop it (if it is still the current one) so the next
  // environment makes a fresh one.
  void Reject(const Data& data) {
    std::lock_guard<std::mutex> lock(mu_);
    if (data_ == data) data_.reset();
  }

 private:
  std::mutex mu_;
  Data data_;
};

// Process-wide inputs captured once from the owner environment.
struct Runtime {
  node::MultiIsolatePlatform* platform = nullptr;
  node::EmbedderSnapshotData::Pointer snapshot;  // Node's built-in snapshot
  std::string exec_path;                          // becomes process.argv[0]
  Watchdog* watchdog = nullptr;
  // The runtime's trusted per-environment prelude (empty: none). It runs as the
  // environment's first main script while the environment is prepared, after
  // Node's bootstrap and before any request exists: it may load builtins and
  // build the activation plumbing (stdio capture, process guards), and must
  // return a function, kept as the environment's entry. If the entry has an own
  // function property `warm`, it is called right after, but only when the
  // environment is prepared ahead of a request (first-use warm-ups that would
  // only lengthen a request path). It is the enclave runtime's own code, never
  // a tenant's; it runs without a deadline.
  std::string prelude;
  // The prelude's code cache (null: off; then every environment compiles the
  // prelude itself, as Node's run_cjs would).
  std::shared_ptr<PreludeCodeCache> prelude_cache;
};

// KeptIsolate is one isolate kept for one tenant's activations (the addon's
// start() option {reuse: 'tenant'}; off by default). Each activation still gets a
// new context and Node environment of its own, deserialised from the snapshot
// into this isolate and freed after it, so nothing of one activation's globals,
// modules or handles reaches the next; what the activations share is the
// isolate: its heap (the garbage of earlier contexts until collected), V8's
// compilation cache and the per-isolate state Node keeps. Hence the rules,
// enforced here and in the addon: the isolate is bound to the tenant of the
// first activation that runs in it and never serves another; an activation
// without a tenant (a sealed one) may only take a pristine isolate, which it
// then spoils; an activation that does not end cleanly (time or heap limit,
// uncaught exception, process.exit(), cancellation) spoils it; a spoiled
// isolate, or one past kMaxKeptActivations or kMaxKeptHeapBytes, is freed.
// Its own main environment (the one Node's snapshot makes with the isolate)
// runs nothing. Only the thread that made it uses and frees it.
struct KeptIsolate {
  KeptIsolate() = default;
  KeptIsolate(const KeptIsolate&) = delete;
  KeptIsolate& operator=(const KeptIsolate&) = delete;
  ~KeptIsolate();

  std::unique_ptr<node::CommonEnvironmentSetup> setup;
  uint64_t id = 0;
  std::string tenant;    // "" until the first activation with a tenant binds it
  uint32_t served = 0;   // activations that ran in it
  bool spoiled = false;  // must not serve another activation
};
using KeptIsolatePtr = std::shared_ptr<KeptIsolate>;

// Bounds on a kept isolate's life: it is replaced after this many activations or
// once its heap, collected or not, holds this much after a teardown (the
// activations' heap limits count the whole isolate's heap).
constexpr uint32_t kMaxKeptActivations = 1000;
constexpr size_t kMaxKeptHeapBytes = 32u << 20;

// NewKeptIsolate makes an isolate to keep, unbound, from the built-in snapshot
// on the calling thread. On failure returns null and sets *error.
KeptIsolatePtr NewKeptIsolate(const Runtime& rt, std::string* error);

// KeepIsolate says whether `kept` may serve another activation (not spoiled,
// within the bounds above). Calling thread: the one that made it.
bool KeepIsolate(KeptIsolate* kept);

// PreparedEnvironment is one fresh Node environment (own isolate, context and
// libuv loop) created from the built-in snapshot, with Node's own bootstrap
// already run (what LoadEnvironment does before the embedder's script) and
// nothing of any activation in it. It serves exactly one activation: running a
// second one in it is refused. It belongs to the thread that prepared it, which
// must also run and tear it down. Opaque outside activation.cc.
class PreparedEnvironment;
struct PreparedEnvironmentDeleter {
  void operator()(PreparedEnvironment* env) const;  // frees like TeardownEnvironment
};
using PreparedEnvPtr = std::unique_ptr<PreparedEnvironment, PreparedEnvironmentDeleter>;

// PrepareEnvironment creates and bootstraps a fresh environment on the calling
// thread and runs rt.prelude in it when there is one. `ahead`: no request waits
// for this environment (a hot slot refilling), so the entry's optional `warm`
// function is called too. On failure returns null and sets *error.
// With `kept`, the environment is made in that isolate (a new context) instead of
// a new isolate of its own.
PreparedEnvPtr PrepareEnvironment(const Runtime& rt, std::string* error, bool ahead,
                                  const KeptIsolatePtr& kept = nullptr);

// TakeForTenant decides whether the activation of `tenant` ("" for none) may run
// in `env` and, if so, binds the environment's kept isolate to it (a tenant-less
// activation spoils a pristine one instead). An environment of its own isolate
// serves anyone. Refusing never happens when the addon keeps its rules; it is
// what keeps one tenant out of another's isolate if it ever did.
bool TakeForTenant(PreparedEnvironment* env, const std::string& tenant);

// RunPrepared runs one activation in `env`, which must be fresh (a used
// environment is refused with kInternal). It leaves the environment stopped but
// allocated; the caller frees it with TeardownEnvironment, possibly after it has
// delivered the result. `setup_started` is when the request path began waiting
// for an environment (res.setup_ms counts from there); teardown_ms stays 0.
ActivationResult RunPrepared(PreparedEnvironment* env, const ActivationRequest& req,
                             ActivationGuard* guard, Clock::time_point setup_started);

// TeardownEnvironment frees the environment, its isolate and loop on the
// calling thread (the one that prepared it). Returns the milliseconds it took.
double TeardownEnvironment(PreparedEnvPtr env);

// RunActivation is the cold path: prepare + run + teardown on the calling
// thread. It returns when its environment and isolate are freed again. The caller has armed `guard` with
// the watchdog (and disarms it afterwards). Never throws; every failure is a
// result with status kInternal and a message.
ActivationResult RunActivation(const Runtime& rt, const ActivationRequest& req,
                               ActivationGuard* guard);

}  // namespace teemate

#endif  // TEEMATE_ACTIVATION_H_
