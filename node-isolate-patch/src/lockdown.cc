// teemate_lockdown.node: forbids the enclave owner, once it runs, to execute anything (trusted side).
//
// A seccomp filter that denies execve cannot be installed before the owner's own exec of node, so
// the owner installs it itself, after start: lockdown() sets no_new_privs and installs the filter
// of seccomp_policy.h with execve/execveat denied, on every thread of the process at once
// (SECCOMP_FILTER_FLAG_TSYNC; threads created later inherit it). Filters only ever add
// restrictions, so this stacks on the launcher's filter and can never be undone.
//
// probeExecve() tries execve on a path that does not exist and returns the errno: EPERM once the
// filter is in place, ENOENT before (nothing is executed either way). lockdown.js uses it to check
// the filter really took effect.
//
// Plain Node-API (no V8 headers), so it is independent of the isolate addon's ABI choices.
#include <errno.h>
#include <linux/seccomp.h>
#include <node_api.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>

#include "seccomp_policy.h"

namespace {

napi_value Throw(napi_env env, const std::string& msg) {
  napi_throw_error(env, nullptr, msg.c_str());
  return nullptr;
}

napi_value Lockdown(napi_env env, napi_callback_info) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Throw(env, std::string("lockdown: prctl(PR_SET_NO_NEW_PRIVS): ") + strerror(errno));
  }
  struct sock_filter insns[TM_SECCOMP_MAX_INSNS];
  struct sock_fprog prog = {tm_seccomp_build(insns, 1), insns};
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (r < 0) return Throw(env, std::string("lockdown: seccomp(SET_MODE_FILTER, TSYNC): ") + strerror(errno));
  if (r > 0) return Throw(env, "lockdown: seccomp TSYNC failed on thread " + std::to_string(r));
  napi_value n;
  napi_create_int32(env, prog.len, &n);
  return n;
}

napi_value ProbeExecve(napi_env env, napi_callback_info) {
  static char path[] = "/nonexistent/teemate-lockdown-probe";
  char* argv[] = {path, nullptr};
  char* envp[] = {nullptr};
  int e = 0;
  if (syscall(SYS_execve, path, argv, envp) != 0) e = errno;
  napi_value n;
  napi_create_int32(env, e, &n);
  return n;
}

napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"lockdown", nullptr, Lockdown, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"probeExecve", nullptr, ProbeExecve, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value eperm;
  napi_create_int32(env, EPERM, &eperm);
  napi_set_named_property(env, exports, "EPERM", eperm);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
