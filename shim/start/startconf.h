/*
 * startconf.h: reading a pooled container's start configuration (format: teemate-start.c's
 * header comment; writer: package startconf). Shared by the start stub, teemate-start, and by
 * teemate-launch's container init, which runs the configured command itself and so saves the
 * stub's exec on every activation. Header-only, static functions: each program is one file.
 *
 * The includer defines, before including this file:
 *   static void startconf_die(int code, const char *a, const char *b, const char *c);
 * which reports a, b and c on standard error and exits with code (never returns).
 */
#ifndef TEEMATE_STARTCONF_H
#define TEEMATE_STARTCONF_H

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define STARTCONF_PATH       "/run/teemate/start.conf"
#define STARTCONF_TAG        "teemate-start/1"
#define STARTCONF_MAX        (1 << 20) /* bytes; the encoder refuses more */
#define STARTCONF_MAX_ITEMS  4096      /* per list (argv, env) */
#define STARTCONF_PROXY_FD   3
#define STARTCONF_PROXY_NAME "TEEMATE_PROXY_FD="
#define STARTCONF_PROXY_ENV  STARTCONF_PROXY_NAME "3"

enum { STARTCONF_MALFORMED = 125, STARTCONF_CANNOT_EXEC = 126, STARTCONF_UNREADABLE = 127 };

static void startconf_die(int code, const char *a, const char *b, const char *c);

/* The command a start configuration names. */
struct startconf {
	char *path, *cwd;
	char **argv, **env;
};

static const char *startconf_file = STARTCONF_PATH;

static void startconf_malformed(const char *what)
{
	startconf_die(STARTCONF_MALFORMED, "malformed start configuration ", startconf_file, what);
}

/* The buffer startconf_read reads into, when startconf_prepare made it ahead. */
static char *startconf_buf;

/*
 * startconf_prepare allocates the read's buffer and faults in its first pages, for an includer
 * that reads the file only later (a prestarted shim): the read then costs no new memory. On this
 * VM each first touch of a page costs tens of microseconds, on the activation's path otherwise.
 */
static __attribute__((unused)) void startconf_prepare(void)
{
	startconf_buf = malloc(STARTCONF_MAX + 1);
	if (startconf_buf)
		for (size_t i = 0; i < (16u << 10); i += 4096)
			((volatile char *)startconf_buf)[i] = 0;
}

/* startconf_read reads the whole file into a NUL-terminated buffer; *len excludes that NUL. */
static char *startconf_read(size_t *len)
{
	int fd = open(startconf_file, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		startconf_die(STARTCONF_UNREADABLE, "read the start configuration ", startconf_file,
			      errno == ENOENT ? ": no such file" : ": cannot open it");
	char *buf = startconf_buf ? startconf_buf : malloc(STARTCONF_MAX + 1);

	if (!buf)
		startconf_die(STARTCONF_UNREADABLE, "read the start configuration ", startconf_file,
			      ": out of memory");
	size_t n = 0;

	for (;;) {
		ssize_t r = read(fd, buf + n, STARTCONF_MAX + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			startconf_die(STARTCONF_UNREADABLE, "read the start configuration ",
				      startconf_file, ": read error");
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > STARTCONF_MAX)
			startconf_malformed(": larger than 1 MiB");
	}
	close(fd);
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* startconf_next returns the field at *p and moves *p past its NUL, or reports a truncated file. */
static char *startconf_next(char **p, char *end, const char *what)
{
	if (*p >= end)
		startconf_malformed(what);
	char *nul = memchr(*p, '\0', (size_t)(end - *p));

	if (!nul)
		startconf_malformed(what);
	char *field = *p;
	*p = nul + 1;
	return field;
}

/* startconf_count parses a decimal count: digits only, no sign, no leading zero, min..max. */
static long startconf_count(const char *s, long min, long max, const char *what)
{
	if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
		startconf_malformed(what);
	long v = 0;

	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			startconf_malformed(what);
		v = v * 10 + (*c - '0');
		if (v > max)
			startconf_malformed(what);
	}
	if (v < min)
		startconf_malformed(what);
	return v;
}

/*
 * startconf_proxy_fd tells whether descriptor 3 is a listening socket (the action proxy's), and
 * makes it survive the exec. Call it before anything else opens a descriptor.
 */
static int startconf_proxy_fd(void)
{
	int flags = fcntl(STARTCONF_PROXY_FD, F_GETFD);

	if (flags < 0)
		return 0;
	int listening = 0;
	socklen_t l = sizeof(listening);

	if (getsockopt(STARTCONF_PROXY_FD, SOL_SOCKET, SO_ACCEPTCONN, &listening, &l) != 0 ||
	    !listening)
		return 0;
	if ((flags & FD_CLOEXEC) && fcntl(STARTCONF_PROXY_FD, F_SETFD, flags & ~FD_CLOEXEC) != 0)
		startconf_die(STARTCONF_CANNOT_EXEC,
			      "cannot keep the proxy socket open across exec", "", "");
	return 1;
}

/*
 * startconf_load reads and checks startconf_file into c. proxy says descriptor 3 is the proxy's
 * listening socket: TEEMATE_PROXY_FD=3 then replaces any value the file gives. Any fault ends the
 * process through startconf_die, before anything runs.
 */
static void startconf_load(struct startconf *c, int proxy)
{
	size_t len;
	char *buf = startconf_read(&len);
	char *p = buf, *end = buf + len;

	if (strcmp(startconf_next(&p, end, ": not a " STARTCONF_TAG " file"), STARTCONF_TAG) != 0)
		startconf_malformed(": not a " STARTCONF_TAG " file");
	c->path = startconf_next(&p, end, ": no command path");
	c->cwd = startconf_next(&p, end, ": no working directory");
	if (c->path[0] != '/')
		startconf_malformed(": the command path is not absolute");
	if (c->cwd[0] != '/')
		startconf_malformed(": the working directory is not absolute");
	long nargs = startconf_count(startconf_next(&p, end, ": no argument count"), 1,
				     STARTCONF_MAX_ITEMS, ": bad argument count");

	c->argv = calloc((size_t)nargs + 1, sizeof(*c->argv));
	if (!c->argv)
		startconf_die(STARTCONF_MALFORMED, "out of memory", "", "");
	for (long i = 0; i < nargs; i++)
		c->argv[i] = startconf_next(&p, end, ": fewer arguments than counted");
	long nenv = startconf_count(startconf_next(&p, end, ": no environment count"), 0,
				    STARTCONF_MAX_ITEMS, ": bad environment count");

	c->env = calloc((size_t)nenv + 2, sizeof(*c->env));
	if (!c->env)
		startconf_die(STARTCONF_MALFORMED, "out of memory", "", "");
	long k = 0;

	for (long i = 0; i < nenv; i++) {
		char *e = startconf_next(&p, end, ": fewer environment entries than counted");
		char *eq = strchr(e, '=');

		if (!eq || eq == e)
			startconf_malformed(": an environment entry is not NAME=value");
		if (proxy &&
		    strncmp(e, STARTCONF_PROXY_NAME, sizeof(STARTCONF_PROXY_NAME) - 1) == 0)
			continue; /* replaced below by the descriptor that is really there */
		c->env[k++] = e;
	}
	if (p != end)
		startconf_malformed(": trailing bytes after the environment");
	if (proxy)
		c->env[k++] = STARTCONF_PROXY_ENV;
	c->env[k] = NULL;
}

/* startconf_chdir enters the command's working directory. */
static void startconf_chdir(const struct startconf *c)
{
	if (chdir(c->cwd) != 0)
		startconf_die(STARTCONF_MALFORMED, "working directory ", c->cwd,
			      errno == ENOENT ? ": no such directory" : ": cannot enter it");
}

/*
 * startconf_exec execs the command; it returns only to report why it could not. (Unused in a
 * prestarted shim, which takes the configuration for itself.)
 */
static __attribute__((unused)) void startconf_exec(const struct startconf *c)
{
	execve(c->path, c->argv, c->env);
	int e = errno;

	startconf_die(e == ENOENT ? STARTCONF_UNREADABLE : STARTCONF_CANNOT_EXEC, "exec ", c->path,
		      e == ENOENT ? ": no such file" : ": cannot execute");
}

#endif
