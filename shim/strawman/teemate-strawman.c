/*
 * teemate-strawman: the start of a strawman sandbox ("one enclave per container", the model the
 * TeeMate paper compares against). It boots the sandbox's own enclave runtime, waits until the
 * runtime's gate answers a ping, and then becomes the shim (exec), pointed at that gate.
 *
 *   teemate-strawman SHIM RUNTIME [ARG...]
 *
 * TEEMATE_GATE names the runtime's gate socket (the runtime's --socket); TEEMATE_TIMEOUT_MS (the
 * action's time limit) plus a grace of 5 s bounds the wait. The rest of the environment is the
 * shim's. When the runtime exits early or its gate stays silent, the shim is started all the same
 * with TEEMATE_START_ERROR, the reason with the tail of the runtime's output, and answers /init
 * with that as a platform (gate) failure. The boot time goes to the shim in TEEMATE_BOOT_MS.
 *
 * The runtime stays in the sandbox's process group, so a sandbox destroyed by a signal to its
 * group takes it along, and it gets SIGKILL when its parent (this process, then the shim) exits,
 * so it lives exactly as long as the sandbox's one activation.
 *
 * It runs on the untrusted host side, inside the sandbox; static, like the shim.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../json/json.h"
#include "../shim/wire.h"

#define GRACE_MS   5000
#define TAIL_BYTES 4096

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* io waits up to ms for fd to be ready for ev; 0 when ready. */
static int io(int fd, short ev, int ms)
{
	struct pollfd pf = { .fd = fd, .events = ev };
	int r;

	do
		r = poll(&pf, 1, ms);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		errno = ETIMEDOUT;
	return r == 1 ? 0 : -1;
}

static int read_full(int fd, char *p, size_t n, int ms)
{
	while (n > 0) {
		if (io(fd, POLLIN, ms))
			return -1;
		ssize_t r = read(fd, p, n);

		if (r == 0) {
			errno = ECONNRESET;
			return -1;
		}
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -1;
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* ping_gate asks the gate for its health (PROTOCOL.md, "ping"); 0 when it answers pong. On failure why
 * says what went wrong.
 */
static int ping_gate(const char *gate, int ms, char *why, size_t whyn)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	if (strlen(gate) >= sizeof(sa.sun_path)) {
		snprintf(why, whyn, "gate socket path too long");
		return -1;
	}
	strcpy(sa.sun_path, gate);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(why, whyn, "connect %s: %s", gate, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	static const char req[] = "\0\0\0\x0f{\"type\":\"ping\"}";
	char hdr[4], body[4096];
	int rc = -1;

	if (io(fd, POLLOUT, ms) ||
	    send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(req) - 1)) {
		snprintf(why, whyn, "send ping: %s", strerror(errno));
		goto out;
	}
	if (read_full(fd, hdr, 4, ms)) {
		snprintf(why, whyn, "read pong: %s", strerror(errno));
		goto out;
	}
	uint32_t n = ((uint32_t)(unsigned char)hdr[0] << 24) |
		     ((uint32_t)(unsigned char)hdr[1] << 16) |
		     ((uint32_t)(unsigned char)hdr[2] << 8) | (unsigned char)hdr[3];
	if (n == 0 || n > sizeof(body)) {
		snprintf(why, whyn, "pong frame of %u bytes (at most %zu expected)", n,
			 sizeof(body));
		goto out;
	}
	if (read_full(fd, body, n, ms)) {
		snprintf(why, whyn, "read pong: %s", strerror(errno));
		goto out;
	}
	size_t vs, ve;
	char err[160];

	if (json_scan(body, n, 0, &vs, &ve, err, sizeof(err)) != JSON_OK ||
	    json_type(body + vs) != JT_OBJECT) {
		snprintf(why, whyn, "the gate's answer to ping is not a JSON object");
		goto out;
	}
	struct jiter it;
	const char *k, *v;
	size_t kn, vn;

	jiter_begin(&it, body + vs, ve - vs);
	while (jobj_next(&it, &k, &kn, &v, &vn))
		if (kn == 6 && memcmp(k, "\"type\"", 6) == 0)
			rc = vn == 6 && memcmp(v, "\"pong\"", 6) == 0 ? 0 : -1;
	if (rc)
		snprintf(why, whyn, "the gate answered ping with something other than pong");
out:
	close(fd);
	return rc;
}

/* tail returns the last TAIL_BYTES of the runtime's output, trimmed, in a static buffer. */
static const char *tail(int out)
{
	static char b[TAIL_BYTES + 1];
	off_t end = lseek(out, 0, SEEK_END);
	off_t from = end > TAIL_BYTES ? end - TAIL_BYTES : 0;
	ssize_t n = end > 0 ? pread(out, b, (size_t)(end - from), from) : 0;

	if (n < 0)
		n = 0;
	b[n] = 0;
	for (ssize_t i = 0; i < n; i++)
		if (b[i] == 0)
			b[i] = ' ';
	while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == ' ' || b[n - 1] == '\r'))
		b[--n] = 0;
	return n ? b : "(no output)";
}

static void exec_shim(const char *shim)
{
	char *const argv[] = { (char *)shim, NULL };

	execv(shim, argv);
	fprintf(stderr, "teemate-strawman: exec %s: %s\n", shim, strerror(errno));
	_exit(1);
}

/* fail hands the reason to the shim, which reports it at /init. */
static void fail(const char *shim, const char *fmt, const char *a, const char *b)
{
	char msg[TAIL_BYTES + 1024];

	snprintf(msg, sizeof(msg), fmt, a, b);
	setenv("TEEMATE_START_ERROR", msg, 1);
	exec_shim(shim);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: teemate-strawman SHIM RUNTIME [ARG...]\n");
		return 2;
	}
	const char *shim = argv[1];
	const char *gate = getenv("TEEMATE_GATE");

	if (!gate || !*gate) {
		fprintf(stderr, "teemate-strawman: TEEMATE_GATE must be set\n");
		return 2;
	}
	long long limit = 60000;
	const char *tv = getenv("TEEMATE_TIMEOUT_MS");

	if (tv && *tv) {
		char *e;

		limit = strtoll(tv, &e, 10);
		if (*e || limit < 1 || limit > 24ll * 3600 * 1000) {
			fprintf(stderr,
				"teemate-strawman: TEEMATE_TIMEOUT_MS=%s: want an integer from 1 to %lld\n",
				tv, 24ll * 3600 * 1000);
			return 2;
		}
	}
	/* The runtime's output is kept for the error text only; a memory file never fills up like a
	 * pipe nobody reads once the shim runs.
	 */
	int out = memfd_create("strawman-runtime-output", MFD_CLOEXEC);

	if (out < 0) {
		fprintf(stderr, "teemate-strawman: memfd_create: %s\n", strerror(errno));
		return 1;
	}
	int64_t t0 = now_ms();
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		fail(shim, "fork %s: %s", argv[2], strerror(errno));
	if (pid == 0) {
		/* Killed when the shim (this process after exec) exits; the race with an early exit of
		 * the parent is closed by the check that follows.
		 */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(1);
		dup2(out, 1);
		dup2(out, 2);
		/* The proxy listener belongs to the shim. */
		const char *pfd = getenv("TEEMATE_PROXY_FD");

		if (pfd && *pfd)
			close(atoi(pfd));
		/* Host settings that slow Node down or leak host configuration. */
		unsetenv("NODE_EXTRA_CA_CERTS");
		unsetenv("NODE_OPTIONS");
		execv(argv[2], argv + 2);
		dprintf(2, "exec %s: %s\n", argv[2], strerror(errno));
		_exit(127);
	}
	int64_t deadline = t0 + limit + GRACE_MS;
	int delay_ms = 1;
	char why[512] = "";

	for (;;) {
		int64_t left = deadline - now_ms();

		if (ping_gate(gate, left < 1000 ? (left > 0 ? (int)left : 1) : 1000, why,
			      sizeof(why)) == 0)
			break;
		int st;

		if (waitpid(pid, &st, WNOHANG) == pid) {
			char how[64];

			if (WIFEXITED(st))
				snprintf(how, sizeof(how), "exited with status %d",
					 WEXITSTATUS(st));
			else
				snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(st));
			char head[1024];

			snprintf(head, sizeof(head), "%s %s before its gate answered", argv[2],
				 how);
			fail(shim, "%s; its output: %s", head, tail(out));
		}
		if (now_ms() >= deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			char head[1024];

			snprintf(head, sizeof(head), "gate %s did not answer within %lld ms (%s)",
				 gate, limit + GRACE_MS, why);
			fail(shim, "%s; the runtime's output: %s", head, tail(out));
		}
		usleep((useconds_t)delay_ms * 1000);
		delay_ms = delay_ms * 2 > 20 ? 20 : delay_ms * 2;
	}
	char boot[32];

	snprintf(boot, sizeof(boot), "%lld", (long long)(now_ms() - t0));
	setenv("TEEMATE_BOOT_MS", boot, 1);
	exec_shim(shim);
	return 1;
}
