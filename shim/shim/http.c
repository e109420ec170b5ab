/*
 * The action-proxy HTTP server towards the invoker: connections, request heads and bodies, replies
 * with the outcome and timings headers, and the poll loop that serves them.
 */
#include "shim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- HTTP connections ---- */

struct conn *conns[MAX_CONNS];
struct conn *exit_conn; /* the reply after which the process exits */
int exit_pending;
int64_t exit_deadline;

void conn_close(struct conn *c)
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
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 411:
		return "Length Required";
	case 413:
		return "Request Entity Too Large";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

static void put_date(struct buf *b)
{
	char d[64];
	time_t t = time(NULL);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(d, sizeof(d), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	buf_puts(b, d);
}

static void timings_json(struct buf *b)
{
	if (timings.boot > 0) {
		buf_puts(b, "{\"bootMs\":");
		go_float(b, timings.boot);
		buf_puts(b, ",\"attachMs\":");
	} else {
		buf_puts(b, "{\"attachMs\":");
	}
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
void reply(struct conn *c, int status, const char *outcome, int with_timings, const char *body,
	   size_t n)
{
	struct buf *b = &c->out;

	buf_printf(b, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n", status,
		   reason(status));
	if (outcome)
		buf_printf(b, WIRE_HEADER_OUTCOME ": %s\r\n", outcome);
	if (with_timings) {
		buf_puts(b, WIRE_HEADER_TIMINGS ": ");
		timings_json(b);
		buf_puts(b, "\r\n");
	}
	if (c->close_after)
		buf_puts(b, "Connection: close\r\n");
	put_date(b);
	buf_printf(b, "Content-Length: %zu\r\n\r\n", n);
	buf_put(b, body, n);
}

void reply_error(struct conn *c, int status, const char *outcome, int with_timings, const char *msg)
{
	struct buf body;

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
	struct buf *b = &c->out;

	buf_printf(
		b,
		"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n%s",
		status, reason(status), extra_headers);
	if (c->close_after)
		buf_puts(b, "Connection: close\r\n");
	put_date(b);
	buf_printf(b, "Content-Length: %zu\r\n\r\n%s", strlen(body), body);
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
	buf_printf(
		&c->out,
		"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n%d %s%s%s",
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

/* start_request parses a complete request head and routes it. */
static void finish_body(struct conn *c);

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
		 * length known up front is what lets the shim bound its reads.
		 */
		c->close_after = 1;
		reply_error(c, 411, NULL, 0,
			    "Length Required: send the body with a Content-Length, not chunked");
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
	int route = (tl == 5 && memcmp(target, "/init", 5) == 0) ? R_INIT :
		    (tl == 4 && memcmp(target, "/run", 4) == 0)  ? R_RUN :
								   R_NONE;
	if (route == R_NONE)
		reply_plain(c, 404, "", "404 page not found\n");
	else if (!is_post)
		reply_plain(c, 405, "Allow: POST\r\n", "Method Not Allowed\n");
	else if (route == R_INIT && state != ST_FRESH)
		reply_error(c, 403, NULL, 0, MSG_INIT_TWICE);
	else if (route == R_RUN && state != ST_READY)
		reply_error(c, 403, NULL, 0,
			    state == ST_FRESH || state == ST_INITIALIZING ? MSG_NOT_INITIALIZED :
									    MSG_ONE_ACTIVATION);
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
			size_t d =
				c->discard_left < c->in.len ? (size_t)c->discard_left : c->in.len;
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

/*
 * conn_read buffers what the connection has sent. The buffer grows only when the head fills it
 * (doubling from FIRST_READ) or, once the head is parsed, to the exact size of head and body:
 * never to make room for bytes that are not there. The process lives for one activation on a
 * VM, where each page a copy touches is a fault and each freed mapping a TLB shootdown between
 * the CPUs; growing an 838-byte /init's 64 KiB buffer to 128 KiB cost 0.7 ms on its path.
 */
static void conn_read(struct conn *c)
{
	for (;;) {
		size_t cap = c->in.cap;

		if (c->phase == C_BODY) {
			size_t need = c->head_len + c->body_want;

			if (c->in.len >= need)
				break;
			if (cap < need)
				cap = need;
		} else if (c->in.len > MAX_HEAD + 1) {
			break; /* more than any head: advance parses or refuses what is here first */
		} else if (c->in.len == cap) {
			cap = cap ? cap * 2 : FIRST_READ;
		}
		if (cap != c->in.cap) {
			char *p = realloc(c->in.p, cap);

			if (!p) {
				c->eof = 1;
				break;
			}
			c->in.p = p;
			c->in.cap = cap;
		}
		size_t want = c->in.cap - c->in.len;

		if (c->phase == C_BODY && want > c->head_len + c->body_want - c->in.len)
			want = c->head_len + c->body_want - c->in.len;
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
		ssize_t w =
			send(c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
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
		struct conn *c = slot < 0 ? NULL : calloc(1, sizeof(*c));

		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		c->phase = C_HEAD;
		conns[slot] = c;
	}
}

int fill_pollfds(struct pollfd *pf, struct conn **who, struct conn *active)
{
	int n = 0;

	if (listen_fd >= 0 && !exit_pending) {
		pf[n] = (struct pollfd){ .fd = listen_fd, .events = POLLIN };
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
		pf[n] = (struct pollfd){ .fd = c->fd, .events = ev };
		who[n++] = c;
	}
	return n;
}

/* service handles poll results for the listener and connections (who[] parallel to pf). */
int service(struct pollfd *pf, int npf, struct conn *active)
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
