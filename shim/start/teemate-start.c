/*
 * teemate-start: the first process of every pooled OCI container (see package oci, doc.go). It
 * runs inside the sandbox, on the untrusted host side.
 *
 * A pooled container is created long before anyone knows which activation it will serve, so its
 * real command and environment cannot be in config.json. When the container is started, this
 * stub reads them from the per-use file the invoker wrote into the container's slot directory and
 * replaces itself with the real command (execve: the command keeps pid 1, nothing is left of the
 * stub). It is a small static C program because it sits on every activation's critical path: it
 * must cost next to nothing to start.
 *
 * The start configuration (written by oci.startConfig.encode) is a sequence of NUL-terminated
 * fields, nothing before, between or after them:
 *
 *   teemate-start/1        format tag
 *   <path>                 absolute path of the executable to exec (no PATH search here)
 *   <cwd>                  absolute working directory
 *   <argc>                 decimal, 1..4096
 *   <argv[0]> ... <argv[argc-1]>
 *   <envc>                 decimal, 0..4096
 *   <env[0]> ... <env[envc-1]>   each NAME=value with a non-empty NAME
 *
 * The action proxy's socket: when the container was created with a listening socket as
 * descriptor 3, the stub keeps it open across the exec (clears FD_CLOEXEC) and sets
 * TEEMATE_PROXY_FD=3 in the command's environment (replacing any given value), so the action
 * proxy accepts on it instead of binding a socket of its own. Without such a descriptor the
 * environment is passed as given.
 *
 * Usage: teemate-start [config]   (default /run/teemate/start.conf)
 * Exit status when the command could not be started, with a message on standard error:
 *   125  the configuration is malformed, or its working directory is unusable
 *   126  the command could not be executed
 *   127  the configuration could not be read, or the command does not exist
 *
 * The reading is startconf.h's, shared with teemate-launch's container init, which runs the
 * configured command itself (no stub exec) when the container is made by that launcher.
 *
 * Build: musl-gcc (or gcc) -static -O2 (shim/Makefile).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <unistd.h>

/* ARRAY_SIZE is the element count of an array (not of a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* say writes the pieces to standard error; stdio is not linked in, to keep the stub small. */
static void say(const char *a, const char *b, const char *c)
{
	const char *const parts[] = { "teemate-start: ", a, b, c, "\n" };

	for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
		size_t n = parts[i] ? strlen(parts[i]) : 0;
		const char *s = parts[i];

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

static void startconf_die(int code, const char *a, const char *b, const char *c)
{
	say(a, b, c);
	_exit(code);
}

#include "startconf.h"

int main(int argc, char **argv)
{
	struct startconf c;

	if (argc > 2)
		startconf_die(STARTCONF_MALFORMED, "usage: teemate-start [config]", "", "");
	if (argc == 2)
		startconf_file = argv[1];
	/* Before the configuration is opened: that open must not be mistaken for descriptor 3. */
	int proxy = startconf_proxy_fd();

	startconf_load(&c, proxy);
	startconf_chdir(&c);
	startconf_exec(&c);
	return 0;
}
