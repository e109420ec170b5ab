/*
 * teemate-shim: the action proxy inside every sandbox of the teemate and strawman models.
 *
 * It serves OpenWhisk's action-proxy protocol (POST /init, POST /run; HTTP/1.1 with Content-Length
 * bodies) to the invoker and forwards the sandbox's one activation to an enclave owner through the
 * gate (enclave-runtime/PROTOCOL.md): hello, acquire, init, run, release. It is on every
 * activation's path, so it is a small static program that listens within a fraction of a
 * millisecond.
 *
 * It runs on the untrusted host side. Everything it reads (requests, gate replies) is checked for
 * size and shape before use.
 *
 * Structure: one thread, one poll loop over the listener and the HTTP connections (http.c). A
 * handler (action.c) that talks to the gate (gate.c) blocks in gate_wait(), which keeps serving the
 * other connections (they only get the state answers a busy sandbox gives) and watches the active
 * client and the gate for a hang-up, so a broken gate is answered at once.
 *
 * This file: configuration from the environment, output helpers, the listener and the main loop.
 */
#include "shim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- configuration ---- */

struct config cfg;

static int int_var(struct buf *errs, const char *name, long long *dst, long long lo, long long hi)
{
	const char *v = getenv(name);

	if (!v || !*v)
		return 0;
	/* strconv.ParseInt(v, 10, 64): optional sign, decimal digits, no spaces. */
	const char *d = v + (*v == '+' || *v == '-');
	int ok = *d != 0;

	for (const char *q = d; *q; q++)
		ok = ok && *q >= '0' && *q <= '9';
	long long n = 0;

	if (ok) {
		char *e;

		errno = 0;
		n = strtoll(v, &e, 10);
		ok = errno == 0 && *e == 0;
	}
	if (!ok || n < lo || n > hi) {
		if (errs->len)
			buf_putc(errs, '\n');
		buf_printf(errs, "%s=", name);
		go_quote(errs, v, strlen(v));
		buf_printf(errs, ": want an integer from %lld to %lld", lo, hi);
		return -1;
	}
	*dst = n;
	return 0;
}

static void add_err(struct buf *errs, const char *msg)
{
	if (errs->len)
		buf_putc(errs, '\n');
	buf_puts(errs, msg);
}

/* config_from_env reads TEEMATE_*; on error it prints the reasons and exits 2. */
static void config_from_env(void)
{
	struct buf errs;

	buf_init(&errs, 0);
	cfg.proxy_socket = getenv("TEEMATE_PROXY_SOCKET");
	cfg.proxy_addr = getenv("TEEMATE_PROXY_ADDR");
	cfg.gate = getenv("TEEMATE_GATE");
	cfg.sandbox = getenv("TEEMATE_SANDBOX");
	if (cfg.proxy_socket && !*cfg.proxy_socket)
		cfg.proxy_socket = NULL;
	if (cfg.proxy_addr && !*cfg.proxy_addr)
		cfg.proxy_addr = NULL;
	if (cfg.gate && !*cfg.gate)
		cfg.gate = NULL;
	if (!cfg.sandbox)
		cfg.sandbox = "";
	cfg.memory_mb = 256;
	cfg.log_limit = 10 << 20;
	cfg.timeout_ms = 60000;
	cfg.proxy_fd = -1;
	/* An inherited, already listening socket takes precedence over binding one. */
	const char *fdv = getenv("TEEMATE_PROXY_FD");

	if (fdv && *fdv) {
		long long fd = -1;
		struct buf tmp;

		buf_init(&tmp, 0);
		if (int_var(&tmp, "TEEMATE_PROXY_FD", &fd, 3, 1 << 20) < 0) {
			if (errs.len)
				buf_putc(&errs, '\n');
			buf_puts(&errs, "TEEMATE_PROXY_FD=");
			go_quote(&errs, fdv, strlen(fdv));
			buf_printf(&errs, ": want a descriptor number from 3 to %d", 1 << 20);
		} else {
			cfg.proxy_fd = (int)fd;
		}
		buf_free(&tmp);
	}
	if (!cfg.proxy_socket && !cfg.proxy_addr && cfg.proxy_fd < 0)
		add_err(&errs,
			"TEEMATE_PROXY_FD, TEEMATE_PROXY_SOCKET or TEEMATE_PROXY_ADDR must be set");
	if (!cfg.gate)
		add_err(&errs, "TEEMATE_GATE must be set");
	int_var(&errs, "TEEMATE_MEMORY_MB", &cfg.memory_mb, 1, 1 << 20);
	int_var(&errs, "TEEMATE_LOG_LIMIT_BYTES", &cfg.log_limit, 0, 1ll << 40);
	int_var(&errs, "TEEMATE_TIMEOUT_MS", &cfg.timeout_ms, 1, 24ll * 3600 * 1000);
	const char *netv = getenv("TEEMATE_NETWORK");

	if (netv && strcmp(netv, "1") == 0) {
		cfg.network = 1;
	} else if (netv && *netv && strcmp(netv, "0") != 0) {
		if (errs.len)
			buf_putc(&errs, '\n');
		buf_puts(&errs, "TEEMATE_NETWORK=");
		go_quote(&errs, netv, strlen(netv));
		buf_puts(&errs, ": want 1 or 0");
	}
	/* Set by the strawman launcher (shim/strawman), which booted this sandbox's own enclave
	 * runtime before it started the shim: how long the boot took, or why it failed.
	 */
	long long boot = 0;

	int_var(&errs, "TEEMATE_BOOT_MS", &boot, 0, 24ll * 3600 * 1000);
	cfg.boot_ms = (double)boot;
	cfg.start_error = getenv("TEEMATE_START_ERROR");
	if (cfg.start_error && !*cfg.start_error)
		cfg.start_error = NULL;
	if (errs.len) {
		fprintf(stderr, "teemate-shim: shim configuration: %.*s\n", (int)errs.len, errs.p);
		exit(2);
	}
	buf_free(&errs);
}

/* ---- time and output ---- */

int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t now_ms(void)
{
	return now_ns() / 1000000;
}

/* ms_since matches Go's float64(d.Microseconds())/1000. */
double ms_since(int64_t t0)
{
	return (double)((now_ns() - t0) / 1000) / 1000.0;
}

/* write_all writes to stdout/stderr, riding out EINTR, short writes and a non-blocking pipe. A
 * failure means the sandbox's output is gone; the reply still carries the result.
 */
void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = { .fd = fd, .events = POLLOUT };

				if (poll(&pf, 1, 1000) <= 0)
					return;
				continue;
			}
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

void sentinels(void)
{
	static const char sentinel[] = WIRE_LOG_SENTINEL "\n";

	write_all(1, sentinel, sizeof(sentinel) - 1);
	write_all(2, sentinel, sizeof(sentinel) - 1);
}

/* log_json prints a diagnostic as one JSON line on stderr. Warnings are only
 * ever written after the activation's sentinels, never among its logs.
 */
void log_json(const char *level, const char *msg, const char *err)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	struct buf b;

	buf_init(&b, 0);
	buf_printf(&b, "{\"level\":\"%s\",\"ts\":", level);
	go_float(&b, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
	buf_puts(&b, ",\"msg\":");
	json_str_encode(&b, msg, strlen(msg));
	buf_puts(&b, ",\"sandbox\":");
	json_str_encode(&b, cfg.sandbox, strlen(cfg.sandbox));
	if (err) {
		buf_puts(&b, ",\"error\":");
		json_str_encode(&b, err, strlen(err));
	}
	buf_puts(&b, "}\n");
	if (buf_stored(&b))
		write_all(2, b.p, b.len);
	buf_free(&b);
}

/* ---- state ---- */

int state = ST_FRESH;
int gate_fd = -1;
struct timings timings;
volatile sig_atomic_t terminated;
int listen_fd = -1;
static const char *unlink_path; /* the proxy socket we created, removed at exit */

void close_gate(void)
{
	if (gate_fd >= 0)
		close(gate_fd);
	gate_fd = -1;
}

static void leave(int code)
{
	close_gate();
	if (unlink_path)
		unlink(unlink_path);
	_exit(code);
}

/* ---- listening ---- */

static void fail_listen(const char *fmt, const char *a, int err)
{
	char m[1024];

	snprintf(m, sizeof(m), fmt, a, strerror(err));
	log_json("error", "teemate-shim failed", m);
	_exit(1);
}

static void open_listener(void)
{
	if (cfg.proxy_fd >= 0) {
		int acc = 0;
		socklen_t l = sizeof(acc);

		if (getsockopt(cfg.proxy_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc) {
			char m[128];

			snprintf(m, sizeof(m), "TEEMATE_PROXY_FD=%d is not a listening socket",
				 cfg.proxy_fd);
			log_json("error", "teemate-shim failed", m);
			_exit(1);
		}
		listen_fd = cfg.proxy_fd;
	} else if (cfg.proxy_socket) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		size_t pl = strlen(cfg.proxy_socket);

		if (unlink(cfg.proxy_socket) < 0 && errno != ENOENT)
			fail_listen("remove stale proxy socket: remove %s: %s", cfg.proxy_socket,
				    errno);
		if (pl >= sizeof(sa.sun_path))
			fail_listen("listen on %s: %s", cfg.proxy_socket, EINVAL);
		memcpy(sa.sun_path, cfg.proxy_socket, pl);
		listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			fail_listen("listen on %s: bind: %s", cfg.proxy_socket, errno);
		unlink_path = cfg.proxy_socket;
		if (listen(listen_fd, 128) < 0)
			fail_listen("listen on %s: listen: %s", cfg.proxy_socket, errno);
		/* The invoker may run under another uid than the sandbox. */
		if (chmod(cfg.proxy_socket, 0666) < 0)
			fail_listen("chmod proxy socket: chmod %s: %s", cfg.proxy_socket, errno);
	} else {
		/* host:port with a numeric host (or empty, or localhost): no resolver in a static binary. */
		const char *a = cfg.proxy_addr;
		const char *colon = strrchr(a, ':');

		if (!colon)
			fail_listen("listen on %s: %s", a, EINVAL);
		char host[256];
		size_t hl = (size_t)(colon - a);

		if (hl >= sizeof(host))
			fail_listen("listen on %s: %s", a, EINVAL);
		memcpy(host, a, hl);
		host[hl] = 0;
		char *h = host;

		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			host[hl - 1] = 0;
			h = host + 1;
		}
		char *e;
		long port = strtol(colon + 1, &e, 10);

		if (*e || colon[1] == 0 || port < 0 || port > 65535)
			fail_listen("listen on %s: %s", a, EINVAL);
		struct sockaddr_storage ss;

		memset(&ss, 0, sizeof(ss));
		socklen_t sl;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		int fam;

		if (*h == 0) {
			fam = AF_INET6;
			s6->sin6_family = AF_INET6;
			s6->sin6_addr = in6addr_any;
			s6->sin6_port = htons((uint16_t)port);
			sl = sizeof(*s6);
		} else if (strcmp(h, "localhost") == 0 ||
			   inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
			fam = AF_INET;
			s4->sin_family = AF_INET;
			if (strcmp(h, "localhost") == 0)
				s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			s4->sin_port = htons((uint16_t)port);
			sl = sizeof(*s4);
		} else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
			fam = AF_INET6;
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			sl = sizeof(*s6);
		} else {
			fail_listen("listen on %s: host must be numeric: %s", a, EINVAL);
			return;
		}
		listen_fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_fd >= 0 && fam == AF_INET6 && *h == 0) {
			int off = 0;

			setsockopt(listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
		}
		if (listen_fd < 0 && fam == AF_INET6 && *h == 0) {
			/* No IPv6: fall back to IPv4 any. */
			memset(&ss, 0, sizeof(ss));
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			sl = sizeof(*s4);
			listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		}
		int one = 1;

		if (listen_fd >= 0)
			setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&ss, sl) < 0 ||
		    listen(listen_fd, 128) < 0)
			fail_listen("listen on %s: %s", a, errno);
	}
	fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
}

static void on_term(int sig)
{
	(void)sig;
	terminated = 1;
}

/* ---- a prestarted shim ---- */

/* The process name of a prestarted shim until its use (15 characters at most). */
#define WAITING_NAME "teemate-waiting"

/* startconf.h reports a fault of the start configuration through this; the process ends. */
static void startconf_die(int code, const char *a, const char *b, const char *c)
{
	(void)code;
	fprintf(stderr, "teemate-shim: shim configuration: %s%s%s\n", a, b, c);
	exit(2);
}

#include "../start/startconf.h"

/*
 * await_use is the start of a prestarted shim (TEEMATE_START_CONF names the file): a pooled
 * container started it before anyone knew which activation it would serve, with only the proxy's
 * listening socket (descriptor 3). The sandbox backend writes the start configuration before it
 * hands the sandbox out, and nobody connects before that; so once a connection is pending, the
 * configuration's environment is this shim's, read as if it had been exec'd with it. The exec,
 * the shim's own start and the container's confinement are then off the activation's path.
 */
static void await_use(const char *conf)
{
	struct pollfd p = { .fd = STARTCONF_PROXY_FD, .events = POLLIN };

	if (!startconf_proxy_fd()) {
		log_json("error", "teemate-shim failed",
			 "TEEMATE_START_CONF needs the proxy's listening socket as descriptor 3");
		leave(1);
	}
	/*
	 * Named for what it does until its use, as ps shows it (and the bench's CPU accounting
	 * counts a waiting container's CPU as the sandbox's creation).
	 */
	prctl(PR_SET_NAME, WAITING_NAME);
	/*
	 * What the use will touch first, touched now: the configuration's buffer, and the vDSO's
	 * pages (the clock the timings read).
	 */
	startconf_prepare();
	(void)now_ns();
	for (;;) {
		if (terminated)
			leave(0);
		if (poll(&p, 1, -1) == 1)
			break;
		if (errno != EINTR) {
			log_json("error", "teemate-shim failed", "poll the proxy socket failed");
			leave(1);
		}
	}
	static struct startconf c;

	startconf_file = conf;
	startconf_load(&c, 1);
	startconf_chdir(&c);
	for (char **e = c.env; *e; e++)
		if (putenv(*e) != 0) {
			log_json("error", "teemate-shim failed", "out of memory");
			leave(1);
		}
	unsetenv("TEEMATE_START_CONF");
	prctl(PR_SET_NAME, "teemate-shim");
}

int main(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_term; /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	const char *conf = getenv("TEEMATE_START_CONF");

	cfg.sandbox = "";
	if (conf && *conf)
		await_use(conf);
	config_from_env();
	open_listener();
	attach_ahead();

	for (;;) {
		if (terminated)
			leave(0);
		if (exit_pending) {
			int still = 0;

			for (int i = 0; i < MAX_CONNS; i++)
				still |= conns[i] && conns[i] == exit_conn && conns[i]->out.len > 0;
			if (!still) {
				/* Like Go's Shutdown: the activation is over, nothing more is served. */
				for (int i = 0; i < MAX_CONNS; i++)
					if (conns[i])
						conn_close(conns[i]);
				await_release();
				leave(0);
			}
			if (now_ms() > exit_deadline)
				leave(1);
		}
		struct pollfd pf[MAX_CONNS + 1];
		struct conn *who[MAX_CONNS + 1];
		int n = fill_pollfds(pf, who, NULL);
		int64_t wake = exit_pending ? exit_deadline : 0;

		for (int i = 0; i < MAX_CONNS; i++)
			if (conns[i] && conns[i]->head_deadline &&
			    (!wake || conns[i]->head_deadline < wake))
				wake = conns[i]->head_deadline;
		int timeout = -1;

		if (wake) {
			int64_t left = wake - now_ms();

			timeout = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
		}
		int r = poll(pf, (nfds_t)n, timeout);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			log_json("error", "teemate-shim failed", "poll failed");
			leave(1);
		}
		if (r == 0) {
			/* Header timeouts. */
			for (int i = 0; i < MAX_CONNS; i++)
				if (conns[i] && conns[i]->head_deadline &&
				    now_ms() > conns[i]->head_deadline)
					conn_close(conns[i]);
			continue;
		}
		service(pf, n, NULL);
	}
}
