/*
 * seccomp_policy.h: the system calls an enclave owner (the shared Node runtime) must never make,
 * as one classic-BPF seccomp filter. Shared by the two places that install it:
 *
 *   - teemate-confine (invoker/internal/enclave/confine/launcher), before it execs node: the
 *     filter without execve, because the launcher still has to exec node;
 *   - teemate_lockdown.node (lockdown.cc), once the owner runs: the same list again (defence in
 *     depth, e.g. for an owner started without the launcher) plus execve and execveat, on every
 *     thread (SECCOMP_FILTER_FLAG_TSYNC).
 *
 * Why each group is here: an escape from a V8 isolate is native code in the owner. It must not
 * reach other processes (ptrace, process_vm_*, kcmp, pidfd_getfd), the kernel's attack surface
 * that a JS runtime never needs (bpf, perf, keyrings, userfaultfd, io_uring, modules, kexec), the
 * mount table and namespaces it was confined with (mount family, unshare/setns, clone with
 * namespace flags), new processes (fork/vfork, clone without CLONE_THREAD; clone3 answers ENOSYS
 * so glibc falls back to clone, whose flags a classic filter can inspect), or host-wide state
 * (clocks, reboot, swap, acct, hostname, real-time scheduling). Most of these also need capabilities the owner does not
 * have; the filter keeps them closed if a capability or a kernel bug says otherwise.
 *
 * x86_64 only: any other architecture (including x32 numbers) is refused outright.
 * Header-only, C and C++; no allocation.
 */
#ifndef TEEMATE_SECCOMP_POLICY_H
#define TEEMATE_SECCOMP_POLICY_H

#include <errno.h>
#include <stddef.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/syscall.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

/* Denied with EPERM. Numbers from this machine's <sys/syscall.h>; the newer ones are guarded. */
static const int tm_seccomp_denied[] = {
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp,
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot,
    SYS_kexec_load, SYS_kexec_file_load,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_create_module,
    SYS_get_kernel_syms, SYS_query_module,
    SYS_unshare, SYS_setns, SYS_fork, SYS_vfork,
    SYS_bpf, SYS_perf_event_open,
    SYS_keyctl, SYS_add_key, SYS_request_key,
    SYS_userfaultfd, SYS_reboot, SYS_swapon, SYS_swapoff,
    SYS_settimeofday, SYS_clock_settime, SYS_clock_adjtime, SYS_adjtimex,
    SYS_open_by_handle_at, SYS_name_to_handle_at,
    SYS_iopl, SYS_ioperm, SYS_acct,
    SYS_lookup_dcookie, SYS_quotactl, SYS_nfsservctl, SYS_uselib, SYS__sysctl, SYS_sysfs, SYS_ustat,
    SYS_vhangup, SYS_syslog, SYS_sethostname, SYS_setdomainname, SYS_modify_ldt,
    SYS_move_pages, SYS_migrate_pages, SYS_mbind, SYS_fanotify_init,
    /* Scheduling beyond nice values: real-time policies could starve the host (see setpriority
     * below for what stays allowed). */
    SYS_sched_setscheduler, SYS_sched_setparam, SYS_sched_setattr, SYS_ioprio_set,
#ifdef SYS_open_tree
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
#endif
#ifdef SYS_mount_setattr
    SYS_mount_setattr,
#endif
#ifdef SYS_pidfd_getfd
    SYS_pidfd_getfd,
#endif
#ifdef SYS_process_madvise
    SYS_process_madvise,
#endif
#ifdef SYS_quotactl_fd
    SYS_quotactl_fd,
#endif
};

/* Denied with ENOSYS: callers are expected to fall back (glibc's clone3 -> clone; libuv's io_uring
 * -> its thread pool). */
static const int tm_seccomp_enosys[] = {
#ifdef SYS_clone3
    SYS_clone3,
#endif
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
#endif
};

/* Denied with EPERM by the lockdown filter only (the launcher still needs them once). */
static const int tm_seccomp_exec[] = { SYS_execve, SYS_execveat };

#define TM_NS_FLAGS (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | \
                     CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME)
#define TM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
/* Upper bound of the program length: fixed part + 2 per listed call. */
#define TM_SECCOMP_MAX_INSNS \
    (23 + 2 * (TM_ARRAY_LEN(tm_seccomp_denied) + TM_ARRAY_LEN(tm_seccomp_enosys) + TM_ARRAY_LEN(tm_seccomp_exec)))

/* tm_seccomp_build writes the filter into out (room for TM_SECCOMP_MAX_INSNS) and returns its
 * length. deny_exec adds execve/execveat. */
static inline unsigned short tm_seccomp_build(struct sock_filter *out, int deny_exec) {
    unsigned short n = 0;
#define TM_EMIT(c_, t_, f_, k_) (out[n].code = (unsigned short)(c_), out[n].jt = (unsigned char)(t_), \
                                 out[n].jf = (unsigned char)(f_), out[n].k = (unsigned int)(k_), n++)
#define TM_DENY(nr, err) do { TM_EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, (nr)); \
                              TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | ((err) & SECCOMP_RET_DATA)); } while (0)
    size_t i;
    /* Architecture: anything but x86_64 is killed (its numbers mean other calls). */
    TM_EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, arch));
    TM_EMIT(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, AUDIT_ARCH_X86_64);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_KILL_PROCESS);
    TM_EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, nr));
    /* x32 system calls (bit 30) reach the same handlers under other numbers. */
    TM_EMIT(BPF_JMP | BPF_JGE | BPF_K, 0, 1, 0x40000000u);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
    /* setpriority: only PRIO_PROCESS (a pid of its own pid namespace: its own threads; never
     * PRIO_USER, which would reach every owner running under the same uid) and only nice values
     * 0..19 (a negative value is a large unsigned number). The isolate addon moves a slot thread
     * between nice +10 (preparing) and 0 (running a job); where the owner keeps CAP_SYS_NICE for
     * that (teemate-confine), this is all it can do with it. */
    TM_EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 6, SYS_setpriority);
    TM_EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, args[0]));
    TM_EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0 /* PRIO_PROCESS */);
    TM_EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, args[2])); /* low 32 bits */
    TM_EMIT(BPF_JMP | BPF_JGT | BPF_K, 1, 0, 19);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
    for (i = 0; i < TM_ARRAY_LEN(tm_seccomp_denied); i++) TM_DENY(tm_seccomp_denied[i], EPERM);
    for (i = 0; i < TM_ARRAY_LEN(tm_seccomp_enosys); i++) TM_DENY(tm_seccomp_enosys[i], ENOSYS);
    if (deny_exec)
        for (i = 0; i < TM_ARRAY_LEN(tm_seccomp_exec); i++) TM_DENY(tm_seccomp_exec[i], EPERM);
    /* clone: only threads (CLONE_THREAD), never with a namespace flag. */
    TM_EMIT(BPF_JMP | BPF_JEQ | BPF_K, 0, 5, SYS_clone);
    TM_EMIT(BPF_LD | BPF_W | BPF_ABS, 0, 0, offsetof(struct seccomp_data, args[0])); /* low 32 bits */
    TM_EMIT(BPF_JMP | BPF_JSET | BPF_K, 2, 0, TM_NS_FLAGS);
    TM_EMIT(BPF_JMP | BPF_JSET | BPF_K, 0, 1, CLONE_THREAD);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ERRNO | EPERM);
    TM_EMIT(BPF_RET | BPF_K, 0, 0, SECCOMP_RET_ALLOW);
#undef TM_DENY
#undef TM_EMIT
    return n;
}

#endif
