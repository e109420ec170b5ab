/*
 * The gate client towards the enclave owner (enclave-runtime/PROTOCOL.md): dial, length-prefixed
 * JSON frames with their size limits, and one request/reply exchange under a deadline.
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
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- gate client ---- */

/* gate_wait waits until the gate fd is ready for ev, serving the other connections meanwhile.
 * Returns 0, or a negative errno: -ETIMEDOUT at the deadline, -ECANCELED when the active client
 * hung up or the shim is told to stop.
 */
static int gate_wait(short ev, int64_t deadline_ms, struct conn *active)
{
	for (;;) {
		if (terminated)
			return -ECANCELED;
		int64_t left = deadline_ms - now_ms();

		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd pf[MAX_CONNS + 3];
		struct conn *who[MAX_CONNS + 3];

		pf[0] = (struct pollfd){ .fd = gate_fd, .events = ev };
		who[0] = NULL;
		int n = 1;

		if (active) {
			/* Only a hang-up of the invoker's connection matters now, not pipelined bytes. */
			pf[n] = (struct pollfd){ .fd = active->fd, .events = POLLRDHUP };
			who[n++] = active;
		}
		n += fill_pollfds(pf + n, who + n, active);
		int r = poll(pf, (nfds_t)n, left > 1000 ? 1000 : (int)left);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			continue;
		if (active && (pf[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return -ECANCELED;
		int base = active ? 2 : 1;

		service(pf + base, n - base, active);
		if (pf[0].revents)
			return 0;
	}
}

static void io_error(struct buf *e, const char *what, int err)
{
	if (err == ETIMEDOUT)
		buf_printf(e, "%s: the gate did not answer before the deadline", what);
	else if (err == ECANCELED)
		buf_printf(e, "%s: abandoned (the invoker hung up or the shim is stopping)", what);
	else
		buf_printf(e, "%s: %s", what, strerror(err));
}

/* gate_frame_header writes the 4-byte big-endian length that starts a gate frame of n bytes. */
void gate_frame_header(unsigned char hdr[4], size_t n)
{
	hdr[0] = (unsigned char)(n >> 24);
	hdr[1] = (unsigned char)(n >> 16);
	hdr[2] = (unsigned char)(n >> 8);
	hdr[3] = (unsigned char)n;
}

/* gate_writev writes the cnt pieces of iov in order, as one sendmsg while the socket takes them
 * all: a frame's header and body in one write wake the owner once, where two writes could wake
 * it for the header alone. It advances iov over what was written.
 */
static int gate_writev(struct iovec *iov, int cnt, int64_t deadline, struct conn *active,
		       struct buf *e)
{
	while (cnt > 0 && iov->iov_len == 0) {
		iov++;
		cnt--;
	}
	while (cnt > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)cnt };
		ssize_t w = sendmsg(gate_fd, &m, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				int err = gate_wait(POLLOUT, deadline, active);

				if (err) {
					io_error(e, "write gate frame", -err);
					return -1;
				}
				continue;
			}
			io_error(e, "write gate frame", errno);
			return -1;
		}
		size_t left = (size_t)w;

		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

int gate_write(const char *p, size_t n, int64_t deadline, struct conn *active, struct buf *e)
{
	struct iovec iov = { .iov_base = (void *)p, .iov_len = n };

	return gate_writev(&iov, 1, deadline, active, e);
}

/* gate_read reads exactly n bytes. Returns 0, or -1 with e set (Go's io.ReadFull wording). */
static int gate_read(char *p, size_t n, const char *what, int64_t deadline, struct conn *active,
		     struct buf *e)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = recv(gate_fd, p + got, n - got, 0);

		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		/* A reset is a close with frames of ours still unread (attach_ahead pipelines them). */
		if (r == 0 || errno == ECONNRESET) {
			buf_printf(e, "%s: %s", what,
				   got ? "the gate closed the connection mid-frame" :
					 "the gate closed the connection");
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			int err = gate_wait(POLLIN | POLLRDHUP, deadline, active);

			if (err) {
				io_error(e, what, -err);
				return -1;
			}
			continue;
		}
		io_error(e, what, errno);
		return -1;
	}
	return 0;
}

/* field finds the last member whose key matches name without regard to ASCII case (Go's rules
 * for struct fields: the last duplicate wins).
 */
int field(const char *obj, size_t n, const char *name, const char **v, size_t *vn)
{
	struct jiter it;
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
static int string_field(const char *obj, size_t n, const char *name, struct buf *out)
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
 * *obj (inside rb), 1 for a gate error reply (ge), -1 for any other failure (e).
 */
int gate_call(const struct buf *req, size_t limit, const char *want, int64_t deadline,
	      struct conn *active, struct buf *rb, const char **obj, size_t *objn, struct gerr *ge,
	      struct buf *e)
{
	if (!req)
		goto read_reply;
	if (!buf_stored(req) && req->oom) {
		buf_puts(e, "encode gate message: out of memory");
		return -1;
	}
	if (req->len == 0 || req->len > limit) {
		buf_printf(e, "gate frame too large: %zu bytes exceeds the limit of %zu", req->len,
			   limit);
		return -1;
	}
	unsigned char hdr[4];

	gate_frame_header(hdr, req->len);
	struct iovec iov[2] = { { .iov_base = hdr, .iov_len = 4 },
				{ .iov_base = req->p, .iov_len = req->len } };

	if (gate_writev(iov, 2, deadline, active, e))
		return -1;
read_reply:;
	char h[4];

	if (gate_read(h, 4, "read gate frame header", deadline, active, e))
		return -1;
	uint32_t n = ((uint32_t)(unsigned char)h[0] << 24) | ((uint32_t)(unsigned char)h[1] << 16) |
		     ((uint32_t)(unsigned char)h[2] << 8) | (unsigned char)h[3];
	if (n == 0 || n > MAX_REPLY_FRAME) {
		buf_printf(e, "gate frame too large: %u bytes exceeds the limit of %u", n,
			   MAX_REPLY_FRAME);
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
	int rc = json_scan(rb->p, rb->len, 0, &vs, &ve, err, sizeof(err));

	if (rc != JSON_OK) {
		buf_printf(e, "gate reply is not a JSON object: %s",
			   rc == JSON_SYNTAX ? err : "unexpected end of JSON input");
		return -1;
	}
	const char *v = rb->p + vs;
	size_t vn = ve - vs;
	enum jtype t = json_type(v);
	struct buf typ;

	buf_init(&typ, 0);
	if (t != JT_OBJECT && t != JT_NULL) {
		buf_printf(e, "gate reply is not a JSON object but %s", json_type_name(t));
		return -1;
	}
	if (t == JT_OBJECT && string_field(v, vn, "type", &typ)) {
		buf_puts(e, "gate reply malformed: type must be a string");
		buf_free(&typ);
		return -1;
	}
	int ret = 0;

	if (typ.len == 5 && memcmp(typ.p, "error", 5) == 0) {
		struct buf cls;

		buf_init(&cls, 0);
		if (string_field(v, vn, "class", &cls) ||
		    string_field(v, vn, "message", &ge->msg)) {
			buf_puts(e,
				 "gate error reply malformed: class and message must be strings");
			ret = -1;
		} else {
			snprintf(ge->cls, sizeof(ge->cls), "%.*s", (int)cls.len,
				 cls.p ? cls.p : "");
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

void gerr_text(struct buf *b, const struct gerr *ge)
{
	buf_printf(b, "gate %s error: %.*s", ge->cls, (int)ge->msg.len, ge->msg.p ? ge->msg.p : "");
}

int gate_dial(struct buf *e)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t pl = strlen(cfg.gate);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		buf_printf(e, "dial gate %s: socket: %s", cfg.gate, strerror(errno));
		return -1;
	}
	if (pl >= sizeof(sa.sun_path)) {
		close(fd);
		buf_printf(e, "dial gate %s: the path is longer than a unix socket path may be",
			   cfg.gate);
		return -1;
	}
	memcpy(sa.sun_path, cfg.gate, pl);
	int r;

	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		buf_printf(e, "dial gate %s: %s", cfg.gate, strerror(errno));
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	gate_fd = fd;
	return 0;
}
