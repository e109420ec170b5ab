/*
 * teemate-launch: the container init of the oci sandbox's "teemate-launch" runtime (see package
 * oci, launch.go). It runs on the untrusted host side and becomes the sandbox's pid 1.
 *
 * The invoker starts it already inside new mount, pid, ipc, uts and network namespaces (one
 * clone) and puts it into the container's cgroups before it is released. From the plan on its
 * command line, which the invoker derives from the container's config.json, it builds the
 * container's filesystem (the image's root bound read-only, /proc, /dev, /sys, /tmp, the slot,
 * masked and read-only paths), pivots into it, brings up the loopback interface and sets the
 * hostname. It then sets the rlimits, uid and gid, narrows the capabilities to the plan's set
 * (bounding, permitted, effective; inheritable and ambient empty), sets no_new_privs and loads
 * the seccomp filter, reports ready on descriptor 4 and waits there, confined. When the invoker
 * writes one byte (the container is started), it execs the process, which keeps pid 1. With -S,
 * the process is the command the container's start configuration names (read after the start
 * byte, when the invoker has written it into the slot; startconf.h, shared with the start stub),
 * so the sandbox's command is exec'd once, not the stub first. An end of file instead of the
 * byte (the container is discarded) ends it quietly.
 *
 * Plan (one argv item each; a tag, then the tag's fixed number of items):
 *   teemate-launch/1                      format tag, first
 *   -r ROOT                               host path of the root filesystem
 *   -h HOSTNAME
 *   -m DEST TYPE SOURCE FLAGS PROP DATA   a mount: FLAGS and PROP are mount(2) flags in hex
 *                                         (PROP applied after, e.g. MS_SLAVE|MS_REC); for a bind
 *                                         FLAGS beyond MS_BIND|MS_REC are set by a remount
 *   -M PATH                               a masked path (tmpfs over a directory, /dev/null
 *                                         over a file)
 *   -R PATH                               a read-only path
 *   -o                                    remount the root read-only
 *   -l RESOURCE SOFT HARD                 an rlimit (decimal; RESOURCE as in setrlimit(2))
 *   -u UID GID
 *   -c CAPS                               capabilities kept, a hex bit mask
 *   -n                                    set no_new_privs
 *   -s FILTER                             seccomp filter: struct sock_filter array in hex
 *   -d CWD
 *   -e NAME=VALUE                         an environment entry
 *   -S CONF                               run what the start configuration CONF (a guest
 *                                         path) names, with its working directory and
 *                                         environment, instead of the process, -d and -e
 *   -- PATH ARGS...                       the process: executable path, then its argv
 *
 * Descriptor 3 (the action proxy's listening socket) is left as it is, for the stub; with -S
 * it is kept open across the exec and announced as TEEMATE_PROXY_FD=3, as the stub does. Errors
 * go to standard error (the container's stderr pipe) with exit status 125 before the ready
 * report and 126 after it; a fault of the start configuration has the stub's codes (125
 * malformed, 126 cannot execute, 127 unreadable or no such command).
 *
 * Build: musl-gcc (or gcc) -static -O2 (shim/Makefile).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
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
#include <sys/sysmacros.h>
#include <unistd.h>

#define FORMAT_TAG    "teemate-launch/1"
#define SYNC_FD       4
#define MAX_ITEMS     256
#define MAX_FILTER    4096 /* instructions; the kernel's BPF_MAXINSNS */
#define MAX_PATH      4096
#define EXIT_SETUP    125
#define EXIT_START    126
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

struct mnt {
	const char *dest, *type, *source, *data;
	unsigned long flags, prop;
};

struct rlim {
	int resource;
	struct rlimit lim;
};

struct plan {
	const char *root, *hostname, *cwd;
	struct mnt mounts[MAX_ITEMS];
	int nmounts;
	const char *masked[MAX_ITEMS];
	int nmasked;
	const char *readonly[MAX_ITEMS];
	int nreadonly;
	int root_ro, nnp;
	struct rlim rlimits[MAX_ITEMS];
	int nrlimits;
	uid_t uid;
	gid_t gid;
	unsigned long long caps;
	struct sock_filter *filter;
	unsigned short nfilter;
	char *env[MAX_ITEMS + 1];
	int nenv;
	char *path;
	char **argv;
	const char *startconf; /* -S */
};

static int exit_code = EXIT_SETUP;

static void say(const char *a, const char *b, const char *c)
{
	const char *const parts[] = { "teemate-launch: ", a, b, c, "\n" };

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		const char *s = parts[i];
		size_t n = s ? strlen(s) : 0;

		while (n > 0) {
			ssize_t w = write(2, s, n);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return; /* nowhere left to report to */
			s += w;
			n -= (size_t)w;
		}
	}
}

static void die(const char *a, const char *b, const char *c)
{
	say(a, b, c);
	_exit(exit_code);
}

static void startconf_die(int code, const char *a, const char *b, const char *c)
{
	say(a, b, c);
	_exit(code);
}

#include "../start/startconf.h"

/* fail reports a failed system call on what, with errno's text. */
static void fail(const char *step, const char *what)
{
	const char *e = strerror(errno);

	say(step, what, "");
	die("  error: ", e, "");
}

static unsigned long long hex(const char *s, const char *what)
{
	char *end;

	errno = 0;
	unsigned long long v = strtoull(s, &end, 16);

	if (errno || !*s || *end)
		die("malformed plan: ", what, s);
	return v;
}

static long long dec(const char *s, const char *what)
{
	char *end;

	errno = 0;
	long long v = strtoll(s, &end, 10);

	if (errno || !*s || *end)
		die("malformed plan: ", what, s);
	return v;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* seccomp_filter decodes the hex of a struct sock_filter array (host byte order). */
static void seccomp_filter(struct plan *p, const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n % (2 * sizeof(struct sock_filter)) != 0 ||
	    n / (2 * sizeof(struct sock_filter)) > MAX_FILTER)
		die("malformed plan: ", "seccomp filter length", "");
	unsigned char *b = malloc(n / 2);

	if (!b)
		die("out of memory", "", "");
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			die("malformed plan: ", "seccomp filter is not lower-case hex", "");
		b[i] = (unsigned char)(hi << 4 | lo);
	}
	p->filter = (struct sock_filter *)b;
	p->nfilter = (unsigned short)(n / 2 / sizeof(struct sock_filter));
}

/* need returns the items a tag takes, or dies when the plan ends before them. */
static char **need(int *i, int argc, char **argv, int n, const char *tag)
{
	if (*i + n >= argc)
		die("malformed plan: ", tag, " is missing items");
	char **items = &argv[*i + 1];

	*i += n;
	return items;
}

static void parse(struct plan *p, int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], FORMAT_TAG) != 0)
		die("usage: teemate-launch " FORMAT_TAG " PLAN... (started by the invoker)", "",
		    "");
	for (int i = 2; i < argc; i++) {
		const char *t = argv[i];
		char **v;

		if (strcmp(t, "--") == 0) {
			if (i + 1 >= argc)
				die("malformed plan: ", "no process", "");
			p->path = argv[i + 1];
			p->argv = &argv[i + 2];
			if (!p->argv[0])
				die("malformed plan: ", "the process has no argv", "");
			break;
		}
		if (strcmp(t, "-o") == 0) {
			p->root_ro = 1;
			continue;
		}
		if (strcmp(t, "-n") == 0) {
			p->nnp = 1;
			continue;
		}
		if (strcmp(t, "-r") == 0) {
			p->root = need(&i, argc, argv, 1, t)[0];
		} else if (strcmp(t, "-h") == 0) {
			p->hostname = need(&i, argc, argv, 1, t)[0];
		} else if (strcmp(t, "-d") == 0) {
			p->cwd = need(&i, argc, argv, 1, t)[0];
		} else if (strcmp(t, "-m") == 0) {
			v = need(&i, argc, argv, 6, t);
			if (p->nmounts == MAX_ITEMS)
				die("malformed plan: ", "too many mounts", "");
			struct mnt *m = &p->mounts[p->nmounts++];

			m->dest = v[0];
			m->type = v[1];
			m->source = v[2];
			m->flags = hex(v[3], "mount flags ");
			m->prop = hex(v[4], "mount propagation ");
			m->data = v[5];
			if (m->dest[0] != '/')
				die("malformed plan: ", "mount destination is not absolute: ",
				    m->dest);
		} else if (strcmp(t, "-M") == 0 || strcmp(t, "-R") == 0) {
			const char **list = t[1] == 'M' ? p->masked : p->readonly;
			int *n = t[1] == 'M' ? &p->nmasked : &p->nreadonly;

			if (*n == MAX_ITEMS)
				die("malformed plan: ", "too many paths for ", t);
			list[(*n)++] = need(&i, argc, argv, 1, t)[0];
		} else if (strcmp(t, "-l") == 0) {
			v = need(&i, argc, argv, 3, t);
			if (p->nrlimits == MAX_ITEMS)
				die("malformed plan: ", "too many rlimits", "");
			struct rlim *r = &p->rlimits[p->nrlimits++];

			r->resource = (int)dec(v[0], "rlimit ");
			r->lim.rlim_cur = (rlim_t)dec(v[1], "rlimit soft ");
			r->lim.rlim_max = (rlim_t)dec(v[2], "rlimit hard ");
		} else if (strcmp(t, "-u") == 0) {
			v = need(&i, argc, argv, 2, t);
			p->uid = (uid_t)dec(v[0], "uid ");
			p->gid = (gid_t)dec(v[1], "gid ");
		} else if (strcmp(t, "-c") == 0) {
			p->caps = hex(need(&i, argc, argv, 1, t)[0], "capabilities ");
		} else if (strcmp(t, "-s") == 0) {
			seccomp_filter(p, need(&i, argc, argv, 1, t)[0]);
		} else if (strcmp(t, "-S") == 0) {
			p->startconf = need(&i, argc, argv, 1, t)[0];
			if (p->startconf[0] != '/')
				die("malformed plan: ", "the start configuration is not absolute: ",
				    p->startconf);
		} else if (strcmp(t, "-e") == 0) {
			if (p->nenv == MAX_ITEMS)
				die("malformed plan: ", "too many environment entries", "");
			p->env[p->nenv++] = need(&i, argc, argv, 1, t)[0];
		} else {
			die("malformed plan: unknown item ", t, "");
		}
	}
	if (!p->root || p->root[0] != '/' || !p->path || !p->cwd)
		die("malformed plan: ", "root, cwd and process are required", "");
}

/*
 * open_in_root opens the directory at the guest path dest below rootfd (O_PATH), one component
 * at a time, making the missing ones. The mounts are made before the pivot, when a path in the
 * image is still resolved against the host's root: a symbolic link in the image (/run -> /etc)
 * would lead a mount, or the directories made for it, out of the root. So a component that is
 * a symbolic link, or "..", is refused (RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH), with the path
 * in the error; the sandbox's mount targets are plain directories in every image we build.
 */
static const char symlink_refused[] =
	": a symbolic link or not a directory in the image (refused: it could lead out of the root)";

static int open_in_root(int rootfd, const char *dest)
{
	char buf[MAX_PATH];
	size_t n = strlen(dest);
	int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);

	if (n >= sizeof(buf))
		die("path too long: ", dest, "");
	if (fd < 0)
		fail("duplicate the root descriptor for ", dest);
	memcpy(buf, dest, n + 1);
	for (char *c = strtok(buf, "/"); c; c = strtok(NULL, "/")) {
		struct open_how how = {
			.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
		};
		long next;

		if (strcmp(c, ".") == 0)
			continue;
		if (strcmp(c, "..") == 0)
			die("mount target ", dest, ": \"..\" is refused");
		next = syscall(SYS_openat2, fd, c, &how, sizeof(how));
		if (next < 0 && errno == ENOENT) {
			if (mkdirat(fd, c, 0755) != 0 && errno != EEXIST)
				fail("mkdir for the mount target ", dest);
			next = syscall(SYS_openat2, fd, c, &how, sizeof(how));
		}
		if (next < 0 && (errno == ELOOP || errno == ENOTDIR || errno == EXDEV))
			die("mount target ", dest, symlink_refused);
		if (next < 0)
			fail("open the mount target ", dest);
		close(fd);
		fd = (int)next;
	}
	return fd;
}

/* fd_path names an open descriptor for the calls that take a path (mount(2)). */
static const char *fd_path(char *buf, size_t size, int fd)
{
	int n = snprintf(buf, size, "/proc/self/fd/%d", fd);

	if (n < 0 || (size_t)n >= size)
		die("descriptor path too long", "", "");
	return buf;
}

/*
 * mount_one mounts m at its target below the root, found by open_in_root. The mount goes onto
 * the descriptor's directory; a remount or a propagation change then needs the new mount
 * itself, so the target is opened again (the same walk, now ending on the mount's root).
 */
static void mount_one(int rootfd, const struct mnt *m)
{
	char target[64];
	int fd = open_in_root(rootfd, m->dest);

	fd_path(target, sizeof(target), fd);
	if (m->flags & MS_BIND) {
		if (mount(m->source, target, NULL, m->flags & (MS_BIND | MS_REC), NULL) != 0)
			fail("bind mount at ", m->dest);
	} else if (mount(m->source, target, m->type, m->flags, m->data[0] ? m->data : NULL) != 0) {
		fail("mount at ", m->dest);
	}
	close(fd);
	unsigned long rest = m->flags & MS_BIND ? m->flags & ~(MS_BIND | MS_REC) : 0;

	if (!rest && !m->prop)
		return;
	fd = open_in_root(rootfd, m->dest);
	fd_path(target, sizeof(target), fd);
	if (rest && mount(NULL, target, NULL, MS_BIND | MS_REMOUNT | rest, NULL) != 0)
		fail("remount the bind mount at ", m->dest);
	if (m->prop && mount(NULL, target, NULL, m->prop, NULL) != 0)
		fail("set the propagation of ", m->dest);
	close(fd);
}

/* The devices every container has (runc's defaults): the /dev tmpfs gets them as nodes. */
static const struct {
	const char *name;
	unsigned int major, minor;
} devices[] = {
	{ "null", 1, 3 },   { "zero", 1, 5 },    { "full", 1, 7 },
	{ "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
};

static const struct {
	const char *target, *name;
} dev_links[] = {
	{ "/proc/self/fd", "fd" },       { "/proc/self/fd/0", "stdin" },
	{ "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
	{ "pts/ptmx", "ptmx" },
};

/* make_devices fills the container's new /dev tmpfs (opened as the mount is, below the root). */
static void make_devices(int rootfd)
{
	int dev = open_in_root(rootfd, "/dev");
	mode_t old = umask(0);

	for (size_t i = 0; i < ARRAY_SIZE(devices); i++) {
		if (mknodat(dev, devices[i].name, S_IFCHR | 0666,
			    makedev(devices[i].major, devices[i].minor)) != 0 &&
		    errno != EEXIST)
			fail("mknod /dev/", devices[i].name);
	}
	umask(old);
	for (size_t i = 0; i < ARRAY_SIZE(dev_links); i++) {
		if (symlinkat(dev_links[i].target, dev, dev_links[i].name) != 0 && errno != EEXIST)
			fail("symlink /dev/", dev_links[i].name);
	}
	close(dev);
}

static void mask(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		if (errno == ENOENT)
			return;
		fail("stat the masked path ", path);
	}
	if (S_ISDIR(st.st_mode)) {
		if (mount("tmpfs", path, "tmpfs", MS_RDONLY, NULL) != 0)
			fail("cover the masked path ", path);
	} else if (mount("/dev/null", path, NULL, MS_BIND, NULL) != 0) {
		fail("cover the masked path ", path);
	}
}

static void read_only(const char *path)
{
	if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) != 0) {
		if (errno == ENOENT)
			return;
		fail("bind the read-only path ", path);
	}
	if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
		fail("remount read-only ", path);
}

static void loopback_up(void)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr;

	if (s < 0)
		fail("socket for ", "lo");
	memset(&ifr, 0, sizeof(ifr));
	strcpy(ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0)
		fail("read the flags of ", "lo");
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0)
		fail("bring up ", "lo");
	close(s);
}

/* build_root makes the container's filesystem and enters it. */
static void build_root(const struct plan *p)
{
	/* rslave: mounts the host makes below the slot propagate in, none of ours go out. */
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0)
		fail("make the mounts slaves", "");
	if (mount(p->root, p->root, NULL, MS_BIND | MS_REC, NULL) != 0)
		fail("bind the root ", p->root);
	/* Opened after the bind: the walks below start on the bind mount, not what it covers. */
	int rootfd = open(p->root, O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (rootfd < 0)
		fail("open the root ", p->root);
	for (int i = 0; i < p->nmounts; i++) {
		mount_one(rootfd, &p->mounts[i]);
		if (strcmp(p->mounts[i].dest, "/dev") == 0)
			make_devices(rootfd);
	}
	close(rootfd);
	if (chdir(p->root) != 0)
		fail("enter the root ", p->root);
	/* pivot_root(".", "."): the old root ends up on top of the new one and is detached. */
	if (syscall(SYS_pivot_root, ".", ".") != 0)
		fail("pivot_root into ", p->root);
	if (umount2(".", MNT_DETACH) != 0)
		fail("detach the old root", "");
	if (chdir("/") != 0)
		fail("enter /", "");
	for (int i = 0; i < p->nmasked; i++)
		mask(p->masked[i]);
	for (int i = 0; i < p->nreadonly; i++)
		read_only(p->readonly[i]);
	if (p->root_ro && mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0)
		fail("remount the root read-only", "");
	if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) != 0)
		fail("set the hostname ", p->hostname);
	loopback_up();
}

/* wait_start reports ready and waits for the start byte; an end of file ends the container. */
static void wait_start(void)
{
	char c = 'R';

	while (write(SYNC_FD, &c, 1) != 1)
		if (errno != EINTR)
			fail("report ready", "");
	for (;;) {
		ssize_t n = read(SYNC_FD, &c, 1);

		if (n == 1)
			break;
		if (n == 0)
			_exit(0); /* discarded before it was started */
		if (errno != EINTR)
			fail("wait for the start", "");
	}
	exit_code = EXIT_START;
	if (close(SYNC_FD) != 0)
		fail("close the start descriptor", "");
}

static void set_caps(unsigned long long keep)
{
	for (int cap = 0; cap <= 63; cap++) {
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
			if (errno == EINVAL)
				break; /* past the kernel's last capability */
			fail("drop a capability from the bounding set", "");
		}
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
		fail("clear the ambient capabilities", "");
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	memset(d, 0, sizeof(d));
	for (int i = 0; i < 2; i++) {
		d[i].effective = (unsigned int)(keep >> (32 * i));
		d[i].permitted = d[i].effective;
	}
	if (syscall(SYS_capset, &h, d) != 0)
		fail("set the capabilities", "");
}

/*
 * confine drops to the plan's credentials, limits and filter. It runs before the ready report, so
 * a pooled container waits for its start already confined, and its start has only the exec left
 * to do (the filter alone cost 0.2 ms of an activation's path here).
 */
static void confine(const struct plan *p)
{
	for (int i = 0; i < p->nrlimits; i++)
		if (setrlimit(p->rlimits[i].resource, &p->rlimits[i].lim) != 0)
			fail("setrlimit", "");
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0)
		fail("keep the capabilities across setuid", "");
	if (setgroups(0, NULL) != 0 || setresgid(p->gid, p->gid, p->gid) != 0 ||
	    setresuid(p->uid, p->uid, p->uid) != 0)
		fail("set the uid and gid", "");
	set_caps(p->caps);
	if (p->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail("set no_new_privs", "");
	if (!p->startconf && chdir(p->cwd) != 0)
		fail("enter the working directory ", p->cwd);
	/*
	 * Last: the filter may forbid what the steps above need (never the report, the wait or
	 * the exec: it denies only what no sandboxed process needs).
	 */
	if (p->filter) {
		struct sock_fprog prog = { p->nfilter, p->filter };

		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
			fail("load the seccomp filter", "");
	}
}

/* start execs the process, or with c the command c names. */
static void start(const struct plan *p, const struct startconf *c)
{
	if (c) {
		/* As the stub would: under the filter, with its codes. */
		startconf_chdir(c);
		startconf_exec(c);
	}
	execve(p->path, p->argv, p->env);
	fail("exec ", p->path);
}

int main(int argc, char **argv)
{
	static struct plan p;

	parse(&p, argc, argv);
	p.env[p.nenv] = NULL;
	if (fcntl(SYNC_FD, F_SETFD, FD_CLOEXEC) != 0)
		die("descriptor 4 is not the invoker's start socket", "", "");
	build_root(&p);
	confine(&p);
	wait_start();
	if (p.startconf) {
		static struct startconf c;
		/* Before the configuration is opened: that open must not be mistaken for 3. */
		int proxy = startconf_proxy_fd();

		startconf_file = p.startconf;
		startconf_load(&c, proxy);
		start(&p, &c);
	}
	start(&p, NULL);
	return 0;
}
