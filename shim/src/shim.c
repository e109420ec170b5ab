/*
 * teemate-shim (C): the action proxy inside every teemate sandbox.
 *
 * It serves OpenWhisk's action-proxy protocol (POST /init, POST /run; HTTP/1.1 with Content-Length
 * bodies) to the invoker and forwards the sandbox's one activation to the warm shared enclave of
 * the function image through the gate (enclave-runtime/PROTOCOL.md): hello, acquire, init, run,
 * release. It behaves like the Go shim (invoker/internal/shim) for the teemate model, replies
 * included, but starts in a fraction of the time: it is on every activation's path.
 *
 * It runs on the untrusted host side. Everything it reads (requests, gate replies) is checked for
 * size and shape before use.
 *
 * Structure: one thread, one poll loop over the listener and the HTTP connections. A handler that
 * talks to the gate blocks in gate_wait(), which keeps serving the other connections (they only
 * get the state answers a busy sandbox gives) and watches the active client and the gate for a
 * hang-up, so a broken gate is answered at once.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "json.h"

#define MAX_BODY (48u << 20)
#define MAX_INIT_FRAME (64u << 20)
#define MAX_OTHER_FRAME (2u << 20)
#define MAX_REPLY_FRAME (80u << 20)
#define MAX_HEAD (64u << 10)
#define MAX_DISCARD (256u << 10)
#define MAX_CONNS 64
#define GRACE_MS 5000
#define HEADER_TIMEOUT_MS 10000
#define SHUTDOWN_MS 5000

/* Gate run limits (PROTOCOL.md, "run -> result"); limits outside are clamped, not refused. */
#define MIN_TIMEOUT_MS 100
#define MAX_TIMEOUT_MS 600000
#define MIN_MEMORY_MB 64
#define MAX_MEMORY_MB 4096
#define MAX_LOG_LIMIT (64ll << 20)

static const char SENTINEL[] = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX\n";
static const char MSG_INIT_TWICE[] = "Cannot initialize the action more than once.";
static const char MSG_NOT_INITIALIZED[] = "System not initialized.";
static const char MSG_MISSING_CODE[] = "Missing main/no code to execute.";
static const char MSG_ONE_ACTIVATION[] = "This sandbox serves exactly one activation.";
static const char MSG_ABNORMAL_INIT[] = "The action did not initialize and exited unexpectedly.";
static const char MSG_ABNORMAL_RUN[] = "The action did not produce a valid response and exited unexpectedly.";
static const char INIT_STRUCT_TYPE[] =
	"struct { Name string \"json:\\\"name\\\"\"; Main string \"json:\\\"main\\\"\"; Code string "
	"\"json:\\\"code\\\"\"; Binary bool \"json:\\\"binary\\\"\"; Env map[string]json.RawMessage "
	"\"json:\\\"env\\\"\" }";

/* ---- configuration ---- */

static struct {
	const char *proxy_socket, *proxy_addr, *gate, *sandbox;
	long long memory_mb, log_limit, timeout_ms;
	int network; /* TEEMATE_NETWORK=1: the run says the action has network */
	int proxy_fd; /* -1: bind proxy_socket or proxy_addr */
} cfg;

static int int_var(buf_t *errs, const char *name, long long *dst, long long lo, long long hi)
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

static void add_err(buf_t *errs, const char *msg)
{
	if (errs->len)
		buf_putc(errs, '\n');
	buf_puts(errs, msg);
}

static int is_blank(const char *s)
{
	for (; s && *s; s++)
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\v' && *s != '\f')
			return 0;
	return 1;
}

/* config_from_env reads TEEMATE_*; on error it prints the reasons and exits 2, as the Go shim. */
static void config_from_env(void)
{
	buf_t errs;
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
		buf_t tmp;
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
		add_err(&errs, "TEEMATE_PROXY_FD, TEEMATE_PROXY_SOCKET or TEEMATE_PROXY_ADDR must be set");
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
	if (!is_blank(getenv("TEEMATE_STRAWMAN_CMD")))
		add_err(&errs, "TEEMATE_STRAWMAN_CMD is not supported by this shim: the strawman model "
			       "(an enclave runtime per sandbox) needs the Go shim");
	if (errs.len) {
		fprintf(stderr, "teemate-shim: shim configuration: %.*s\n", (int)errs.len, errs.p);
		exit(2);
	}
	buf_free(&errs);
}

/* ---- time and output ---- */

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t now_ms(void) { return now_ns() / 1000000; }

/* ms_since matches Go's float64(d.Microseconds())/1000. */
static double ms_since(int64_t t0) { return (double)((now_ns() - t0) / 1000) / 1000.0; }

/* write_all writes to stdout/stderr, riding out EINTR, short writes and a non-blocking pipe. A
 * failure means the sandbox's output is gone; the reply still carries the result. */
static void write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd pf = {.fd = fd, .events = POLLOUT};
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

static void sentinels(void)
{
	write_all(1, SENTINEL, sizeof SENTINEL - 1);
	write_all(2, SENTINEL, sizeof SENTINEL - 1);
}

/* log_json prints a diagnostic like the Go shim's zap logger (JSON on stderr). Warnings are only
 * ever written after the activation's sentinels, never among its logs. */
static void log_json(const char *level, const char *msg, const char *err)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	buf_t b;
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

/* go_errno is Go's text for an errno: glibc's message with a lower-case first letter. */
static const char *go_errno(int e, char *tmp, size_t cap)
{
	snprintf(tmp, cap, "%s", strerror(e));
	if (tmp[0] >= 'A' && tmp[0] <= 'Z')
		tmp[0] = (char)(tmp[0] - 'A' + 'a');
	return tmp;
}

/* ---- state ---- */

enum { ST_FRESH, ST_INITIALIZING, ST_READY, ST_RUNNING, ST_DONE };

static int state = ST_FRESH;
static int gate_fd = -1;
static struct {
	double attach, tcs, init, isolate, run, teardown;
} timings;
static volatile sig_atomic_t terminated;
static int listen_fd = -1;
static const char *unlink_path; /* the proxy socket we created, removed at exit like Go does */

static void close_gate(void)
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

/* ---- HTTP connections ---- */

enum { C_HEAD, C_BODY, C_DISCARD, C_HANDLING, C_WRITE };
enum { R_NONE, R_INIT, R_RUN };

struct conn {
	int fd;
	int phase;
	buf_t in;
	buf_t out;
	size_t out_off;
	int close_after;
	int expect_continue;
	int64_t head_deadline; /* ms; 0: no request started */
	int route;
	size_t head_len;
	unsigned long long clen;
	size_t body_want; /* bytes of body to read: min(clen, MAX_BODY) */
	unsigned long long discard_left;
	int eof;
};

static struct conn *conns[MAX_CONNS];
static struct conn *exit_conn; /* the reply after which the process exits */
static int exit_pending;
static int64_t exit_deadline;

static void conn_close(struct conn *c)
{
	for (int i = 0; i < MAX_CONNS; i++)
		if (conns[i] == c)
			conns[i] = NULL;
	close(c->fd);
	buf_free(&c->in);
	buf_free(&c->out);
	if (c == exit_conn)
		exit_conn = NULL;
	free(c);
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 411: return "Length Required";
	case 413: return "Request Entity Too Large";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Internal Server Error";
	}
}

static void put_date(buf_t *b)
{
	char d[64];
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(d, sizeof d, "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	buf_puts(b, d);
}

static void timings_json(buf_t *b)
{
	buf_puts(b, "{\"attachMs\":");
	go_float(b, timings.attach);
	buf_puts(b, ",\"tcsMs\":");
	go_float(b, timings.tcs);
	buf_puts(b, ",\"initMs\":");
	go_float(b, timings.init);
	buf_puts(b, ",\"isolateMs\":");
	go_float(b, timings.isolate);
	buf_puts(b, ",\"runMs\":");
	go_float(b, timings.run);
	buf_puts(b, ",\"teardownMs\":");
	go_float(b, timings.teardown);
	buf_puts(b, "}");
}

/* reply queues a JSON response; outcome and timings go in the teemate headers. */
static void reply(struct conn *c, int status, const char *outcome, int with_timings, const char *body, size_t n)
{
	buf_t *b = &c->out;
	buf_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n", status, reason(status));
	if (outcome)
		buf_printf(b, "X-Teemate-Outcome: %s\r\n", outcome);
	if (with_timings) {
		buf_puts(b, "X-Teemate-Timings: ");
		timings_json(b);
		buf_puts(b, "\r\n");
	}
	if (c->close_after)
		buf_puts(b, "Connection: close\r\n");
	put_date(b);
	buf_printf(b, "Content-Length: %zu\r\n\r\n", n);
	buf_put(b, body, n);
}

static void reply_error(struct conn *c, int status, const char *outcome, int with_timings, const char *msg)
{
	buf_t body;
	buf_init(&body, 0);
	buf_puts(&body, "{\"error\":");
	json_str_encode(&body, msg, strlen(msg));
	buf_putc(&body, '}');
	if (buf_stored(&body))
		reply(c, status, outcome, with_timings, body.p, body.len);
	else
		reply(c, 500, NULL, 0, "{\"error\":\"out of memory\"}", 25);
	buf_free(&body);
}

/* reply_plain answers the way Go's HTTP server does for requests it rejects itself. */
static void reply_plain(struct conn *c, int status, const char *extra_headers, const char *body)
{
	buf_t *b = &c->out;
	buf_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n%s",
		   status, reason(status), extra_headers);
	if (c->close_after)
		buf_puts(b, "Connection: close\r\n");
	put_date(b);
	buf_printf(b, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
}

/* ---- gate client ---- */

struct gerr {
	char cls[64];
	buf_t msg;
};

static int service(struct pollfd *pf, int npf, struct conn *active);
static int fill_pollfds(struct pollfd *pf, struct conn **who, struct conn *active);

/* gate_wait waits until the gate fd is ready for ev, serving the other connections meanwhile.
 * Returns 0, or an errno: ETIMEDOUT at the deadline, ECANCELED when the active client hung up
 * or the shim is told to stop. */
static int gate_wait(short ev, int64_t deadline_ms, struct conn *active)
{
	for (;;) {
		if (terminated)
			return ECANCELED;
		int64_t left = deadline_ms - now_ms();
		if (left <= 0)
			return ETIMEDOUT;
		struct pollfd pf[MAX_CONNS + 3];
		struct conn *who[MAX_CONNS + 3];
		pf[0] = (struct pollfd){.fd = gate_fd, .events = ev};
		who[0] = NULL;
		int n = 1;
		if (active) {
			/* Only a hang-up of the invoker's connection matters now, not pipelined bytes. */
			pf[n] = (struct pollfd){.fd = active->fd, .events = POLLRDHUP};
			who[n++] = active;
		}
		n += fill_pollfds(pf + n, who + n, active);
		int r = poll(pf, (nfds_t)n, left > 1000 ? 1000 : (int)left);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (r == 0)
			continue;
		if (active && (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return ECANCELED;
		int base = active ? 2 : 1;
		service(pf + base, n - base, active);
		if (pf[0].revents)
			return 0;
	}
}

static void io_error(buf_t *e, const char *what, const char *op, int err, int64_t deadline)
{
	char t[128];
	if (err == ETIMEDOUT)
		buf_printf(e, "context deadline exceeded (%s: %s unix @->%s: i/o timeout)", what, op, cfg.gate);
	else if (err == ECANCELED)
		buf_printf(e, "context canceled (%s: %s unix @->%s: use of closed network connection)", what, op, cfg.gate);
	else
		buf_printf(e, "%s: %s unix @->%s: %s: %s", what, op, cfg.gate, op, go_errno(err, t, sizeof t));
	(void)deadline;
}

static int gate_write(const char *p, size_t n, int64_t deadline, struct conn *active, buf_t *e)
{
	while (n > 0) {
		ssize_t w = send(gate_fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int err = gate_wait(POLLOUT, deadline, active);
				if (err) {
					io_error(e, "write gate frame", "write", err, deadline);
					return -1;
				}
				continue;
			}
			io_error(e, "write gate frame", "write", errno, deadline);
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* gate_read reads exactly n bytes. Returns 0, or -1 with e set (Go's io.ReadFull wording). */
static int gate_read(char *p, size_t n, const char *what, int64_t deadline, struct conn *active, buf_t *e)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(gate_fd, p + got, n - got, 0);
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		if (r == 0) {
			buf_printf(e, "%s: %s", what, got ? "unexpected EOF" : "EOF");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			int err = gate_wait(POLLIN | POLLRDHUP, deadline, active);
			if (err) {
				io_error(e, what, "read", err, deadline);
				return -1;
			}
			continue;
		}
		io_error(e, what, "read", errno, deadline);
		return -1;
	}
	return 0;
}

/* field finds the last member whose key matches name without regard to ASCII case (Go's rules
 * for struct fields: the last duplicate wins). */
static int field(const char *obj, size_t n, const char *name, const char **v, size_t *vn)
{
	jiter it;
	const char *k, *val;
	size_t kn, valn;
	int found = 0;
	jiter_begin(&it, obj, n);
	while (jobj_next(&it, &k, &kn, &val, &valn)) {
		if (json_key_is(k, kn, name)) {
			*v = val;
			*vn = valn;
			found = 1;
		}
	}
	return found;
}

/* string_field decodes an optional string member into out. Returns 0, or -1 for a wrong type. */
static int string_field(const char *obj, size_t n, const char *name, buf_t *out)
{
	const char *v;
	size_t vn;
	if (!field(obj, n, name, &v, &vn) || json_type(v) == JT_NULL)
		return 0;
	if (json_type(v) != JT_STRING)
		return -1;
	json_str_decode(v, vn, out);
	return 0;
}

/* gate_call sends one framed request and reads one reply. Returns 0 with the reply object in
 * *obj (inside rb), 1 for a gate error reply (ge), -1 for any other failure (e). */
static int gate_call(const buf_t *req, size_t limit, const char *want, int64_t deadline, struct conn *active,
		     buf_t *rb, const char **obj, size_t *objn, struct gerr *ge, buf_t *e)
{
	if (!req)
		goto read_reply;
	if (!buf_stored(req) && req->oom) {
		buf_puts(e, "encode gate message: out of memory");
		return -1;
	}
	if (req->len == 0 || req->len > limit) {
		buf_printf(e, "gate frame too large: %zu bytes exceeds the limit of %zu", req->len, limit);
		return -1;
	}
	unsigned char hdr[4] = {(unsigned char)(req->len >> 24), (unsigned char)(req->len >> 16),
				(unsigned char)(req->len >> 8), (unsigned char)req->len};
	/* One frame, one write where the kernel allows it. */
	if (gate_write((const char *)hdr, 4, deadline, active, e) || gate_write(req->p, req->len, deadline, active, e))
		return -1;
read_reply:;
	char h[4];
	if (gate_read(h, 4, "read gate frame header", deadline, active, e))
		return -1;
	uint32_t n = ((uint32_t)(unsigned char)h[0] << 24) | ((uint32_t)(unsigned char)h[1] << 16) |
		     ((uint32_t)(unsigned char)h[2] << 8) | (unsigned char)h[3];
	if (n == 0 || n > MAX_REPLY_FRAME) {
		buf_printf(e, "gate frame too large: %u bytes exceeds the limit of %u", n, MAX_REPLY_FRAME);
		return -1;
	}
	buf_reset(rb);
	buf_put(rb, "", 0);
	if (rb->cap < n) {
		char *p = realloc(rb->p, n);
		if (!p) {
			buf_puts(e, "read gate frame body: out of memory");
			return -1;
		}
		rb->p = p;
		rb->cap = n;
	}
	if (gate_read(rb->p, n, "read gate frame body", deadline, active, e))
		return -1;
	rb->len = n;
	char err[160];
	size_t vs, ve;
	int rc = json_scan(rb->p, rb->len, 0, &vs, &ve, err, sizeof err);
	if (rc != JSON_OK) {
		buf_printf(e, "gate reply is not a JSON object: %s", rc == JSON_SYNTAX ? err : "unexpected end of JSON input");
		return -1;
	}
	const char *v = rb->p + vs;
	size_t vn = ve - vs;
	jtype t = json_type(v);
	buf_t typ;
	buf_init(&typ, 0);
	if (t != JT_OBJECT && t != JT_NULL) {
		buf_printf(e, "gate reply is not a JSON object: json: cannot unmarshal %s into Go value of type gate.envelope",
			   json_type_name(t));
		return -1;
	}
	if (t == JT_OBJECT && string_field(v, vn, "type", &typ)) {
		buf_puts(e, "gate reply is not a JSON object: json: cannot unmarshal into Go struct field envelope.type of type string");
		buf_free(&typ);
		return -1;
	}
	int ret = 0;
	if (typ.len == 5 && memcmp(typ.p, "error", 5) == 0) {
		buf_t cls;
		buf_init(&cls, 0);
		if (string_field(v, vn, "class", &cls) || string_field(v, vn, "message", &ge->msg)) {
			buf_puts(e, "gate error reply malformed: json: cannot unmarshal into Go struct field Error of type string");
			ret = -1;
		} else {
			snprintf(ge->cls, sizeof ge->cls, "%.*s", (int)cls.len, cls.p ? cls.p : "");
			ret = 1;
		}
		buf_free(&cls);
	} else if (typ.len != strlen(want) || memcmp(typ.p ? typ.p : "", want, typ.len) != 0) {
		buf_puts(e, "gate replied ");
		go_quote(e, typ.p ? typ.p : "", typ.len);
		buf_puts(e, ", expected ");
		go_quote(e, want, strlen(want));
		ret = -1;
	} else {
		*obj = v;
		*objn = vn;
	}
	buf_free(&typ);
	return ret;
}

static void gerr_text(buf_t *b, const struct gerr *ge)
{
	buf_printf(b, "gate %s error: %.*s", ge->cls, (int)ge->msg.len, ge->msg.p ? ge->msg.p : "");
}

static int gate_dial(buf_t *e)
{
	char t[128];
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t pl = strlen(cfg.gate);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		buf_printf(e, "dial gate %s: dial unix %s: socket: %s", cfg.gate, cfg.gate, go_errno(errno, t, sizeof t));
		return -1;
	}
	if (pl >= sizeof sa.sun_path) {
		close(fd);
		buf_printf(e, "dial gate %s: dial unix %s: connect: invalid argument", cfg.gate, cfg.gate);
		return -1;
	}
	memcpy(sa.sun_path, cfg.gate, pl);
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		buf_printf(e, "dial gate %s: dial unix %s: connect: %s", cfg.gate, cfg.gate, go_errno(errno, t, sizeof t));
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	gate_fd = fd;
	return 0;
}

/* ---- /init ---- */

/* finish_failed_init ends the sandbox after a failed /init: sentinels before the reply, as the Go
 * shim prints them when the failure status is written. */
static void init_failed(struct conn *c, int status, const char *outcome, const char *msg)
{
	sentinels();
	reply_error(c, status, outcome, 1, msg);
	close_gate();
	state = ST_DONE;
}

struct env_entry {
	const char *k;
	size_t kn;
	char *v; /* decoded */
	size_t vn;
	size_t seq;
};

static int env_cmp(const void *a, const void *b)
{
	const struct env_entry *x = a, *y = b;
	size_t m = x->kn < y->kn ? x->kn : y->kn;
	int d = memcmp(x->k, y->k, m);
	if (d)
		return d;
	if (x->kn != y->kn)
		return x->kn < y->kn ? -1 : 1;
	return x->seq < y->seq ? -1 : 1;
}

/* env_encode appends a JSON object of string values sorted by key (as Go encodes a map), the
 * last of duplicate keys winning. */
static void env_encode(buf_t *b, struct env_entry *env, size_t n)
{
	if (n > 1)
		qsort(env, n, sizeof *env, env_cmp);
	buf_putc(b, '{');
	int first = 1;
	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && env[i + 1].kn == env[i].kn && memcmp(env[i + 1].k, env[i].k, env[i].kn) == 0)
			continue;
		if (!first)
			buf_putc(b, ',');
		first = 0;
		json_str_encode(b, env[i].k, env[i].kn);
		buf_putc(b, ':');
		json_str_encode(b, env[i].v, env[i].vn);
	}
	buf_putc(b, '}');
}

struct envlist {
	struct env_entry *e;
	size_t n, cap;
	buf_t store; /* decoded keys and values, NUL-separated; offsets fixed up at the end */
};

static int env_add(struct envlist *l, const char *k, size_t kn, const char *v, size_t vn)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct env_entry *p = realloc(l->e, cap * sizeof *p);
		if (!p)
			return -1;
		l->e = p;
		l->cap = cap;
	}
	/* Store offsets now (the store may move); pointers are fixed up by env_fix. */
	size_t ko = l->store.len;
	buf_put(&l->store, k, kn);
	size_t vo = l->store.len;
	buf_put(&l->store, v, vn);
	if (l->store.oom)
		return -1;
	l->e[l->n] = (struct env_entry){.k = (const char *)(uintptr_t)ko, .kn = kn, .v = (char *)(uintptr_t)vo, .vn = vn, .seq = l->n};
	l->n++;
	return 0;
}

static void env_fix(struct envlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		l->e[i].k = l->store.p + (uintptr_t)l->e[i].k;
		l->e[i].v = l->store.p + (uintptr_t)l->e[i].v;
	}
}

static void env_free(struct envlist *l)
{
	free(l->e);
	buf_free(&l->store);
	memset(l, 0, sizeof *l);
}

struct init_req {
	int has_value;
	buf_t name, main, code;
	int binary;
	struct envlist env;
};

/* type_err records Go's first UnmarshalTypeError. */
static void type_err(buf_t *err, jtype got, const char *where, const char *type)
{
	if (err->len)
		return;
	buf_printf(err, "json: cannot unmarshal %s into %s of type %s", json_type_name(got), where, type);
}

static void decode_init_value(struct init_req *r, const char *v, size_t vn, buf_t *err)
{
	jiter it;
	const char *k, *x;
	size_t kn, xn;
	jiter_begin(&it, v, vn);
	while (jobj_next(&it, &k, &kn, &x, &xn)) {
		jtype t = json_type(x);
		buf_t *dst = json_key_is(k, kn, "name") ? &r->name : json_key_is(k, kn, "main") ? &r->main
							 : json_key_is(k, kn, "code")   ? &r->code
											: NULL;
		if (dst) {
			char fname[16];
			snprintf(fname, sizeof fname, "%s", dst == &r->name ? "name" : dst == &r->main ? "main" : "code");
			if (t == JT_NULL)
				continue;
			if (t != JT_STRING) {
				char where[64];
				snprintf(where, sizeof where, "Go struct field .value.%s", fname);
				type_err(err, t, where, "string");
				continue;
			}
			buf_reset(dst);
			json_str_decode(x, xn, dst);
		} else if (json_key_is(k, kn, "binary")) {
			if (t == JT_NULL)
				continue;
			if (t != JT_BOOL)
				type_err(err, t, "Go struct field .value.binary", "bool");
			else
				r->binary = x[0] == 't';
		} else if (json_key_is(k, kn, "env")) {
			if (t == JT_NULL) {
				r->env.n = 0;
				continue;
			}
			if (t != JT_OBJECT) {
				type_err(err, t, "Go struct field .value.env", "map[string]json.RawMessage");
				continue;
			}
			jiter ei;
			const char *ek, *ev;
			size_t ekn, evn;
			jiter_begin(&ei, x, xn);
			while (jobj_next(&ei, &ek, &ekn, &ev, &evn)) {
				buf_t key, val;
				buf_init(&key, 0);
				buf_init(&val, 0);
				json_str_decode(ek, ekn, &key);
				/* OpenWhisk's conversion: strings as they are, null as "", other values as
				 * their JSON text. */
				jtype et = json_type(ev);
				if (et == JT_STRING)
					json_str_decode(ev, evn, &val);
				else if (et != JT_NULL)
					buf_put(&val, ev, evn);
				if (key.oom || val.oom || env_add(&r->env, key.p ? key.p : "", key.len, val.p ? val.p : "", val.len))
					err->oom = 1;
				buf_free(&key);
				buf_free(&val);
			}
		}
	}
}

/* scan_body finds the first JSON value of a request body as Go's json.Decoder does, with the Go
 * shim's error texts (over: the body was cut at MAX_BODY). Returns 0 with the value at [*vs, *ve),
 * or -1 with the message in err. */
static int scan_body(const char *body, size_t n, int over, size_t *vs, size_t *ve, buf_t *err)
{
	char serr[160];
	int rc = json_scan(body, n, 1, vs, ve, serr, sizeof serr);
	if (rc == JSON_SYNTAX) {
		buf_printf(err, "body is not valid JSON: %s", serr);
		return -1;
	}
	if (rc != JSON_OK) {
		if (over)
			buf_printf(err, "body exceeds %u bytes", MAX_BODY);
		else
			buf_printf(err, "body is not valid JSON: %s", rc == JSON_EOF ? "EOF" : "unexpected EOF");
		return -1;
	}
	return 0;
}

/* decode_init applies Go's json.Decoder + Unmarshal rules for the /init body. Returns 0 or -1
 * with the message in err. */
static int decode_init(const char *body, size_t n, int over, struct init_req *r, buf_t *err)
{
	size_t vs, ve;
	if (scan_body(body, n, over, &vs, &ve, err) < 0)
		return -1;
	const char *v = body + vs;
	size_t vn = ve - vs;
	jtype t = json_type(v);
	buf_t terr;
	buf_init(&terr, 0);
	if (t == JT_OBJECT) {
		jiter it;
		const char *k, *x;
		size_t kn, xn;
		jiter_begin(&it, v, vn);
		while (jobj_next(&it, &k, &kn, &x, &xn)) {
			if (!json_key_is(k, kn, "value"))
				continue;
			jtype xt = json_type(x);
			if (xt == JT_NULL) {
				/* Go sets the pointer to nil; a later "value" starts from a fresh struct. */
				r->has_value = 0;
				buf_reset(&r->name);
				buf_reset(&r->main);
				buf_reset(&r->code);
				r->binary = 0;
				r->env.n = 0;
			} else if (xt != JT_OBJECT) {
				type_err(&terr, xt, "Go struct field initRequest.value", INIT_STRUCT_TYPE);
			} else {
				r->has_value = 1;
				decode_init_value(r, x, xn, &terr);
			}
		}
	} else if (t != JT_NULL) {
		type_err(&terr, t, "Go value", "shim.initRequest");
	}
	if (terr.oom || r->name.oom || r->main.oom || r->code.oom) {
		buf_puts(err, "body is not valid JSON: out of memory");
		buf_free(&terr);
		return -1;
	}
	if (terr.len) {
		buf_printf(err, "body is not valid JSON: %.*s", (int)terr.len, terr.p);
		buf_free(&terr);
		return -1;
	}
	buf_free(&terr);
	return 0;
}

static void handle_init(struct conn *c, const char *body, size_t n, int over)
{
	struct init_req r;
	memset(&r, 0, sizeof r);
	buf_t err, msg, req, rb;
	buf_init(&err, 0);
	buf_init(&msg, 0);
	buf_init(&req, MAX_INIT_FRAME);
	buf_init(&rb, 0);
	struct gerr ge;
	memset(&ge, 0, sizeof ge);
	buf_init(&ge.msg, 0);
	const char *obj;
	size_t objn;
	int rc;

	if (decode_init(body, n, over, &r, &err)) {
		buf_puts(&msg, "Malformed /init request: ");
		buf_put(&msg, err.p, err.len);
		buf_putc(&msg, 0);
		init_failed(c, 400, NULL, msg.p ? msg.p : "");
		goto out;
	}
	if (!r.has_value || r.code.len == 0) {
		init_failed(c, 403, NULL, MSG_MISSING_CODE);
		goto out;
	}
	env_fix(&r.env);
	for (size_t i = 0; i < r.env.n; i++) {
		if (r.env.e[i].kn == 0) {
			init_failed(c, 400, NULL, "Malformed /init request: env has an empty name");
			goto out;
		}
	}
	int64_t deadline = now_ms() + cfg.timeout_ms + GRACE_MS;
	int64_t t0 = now_ns();
	if (gate_dial(&err) < 0) {
		buf_puts(&msg, "The enclave is not reachable: ");
		goto gate_failure;
	}
	buf_puts(&req, "{\"type\":\"hello\",\"version\":1");
	if (*cfg.sandbox) {
		buf_puts(&req, ",\"sandbox\":");
		json_str_encode(&req, cfg.sandbox, strlen(cfg.sandbox));
	}
	/* The sandbox's one-time capability for its activation (PROTOCOL.md, "Authentication"). */
	const char *tok = getenv("TEEMATE_GATE_TOKEN");
	if (tok && *tok) {
		static const char *const cred[][2] = {{"activation", "TEEMATE_ACTIVATION_ID"},
						      {"namespace", "TEEMATE_NAMESPACE"}, {"token", "TEEMATE_GATE_TOKEN"}};
		for (size_t i = 0; i < 3; i++) {
			const char *v = getenv(cred[i][1]);
			if (v && *v) {
				buf_printf(&req, ",\"%s\":", cred[i][0]);
				json_str_encode(&req, v, strlen(v));
			}
		}
	}
	buf_putc(&req, '}');
	rc = gate_call(&req, MAX_OTHER_FRAME, "welcome", deadline, c, &rb, &obj, &objn, &ge, &err);
	if (rc == 0) {
		/* The welcome's fields are typed; a malformed one is an attach failure. */
		static const char *strs[] = {"enclave", "image", "mode", "isolate"};
		static const char *ints[] = {"slots", "free"};
		const char *v;
		size_t vn;
		long long x;
		for (size_t i = 0; i < 4 && rc == 0; i++)
			if (field(obj, objn, strs[i], &v, &vn) && json_type(v) != JT_NULL && json_type(v) != JT_STRING) {
				buf_printf(&err, "gate welcome reply malformed: json: cannot unmarshal %s into Go struct field Welcome.%s of type string",
					   json_type_name(json_type(v)), strs[i]);
				rc = -1;
			}
		for (size_t i = 0; i < 2 && rc == 0; i++)
			if (field(obj, objn, ints[i], &v, &vn) && json_type(v) != JT_NULL &&
			    (json_type(v) != JT_NUMBER || json_int64(v, vn, &x))) {
				buf_printf(&err, "gate welcome reply malformed: json: cannot unmarshal %s into Go struct field Welcome.%s of type int",
					   json_type_name(json_type(v)), ints[i]);
				rc = -1;
			}
	}
	if (rc != 0) {
		buf_puts(&msg, "The enclave refused to attach: ");
		goto gate_failure_rc;
	}
	int64_t t1 = now_ns();
	timings.attach = (double)((t1 - t0) / 1000) / 1000.0;
	buf_reset(&req);
	buf_puts(&req, "{\"type\":\"acquire\"}");
	rc = gate_call(&req, MAX_OTHER_FRAME, "acquired", deadline, c, &rb, &obj, &objn, &ge, &err);
	if (rc == 0) {
		const char *v;
		size_t vn;
		long long x;
		if (!field(obj, objn, "tcs", &v, &vn) || json_type(v) == JT_NULL) {
			buf_puts(&err, "gate acquired reply without tcs");
			rc = -1;
		} else if (json_type(v) != JT_NUMBER || json_int64(v, vn, &x)) {
			buf_printf(&err, "gate acquired reply malformed: json: cannot unmarshal %s into Go struct field .tcs of type int",
				   json_type_name(json_type(v)));
			rc = -1;
		}
	}
	if (rc != 0) {
		buf_puts(&msg, "No enclave thread could be taken: ");
		if (rc == 1) {
			gerr_text(&msg, &ge);
			buf_putc(&msg, 0);
			init_failed(c, strcmp(ge.cls, "busy") == 0 ? 503 : 502, "gate", msg.p);
		} else {
			buf_put(&msg, err.p, err.len);
			buf_putc(&msg, 0);
			init_failed(c, 502, "gate", msg.p ? msg.p : "");
		}
		goto out;
	}
	int64_t t2 = now_ns();
	timings.tcs = (double)((t2 - t1) / 1000) / 1000.0;
	buf_reset(&req);
	buf_puts(&req, "{\"type\":\"init\",\"name\":");
	json_str_encode(&req, r.name.p ? r.name.p : "", r.name.len);
	buf_puts(&req, ",\"main\":");
	json_str_encode(&req, r.main.p ? r.main.p : "", r.main.len);
	buf_puts(&req, ",\"code\":");
	json_str_encode(&req, r.code.p, r.code.len);
	buf_puts(&req, r.binary ? ",\"binary\":true,\"env\":" : ",\"binary\":false,\"env\":");
	env_encode(&req, r.env.e, r.env.n);
	buf_putc(&req, '}');
	/* The decoded code is not needed any more; give the memory back before the reply arrives. */
	buf_free(&r.code);
	rc = gate_call(&req, MAX_INIT_FRAME, "initialized", deadline, c, &rb, &obj, &objn, &ge, &err);
	timings.init = ms_since(t2);
	if (rc == 1 && strcmp(ge.cls, "init") == 0) {
		buf_put(&msg, ge.msg.p, ge.msg.len);
		buf_putc(&msg, 0);
		init_failed(c, 502, "developer", msg.p ? msg.p : "");
		goto out;
	}
	if (rc == 1) {
		buf_puts(&msg, "The enclave failed to initialize the action: ");
		gerr_text(&msg, &ge);
		buf_putc(&msg, 0);
		init_failed(c, 502, "gate", msg.p);
		goto out;
	}
	if (rc < 0) {
		/* The connection broke: the owner went away while preparing the action. */
		init_failed(c, 502, "developer", MSG_ABNORMAL_INIT);
		buf_putc(&err, 0);
		log_json("warn", "gate connection lost during init", err.p ? err.p : "");
		goto out;
	}
	state = ST_READY;
	reply(c, 200, NULL, 1, "{\"OK\":true}", 11);
	goto out;

gate_failure_rc:
	if (rc == 1) {
		gerr_text(&msg, &ge);
		buf_putc(&msg, 0);
		init_failed(c, 502, "gate", msg.p);
		goto out;
	}
gate_failure:
	buf_put(&msg, err.p, err.len);
	buf_putc(&msg, 0);
	init_failed(c, 502, "gate", msg.p ? msg.p : "");
out:
	buf_free(&err);
	buf_free(&msg);
	buf_free(&req);
	buf_free(&rb);
	buf_free(&ge.msg);
	buf_free(&r.name);
	buf_free(&r.main);
	buf_free(&r.code);
	env_free(&r.env);
}

/* ---- /run ---- */

static void upper_ascii(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'a' && s[i] <= 'z')
			s[i] = (char)(s[i] - 'a' + 'A');
}

static int parse_int64(const char *s, size_t n)
{
	size_t i = 0;
	if (n && (s[0] == '+' || s[0] == '-'))
		i = 1;
	if (i == n || n > 40)
		return -1;
	for (size_t j = i; j < n; j++)
		if (s[j] < '0' || s[j] > '9')
			return -1;
	char tmp[48];
	memcpy(tmp, s, n);
	tmp[n] = 0;
	errno = 0;
	(void)strtoll(tmp, NULL, 10);
	return errno ? -1 : 0;
}

static long long clamp(long long v, long long lo, long long hi) { return v < lo ? lo : v > hi ? hi : v; }

/* run_message builds the gate run frame from OpenWhisk's /run body (Go's runMessage). */
static int run_message(const char *body, size_t n, int over, buf_t *frame, buf_t *err)
{
	size_t vs, ve;
	if (scan_body(body, n, over, &vs, &ve, err) < 0)
		return -1;
	const char *v = body + vs;
	size_t vn = ve - vs;
	jtype t = json_type(v);
	if (t == JT_NULL) {
		buf_puts(err, "body must be a JSON object");
		return -1;
	}
	if (t != JT_OBJECT) {
		buf_printf(err, "body is not valid JSON: json: cannot unmarshal %s into Go value of type map[string]json.RawMessage",
			   json_type_name(t));
		return -1;
	}
	const char *value = NULL;
	size_t valuen = 0;
	struct envlist env;
	memset(&env, 0, sizeof env);
	jiter it;
	const char *k, *x;
	size_t kn, xn;
	jiter_begin(&it, v, vn);
	buf_t key, val;
	buf_init(&key, 0);
	buf_init(&val, 0);
	int ret = 0;
	while (jobj_next(&it, &k, &kn, &x, &xn)) {
		if (kn == 7 && memcmp(k, "\"value\"", 7) == 0) {
			value = x;
			valuen = xn;
			continue;
		}
		buf_reset(&key);
		json_str_decode(k, kn, &key);
		if (key.len == 5 && memcmp(key.p, "value", 5) == 0) {
			value = x;
			valuen = xn;
			continue;
		}
		jtype xt = json_type(x);
		/* OpenWhisk's proxies export string fields only (null decodes to ""). */
		if (xt != JT_STRING && xt != JT_NULL)
			continue;
		buf_reset(&val);
		buf_puts(&val, "__OW_");
		buf_put(&val, key.p, key.len);
		upper_ascii(val.p + 5, key.len);
		size_t klen = val.len;
		if (xt == JT_STRING)
			json_str_decode(x, xn, &val);
		if (val.oom || key.oom || env_add(&env, val.p, klen, val.p + klen, val.len - klen)) {
			buf_puts(err, "body is not valid JSON: out of memory");
			ret = -1;
			goto out;
		}
	}
	env_fix(&env);
	if (!value || (valuen == 4 && memcmp(value, "null", 4) == 0)) {
		value = "{}";
		valuen = 2;
	}
	if (value[0] != '{' && value[0] != '[') {
		buf_puts(err, "value must be a JSON object or array");
		ret = -1;
		goto out;
	}
	/* The deadline is the action's information, not a second clock; it must still be one. */
	for (size_t i = env.n; i-- > 0;) {
		if (env.e[i].kn == 13 && memcmp(env.e[i].k, "__OW_DEADLINE", 13) == 0) {
			if (parse_int64(env.e[i].v, env.e[i].vn)) {
				buf_puts(err, "deadline ");
				go_quote(err, env.e[i].v, env.e[i].vn);
				buf_puts(err, " is not epoch milliseconds");
				ret = -1;
				goto out;
			}
			break;
		}
	}
	buf_puts(frame, "{\"type\":\"run\",\"value\":");
	json_compact(frame, value, valuen);
	buf_printf(frame, ",\"timeoutMs\":%lld,\"memoryMB\":%lld,\"logLimitBytes\":%lld,\"env\":",
		   clamp(cfg.timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS), clamp(cfg.memory_mb, MIN_MEMORY_MB, MAX_MEMORY_MB),
		   clamp(cfg.log_limit, 0, MAX_LOG_LIMIT));
	env_encode(frame, env.e, env.n);
	if (cfg.network)
		buf_puts(frame, ",\"network\":true");
	buf_putc(frame, '}');
out:
	buf_free(&key);
	buf_free(&val);
	env_free(&env);
	return ret;
}

struct result {
	const char *outcome_v;
	buf_t outcome;
	const char *res;
	size_t resn;
	const char *logs;
	size_t logsn;
	int have_timings;
	double isolate, run, teardown, last_teardown;
};

/* decode_result checks a result reply with Go's typing rules. Returns 0 or -1 (e set). */
static int decode_result(const char *obj, size_t n, struct result *r, buf_t *e)
{
	jiter it;
	const char *k, *x;
	size_t kn, xn;
	jiter_begin(&it, obj, n);
	while (jobj_next(&it, &k, &kn, &x, &xn)) {
		jtype t = json_type(x);
		if (json_key_is(k, kn, "outcome")) {
			if (t == JT_NULL)
				continue;
			if (t != JT_STRING)
				goto bad;
			buf_reset(&r->outcome);
			json_str_decode(x, xn, &r->outcome);
		} else if (json_key_is(k, kn, "result")) {
			r->res = x;
			r->resn = xn;
		} else if (json_key_is(k, kn, "logs")) {
			if (t == JT_NULL) {
				r->logs = NULL;
				continue;
			}
			if (t != JT_ARRAY)
				goto bad;
			jiter ai;
			const char *el;
			size_t eln;
			jiter_begin(&ai, x, xn);
			while (jarr_next(&ai, &el, &eln)) {
				jtype et = json_type(el);
				if (et == JT_NULL)
					continue;
				if (et != JT_OBJECT)
					goto bad;
				jiter fi;
				const char *fk, *fv;
				size_t fkn, fvn;
				jiter_begin(&fi, el, eln);
				while (jobj_next(&fi, &fk, &fkn, &fv, &fvn)) {
					if ((json_key_is(fk, fkn, "stream") || json_key_is(fk, fkn, "time") || json_key_is(fk, fkn, "line")) &&
					    json_type(fv) != JT_STRING && json_type(fv) != JT_NULL)
						goto bad;
				}
			}
			r->logs = x;
			r->logsn = xn;
		} else if (json_key_is(k, kn, "timings")) {
			if (t == JT_NULL) {
				r->isolate = r->run = r->teardown = r->last_teardown = 0;
				continue;
			}
			if (t != JT_OBJECT)
				goto bad;
			jiter ti;
			const char *tk, *tv;
			size_t tkn, tvn;
			jiter_begin(&ti, x, xn);
			while (jobj_next(&ti, &tk, &tkn, &tv, &tvn)) {
				double d = 0;
				jtype tt = json_type(tv);
				if (tt != JT_NULL && (tt != JT_NUMBER || json_float(tv, tvn, &d)))
					goto bad;
				/* Map keys are exact (case-sensitive). */
				if (tkn == 11 && memcmp(tk, "\"isolateMs\"", 11) == 0)
					r->isolate = d;
				else if (tkn == 7 && memcmp(tk, "\"runMs\"", 7) == 0)
					r->run = d;
				else if (tkn == 12 && memcmp(tk, "\"teardownMs\"", 12) == 0)
					r->teardown = d;
				else if (tkn == 16 && memcmp(tk, "\"lastTeardownMs\"", 16) == 0)
					r->last_teardown = d;
			}
		}
	}
	static const char *outcomes[] = {"success", "application", "developer", "timeout", "memory"};
	for (size_t i = 0; i < 5; i++)
		if (r->outcome.len == strlen(outcomes[i]) && memcmp(r->outcome.p, outcomes[i], r->outcome.len) == 0)
			return 0;
	buf_puts(e, "gate result with unknown outcome ");
	go_quote(e, r->outcome.p ? r->outcome.p : "", r->outcome.len);
	return -1;
bad:
	buf_puts(e, "gate result reply malformed: wrong JSON type");
	return -1;
}

/* write_logs prints the activation's captured lines, each on its own stream, coalescing runs of
 * lines for the same stream into one write. */
static void write_logs(const char *logs, size_t n)
{
	if (!logs)
		return;
	buf_t out, line;
	buf_init(&out, 0);
	buf_init(&line, 0);
	int cur = 1;
	jiter ai;
	const char *el;
	size_t eln;
	jiter_begin(&ai, logs, n);
	while (jarr_next(&ai, &el, &eln)) {
		int fd = 1;
		buf_reset(&line);
		if (json_type(el) == JT_OBJECT) {
			const char *v;
			size_t vn;
			if (field(el, eln, "stream", &v, &vn) && vn == 8 && memcmp(v, "\"stderr\"", 8) == 0)
				fd = 2;
			if (field(el, eln, "line", &v, &vn) && json_type(v) == JT_STRING)
				json_str_decode(v, vn, &line);
		}
		if (fd != cur || out.len > (1u << 20)) {
			if (buf_stored(&out))
				write_all(cur, out.p, out.len);
			buf_reset(&out);
			cur = fd;
		}
		buf_put(&out, line.p, line.len);
		buf_putc(&out, '\n');
	}
	if (buf_stored(&out))
		write_all(cur, out.p, out.len);
	buf_free(&out);
	buf_free(&line);
}

static int release_pending;
static int64_t release_deadline;
static char *release_error;

/* await_release reads the answer to the release sent before the reply, then logs a failure. */
static void await_release(void)
{
	if (release_pending) {
		buf_t e, rb;
		buf_init(&e, 0);
		buf_init(&rb, 0);
		struct gerr ge;
		memset(&ge, 0, sizeof ge);
		buf_init(&ge.msg, 0);
		const char *obj;
		size_t objn;
		int rr = gate_call(NULL, 0, "released", release_deadline, NULL, &rb, &obj, &objn, &ge, &e);
		if (rr == 1)
			gerr_text(&e, &ge);
		if (rr != 0) {
			buf_putc(&e, 0);
			release_error = strdup(e.p ? e.p : "");
		}
		release_pending = 0;
		buf_free(&e);
		buf_free(&rb);
		buf_free(&ge.msg);
	}
	if (release_error)
		log_json("warn", "release of the enclave thread failed", release_error);
}

static void handle_run(struct conn *c, const char *body, size_t n, int over)
{
	buf_t frame, err, msg, rb;
	buf_init(&frame, MAX_OTHER_FRAME);
	buf_init(&err, 0);
	buf_init(&msg, 0);
	buf_init(&rb, 0);
	struct gerr ge;
	memset(&ge, 0, sizeof ge);
	buf_init(&ge.msg, 0);
	struct result res;
	memset(&res, 0, sizeof res);
	buf_init(&res.outcome, 0);
	const char *obj;
	size_t objn;

	if (run_message(body, n, over, &frame, &err)) {
		sentinels();
		buf_puts(&msg, "Malformed /run request: ");
		buf_put(&msg, err.p, err.len);
		buf_putc(&msg, 0);
		reply_error(c, 400, NULL, 1, msg.p ? msg.p : "");
		goto out;
	}
	int64_t deadline = now_ms() + clamp(cfg.timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS) + GRACE_MS;
	int rc = gate_call(&frame, MAX_OTHER_FRAME, "result", deadline, c, &rb, &obj, &objn, &ge, &err);
	if (rc == 0 && decode_result(obj, objn, &res, &err))
		rc = -1;
	if (rc == 1) {
		sentinels();
		buf_puts(&msg, "The enclave failed to run the action: ");
		gerr_text(&msg, &ge);
		buf_putc(&msg, 0);
		reply_error(c, 502, "gate", 1, msg.p);
		goto out;
	}
	if (rc < 0) {
		/* The owner went away (or stopped answering) while the action ran: OpenWhisk's answer
		 * for a container that died mid-run. */
		sentinels();
		reply_error(c, 502, "developer", 1, MSG_ABNORMAL_RUN);
		buf_putc(&err, 0);
		log_json("warn", "gate connection lost during run", err.p ? err.p : "");
		goto out;
	}
	timings.isolate = res.isolate;
	timings.run = res.run;
	/* The addon tears an isolate down after answering, so it reports the slot's previous
	 * teardown instead. */
	timings.teardown = res.teardown != 0 ? res.teardown : res.last_teardown;
	write_logs(res.logs, res.logsn);
	sentinels();
	/* The release goes out before the reply, so the slot is free by the time the invoker hands
	 * it out again; its answer is read after the reply, off the activation's path. Closing the
	 * connection frees the slot anyway; the release is only the fast path. */
	{
		static const char rel[] = "\0\0\0\x12{\"type\":\"release\"}";
		buf_t rerr;
		buf_init(&rerr, 0);
		release_deadline = now_ms() + 2000;
		if (gate_write(rel, sizeof rel - 1, release_deadline, NULL, &rerr) == 0) {
			release_pending = 1;
		} else {
			buf_putc(&rerr, 0);
			release_error = strdup(rerr.p ? rerr.p : "");
		}
		buf_free(&rerr);
	}
	int ok = (res.outcome.len == 7 && memcmp(res.outcome.p, "success", 7) == 0) ||
		 (res.outcome.len == 11 && memcmp(res.outcome.p, "application", 11) == 0);
	char oc[16];
	snprintf(oc, sizeof oc, "%.*s", (int)res.outcome.len, res.outcome.p);
	if (res.res)
		reply(c, ok ? 200 : 502, oc, 1, res.res, res.resn);
	else
		reply(c, ok ? 200 : 502, oc, 1, "{}", 2);
out:
	if (!release_pending)
		close_gate();
	state = ST_DONE;
	buf_free(&frame);
	buf_free(&err);
	buf_free(&msg);
	buf_free(&rb);
	buf_free(&ge.msg);
	buf_free(&res.outcome);
}

/* ---- HTTP request handling ---- */

static const char *find_head_end(const char *p, size_t n, size_t *hl)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] != '\n')
			continue;
		if (p[i + 1] == '\n') {
			*hl = i + 2;
			return p;
		}
		if (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n') {
			*hl = i + 3;
			return p;
		}
	}
	return NULL;
}

static void bad_request(struct conn *c, int status, const char *why)
{
	/* Go's server answers malformed requests itself, in plain text, and closes. */
	c->close_after = 1;
	buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%d %s%s%s",
		   status, reason(status), status, reason(status), why ? ": " : "", why ? why : "");
	c->phase = C_WRITE;
}

static int hdr_is(const char *name, size_t nl, const char *want)
{
	return nl == strlen(want) && strncasecmp(name, want, nl) == 0;
}

static void trim(const char **v, size_t *vn)
{
	while (*vn && (**v == ' ' || **v == '\t')) {
		(*v)++;
		(*vn)--;
	}
	while (*vn && ((*v)[*vn - 1] == ' ' || (*v)[*vn - 1] == '\t' || (*v)[*vn - 1] == '\r'))
		(*vn)--;
}

static void finish_body(struct conn *c);

/* start_request parses a complete request head and routes it. */
static void start_request(struct conn *c)
{
	const char *p = c->in.p;
	size_t hl = c->head_len;
	const char *le = memchr(p, '\n', hl);
	size_t ll = (size_t)(le - p);
	if (ll && p[ll - 1] == '\r')
		ll--;
	const char *sp1 = memchr(p, ' ', ll);
	const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', ll - (size_t)(sp1 + 1 - p)) : NULL;
	if (!sp1 || !sp2 || sp1 == p) {
		bad_request(c, 400, "malformed HTTP request");
		return;
	}
	const char *method = p;
	size_t ml = (size_t)(sp1 - p);
	const char *target = sp1 + 1;
	size_t tl = (size_t)(sp2 - target);
	const char *ver = sp2 + 1;
	size_t vl = ll - (size_t)(ver - p);
	int http11;
	if (vl == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
		http11 = 1;
	else if (vl == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
		http11 = 0;
	else {
		bad_request(c, 400, "malformed HTTP version");
		return;
	}
	int keep = http11, has_host = 0, has_cl = 0, has_te = 0;
	unsigned long long clen = 0;
	c->expect_continue = 0;
	for (const char *q = le + 1; q < p + hl;) {
		const char *e = memchr(q, '\n', (size_t)(p + hl - q));
		if (!e)
			break;
		size_t l = (size_t)(e - q);
		if (l && q[l - 1] == '\r')
			l--;
		if (l == 0)
			break;
		const char *colon = memchr(q, ':', l);
		if (!colon || colon == q) {
			bad_request(c, 400, "malformed MIME header line");
			return;
		}
		size_t nl = (size_t)(colon - q);
		const char *v = colon + 1;
		size_t vn = l - nl - 1;
		trim(&v, &vn);
		if (hdr_is(q, nl, "content-length")) {
			unsigned long long x = 0;
			if (vn == 0 || vn > 19) {
				bad_request(c, 400, "bad Content-Length");
				return;
			}
			for (size_t i = 0; i < vn; i++) {
				if (v[i] < '0' || v[i] > '9') {
					bad_request(c, 400, "bad Content-Length");
					return;
				}
				x = x * 10 + (unsigned long long)(v[i] - '0');
			}
			if (has_cl && x != clen) {
				bad_request(c, 400, "bad Content-Length");
				return;
			}
			has_cl = 1;
			clen = x;
		} else if (hdr_is(q, nl, "transfer-encoding")) {
			has_te = 1;
		} else if (hdr_is(q, nl, "host")) {
			has_host = 1;
		} else if (hdr_is(q, nl, "connection")) {
			if (vn == 5 && strncasecmp(v, "close", 5) == 0)
				keep = 0;
			else if (vn == 10 && strncasecmp(v, "keep-alive", 10) == 0)
				keep = 1;
		} else if (hdr_is(q, nl, "expect")) {
			if (vn == 12 && strncasecmp(v, "100-continue", 12) == 0)
				c->expect_continue = 1;
		}
		q = e + 1;
	}
	if (http11 && !has_host) {
		bad_request(c, 400, "missing required Host header");
		return;
	}
	c->close_after = !keep;
	if (has_te) {
		/* Bodies must come with a Content-Length: the invoker always sends one, and a
		 * length known up front is what lets the shim bound its reads. */
		c->close_after = 1;
		reply_error(c, 411, NULL, 0, "Length Required: send the body with a Content-Length, not chunked");
		c->phase = C_WRITE;
		return;
	}
	/* Request target: origin form, or absolute form with the path after the authority. */
	if (tl > 7 && strncasecmp(target, "http://", 7) == 0) {
		const char *slash = memchr(target + 7, '/', tl - 7);
		if (!slash) {
			target = "/";
			tl = 1;
		} else {
			tl -= (size_t)(slash - target);
			target = slash;
		}
	}
	const char *qm = memchr(target, '?', tl);
	if (qm)
		tl = (size_t)(qm - target);
	c->clen = clen;
	c->body_want = clen > MAX_BODY ? MAX_BODY : (size_t)clen;
	c->route = R_NONE;
	int is_post = ml == 4 && memcmp(method, "POST", 4) == 0;
	if (ml == 4 && memcmp(method, "HEAD", 4) == 0)
		c->close_after = 1; /* our error replies carry a body a HEAD client will not read */
	int route = (tl == 5 && memcmp(target, "/init", 5) == 0) ? R_INIT : (tl == 4 && memcmp(target, "/run", 4) == 0) ? R_RUN : R_NONE;
	if (route == R_NONE)
		reply_plain(c, 404, "", "404 page not found\n");
	else if (!is_post)
		reply_plain(c, 405, "Allow: POST\r\n", "Method Not Allowed\n");
	else if (route == R_INIT && state != ST_FRESH)
		reply_error(c, 403, NULL, 0, MSG_INIT_TWICE);
	else if (route == R_RUN && state != ST_READY)
		reply_error(c, 403, NULL, 0, state == ST_FRESH || state == ST_INITIALIZING ? MSG_NOT_INITIALIZED : MSG_ONE_ACTIVATION);
	else {
		/* This request drives the activation. */
		state = route == R_INIT ? ST_INITIALIZING : ST_RUNNING;
		c->route = route;
		if (c->expect_continue)
			buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
		c->phase = C_BODY;
		finish_body(c);
		return;
	}
	/* Answered without reading the body: drop it, or the connection when it is large. */
	if (c->expect_continue || clen > MAX_DISCARD) {
		c->close_after = 1;
		c->discard_left = 0;
	} else {
		c->discard_left = clen;
	}
	c->phase = C_WRITE;
}

static void consume_input(struct conn *c, size_t n)
{
	if (n >= c->in.len) {
		c->in.len = 0;
	} else {
		memmove(c->in.p, c->in.p + n, c->in.len - n);
		c->in.len -= n;
	}
}

/* finish_body runs the handler once the body (or as much as the client sent) is in. */
static void finish_body(struct conn *c)
{
	size_t have = c->in.len - c->head_len;
	if (have < c->body_want && !c->eof)
		return;
	size_t n = have < c->body_want ? have : c->body_want;
	int over = c->clen > MAX_BODY;
	c->phase = C_HANDLING;
	/* A body not read to its end leaves the connection unusable: say so in the reply. */
	if (over || c->eof)
		c->close_after = 1;
	if (c->route == R_INIT)
		handle_init(c, c->in.p + c->head_len, n, over);
	else
		handle_run(c, c->in.p + c->head_len, n, over);
	consume_input(c, c->head_len + n);
	c->head_len = 0;
	c->discard_left = 0;
	c->phase = C_WRITE;
	if (state == ST_DONE) {
		/* The activation is over: exit once this reply is out. */
		exit_conn = c;
		exit_pending = 1;
		exit_deadline = now_ms() + SHUTDOWN_MS;
	}
}

/* advance moves a connection along with the bytes it has buffered. */
static void advance(struct conn *c)
{
	for (;;) {
		if (c->phase == C_DISCARD) {
			size_t d = c->discard_left < c->in.len ? (size_t)c->discard_left : c->in.len;
			consume_input(c, d);
			c->discard_left -= d;
			if (c->discard_left)
				return;
			c->phase = C_HEAD;
		}
		if (c->phase == C_BODY) {
			finish_body(c);
			return;
		}
		if (c->phase != C_HEAD)
			return;
		if (c->in.len == 0) {
			c->head_deadline = 0;
			return;
		}
		if (!c->head_deadline)
			c->head_deadline = now_ms() + HEADER_TIMEOUT_MS;
		/* Go's server skips blank lines before a request line. */
		size_t blank = 0;
		while (blank < c->in.len && (c->in.p[blank] == '\r' || c->in.p[blank] == '\n'))
			blank++;
		consume_input(c, blank);
		size_t hl;
		if (!find_head_end(c->in.p, c->in.len, &hl)) {
			if (c->in.len > MAX_HEAD)
				bad_request(c, 431, NULL);
			return;
		}
		if (hl > MAX_HEAD) {
			bad_request(c, 431, NULL);
			return;
		}
		c->head_len = hl;
		c->head_deadline = 0;
		start_request(c);
		if (c->phase == C_WRITE && c->route == R_NONE) {
			/* Answered from the head alone: drop the head, then the body as it comes. */
			consume_input(c, c->head_len);
			c->head_len = 0;
		}
		return;
	}
}

static void conn_read(struct conn *c)
{
	for (;;) {
		size_t want = 64 << 10;
		if (c->phase == C_BODY) {
			size_t need = c->head_len + c->body_want - c->in.len;
			if (need == 0)
				break;
			if (need < want)
				want = need;
		}
		if (c->in.cap - c->in.len < want) {
			buf_put(&c->in, NULL, 0);
			size_t cap = c->in.cap ? c->in.cap : 4096;
			while (cap - c->in.len < want)
				cap *= 2;
			char *p = realloc(c->in.p, cap);
			if (!p) {
				c->eof = 1;
				break;
			}
			c->in.p = p;
			c->in.cap = cap;
		}
		ssize_t r = recv(c->fd, c->in.p + c->in.len, want, 0);
		if (r > 0) {
			c->in.len += (size_t)r;
			/* Bound what one connection can make us buffer: a head, or the body we want. */
			if (c->phase != C_BODY && c->in.len > MAX_HEAD + 1)
				break;
			continue;
		}
		if (r == 0) {
			c->eof = 1;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			c->eof = 1;
		break;
	}
}

/* conn_write flushes queued output. Returns -1 when the connection is finished with. */
static int conn_write(struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t w = send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		c->out_off += (size_t)w;
	}
	c->out.len = 0;
	c->out_off = 0;
	if (c->phase == C_WRITE) {
		if (c->close_after)
			return -1;
		c->phase = c->discard_left ? C_DISCARD : C_HEAD;
		c->route = R_NONE;
	}
	return 0;
}

/* conn_event handles readiness of a connection that is not the one driving the activation. */
static void conn_event(struct conn *c, short rev)
{
	if (rev & (POLLIN | POLLHUP | POLLERR | POLLRDHUP)) {
		if (c->phase == C_HEAD || c->phase == C_BODY || c->phase == C_DISCARD)
			conn_read(c);
		else if (rev & (POLLHUP | POLLERR)) {
			conn_close(c);
			return;
		}
	}
	for (int guard = 0; guard < 64; guard++) {
		int before = c->phase;
		size_t in_before = c->in.len;
		advance(c);
		if (c->out.len || c->phase == C_WRITE) {
			if (conn_write(c) < 0) {
				conn_close(c);
				return;
			}
		}
		if (c->phase == before && c->in.len == in_before)
			break;
	}
	if (c->eof && c->phase != C_WRITE && c->phase != C_HANDLING && c->out.len == 0) {
		conn_close(c);
		return;
	}
	if (c->phase == C_HEAD && c->in.len > 0 && c->head_deadline && now_ms() > c->head_deadline)
		conn_close(c);
}

static void accept_all(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR)
				continue;
			return; /* EAGAIN, or a transient error (EMFILE...): try again on the next wake-up */
		}
		int slot = -1;
		for (int i = 0; i < MAX_CONNS; i++)
			if (!conns[i]) {
				slot = i;
				break;
			}
		struct conn *c = slot < 0 ? NULL : calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->phase = C_HEAD;
		conns[slot] = c;
	}
}

static int fill_pollfds(struct pollfd *pf, struct conn **who, struct conn *active)
{
	int n = 0;
	if (listen_fd >= 0 && !exit_pending) {
		pf[n] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
		who[n++] = NULL;
	}
	for (int i = 0; i < MAX_CONNS; i++) {
		struct conn *c = conns[i];
		if (!c || c == active)
			continue;
		short ev = 0;
		if (c->out.len)
			ev |= POLLOUT;
		if (c->phase == C_HEAD || c->phase == C_BODY || c->phase == C_DISCARD)
			ev |= POLLIN | POLLRDHUP;
		pf[n] = (struct pollfd){.fd = c->fd, .events = ev};
		who[n++] = c;
	}
	return n;
}

/* service handles poll results for the listener and connections (who[] parallel to pf). */
static int service(struct pollfd *pf, int npf, struct conn *active)
{
	(void)active;
	struct conn *list[MAX_CONNS + 1];
	short rev[MAX_CONNS + 1];
	int nl = 0;
	/* Recompute who from the fds: a connection may be closed while handling another. */
	for (int i = 0; i < npf; i++) {
		if (!pf[i].revents)
			continue;
		if (pf[i].fd == listen_fd) {
			accept_all();
			continue;
		}
		for (int j = 0; j < MAX_CONNS; j++)
			if (conns[j] && conns[j]->fd == pf[i].fd && conns[j] != active) {
				list[nl] = conns[j];
				rev[nl++] = pf[i].revents;
			}
	}
	for (int i = 0; i < nl; i++) {
		int alive = 0;
		for (int j = 0; j < MAX_CONNS; j++)
			alive |= conns[j] == list[i];
		if (alive)
			conn_event(list[i], rev[i]);
	}
	return 0;
}

/* ---- listening ---- */

static void fail_listen(const char *fmt, const char *a, int err)
{
	char t[128], m[1024];
	snprintf(m, sizeof m, fmt, a, go_errno(err, t, sizeof t));
	log_json("error", "teemate-shim failed", m);
	_exit(1);
}

static void open_listener(void)
{
	if (cfg.proxy_fd >= 0) {
		int acc = 0;
		socklen_t l = sizeof acc;
		if (getsockopt(cfg.proxy_fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l) < 0 || !acc) {
			char m[128];
			snprintf(m, sizeof m, "TEEMATE_PROXY_FD=%d is not a listening socket", cfg.proxy_fd);
			log_json("error", "teemate-shim failed", m);
			_exit(1);
		}
		listen_fd = cfg.proxy_fd;
	} else if (cfg.proxy_socket) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		size_t pl = strlen(cfg.proxy_socket);
		if (unlink(cfg.proxy_socket) < 0 && errno != ENOENT)
			fail_listen("remove stale proxy socket: remove %s: %s", cfg.proxy_socket, errno);
		if (pl >= sizeof sa.sun_path)
			fail_listen("listen on %s: %s", cfg.proxy_socket, EINVAL);
		memcpy(sa.sun_path, cfg.proxy_socket, pl);
		listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) < 0)
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
		if (hl >= sizeof host)
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
		memset(&ss, 0, sizeof ss);
		socklen_t sl;
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		int fam;
		if (*h == 0) {
			fam = AF_INET6;
			s6->sin6_family = AF_INET6;
			s6->sin6_addr = in6addr_any;
			s6->sin6_port = htons((uint16_t)port);
			sl = sizeof *s6;
		} else if (strcmp(h, "localhost") == 0 || inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
			fam = AF_INET;
			s4->sin_family = AF_INET;
			if (strcmp(h, "localhost") == 0)
				s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
			s4->sin_port = htons((uint16_t)port);
			sl = sizeof *s4;
		} else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
			fam = AF_INET6;
			s6->sin6_family = AF_INET6;
			s6->sin6_port = htons((uint16_t)port);
			sl = sizeof *s6;
		} else {
			fail_listen("listen on %s: host must be numeric: %s", a, EINVAL);
			return;
		}
		listen_fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (listen_fd >= 0 && fam == AF_INET6 && *h == 0) {
			int off = 0;
			setsockopt(listen_fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
		}
		if (listen_fd < 0 && fam == AF_INET6 && *h == 0) {
			/* No IPv6: fall back to IPv4 any. */
			memset(&ss, 0, sizeof ss);
			s4->sin_family = AF_INET;
			s4->sin_port = htons((uint16_t)port);
			sl = sizeof *s4;
			listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		}
		int one = 1;
		if (listen_fd >= 0)
			setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&ss, sl) < 0 || listen(listen_fd, 128) < 0)
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

int main(void)
{
	config_from_env();
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = on_term; /* no SA_RESTART: poll returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	open_listener();

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
			if (conns[i] && conns[i]->head_deadline && (!wake || conns[i]->head_deadline < wake))
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
				if (conns[i] && conns[i]->head_deadline && now_ms() > conns[i]->head_deadline)
					conn_close(conns[i]);
			continue;
		}
		service(pf, n, NULL);
	}
}
