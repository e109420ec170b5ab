// Trusted (inside the enclave). See activation.h.
#include "activation.h"

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <cstring>
#include <utility>

namespace teemate {

namespace {

// Upper bound on error text carried back to the caller (stack traces of deep
// recursion can be large; the host only needs the head).
constexpr size_t kMaxMessageBytes = 16 * 1024;

// How often the watchdog asks running isolates to re-check their heap.
constexpr auto kHeapPollInterval = std::chrono::milliseconds(20);

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// CPU time of the calling thread, in ms (0 if the clock is unavailable).
double ThreadCpuMs() {
  timespec ts{};
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// What Node's run_cjs hands a main script, fetched from it so the prelude,
// compiled by us (to use the code cache), runs with exactly the same
// arguments: the builtin-only require and a module of the executable's path.
constexpr char kCjsArgsSource[] = "return [exports, require, module, __filename, __dirname];";
constexpr const char* kCjsParams[] = {"exports", "require", "module", "__filename", "__dirname"};
constexpr int kCjsParamCount = 5;

std::string Truncate(std::string s) {
  if (s.size() > kMaxMessageBytes) {
    s.resize(kMaxMessageBytes);
    s += "...";
  }
  return s;
}

// Runs during Node's bootstrap (EmbedderPreloadCallback), before the runtime's
// prelude and the activation: turns an uncaught
// exception or unhandled rejection into a reported INTERNAL error and a stop of
// this environment. Without it Node would print the error to the owner's
// stderr (host-visible) and call process.exit(), which we only turn into a stop.
constexpr char kPreloadSource[] =
    "process.on('uncaughtException', function teemateUncaught(err) {\n"
    "  let msg;\n"
    "  try {\n"
    "    msg = (err !== null && typeof err === 'object' && typeof err.stack === 'string')\n"
    "      ? err.stack : String(err);\n"
    "  } catch { msg = 'uncaught exception (not printable)'; }\n"
    "  report(msg);\n"
    "});\n";

std::string ValueToString(v8::Isolate* isolate, v8::Local<v8::Value> v) {
  if (v.IsEmpty()) return "";
  v8::String::Utf8Value utf8(isolate, v);
  if (*utf8 == nullptr) return "(exception not printable)";
  return std::string(*utf8, utf8.length());
}

// The uncaught-exception reporter handed to the preload (not a global: user
// code never sees it).
void ReportUncaught(const v8::FunctionCallbackInfo<v8::Value>& info);

// deliver(resultString), handed to the prelude's entry with each request.
void DeliverResult(const v8::FunctionCallbackInfo<v8::Value>& info);

}  // namespace

// One environment, one activation (see activation.h). Only the thread that
// prepared it touches it.
class PreparedEnvironment {
 public:
  PreparedEnvironment() = default;
  PreparedEnvironment(const PreparedEnvironment&) = delete;
  PreparedEnvironment& operator=(const PreparedEnvironment&) = delete;
  ~PreparedEnvironment() {
    if (kept_env != nullptr) {
      // A context of a kept isolate: free the environment (its handles are
      // closed, its cleanup hooks run) and leave the isolate to its owner.
      v8::Isolate* isolate = kept->setup->isolate();
      v8::Locker locker(isolate);
      v8::Isolate::Scope isolate_scope(isolate);
      v8::HandleScope handle_scope(isolate);
      run_cjs.Reset();
      entry.Reset();
      kept_ctx.Reset();
      node::Stop(kept_env, node::StopFlags::kDoNotTerminateIsolate);
      node::FreeEnvironment(kept_env);
      if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
      return;
    }
    if (!setup) return;
    {
      v8::Isolate* isolate = setup->isolate();
      v8::Locker locker(isolate);
      v8::Isolate::Scope isolate_scope(isolate);
      run_cjs.Reset();
      entry.Reset();
      // Ends an environment that never ran (stop() while it waited) the same
      // way as a used one, so FreeEnvironment has no JavaScript left to run.
      node::Stop(setup->env());
    }
    // Frees the environment, IsolateData, isolate (after the platform has
    // released it) and closes the loop.
    setup.reset();
  }

  v8::Isolate* isolate() const { return kept_env != nullptr ? kept->setup->isolate() : setup->isolate(); }
  node::Environment* env() const { return kept_env != nullptr ? kept_env : setup->env(); }
  v8::Local<v8::Context> context() const {
    return kept_env != nullptr ? kept_ctx.Get(kept->setup->isolate()) : setup->context();
  }
  bool made() const { return kept_env != nullptr || setup != nullptr; }

  // Either an isolate of its own (setup) or a context of a kept isolate
  // (kept, kept_env, kept_ctx).
  std::unique_ptr<node::CommonEnvironmentSetup> setup;
  KeptIsolatePtr kept;
  node::Environment* kept_env = nullptr;
  v8::Global<v8::Context> kept_ctx;
  uint64_t isolate_id = 0;
  // The embedder entry Node's bootstrap hands out (runs a CommonJS-like main
  // script); kept so the activation's script can run later, on the request path.
  v8::Global<v8::Function> run_cjs;
  // What the runtime's prelude returned (empty without a prelude): the
  // function a request in entry mode calls, with everything the prelude built
  // for this one environment in its closure.
  v8::Global<v8::Function> entry;
  // The string the activation passed to deliver(); the first one counts.
  bool delivered = false;
  std::string delivered_result;
  // The activation running in this environment; null while it waits and after
  // it ran, so late reports (teardown) reach no one.
  ActivationGuard* guard = nullptr;
  bool used = false;
  uint64_t id = 0;
  double create_ms = 0, bootstrap_ms = 0, prelude_ms = 0;
  double create_cpu_ms = 0, bootstrap_cpu_ms = 0, prelude_cpu_ms = 0;
  const char* prelude_cache = "off";
};

void PreparedEnvironmentDeleter::operator()(PreparedEnvironment* env) const { delete env; }

namespace {

void ReportUncaught(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* pe = static_cast<PreparedEnvironment*>(info.Data().As<v8::External>()->Value());
  ActivationGuard* guard = pe->guard;
  if (guard == nullptr) return;  // no activation runs: nothing to report to
  std::string msg = info.Length() > 0 && info[0]->IsString()
                        ? ValueToString(info.GetIsolate(), info[0])
                        : std::string("uncaught exception");
  guard->SetUncaught(std::move(msg));
  guard->RequestStop(StopReason::kUncaught);
}

void DeliverResult(const v8::FunctionCallbackInfo<v8::Value>& info) {
  auto* pe = static_cast<PreparedEnvironment*>(info.Data().As<v8::External>()->Value());
  v8::Isolate* isolate = info.GetIsolate();
  if (info.Length() < 1 || !info[0]->IsString()) {
    isolate->ThrowException(v8::Exception::TypeError(
        v8::String::NewFromUtf8Literal(isolate, "deliver(result): result must be a string")));
    return;
  }
  // Only while the activation runs, and only once: a later call (from code
  // the activation left behind) cannot replace the answer.
  if (pe->guard == nullptr || pe->delivered) return;
  pe->delivered = true;
  pe->delivered_result = ValueToString(isolate, info[0]);
  // OpenWhisk answers as soon as main settles: handles the action left open (a
  // server, a socket, fetch's keep-alive connection, an interval) must not hold
  // the answer until the time limit. The loop stops on its next turn; the
  // JavaScript that called deliver() is not terminated, it returns normally.
  node::Stop(pe->env(), node::StopFlags::kDoNotTerminateIsolate);
}

// Every dynamic import() in an activation's environment ends here. Node's own
// handler (set during its bootstrap) would run the ESM loader, which loads
// builtins and reads files without passing through the CommonJS loader the
// runtime's capability set guards (trusted/caps.js). Actions in a shared
// enclave load code with require(); import() is refused with a catchable
// error, as a rejected promise (what import() returns).
v8::MaybeLocal<v8::Promise> RefuseDynamicImport(v8::Local<v8::Context> ctx, v8::Local<v8::Data>,
                                                v8::Local<v8::Value>, v8::Local<v8::String> specifier,
                                                v8::Local<v8::FixedArray>) {
  v8::Isolate* isolate = ctx->GetIsolate();
  v8::Local<v8::Promise::Resolver> resolver;
  if (!v8::Promise::Resolver::New(ctx).ToLocal(&resolver)) return {};
  std::string spec = ValueToString(isolate, specifier);
  if (spec.size() > 200) spec = spec.substr(0, 200) + "...";
  const std::string text = "TeeMate: import() is not available to actions in a shared enclave (import('" +
                           spec + "')); use require()";
  v8::Local<v8::String> msg;
  if (!v8::String::NewFromUtf8(isolate, text.data(), v8::NewStringType::kNormal,
                               static_cast<int>(text.size()))
           .ToLocal(&msg)) {
    return {};
  }
  if (resolver->Reject(ctx, v8::Exception::Error(msg)).IsNothing()) return {};
  return resolver->GetPromise();
}

// Calls fn(argv) as the outermost JavaScript of the environment: MakeCallback
// gives it the callback scope LoadEnvironment would have (ticks and microtasks
// queued by it run when it returns). MakeCallback turns a failure at the
// outermost scope into undefined (legacy behaviour), so the TryCatch, which the
// caller owns, is what tells a throw apart; *failed is set either way.
v8::MaybeLocal<v8::Value> CallOutermost(v8::Isolate* isolate, v8::Local<v8::Function> fn, int argc,
                                        v8::Local<v8::Value>* argv, const v8::TryCatch& try_catch,
                                        bool* failed, v8::Local<v8::Object> recv = {}) {
  if (recv.IsEmpty()) recv = v8::Object::New(isolate);
  v8::MaybeLocal<v8::Value> ret =
      node::MakeCallback(isolate, recv, fn, argc, argv, node::async_context{1, 0});
  *failed = ret.IsEmpty() || try_catch.HasCaught();
  return ret;
}

void OnGCEpilogue(v8::Isolate* isolate, v8::GCType, v8::GCCallbackFlags, void* data) {
  static_cast<ActivationGuard*>(data)->CheckHeap(isolate);
}

void OnHeapInterrupt(v8::Isolate* isolate, void* data) {
  static_cast<ActivationGuard*>(data)->CheckHeap(isolate);
}

// Backstop for a single allocation that jumps past V8's own limit before our
// checks run: stop the environment and grant headroom so V8 can unwind instead
// of aborting the whole process (what Node does for Workers).
size_t OnNearHeapLimit(void* data, size_t current_limit, size_t) {
  static_cast<ActivationGuard*>(data)->RequestStop(StopReason::kHeap);
  return current_limit + std::max<size_t>(current_limit / 2, 64u << 20);
}

// Reads globalThis[name] only if it is an own data property, so a getter
// planted by user code cannot run (and hang) while we collect the result.
v8::MaybeLocal<v8::Value> ReadOwnDataProperty(v8::Local<v8::Context> ctx,
                                              v8::Local<v8::Object> obj,
                                              const char* name) {
  v8::Isolate* isolate = ctx->GetIsolate();
  v8::Local<v8::String> key;
  if (!v8::String::NewFromUtf8(isolate, name).ToLocal(&key)) return {};
  v8::Local<v8::Value> desc;
  if (!obj->GetOwnPropertyDescriptor(ctx, key).ToLocal(&desc)) return {};
  if (!desc->IsObject()) return v8::Undefined(isolate);
  v8::Local<v8::Object> d = desc.As<v8::Object>();
  v8::Local<v8::String> value_key = v8::String::NewFromUtf8Literal(isolate, "value");
  bool has_value = false;
  if (!d->HasOwnProperty(ctx, value_key).To(&has_value)) return {};
  if (!has_value) return {};  // accessor property: refuse
  return d->Get(ctx, value_key);
}

}  // namespace

const char* StatusCode(ActivationStatus s) {
  switch (s) {
    case ActivationStatus::kOk:
      return "OK";
    case ActivationStatus::kTimeout:
      return "TIMEOUT";
    case ActivationStatus::kHeap:
      return "HEAP";
    case ActivationStatus::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

// ---------------------------------------------------------------- guard

void ActivationGuard::RequestStop(StopReason reason) {
  int expected = static_cast<int>(StopReason::kNone);
  reason_.compare_exchange_strong(expected, static_cast<int>(reason),
                                  std::memory_order_acq_rel);
  stop_requested_.store(true, std::memory_order_release);
  std::lock_guard<std::mutex> lock(mu_);
  // node::Stop() is Node's thread-safe way to end an environment (it is how a
  // Worker is terminated from its parent): it terminates running JavaScript
  // and stops the loop on its next turn.
  if (env_ != nullptr) node::Stop(env_);
  stopped_cv_.notify_all();
}

void ActivationGuard::WaitForStop() {
  std::unique_lock<std::mutex> lock(mu_);
  stopped_cv_.wait(lock, [this] { return stop_requested(); });
}

void ActivationGuard::RequestHeapCheck() {
  std::lock_guard<std::mutex> lock(mu_);
  if (isolate_ != nullptr) isolate_->RequestInterrupt(OnHeapInterrupt, this);
}

void ActivationGuard::CheckHeap(v8::Isolate* isolate) {
  if (stop_requested()) return;
  v8::HeapStatistics hs;
  isolate->GetHeapStatistics(&hs);
  if (hs.used_heap_size() + hs.external_memory() > heap_limit_bytes_) {
    RequestStop(StopReason::kHeap);
  }
}

void ActivationGuard::Attach(v8::Isolate* isolate, node::Environment* env) {
  std::lock_guard<std::mutex> lock(mu_);
  isolate_ = isolate;
  env_ = env;
  // A stop that arrived during setup (deadline, owner stop) applies now.
  if (stop_requested()) node::Stop(env_);
}

void ActivationGuard::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  isolate_ = nullptr;
  env_ = nullptr;
}

void ActivationGuard::SetUncaught(std::string message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (uncaught_.empty()) uncaught_ = Truncate(std::move(message));
}

std::string ActivationGuard::uncaught_message() {
  std::lock_guard<std::mutex> lock(mu_);
  return uncaught_;
}

// ---------------------------------------------------------------- watchdog

void Watchdog::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_) return;
  quit_ = false;
  running_ = true;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tm-watchdog");  // for profiles; best effort
    Loop();
  });
}

void Watchdog::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
}

void Watchdog::Arm(ActivationGuard* guard) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    armed_.push_back(guard);
  }
  cv_.notify_all();
}

void Watchdog::Disarm(ActivationGuard* guard) {
  std::lock_guard<std::mutex> lock(mu_);
  armed_.erase(std::remove(armed_.begin(), armed_.end(), guard), armed_.end());
}

void Watchdog::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  auto next_poll = Clock::now() + kHeapPollInterval;
  while (!quit_) {
    if (armed_.empty()) {
      cv_.wait(lock);
      next_poll = Clock::now() + kHeapPollInterval;
      continue;
    }
    auto now = Clock::now();
    auto wake = next_poll;
    bool poll = now >= next_poll;
    if (poll) next_poll = now + kHeapPollInterval;
    // Lock order is always watchdog -> guard; guards never call back into us
    // while holding their own lock.
    for (ActivationGuard* g : armed_) {
      if (g->stop_requested()) continue;
      if (now >= g->deadline()) {
        g->RequestStop(StopReason::kTimeout);
        continue;
      }
      wake = std::min(wake, g->deadline());
      if (poll) g->RequestHeapCheck();
    }
    wake = std::min(wake, next_poll);
    cv_.wait_until(lock, wake);
  }
}

// ---------------------------------------------------------------- activation

namespace {

// Environment flags as Node uses for a Worker: no kOwnsProcessState (no cwd,
// umask, uid, title changes) and no inspector; fds opened through fs.open()
// are closed at teardown; native addons cannot be loaded into an activation.
const auto kEnvironmentFlags = static_cast<node::EnvironmentFlags::Flags>(
    node::EnvironmentFlags::kNoFlags | node::EnvironmentFlags::kTrackUnmanagedFds |
    node::EnvironmentFlags::kNoNativeAddons | node::EnvironmentFlags::kNoCreateInspector |
    node::EnvironmentFlags::kNoStartDebugSignalHandler |
    node::EnvironmentFlags::kNoGlobalSearchPaths);

// Isolate ids are never reused either: a test can tell which activations
// shared one.
uint64_t NextIsolateId() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

PreparedEnvPtr PrepareEnvironment(const Runtime& rt, std::string* error, bool ahead,
                                  const KeptIsolatePtr& kept) {
  // Ids are never reused, so a caller can prove that no environment served
  // two activations.
  static std::atomic<uint64_t> next_id{1};
  const auto t0 = Clock::now();
  const double c0 = ThreadCpuMs();
  if (rt.platform == nullptr || !rt.snapshot) {
    *error = "runtime not initialised (no platform or snapshot)";
    return nullptr;
  }

  const auto flags = kEnvironmentFlags;
  std::vector<std::string> args{rt.exec_path};
  std::vector<std::string> exec_args;
  std::vector<std::string> errors;

  PreparedEnvPtr pe(new PreparedEnvironment());
  pe->id = next_id.fetch_add(1, std::memory_order_relaxed);
  if (kept) {
    if (kept->spoiled || !kept->setup) {
      *error = "create environment: the kept isolate may not serve another activation";
      return nullptr;
    }
    // A new context of the kept isolate, deserialised from the snapshot's main
    // context as the isolate's own first one was (CreateEnvironment with an
    // empty context does that when the isolate came from a snapshot).
    v8::Isolate* isolate = kept->setup->isolate();
    v8::Locker locker(isolate);
    v8::Isolate::Scope isolate_scope(isolate);
    v8::HandleScope handle_scope(isolate);
    node::Environment* env = node::CreateEnvironment(kept->setup->isolate_data(), v8::Local<v8::Context>(),
                                                     args, exec_args, flags);
    if (env == nullptr) {
      errors.push_back("a new environment in the kept isolate was refused");
    } else {
      pe->kept = kept;
      pe->kept_env = env;
      pe->kept_ctx.Reset(isolate, node::GetMainContext(env));
      pe->isolate_id = kept->id;
    }
  } else {
    pe->setup = node::CommonEnvironmentSetup::CreateFromSnapshot(rt.platform, &errors,
                                                                rt.snapshot.get(), args, exec_args,
                                                                flags);
    pe->isolate_id = NextIsolateId();
  }
  if (!pe->made()) {
    *error = "create environment:";
    for (const std::string& e : errors) *error += " " + e;
    if (errors.empty()) *error += " unknown error";
    return nullptr;
  }
  const auto t1 = Clock::now();
  const double c1 = ThreadCpuMs();
  pe->create_ms = MsBetween(t0, t1);
  pe->create_cpu_ms = c1 - c0;

  v8::Isolate* isolate = pe->isolate();
  node::Environment* env = pe->env();
  PreparedEnvironment* raw = pe.get();
  // Failures leave the scopes below first: the environment (and its isolate)
  // must not be freed while they are entered.
  bool failed = false;
  {
    v8::Locker locker(isolate);
    v8::Isolate::Scope isolate_scope(isolate);
    v8::HandleScope handle_scope(isolate);
    v8::Local<v8::Context> ctx = pe->context();
    v8::Context::Scope context_scope(ctx);

    // process.exit() inside the activation must only end this environment;
    // Node's default handler would exit the owner process.
    node::SetProcessExitHandler(env, [raw](node::Environment* e, int code) {
      if (raw->guard != nullptr) raw->guard->SetExit(code);
      node::Stop(e);
    });

    v8::Local<v8::Function> prelude;
    v8::Local<v8::Function> reporter;
    v8::Local<v8::String> params[] = {v8::String::NewFromUtf8Literal(isolate, "process"),
                                      v8::String::NewFromUtf8Literal(isolate, "report")};
    v8::ScriptCompiler::Source src(v8::String::NewFromUtf8Literal(isolate, kPreloadSource));
    if (!v8::ScriptCompiler::CompileFunction(ctx, &src, 2, params).ToLocal(&prelude) ||
        !v8::Function::New(ctx, ReportUncaught, v8::External::New(isolate, raw))
             .ToLocal(&reporter)) {
      *error = "cannot compile the activation prelude";
      failed = true;
    }

    // Node's own bootstrap of the environment (prepareMainThreadExecution: the
    // process object, module loader, our prelude as the embedder preload) runs
    // now; the entry function that would run the main script is kept instead of
    // called, so no activation code runs here.
    bool prelude_ok = false;
    auto preload = [&](node::Environment*, v8::Local<v8::Value> process, v8::Local<v8::Value>) {
      v8::Local<v8::Value> argv[] = {process, reporter};
      prelude_ok = !prelude->Call(ctx, v8::Undefined(isolate), 2, argv).IsEmpty();
    };
    auto keep_entry = [&](const node::StartExecutionCallbackInfo& info) -> v8::MaybeLocal<v8::Value> {
      raw->run_cjs.Reset(isolate, info.run_cjs);
      return v8::Undefined(isolate);
    };
    v8::TryCatch try_catch(isolate);
    v8::MaybeLocal<v8::Value> ret;
    if (!failed) ret = node::LoadEnvironment(env, keep_entry, preload);
    if (!failed && (ret.IsEmpty() || raw->run_cjs.IsEmpty() || !prelude_ok)) {
      failed = true;
      *error = "node bootstrap of the environment failed";
      if (try_catch.HasCaught() && !try_catch.HasTerminated()) {
        *error += ": " + Truncate(ValueToString(isolate, try_catch.Exception()));
      } else if (!prelude_ok) {
        *error += ": the uncaught-exception preload did not run";
      }
    }

    // The runtime's prelude: everything of the activation plumbing that does
    // not depend on the request, run now instead of on the request path. It is
    // the runtime's own code (no tenant code, no request in the environment
    // yet), and what it returns is the entry a request calls.
    if (!failed && !rt.prelude.empty()) {
      const auto tp = Clock::now();
      const double cp = ThreadCpuMs();
      v8::TryCatch prelude_catch(isolate);
      v8::Local<v8::Value> entry;
      bool threw = false;
      // The prelude is compiled here rather than handed to run_cjs (which
      // compiles without a cache), with the arguments run_cjs gives a main
      // script, fetched from run_cjs itself.
      v8::Local<v8::Value> cjs_argv[kCjsParamCount];
      {
        v8::Local<v8::Value> argv[] = {v8::String::NewFromUtf8Literal(isolate, kCjsArgsSource)};
        v8::Local<v8::Value> got;
        if (!CallOutermost(isolate, raw->run_cjs.Get(isolate), 1, argv, prelude_catch, &threw)
                 .ToLocal(&got) ||
            threw || !got->IsArray() || got.As<v8::Array>()->Length() != kCjsParamCount) {
          failed = true;
        }
        for (int i = 0; !failed && i < kCjsParamCount; i++) {
          if (!got.As<v8::Array>()->Get(ctx, i).ToLocal(&cjs_argv[i])) failed = true;
        }
        if (failed || !cjs_argv[0]->IsObject() || !cjs_argv[3]->IsString()) {
          failed = true;
          *error = "the runtime prelude failed: node gave no main-script arguments";
        }
      }
      v8::Local<v8::String> source;
      if (!failed && !v8::String::NewFromUtf8(isolate, rt.prelude.data(), v8::NewStringType::kNormal,
                                              static_cast<int>(rt.prelude.size()))
                          .ToLocal(&source)) {
        failed = true;
        *error = "cannot pass the runtime prelude to the environment (too large?)";
      }
      v8::Local<v8::Function> compiled;
      PreludeCodeCache::Data cached;
      if (!failed) {
        if (rt.prelude_cache) cached = rt.prelude_cache->Get();
        v8::Local<v8::String> params[kCjsParamCount];
        for (int i = 0; i < kCjsParamCount; i++) {
          params[i] = v8::String::NewFromUtf8(isolate, kCjsParams[i], v8::NewStringType::kInternalized)
                          .ToLocalChecked();
        }
        v8::ScriptOrigin origin(isolate, cjs_argv[3]);
        // Source owns the CachedData object, not its bytes (BufferNotOwned):
        // `cached` keeps them alive past the compile.
        v8::ScriptCompiler::Source src(
            source, origin,
            cached ? new v8::ScriptCompiler::CachedData(cached->data(), static_cast<int>(cached->size()))
                   : nullptr);
        if (!v8::ScriptCompiler::CompileFunction(ctx, &src, kCjsParamCount, params, 0, nullptr,
                                                 cached ? v8::ScriptCompiler::kConsumeCodeCache
                                                        : v8::ScriptCompiler::kNoCompileOptions)
                 .ToLocal(&compiled)) {
          threw = true;
        } else if (cached && src.GetCachedData()->rejected) {
          rt.prelude_cache->Reject(cached);
          raw->prelude_cache = "rejected";
        } else if (cached) {
          raw->prelude_cache = "consumed";
        }
      }
      v8::Local<v8::Value> ret;
      if (!failed && !threw) {
        ret = CallOutermost(isolate, compiled, kCjsParamCount, cjs_argv, prelude_catch, &threw,
                            cjs_argv[0].As<v8::Object>())
                  .FromMaybe(v8::Local<v8::Value>());
      }
      if (!failed) {
        if (threw || ret.IsEmpty() || !ret->IsFunction()) {
          failed = true;
          *error = "the runtime prelude failed";
          if (prelude_catch.HasCaught() && !prelude_catch.HasTerminated()) {
            v8::Local<v8::Value> trace;
            if (!prelude_catch.StackTrace(ctx).ToLocal(&trace) || !trace->IsString()) {
              trace = prelude_catch.Exception();
            }
            *error += ": " + Truncate(ValueToString(isolate, trace));
          } else if (!threw) {
            *error += ": it must return the entry function";
          }
        } else {
          entry = ret;
          raw->entry.Reset(isolate, entry.As<v8::Function>());
        }
      }
      // entry.warm(): warm-ups that only pay off when nobody waits for this
      // environment (they move first-use costs out of the request; on the
      // request path of a cold slot they would only add to it).
      v8::Local<v8::Value> warm;
      if (!failed && ahead &&
          entry.As<v8::Object>()
              ->GetRealNamedProperty(ctx, v8::String::NewFromUtf8Literal(isolate, "warm"))
              .ToLocal(&warm) &&
          warm->IsFunction()) {
        CallOutermost(isolate, warm.As<v8::Function>(), 0, nullptr, prelude_catch, &threw);
        if (threw) {
          failed = true;
          *error = "the runtime prelude's warm-up failed";
          if (prelude_catch.HasCaught() && !prelude_catch.HasTerminated()) {
            *error += ": " + Truncate(ValueToString(isolate, prelude_catch.Exception()));
          }
        }
      }
      if (!failed && prelude_catch.HasCaught()) {  // reading `warm` threw
        failed = true;
        *error = "the runtime prelude's entry.warm is not readable";
      }
      // The first environment (or the first after a rejection) makes the
      // cache now that the prelude (and warm()) ran: V8 compiles lazily, so
      // the functions they called are compiled and go into the cache too.
      if (!failed && rt.prelude_cache && (!cached || std::strcmp(raw->prelude_cache, "rejected") == 0)) {
        std::unique_ptr<v8::ScriptCompiler::CachedData> made(
            v8::ScriptCompiler::CreateCodeCacheForFunction(compiled));
        if (made && made->length > 0) {
          rt.prelude_cache->Offer(
              std::make_shared<const std::vector<uint8_t>>(made->data, made->data + made->length));
          raw->prelude_cache = "produced";
        }
      }
      raw->prelude_ms = MsBetween(tp, Clock::now());
      raw->prelude_cpu_ms = ThreadCpuMs() - cp;
    }
    // Work V8 queued for this isolate while it was prepared (typically the
    // scavenge job the prelude's allocations scheduled) runs now, not on the
    // request path of the first activation (measured: ~3 ms of runMs on a hot
    // slot otherwise). Only ahead of a request: on a cold slot nobody waits
    // less for it.
    if (!failed && ahead) rt.platform->DrainTasks(isolate);
    // Node installed its dynamic-import handler during the bootstrap above; it is
    // replaced for this isolate now that no more of Node's bootstrap runs (see
    // RefuseDynamicImport).
    if (!failed) isolate->SetHostImportModuleDynamicallyCallback(RefuseDynamicImport);
  }
  if (failed) return nullptr;  // the deleter frees the environment
  pe->bootstrap_ms = MsBetween(t1, Clock::now());
  pe->bootstrap_cpu_ms = ThreadCpuMs() - c1;
  return pe;
}

ActivationResult RunPrepared(PreparedEnvironment* pe, const ActivationRequest& req,
                             ActivationGuard* guard, Clock::time_point setup_started) {
  ActivationResult res;
  if (pe == nullptr || !pe->made()) {
    res.message = "no environment to run the activation in";
    return res;
  }
  res.env_id = pe->id;
  res.isolate_id = pe->isolate_id;
  res.create_ms = pe->create_ms;
  res.bootstrap_ms = pe->bootstrap_ms;
  res.prelude_ms = pe->prelude_ms;
  res.create_cpu_ms = pe->create_cpu_ms;
  res.bootstrap_cpu_ms = pe->bootstrap_cpu_ms;
  res.prelude_cpu_ms = pe->prelude_cpu_ms;
  res.prelude_cache = pe->prelude_cache;
  if (pe->used) {
    // Never happens by construction; refusing is what keeps one activation's
    // state from reaching another if it ever did.
    res.message = "environment #" + std::to_string(pe->id) + " already served an activation";
    return res;
  }
  pe->used = true;
  if (req.entry && pe->entry.IsEmpty()) {
    res.message = "no entry to call: the runtime has no prelude";
    return res;
  }

  v8::Isolate* isolate = pe->isolate();
  node::Environment* env = pe->env();
  if (pe->kept) pe->kept->served++;
  Clock::time_point t1, t2;
  double run_cpu0 = 0;
  std::string sync_error;
  bool have_result = false;
  std::string result_error;
  bool ok = true;
  {
    v8::Locker locker(isolate);
    v8::Isolate::Scope isolate_scope(isolate);
    v8::HandleScope handle_scope(isolate);
    v8::Local<v8::Context> ctx = pe->context();
    v8::Context::Scope context_scope(ctx);

    isolate->AddGCEpilogueCallback(OnGCEpilogue, guard);
    isolate->AddNearHeapLimitCallback(OnNearHeapLimit, guard);
    pe->guard = guard;
    guard->Attach(isolate, env);

    v8::Local<v8::String> request;
    v8::Local<v8::String> source;
    v8::Local<v8::Function> deliver;
    v8::Local<v8::String> request_key = v8::String::NewFromUtf8Literal(isolate, "__teemate_request");
    if (!v8::String::NewFromUtf8(isolate, req.request_json.data(), v8::NewStringType::kNormal,
                                 static_cast<int>(req.request_json.size()))
             .ToLocal(&request)) {
      ok = false;
      res.message = "cannot pass the request to the environment (too large?)";
    } else if (req.entry) {
      if (!v8::Function::New(ctx, DeliverResult, v8::External::New(isolate, pe)).ToLocal(&deliver)) {
        ok = false;
        res.message = "cannot make the deliver function";
      }
    } else if (!ctx->Global()->CreateDataProperty(ctx, request_key, request).FromMaybe(false)) {
      ok = false;
      res.message = "cannot expose the request to the environment";
    } else if (!v8::String::NewFromUtf8(isolate, req.bootstrap.data(), v8::NewStringType::kNormal,
                                        static_cast<int>(req.bootstrap.size()))
                    .ToLocal(&source)) {
      ok = false;
      res.message = "cannot pass the bootstrap source to the environment (too large?)";
    }

    t1 = Clock::now();
    run_cpu0 = ThreadCpuMs();
    if (ok && !guard->stop_requested()) {
      // A synchronous throw from the bootstrap (or entry) ends up here instead
      // of in Node's message listener, so it is reported to the caller and not
      // printed to the owner's stderr.
      v8::TryCatch try_catch(isolate);
      bool failed = false;
      if (req.entry) {
        v8::Local<v8::Value> argv[] = {request, deliver};
        CallOutermost(isolate, pe->entry.Get(isolate), 2, argv, try_catch, &failed);
      } else {
        v8::Local<v8::Value> argv[] = {source};
        CallOutermost(isolate, pe->run_cjs.Get(isolate), 1, argv, try_catch, &failed);
      }
      if (try_catch.HasCaught() && !try_catch.HasTerminated()) {
        v8::Local<v8::Value> trace;
        if (!try_catch.StackTrace(ctx).ToLocal(&trace) || !trace->IsString()) {
          trace = try_catch.Exception();
        }
        sync_error = Truncate("bootstrap threw: " + ValueToString(isolate, trace));
      } else if (failed && !guard->stop_requested() && !guard->exited() && !pe->delivered) {
        // (A result delivered within this call stops the environment, which
        // makes MakeCallback report a failure; that is not one.)
        sync_error = "bootstrap failed to load";
      }
      if (sync_error.empty() && !guard->stop_requested() && !pe->delivered) {
        v8::Maybe<int> code = node::SpinEventLoop(env);
        if (code.IsJust() && !guard->exited()) res.exit_code = code.FromJust();
      }
      // The loop drained and nothing was delivered: the action's promise never
      // settles and nothing is left that could settle it. OpenWhisk's action
      // proxy keeps waiting for it, so the activation ends at its time limit as
      // a time-out, not sooner and not as a platform failure.
      if (req.entry && sync_error.empty() && !pe->delivered && !guard->exited()) {
        guard->WaitForStop();
      }
    }
    if (guard->exited()) res.exit_code = guard->exit_code();

    // Read the result even after process.exit(): a bootstrap may set it and
    // exit. The watchdog stays armed, so a pathological value cannot hang us.
    // A result delivered before a stop (the deadline passing while the loop
    // winds down) is the answer: it was complete in time.
    if (ok && sync_error.empty() && pe->delivered && req.entry) {
      res.result = std::move(pe->delivered_result);
      have_result = true;
    } else if (ok && sync_error.empty() && guard->reason() == StopReason::kNone && req.entry) {
      if (pe->delivered) {
        res.result = std::move(pe->delivered_result);
        have_result = true;
      } else {
        result_error = guard->exited() ? "the activation exited with code " +
                                             std::to_string(res.exit_code) +
                                             " without delivering a result"
                                       : "the activation finished without delivering a result";
      }
    } else if (ok && sync_error.empty() && guard->reason() == StopReason::kNone) {
      if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
      v8::TryCatch try_catch(isolate);
      v8::Local<v8::Value> value;
      if (!ReadOwnDataProperty(ctx, ctx->Global(), "__teemate_result").ToLocal(&value)) {
        result_error = "globalThis.__teemate_result is not readable";
      } else if (value->IsString()) {
        res.result = ValueToString(isolate, value);
        have_result = true;
      } else if (value->IsUndefined()) {
        result_error = guard->exited()
                           ? "bootstrap exited with code " + std::to_string(res.exit_code) +
                                 " without setting globalThis.__teemate_result"
                           : "bootstrap finished without setting globalThis.__teemate_result";
      } else {
        result_error = "globalThis.__teemate_result is not a string";
      }
    }
    t2 = Clock::now();
    res.run_cpu_ms = ThreadCpuMs() - run_cpu0;

    // From here on nothing reaches the guard (it lives on the caller's stack
    // and the environment may be freed after the caller moved on).
    guard->Detach();
    pe->guard = nullptr;
    if (pe->kept) {
      // The isolate outlives this environment: stop the environment only, and
      // leave no termination pending for the next context.
      node::Stop(env, node::StopFlags::kDoNotTerminateIsolate);
      if (isolate->IsExecutionTerminating()) isolate->CancelTerminateExecution();
    } else {
      node::Stop(env);
    }
    isolate->RemoveGCEpilogueCallback(OnGCEpilogue, guard);
    isolate->RemoveNearHeapLimitCallback(OnNearHeapLimit, 0);
    pe->run_cjs.Reset();
    pe->entry.Reset();
  }
  res.setup_ms = MsBetween(setup_started, t1);
  res.run_ms = MsBetween(t1, t2);

  res.clean = have_result && ok && sync_error.empty() && guard->reason() == StopReason::kNone &&
              !guard->exited();
  if (pe->kept && !res.clean) pe->kept->spoiled = true;
  switch (have_result ? StopReason::kNone : guard->reason()) {
    case StopReason::kTimeout:
      res.status = ActivationStatus::kTimeout;
      res.message = "activation exceeded its time limit of " + std::to_string(req.timeout_ms) + " ms";
      return res;
    case StopReason::kHeap:
      res.status = ActivationStatus::kHeap;
      res.message = "activation exceeded its heap limit of " + std::to_string(req.heap_limit_mb) + " MB";
      return res;
    case StopReason::kCancelled:
      res.status = ActivationStatus::kInternal;
      res.message = "activation cancelled: the isolate runtime is stopping";
      return res;
    case StopReason::kUncaught:
      res.status = ActivationStatus::kInternal;
      res.message = "uncaught exception in activation: " + guard->uncaught_message();
      return res;
    case StopReason::kNone:
      break;
  }
  if (!ok) return res;  // status kInternal, message set above
  if (!sync_error.empty()) {
    res.message = sync_error;
    return res;
  }
  if (!have_result) {
    res.message = result_error;
    return res;
  }
  res.status = ActivationStatus::kOk;
  return res;
}

KeptIsolate::~KeptIsolate() {
  if (!setup) return;
  {
    v8::Isolate* isolate = setup->isolate();
    v8::Locker locker(isolate);
    v8::Isolate::Scope isolate_scope(isolate);
    node::Stop(setup->env());
  }
  setup.reset();
}

KeptIsolatePtr NewKeptIsolate(const Runtime& rt, std::string* error) {
  if (rt.platform == nullptr || !rt.snapshot) {
    *error = "runtime not initialised (no platform or snapshot)";
    return nullptr;
  }
  std::vector<std::string> args{rt.exec_path};
  std::vector<std::string> exec_args;
  std::vector<std::string> errors;
  auto kept = std::make_shared<KeptIsolate>();
  kept->setup = node::CommonEnvironmentSetup::CreateFromSnapshot(rt.platform, &errors, rt.snapshot.get(), args,
                                                                exec_args, kEnvironmentFlags);
  if (!kept->setup) {
    *error = "create the kept isolate:";
    for (const std::string& e : errors) *error += " " + e;
    if (errors.empty()) *error += " unknown error";
    return nullptr;
  }
  kept->id = NextIsolateId();
  return kept;
}

bool KeepIsolate(KeptIsolate* kept) {
  if (kept == nullptr || kept->spoiled || !kept->setup || kept->served >= kMaxKeptActivations) return false;
  v8::Isolate* isolate = kept->setup->isolate();
  v8::Locker locker(isolate);
  v8::Isolate::Scope isolate_scope(isolate);
  v8::HeapStatistics hs;
  isolate->GetHeapStatistics(&hs);
  if (hs.used_heap_size() + hs.external_memory() < kMaxKeptHeapBytes) return true;
  // Mostly the garbage of freed contexts, which a full collection returns; a
  // heap still this large after it is the tenant's own (a leak through the
  // isolate) and goes with the isolate.
  isolate->LowMemoryNotification();
  isolate->GetHeapStatistics(&hs);
  return hs.used_heap_size() + hs.external_memory() < kMaxKeptHeapBytes;
}

bool TakeForTenant(PreparedEnvironment* env, const std::string& tenant) {
  if (env == nullptr || !env->kept) return true;
  KeptIsolate* k = env->kept.get();
  if (k->spoiled) return false;
  if (tenant.empty()) {
    // No tenant to keep it for: only an isolate nothing ran in, used once.
    if (k->served > 0 || !k->tenant.empty()) return false;
    k->spoiled = true;
    return true;
  }
  if (k->tenant.empty()) {
    if (k->served > 0) return false;  // a tenant-less activation ran in it
    k->tenant = tenant;
  }
  return k->tenant == tenant;
}

double TeardownEnvironment(PreparedEnvPtr env) {
  const auto t0 = Clock::now();
  env.reset();
  return MsBetween(t0, Clock::now());
}

ActivationResult RunActivation(const Runtime& rt, const ActivationRequest& req,
                               ActivationGuard* guard) {
  const auto t0 = Clock::now();
  std::string error;
  PreparedEnvPtr env = PrepareEnvironment(rt, &error, /*ahead=*/false);
  if (!env) {
    ActivationResult res;
    res.message = error;
    res.setup_ms = MsBetween(t0, Clock::now());
    return res;
  }
  ActivationResult res = RunPrepared(env.get(), req, guard, t0);
  res.teardown_ms = TeardownEnvironment(std::move(env));
  return res;
}

}  // namespace teemate
