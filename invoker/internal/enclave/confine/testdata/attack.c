/*
 * attack: what native code in a confined owner (an escape from a V8 isolate, simulated) tries
 * against the host. Run by attack_test.go through the same launcher and namespaces as an owner,
 * in place of node. One line per attempt on stdout: "<id>\t<observed>", where observed is
 * "refused: <errno name>" or "ALLOWED: <detail>" or, for facts, the value.
 *
 * Usage: attack SECRET_FILE STATE_DIR HOST_PID VICTIM_PID REFUSED_PORT HOST_ADDR EXTRA_ADDR HOST_ADDR_PORT ALLOWED_PORT
 * Waits for one line on stdin before the network attempts (the test attaches pasta first).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <dirent.h>
#include <unistd.h>

#include "seccomp_policy.h"

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EACCES: return "EACCES";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case EINVAL: return "EINVAL";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ENETUNREACH: return "ENETUNREACH";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case EBADF: return "EBADF";
    default: return strerrorname_np(e) ? strerrorname_np(e) : "errno?";
    }
}

/* result reports a call that must fail: r < 0 is "refused: ERRNO", anything else ALLOWED. */
static void result(const char *id, long r, int e) {
    if (r < 0) printf("%s\trefused: %s\n", id, ename(e));
    else printf("%s\tALLOWED: returned %ld\n", id, r);
    fflush(stdout);
}

#define TRY(id, call) do { errno = 0; long r_ = (long)(call); result(id, r_, errno); } while (0)

static void read_file(const char *id, const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { result(id, -1, errno); return; }
    char buf[256];
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n < 0) result(id, -1, e);
    else if (n == 0) { printf("%s\trefused: masked (opens, reads 0 bytes)\n", id); fflush(stdout); }
    else { printf("%s\tALLOWED: read %zd bytes\n", id, n); fflush(stdout); }
}

static void write_file(const char *id, const char *path, int expect_ok) {
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { result(id, -1, errno); return; }
    ssize_t n = write(fd, "x", 1);
    close(fd);
    unlink(path);
    printf("%s\t%s: wrote %zd byte\n", id, expect_ok ? "allowed (expected)" : "ALLOWED", n);
    fflush(stdout);
}

static void tcp(const char *id, const char *addr, int port, int expect_ok) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) { result(id, -1, errno); return; }
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, addr, &sa.sin_addr);
    struct timeval tv = { 2, 0 };
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int r = connect(s, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    if (r == 0) {
        /* pasta accepts first and connects out afterwards: a refused forward shows as EOF. */
        char c;
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(s, &c, 1, 0);
        if (n == 1) printf("%s\t%s: connected, server spoke\n", id, expect_ok ? "allowed (expected)" : "ALLOWED");
        else printf("%s\trefused: connection closed without data\n", id);
    } else {
        printf("%s\trefused: %s\n", id, ename(e));
    }
    fflush(stdout);
    close(s);
}

static void status_field(const char *name) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t n = strlen(name);
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, name, n) && line[n] == ':') {
            char *v = line + n + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = '\0';
            for (char *p = v; *p; p++) if (*p == '\t') *p = ' ';
            printf("status %s\t%s\n", name, v);
        }
    }
    if (f) fclose(f);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 10) { fprintf(stderr, "usage: see attack.c\n"); return 2; }
    const char *secret = argv[1], *state = argv[2];
    int host_pid = atoi(argv[3]), victim = atoi(argv[4]), refused_port = atoi(argv[5]);
    const char *host_addr = argv[6], *extra_addr = argv[7];
    int host_addr_port = atoi(argv[8]), allowed_port = atoi(argv[9]);
    char path[512];

    const char *fields[] = { "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp" };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) status_field(fields[i]);

    read_file("read /etc/shadow", "/etc/shadow");
    read_file("read a secret in the platform's data dir", secret);
    write_file("write to / (the new root)", "/teemate-attack", 0);
    write_file("write to /etc", "/etc/teemate-attack", 0);
    write_file("write to /usr/bin", "/usr/bin/teemate-attack", 0);
    snprintf(path, sizeof path, "%s/attack-probe", state);
    write_file("write to its own state dir", path, 1);
    write_file("write to its private /tmp", "/tmp/attack-probe", 1);
    write_file("write to its scratch dir /tmp/scratch", "/tmp/scratch/attack-probe", 1);

    snprintf(path, sizeof path, "/proc/%d/environ", host_pid);
    read_file("read /proc/<invoker pid>/environ", path);
    snprintf(path, sizeof path, "/proc/%d/mem", victim);
    read_file("read /proc/<host pid>/mem", path);
    {
        int n = 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) if (de->d_name[0] >= '0' && de->d_name[0] <= '9') n++;
        if (d) closedir(d);
        printf("processes visible in /proc\t%d (itself only)\n", n);
        fflush(stdout);
    }
    TRY("ptrace attach to a host pid", ptrace(PTRACE_ATTACH, victim, 0, 0));
    TRY("ptrace attach to itself (pid 1)", ptrace(PTRACE_ATTACH, 1, 0, 0));
    {
        char buf[8];
        struct iovec l = { buf, sizeof buf }, r = { (void *)0x400000, sizeof buf };
        TRY("process_vm_readv of a host pid", process_vm_readv(victim, &l, 1, &r, 1, 0));
    }
    TRY("kill a host pid (SIGKILL)", kill(victim, SIGKILL));
    TRY("kill -1 (every process it can see)", kill(-1, 0) < 0 ? -1 : 0);
    TRY("mount a tmpfs", mount("none", "/tmp", "tmpfs", 0, NULL));
    TRY("umount /proc", umount2("/proc", MNT_DETACH));
    TRY("chroot", chroot("/tmp"));
    TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    TRY("unshare a user namespace", unshare(CLONE_NEWUSER));
    TRY("unshare a mount namespace", unshare(CLONE_NEWNS));
    {
        int fd = open("/proc/1/ns/net", O_RDONLY | O_CLOEXEC);
        TRY("setns into a network namespace", setns(fd, 0));
        if (fd >= 0) close(fd);
    }
    TRY("setuid(0)", setuid(0));
    TRY("setgid(0)", setgid(0));
    /* Scheduling: its own threads may move between nice 0 and 19 (the isolate addon's background
     * preparation), nothing more. */
    {
        int ok = setpriority(PRIO_PROCESS, 0, 10) == 0 && setpriority(PRIO_PROCESS, 0, 0) == 0;
        printf("setpriority of itself to nice 10 and back to 0\t%s\n", ok ? "allowed (expected)" : "FAILED (the addon's background priority is unusable)");
        fflush(stdout);
    }
    TRY("setpriority to nice -5 (above the host's default)", setpriority(PRIO_PROCESS, 0, -5));
    TRY("setpriority of every process of its uid (PRIO_USER)", setpriority(PRIO_USER, getuid(), 19));
    TRY("setpriority of a host pid", setpriority(PRIO_PROCESS, victim, 19));
    {
        struct sched_param sp = { .sched_priority = 1 };
        TRY("sched_setscheduler SCHED_FIFO (real time)", sched_setscheduler(0, SCHED_FIFO, &sp));
    }
    {
        errno = 0;
        pid_t p = fork();
        if (p == 0) _exit(0);
        if (p > 0) waitpid(p, NULL, 0);
        result("fork", p, errno);
    }
    TRY("clone3", syscall(SYS_clone3, NULL, 0));
    TRY("clone with CLONE_NEWNET", syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
    TRY("init_module", syscall(SYS_init_module, NULL, 0, ""));
    TRY("finit_module", syscall(SYS_finit_module, 0, "", 0));
    TRY("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
    TRY("bpf", syscall(SYS_bpf, 0, NULL, 0));
    TRY("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    TRY("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0));
    TRY("userfaultfd", syscall(SYS_userfaultfd, 0));
    TRY("io_uring_setup", syscall(SYS_io_uring_setup, 1, NULL));
    TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, 0));
    TRY("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, NULL));
    TRY("iopl", syscall(SYS_iopl, 3));
    TRY("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    TRY("swapoff", syscall(SYS_swapoff, "/"));
    TRY("acct", syscall(SYS_acct, NULL));

    /* The lockdown filter (lockdown.cc installs the same, from the same header). */
    {
        struct sock_filter insns[TM_SECCOMP_MAX_INSNS];
        struct sock_fprog prog = { tm_seccomp_build(insns, 1), insns };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog)) {
            printf("install the lockdown filter\tFAILED: %s\n", ename(errno));
        }
        char *av[] = { "/bin/sh", "-c", "true", NULL };
        char *ev[] = { NULL };
        TRY("execve /bin/sh after lockdown", execve("/bin/sh", av, ev));
        TRY("execveat after lockdown", syscall(SYS_execveat, AT_FDCWD, "/bin/sh", av, ev, 0));
    }

    /* Network: the test attaches pasta, then says go. */
    char go[8];
    if (!fgets(go, sizeof go, stdin)) return 3;
    tcp("connect to a listener on the host's 127.0.0.1", "127.0.0.1", refused_port, 0);
    tcp("connect to a host service on all addresses via the host's primary address", host_addr, host_addr_port, 0);
    tcp("connect to a host service on all addresses via another host address", extra_addr, host_addr_port, 0);
    if (allowed_port > 0) tcp("connect to an allow-listed host port via 127.0.0.1", "127.0.0.1", allowed_port, 1);
    return 0;
}
