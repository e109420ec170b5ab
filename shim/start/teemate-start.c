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
 * Build: gcc -static -O2 -o teemate-start teemate-start.c (deploy/images/build.sh).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DEFAULT_CONFIG "/run/teemate/start.conf"
#define FORMAT_TAG     "teemate-start/1"
#define MAX_CONFIG     (1 << 20) /* bytes; the encoder refuses more */
#define MAX_ITEMS      4096      /* per list (argv, env) */
#define PROXY_FD       3
#define PROXY_ENV_NAME "TEEMATE_PROXY_FD="
#define PROXY_ENV      PROXY_ENV_NAME "3"

/* ARRAY_SIZE is the element count of an array (not of a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

enum { EXIT_MALFORMED = 125, EXIT_CANNOT_EXEC = 126, EXIT_UNREADABLE = 127 };

static const char *config_path = DEFAULT_CONFIG;

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

static void die(int code, const char *a, const char *b, const char *c)
{
	say(a, b, c);
	_exit(code);
}

static void die_malformed(const char *what)
{
	die(EXIT_MALFORMED, "malformed start configuration ", config_path, what);
}

/* read_config reads the whole file into a NUL-terminated buffer; *len excludes that NUL. */
static char *read_config(size_t *len)
{
	int fd = open(config_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		die(EXIT_UNREADABLE, "read the start configuration ", config_path,
		    errno == ENOENT ? ": no such file" : ": cannot open it");
	char *buf = malloc(MAX_CONFIG + 1);

	if (!buf)
		die(EXIT_UNREADABLE, "read the start configuration ", config_path,
		    ": out of memory");
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, MAX_CONFIG + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die(EXIT_UNREADABLE, "read the start configuration ", config_path,
			    ": read error");
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > MAX_CONFIG)
			die_malformed(": larger than 1 MiB");
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* next returns the field at *p and moves *p past its NUL, or reports a truncated file. */
static char *next(char **p, char *end, const char *what)
{
	if (*p >= end)
		die(EXIT_MALFORMED, "malformed start configuration ", config_path, what);
	char *nul = memchr(*p, '\0', (size_t)(end - *p));

	if (!nul)
		die(EXIT_MALFORMED, "malformed start configuration ", config_path, what);
	char *field = *p;
	*p = nul + 1;
	return field;
}

/* count parses a decimal count: digits only, no sign, no leading zero, at most max. */
static long count(const char *s, long min, long max, const char *what)
{
	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		die_malformed(what);
	long v = 0;

	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			die_malformed(what);
		v = v * 10 + (*c - '0');
		if (v > max)
			die_malformed(what);
	}
	if (v < min)
		die_malformed(what);
	return v;
}

/* proxy_fd_listening tells whether descriptor 3 is a listening socket, and makes it survive exec. */
static int proxy_fd_listening(void)
{
	int flags = fcntl(PROXY_FD, F_GETFD);

	if (flags < 0)
		return 0;
	int listening = 0;
	socklen_t l = sizeof(listening);

	if (getsockopt(PROXY_FD, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0 || !listening)
		return 0;
	if ((flags & FD_CLOEXEC) && fcntl(PROXY_FD, F_SETFD, flags & ~FD_CLOEXEC) != 0)
		die(EXIT_CANNOT_EXEC, "cannot keep the proxy socket open across exec", "", "");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc > 2)
		die(EXIT_MALFORMED, "usage: teemate-start [config]", "", "");
	if (argc == 2)
		config_path = argv[1];
	/* Before the configuration is opened: that open must not be mistaken for descriptor 3. */
	int proxy = proxy_fd_listening();

	size_t len;
	char *buf = read_config(&len);
	char *p = buf, *end = buf + len;

	if (strcmp(next(&p, end, ": not a " FORMAT_TAG " file"), FORMAT_TAG) != 0)
		die_malformed(": not a " FORMAT_TAG " file");
	char *path = next(&p, end, ": no command path");
	char *cwd = next(&p, end, ": no working directory");

	if (path[0] != '/')
		die_malformed(": the command path is not absolute");
	if (cwd[0] != '/')
		die_malformed(": the working directory is not absolute");
	long nargs =
		count(next(&p, end, ": no argument count"), 1, MAX_ITEMS, ": bad argument count");
	char **args = calloc((size_t)nargs + 1, sizeof(*args));

	if (!args)
		die(EXIT_MALFORMED, "out of memory", "", "");
	for (long i = 0; i < nargs; i++)
		args[i] = next(&p, end, ": fewer arguments than counted");
	long nenv = count(next(&p, end, ": no environment count"), 0, MAX_ITEMS,
			  ": bad environment count");
	char **env = calloc((size_t)nenv + 2, sizeof(*env));

	if (!env)
		die(EXIT_MALFORMED, "out of memory", "", "");
	long k = 0;

	for (long i = 0; i < nenv; i++) {
		char *e = next(&p, end, ": fewer environment entries than counted");
		char *eq = strchr(e, '=');

		if (!eq || eq == e)
			die_malformed(": an environment entry is not NAME=value");
		if (proxy && strncmp(e, PROXY_ENV_NAME, sizeof(PROXY_ENV_NAME) - 1) == 0)
			continue; /* replaced below by the descriptor that is really there */
		env[k++] = e;
	}
	if (p != end)
		die_malformed(": trailing bytes after the environment");
	if (proxy)
		env[k++] = PROXY_ENV;
	env[k] = NULL;

	if (chdir(cwd) != 0)
		die(EXIT_MALFORMED, "working directory ", cwd,
		    errno == ENOENT ? ": no such directory" : ": cannot enter it");
	execve(path, args, env);
	int e = errno;

	die(e == ENOENT ? EXIT_UNREADABLE : EXIT_CANNOT_EXEC, "exec ", path,
	    e == ENOENT ? ": no such file" : ": cannot execute");
	return 0;
}
