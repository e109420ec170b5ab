/*
 * teemate-confine: starts one enclave owner (the shared Node runtime) confined. Untrusted host side:
 * it is started by the invoker (package confine) and is replaced by the owner (execve), so nothing of
 * it runs next to the tenants' code.
 *
 * The invoker starts it as root in fresh mount, pid, ipc, uts and network namespaces
 * (SysProcAttr.Cloneflags); it must be pid 1 of its pid namespace. Steps, each failing with
 * "teemate-confine: <step>: <reason>" on stderr and exit status 125:
 *
 *   1. make every mount private (nothing propagates back to the host);
 *   2. build a new root on a tmpfs at --root: read-only binds of the system runtime (/usr, /etc and
 *      the /bin, /sbin, /lib* directories or their merged-/usr symlinks), /etc/shadow and
 *      /etc/gshadow masked, each --ro path read-only and each --rw path writable at the same path as
 *      on the host, a minimal /dev (null zero full random urandom), a fresh /proc of the new pid
 *      namespace (its /proc/sys read-only), a private size-bounded tmpfs on /tmp owned by the owner
 *      with the activations' scratch directory /tmp/scratch in it (no bound path may lie inside);
 *      writable mounts are nosuid, nodev, noexec;
 *   3. pivot_root into it, detach the host's root, make / read-only;
 *   4. set the host name, bring loopback up, add an "unreachable" route for each --deny-addr (the
 *      host's own addresses: pasta's NAT would otherwise reach the host's services bound to them);
 *   5. lock the securebits, empty the bounding and ambient capability sets, drop supplementary
 *      groups, switch to --uid/--gid (which empties the other sets), set the parent-death signal
 *      again (SIGKILL; the switch cleared it), clear the inheritable set;
 *   6. no_new_privs, then the seccomp filter of seccomp_policy.h (execve still allowed);
 *   7. close every descriptor above 2 and exec the program with the environment as given.
 *
 * Usage: teemate-confine --root DIR --uid N --gid N [--tmp-size MB] [--hostname NAME]
 *                        [--ro PATH]... [--rw PATH]... [--deny-addr IP]... -- PROGRAM [ARG]...
 * PROGRAM is an absolute path (there is no PATH search). Static, so it needs nothing from the
 * new root itself.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_policy.h"

#define MAX_PATHS  64
#define SCRATCH    "/tmp/scratch"
#define EXIT_SETUP 125

extern char **environ;

static const char *step = "arguments";

static void die(const char *fmt, ...)
{
	int e = errno;
	va_list ap;
	fprintf(stderr, "teemate-confine: %s: ", step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (e)
		fprintf(stderr, ": %s", strerror(e));
	fputc('\n', stderr);
	exit(EXIT_SETUP);
}

static void usage(const char *why)
{
	errno = 0;
	die("%s (usage: teemate-confine --root DIR --uid N --gid N [--tmp-size MB] [--hostname NAME] "
	    "[--ro PATH]... [--rw PATH]... [--deny-addr IP]... -- PROGRAM [ARG]...)",
	    why);
}

static long number(const char *s, long lo, long hi, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < lo || v > hi) {
		errno = 0;
		die("bad %s %s", what, s);
	}
	return v;
}

/* join writes root + path into buf. */
static void join(char *buf, const char *root, const char *path)
{
	if (snprintf(buf, PATH_MAX, "%s%s", root, path) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		die("%s%s", root, path);
	}
}

/* mkdirs creates dir and its parents (mode 0755); existing ones are fine. */
static void mkdirs(const char *dir)
{
	char p[PATH_MAX];
	snprintf(p, sizeof p, "%s", dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) && errno != EEXIST)
			die("mkdir %s", p);
		*s = '/';
	}
	if (mkdir(p, 0755) && errno != EEXIST)
		die("mkdir %s", p);
}

/* bind_path mounts the host path src at root+src (same path inside), read-only unless rw. Mount points
 * that do not exist yet are created (a file for a file). Writable mounts are noexec: nothing written
 * there at run time is ever executed or mapped as code. */
static void bind_path(const char *root, const char *src, int rw)
{
	char dst[PATH_MAX];
	struct stat st;
	if (src[0] != '/') {
		errno = EINVAL;
		die("path %s is not absolute", src);
	}
	if (!strncmp(src, SCRATCH, strlen(SCRATCH)) &&
	    (src[strlen(SCRATCH)] == '/' || src[strlen(SCRATCH)] == '\0')) {
		errno = EINVAL;
		die("path %s would be inside the scratch directory %s", src, SCRATCH);
	}
	if (stat(src, &st))
		die("stat %s", src);
	join(dst, root, src);
	struct stat dt;
	if (stat(dst, &dt) != 0) { /* not visible yet through another bind: make the mount point */
		if (S_ISDIR(st.st_mode)) {
			mkdirs(dst);
		} else {
			char parent[PATH_MAX];
			snprintf(parent, sizeof parent, "%s", dst);
			*strrchr(parent, '/') = '\0';
			mkdirs(parent);
			int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0444);
			if (fd < 0)
				die("create mount point %s", dst);
			close(fd);
		}
	}
	if (mount(src, dst, NULL, MS_BIND, NULL))
		die("bind %s", src);
	unsigned long fl =
		MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | (rw ? MS_NOEXEC : MS_RDONLY);
	if (mount(NULL, dst, NULL, fl, NULL))
		die("remount %s %s", src, rw ? "nosuid,nodev,noexec" : "read-only");
}

/* system copies /usr, /etc and the top-level program and library directories: merged-/usr
 * symlinks stay symlinks, real directories become read-only binds, missing ones are skipped. */
static void system_runtime(const char *root)
{
	static const char *const dirs[] = { "/usr", "/etc",   "/bin",   "/sbin",
					    "/lib", "/lib32", "/lib64", "/libx32" };
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		struct stat st;
		char dst[PATH_MAX];
		if (lstat(dirs[i], &st)) {
			if (errno == ENOENT)
				continue;
			die("lstat %s", dirs[i]);
		}
		join(dst, root, dirs[i]);
		if (S_ISLNK(st.st_mode)) {
			char target[PATH_MAX];
			ssize_t n = readlink(dirs[i], target, sizeof target - 1);
			if (n < 0)
				die("readlink %s", dirs[i]);
			target[n] = '\0';
			if (symlink(target, dst))
				die("symlink %s", dst);
		} else if (S_ISDIR(st.st_mode)) {
			bind_path(root, dirs[i], 0);
		}
	}
	/* Unreadable to the owner's uid anyway; masked so no capability or group slip exposes them. */
	static const char *const masked[] = { "/etc/shadow", "/etc/gshadow", "/etc/shadow-",
					      "/etc/gshadow-" };
	char devnull[PATH_MAX];
	join(devnull, root, "/dev/null");
	for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
		char dst[PATH_MAX];
		join(dst, root, masked[i]);
		if (access(dst, F_OK))
			continue;
		if (mount(devnull, dst, NULL, MS_BIND, NULL))
			die("mask %s", masked[i]);
	}
}

static void devices(const char *root)
{
	char dev[PATH_MAX];
	join(dev, root, "/dev");
	mkdirs(dev);
	if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"))
		die("mount /dev tmpfs");
	static const char *const nodes[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random",
					     "/dev/urandom" };
	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		char dst[PATH_MAX];
		join(dst, root, nodes[i]);
		int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
		if (fd < 0)
			die("create %s", dst);
		close(fd);
		if (mount(nodes[i], dst, NULL, MS_BIND, NULL))
			die("bind %s", nodes[i]);
		if (mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC, NULL))
			die("remount %s", nodes[i]);
	}
	static const char *const links[][2] = {
		{ "/proc/self/fd", "/dev/fd" },
		{ "/proc/self/fd/0", "/dev/stdin" },
		{ "/proc/self/fd/1", "/dev/stdout" },
		{ "/proc/self/fd/2", "/dev/stderr" },
	};
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		char dst[PATH_MAX];
		join(dst, root, links[i][1]);
		if (symlink(links[i][0], dst))
			die("symlink %s", dst);
	}
	if (mount(NULL, dev, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL))
		die("remount /dev read-only");
}

static void proc_and_tmp(const char *root, long uid, long gid, long tmp_mb)
{
	char p[PATH_MAX], opts[128];
	join(p, root, "/proc");
	mkdirs(p);
	/* A procfs of the new pid namespace: the owner sees itself, never the host's processes. */
	if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("mount /proc");
	join(p, root, "/proc/sys");
	if (mount(p, p, NULL, MS_BIND | MS_REC, NULL))
		die("bind /proc/sys");
	if (mount(NULL, p, NULL,
		  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		die("remount /proc/sys read-only");
	join(p, root, "/tmp");
	mkdirs(p);
	snprintf(opts, sizeof opts, "mode=0700,uid=%ld,gid=%ld,size=%ldm", uid, gid, tmp_mb);
	if (mount("tmpfs", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts))
		die("mount /tmp tmpfs (%s)", opts);
	/* The activations' scratch: a directory of its own, so that nothing else (a state directory
     * under the host's /tmp is bound under /tmp too) is ever inside it. */
	join(p, root, SCRATCH);
	if (mkdir(p, 0700))
		die("mkdir %s", SCRATCH);
	if (chown(p, uid, gid))
		die("chown %s", SCRATCH);
}

static void enter_root(const char *root)
{
	if (chdir(root))
		die("chdir %s", root);
	/* pivot_root(".", "."): the old root ends up on top of the new one and is detached at once. */
	if (syscall(SYS_pivot_root, ".", "."))
		die("pivot_root %s", root);
	if (umount2(".", MNT_DETACH))
		die("detach the host root");
	if (chdir("/"))
		die("chdir /");
	if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL))
		die("remount / read-only");
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		die("socket");
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr))
		die("get lo flags");
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr))
		die("set lo up");
	close(s);
}

/* deny_route adds an "unreachable" route for one host address (IPv4 or IPv6, a single address) in
 * the owner's network namespace. The host's own addresses are reached through pasta's NAT like any
 * other destination, and services the host binds to all addresses (0.0.0.0) answer there; these
 * routes make every one of them unreachable from the owner (EHOSTUNREACH). The address pasta gives
 * the namespace itself (the host's primary one) stays local: local routes are looked up first. */
static void deny_route(const char *addr)
{
	struct {
		struct nlmsghdr nh;
		struct rtmsg rt;
		char attrs[64];
	} req;
	unsigned char bin[16];
	int family = AF_INET, len = 4;
	if (inet_pton(AF_INET, addr, bin) != 1) {
		family = AF_INET6;
		len = 16;
		if (inet_pton(AF_INET6, addr, bin) != 1) {
			errno = EINVAL;
			die("deny address %s", addr);
		}
	}
	memset(&req, 0, sizeof req);
	req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
	req.nh.nlmsg_type = RTM_NEWROUTE;
	req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK;
	req.rt.rtm_family = family;
	req.rt.rtm_dst_len = len * 8;
	req.rt.rtm_table = RT_TABLE_MAIN;
	req.rt.rtm_protocol = RTPROT_STATIC;
	req.rt.rtm_scope = RT_SCOPE_UNIVERSE;
	req.rt.rtm_type = RTN_UNREACHABLE;
	struct rtattr *a = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.nh.nlmsg_len));
	a->rta_type = RTA_DST;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), bin, len);
	req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(a->rta_len);

	int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	if (s < 0)
		die("netlink socket");
	struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
	if (sendto(s, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
		die("send route for %s", addr);
	char buf[512];
	ssize_t n = recv(s, buf, sizeof buf, 0);
	if (n < 0)
		die("netlink answer for %s", addr);
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	if (n < (ssize_t)sizeof *h || h->nlmsg_type != NLMSG_ERROR) {
		errno = EPROTO;
		die("netlink answer for %s", addr);
	}
	int err = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
	if (err && err != -EEXIST) {
		errno = -err;
		die("unreachable route for %s", addr);
	}
	close(s);
}

/* The isolate addon prepares environments at nice +10 and runs activations back at the owner's
 * own nice value, so that preparation yields to the requests in flight; going back needs either
 * RLIMIT_NICE or CAP_SYS_NICE. nice_by_rlimit allows it through RLIMIT_NICE (no capability), up to
 * the nice value the owner starts with and never above; it returns 0 where raising that limit is
 * not possible (no CAP_SYS_RESOURCE, as in some containers): the caller then keeps CAP_SYS_NICE as
 * the owner's only capability, and the seccomp policy narrows it to setpriority of its own threads
 * within nice 0..19 (no PRIO_USER, no real-time scheduling). */
static int nice_by_rlimit(void)
{
	step = "nice limit";
	errno = 0;
	int base = getpriority(PRIO_PROCESS, 0);
	if (errno)
		die("getpriority");
	struct rlimit lim = { (rlim_t)(20 - base), (rlim_t)(20 - base) };
	if (setrlimit(RLIMIT_NICE, &lim) == 0)
		return 1;
	if (errno != EPERM)
		die("setrlimit");
	fprintf(stderr,
		"teemate-confine: RLIMIT_NICE cannot be raised here (no CAP_SYS_RESOURCE): the owner "
		"keeps CAP_SYS_NICE alone, narrowed by seccomp to nice 0..19 of its own threads\n");
	return 0;
}

static void drop_privileges(long uid, long gid)
{
	const int keep_nice = !nice_by_rlimit();
	step = "securebits";
	/* No way back to privilege through uid 0 semantics, even if something set uid 0 again. */
	unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
			     SECBIT_KEEP_CAPS_LOCKED;
	if (keep_nice)
		bits |= SECBIT_KEEP_CAPS; /* the permitted set survives the uid switch; exec clears the bit */
	else
		bits |= SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
	if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0))
		die("set");
	step = "capability bounding set";
	for (int cap = 0; cap <= 63; cap++) {
		if (keep_nice && cap == CAP_SYS_NICE)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			die("drop %d", cap);
		}
	}
	step = "ambient capabilities";
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))
		die("clear");
	step = "groups";
	if (setgroups(0, NULL))
		die("setgroups");
	if (setresgid(gid, gid, gid))
		die("setresgid %ld", gid);
	step = "uid";
	if (setresuid(uid, uid, uid))
		die("setresuid %ld", uid);
	step = "parent death signal";
	/* The uid switch cleared the one the invoker set (Pdeathsig): the owner dies with the invoker. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0))
		die("set");
	step = "capabilities";
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	memset(d, 0, sizeof d);
	if (keep_nice)
		d[0].permitted = d[0].effective = d[0].inheritable = 1u << CAP_SYS_NICE;
	if (syscall(SYS_capset, &h, d))
		die(keep_nice ? "keep CAP_SYS_NICE alone" : "clear all sets");
	/* Ambient, so that it survives the exec of node (an unprivileged binary). The ambient set can
     * only ever hold what is both permitted and inheritable: CAP_SYS_NICE and nothing else. */
	if (keep_nice && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_NICE, 0, 0))
		die("raise ambient CAP_SYS_NICE");
}

static void seccomp_filter(void)
{
	step = "no_new_privs";
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		die("set");
	step = "seccomp";
	struct sock_filter insns[TM_SECCOMP_MAX_INSNS];
	struct sock_fprog prog = { tm_seccomp_build(insns, 0), insns };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog))
		die("install filter");
}

int main(int argc, char **argv)
{
	const char *root = NULL, *hostname = "teemate-owner";
	const char *ro[MAX_PATHS], *rw[MAX_PATHS], *deny[MAX_PATHS];
	int nro = 0, nrw = 0, ndeny = 0;
	long uid = -1, gid = -1, tmp_mb = 64;
	int i;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			usage("missing value");
		const char *v = argv[++i];
		if (!strcmp(a, "--root"))
			root = v;
		else if (!strcmp(a, "--uid"))
			uid = number(v, 1, 0x7ffffffe, "uid");
		else if (!strcmp(a, "--gid"))
			gid = number(v, 1, 0x7ffffffe, "gid");
		else if (!strcmp(a, "--tmp-size"))
			tmp_mb = number(v, 1, 1 << 20, "tmp size");
		else if (!strcmp(a, "--hostname"))
			hostname = v;
		else if (!strcmp(a, "--ro") && nro < MAX_PATHS)
			ro[nro++] = v;
		else if (!strcmp(a, "--rw") && nrw < MAX_PATHS)
			rw[nrw++] = v;
		else if (!strcmp(a, "--deny-addr") && ndeny < MAX_PATHS)
			deny[ndeny++] = v;
		else
			usage(a);
	}
	if (!root || uid < 0 || gid < 0 || i >= argc)
		usage("--root, --uid, --gid and a program are required");
	if (argv[i][0] != '/')
		usage("the program must be an absolute path");
	if (root[0] != '/')
		usage("--root must be an absolute path");

	step = "pid namespace";
	if (getpid() != 1) {
		errno = 0;
		die("not pid 1 of a new pid namespace (start with CLONE_NEWPID and the other namespace flags)");
	}
	step = "mount namespace";
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		die("make all mounts private");
	step = "new root";
	mkdirs(root);
	if (mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m"))
		die("mount tmpfs on %s", root);
	devices(root); /* first: /etc's masks bind /dev/null */
	system_runtime(root);
	/* /tmp before the paths: a state directory under the host's /tmp must stay visible on top. */
	step = "/proc and /tmp";
	proc_and_tmp(root, uid, gid, tmp_mb);
	step = "read-only paths";
	for (int k = 0; k < nro; k++)
		bind_path(root, ro[k], 0);
	step = "writable paths";
	for (int k = 0; k < nrw; k++)
		bind_path(root, rw[k], 1);
	step = "pivot_root";
	enter_root(root);
	step = "hostname";
	if (sethostname(hostname, strlen(hostname)))
		die("sethostname");
	step = "loopback";
	loopback_up();
	step = "deny routes";
	for (int k = 0; k < ndeny; k++)
		deny_route(deny[k]);
	drop_privileges(uid, gid);
	seccomp_filter();
	step = "close descriptors";
	if (syscall(SYS_close_range, 3, ~0U, 0))
		die("close_range");
	step = "exec";
	execve(argv[i], argv + i, environ);
	die("%s", argv[i]);
	return EXIT_SETUP;
}
