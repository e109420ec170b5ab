/*
 * teemate-crun: runs Debian's crun on a hybrid cgroup host (see package oci, doc.go, "crun"). It
 * runs on the untrusted host side, in place of crun, with crun's arguments.
 *
 * crun 1.8 refuses a host whose cgroup v2 hierarchy is mounted at /sys/fs/cgroup/unified beside
 * the v1 controllers ("cgroups in hybrid mode not supported"). This wrapper gives crun a mount
 * namespace of its own without that mount, where crun sees a plain cgroup v1 host: a private
 * namespace (slave of the host's, so the bind mounts the invoker makes in a container's slot
 * still propagate into the container), the unified mount detached, then exec crun (found on
 * PATH). Nothing else changes: crun's state directory and the containers' cgroups are the
 * host's.
 *
 * Exit status 125 when the namespace cannot be set up, 127 when crun cannot be executed;
 * otherwise crun's.
 *
 * Build: gcc -static -O2 (shim/Makefile).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#define UNIFIED       "/sys/fs/cgroup/unified"
/* ARRAY_SIZE is the element count of an array (not of a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static void die(int code, const char *what)
{
	const char *e = strerror(errno);
	const char *const parts[] = { "teemate-crun: ", what, ": ", e, "\n" };

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
		if (write(2, parts[i], strlen(parts[i])) < 0)
			break; /* nowhere left to report to */
	_exit(code);
}

int main(int argc, char **argv)
{
	(void)argc;
	if (unshare(CLONE_NEWNS) != 0)
		die(125, "unshare the mount namespace");
	if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) != 0)
		die(125, "make the mounts slaves");
	if (umount2(UNIFIED, MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT)
		die(125, "detach " UNIFIED);
	argv[0] = "crun";
	execvp("crun", argv);
	die(127, "exec crun");
	return 127;
}
