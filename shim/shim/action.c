/*
 * The activation: /init (hello, acquire, init) and /run (run, logs, release) from the action-proxy
 * bodies to gate frames and back.
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

/* ---- /init ---- */

/* finish_failed_init ends the sandbox after a failed /init: sentinels before the reply, as the Go
 * shim prints them when the failure status is written.
 */
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
 * last of duplicate keys winning.
 */
static void env_encode(struct buf *b, struct env_entry *env, size_t n)
{
	if (n > 1)
		qsort(env, n, sizeof(*env), env_cmp);
	buf_putc(b, '{');
	int first = 1;

	for (size_t i = 0; i < n; i++) {
		if (i + 1 < n && env[i + 1].kn == env[i].kn &&
		    memcmp(env[i + 1].k, env[i].k, env[i].kn) == 0)
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
	struct buf store; /* decoded keys and values, NUL-separated; offsets fixed up at the end */
};

static int env_add(struct envlist *l, const char *k, size_t kn, const char *v, size_t vn)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct env_entry *p = realloc(l->e, cap * sizeof(*p));

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
	l->e[l->n] = (struct env_entry){ .k = (const char *)(uintptr_t)ko,
					 .kn = kn,
					 .v = (char *)(uintptr_t)vo,
					 .vn = vn,
					 .seq = l->n };
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
	memset(l, 0, sizeof(*l));
}

struct init_req {
	int has_value;
	struct buf name, main, code;
	int binary;
	struct envlist env;
};

/* type_err records the first field of the wrong JSON type. */
static void type_err(struct buf *err, enum jtype got, const char *where, const char *type)
{
	if (err->len)
		return;
	buf_printf(err, "%s must be %s, not %s", where, type, json_type_name(got));
}

static void decode_init_value(struct init_req *r, const char *v, size_t vn, struct buf *err)
{
	struct jiter it;
	const char *k, *x;
	size_t kn, xn;

	jiter_begin(&it, v, vn);
	while (jobj_next(&it, &k, &kn, &x, &xn)) {
		enum jtype t = json_type(x);
		struct buf *dst = json_key_is(k, kn, "name") ? &r->name :
				  json_key_is(k, kn, "main") ? &r->main :
				  json_key_is(k, kn, "code") ? &r->code :
							       NULL;
		if (dst) {
			char fname[16];

			snprintf(fname, sizeof(fname), "%s",
				 dst == &r->name ? "name" :
				 dst == &r->main ? "main" :
						   "code");
			if (t == JT_NULL)
				continue;
			if (t != JT_STRING) {
				char where[64];

				snprintf(where, sizeof(where), "value.%s", fname);
				type_err(err, t, where, "a string");
				continue;
			}
			buf_reset(dst);
			json_str_decode(x, xn, dst);
		} else if (json_key_is(k, kn, "binary")) {
			if (t == JT_NULL)
				continue;
			if (t != JT_BOOL)
				type_err(err, t, "value.binary", "a boolean");
			else
				r->binary = x[0] == 't';
		} else if (json_key_is(k, kn, "env")) {
			if (t == JT_NULL) {
				r->env.n = 0;
				continue;
			}
			if (t != JT_OBJECT) {
				type_err(err, t, "value.env", "an object");
				continue;
			}
			struct jiter ei;
			const char *ek, *ev;
			size_t ekn, evn;

			jiter_begin(&ei, x, xn);
			while (jobj_next(&ei, &ek, &ekn, &ev, &evn)) {
				struct buf key, val;

				buf_init(&key, 0);
				buf_init(&val, 0);
				json_str_decode(ek, ekn, &key);
				/* OpenWhisk's conversion: strings as they are, null as "", other values as
				 * their JSON text.
				 */
				enum jtype et = json_type(ev);

				if (et == JT_STRING)
					json_str_decode(ev, evn, &val);
				else if (et != JT_NULL)
					buf_put(&val, ev, evn);
				if (key.oom || val.oom ||
				    env_add(&r->env, key.p ? key.p : "", key.len,
					    val.p ? val.p : "", val.len))
					err->oom = 1;
				buf_free(&key);
				buf_free(&val);
			}
		}
	}
}

/* scan_body finds the first JSON value of a request body as Go's json.Decoder does, with the Go
 * shim's error texts (over: the body was cut at MAX_BODY). Returns 0 with the value at [*vs, *ve),
 * or -1 with the message in err.
 */
static int scan_body(const char *body, size_t n, int over, size_t *vs, size_t *ve, struct buf *err)
{
	char serr[160];
	int rc = json_scan(body, n, 1, vs, ve, serr, sizeof(serr));

	if (rc == JSON_SYNTAX) {
		buf_printf(err, "body is not valid JSON: %s", serr);
		return -1;
	}
	if (rc != JSON_OK) {
		if (over)
			buf_printf(err, "body exceeds %u bytes", MAX_BODY);
		else
			buf_printf(err, "body is not valid JSON: %s",
				   rc == JSON_EOF ? "EOF" : "unexpected EOF");
		return -1;
	}
	return 0;
}

/* decode_init applies Go's json.Decoder + Unmarshal rules for the /init body. Returns 0 or -1
 * with the message in err.
 */
static int decode_init(const char *body, size_t n, int over, struct init_req *r, struct buf *err)
{
	size_t vs, ve;

	if (scan_body(body, n, over, &vs, &ve, err) < 0)
		return -1;
	const char *v = body + vs;
	size_t vn = ve - vs;
	enum jtype t = json_type(v);
	struct buf terr;

	buf_init(&terr, 0);
	if (t == JT_OBJECT) {
		struct jiter it;
		const char *k, *x;
		size_t kn, xn;

		jiter_begin(&it, v, vn);
		while (jobj_next(&it, &k, &kn, &x, &xn)) {
			if (!json_key_is(k, kn, "value"))
				continue;
			enum jtype xt = json_type(x);

			if (xt == JT_NULL) {
				/* A null value clears an earlier one: the last "value" member wins. */
				r->has_value = 0;
				buf_reset(&r->name);
				buf_reset(&r->main);
				buf_reset(&r->code);
				r->binary = 0;
				r->env.n = 0;
			} else if (xt != JT_OBJECT) {
				type_err(&terr, xt, "value", "an object");
			} else {
				r->has_value = 1;
				decode_init_value(r, x, xn, &terr);
			}
		}
	} else if (t != JT_NULL) {
		type_err(&terr, t, "the body", "an object");
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

/* check_welcome checks the types of a welcome's fields; a malformed one is an attach failure.
 * Returns 0 or -1 (err set).
 */
static int check_welcome(const char *obj, size_t objn, struct buf *err)
{
	static const char *const strs[] = { "enclave", "image", "mode", "isolate" };
	static const char *const ints[] = { "slots", "free" };
	const char *v;
	size_t vn;
	long long x;

	for (size_t i = 0; i < ARRAY_SIZE(strs); i++)
		if (field(obj, objn, strs[i], &v, &vn) && json_type(v) != JT_NULL &&
		    json_type(v) != JT_STRING) {
			buf_printf(err, "gate welcome reply malformed: %s must be a string, not %s",
				   strs[i], json_type_name(json_type(v)));
			return -1;
		}
	for (size_t i = 0; i < ARRAY_SIZE(ints); i++)
		if (field(obj, objn, ints[i], &v, &vn) && json_type(v) != JT_NULL &&
		    (json_type(v) != JT_NUMBER || json_int64(v, vn, &x))) {
			buf_printf(err,
				   "gate welcome reply malformed: %s must be an integer, not %s",
				   ints[i], json_type_name(json_type(v)));
			return -1;
		}
	return 0;
}

/* check_acquired checks that an acquired reply names its slot. Returns 0 or -1 (err set). */
static int check_acquired(const char *obj, size_t objn, struct buf *err)
{
	const char *v;
	size_t vn;
	long long x;

	if (!field(obj, objn, "tcs", &v, &vn) || json_type(v) == JT_NULL) {
		buf_puts(err, "gate acquired reply without tcs");
		return -1;
	}
	if (json_type(v) != JT_NUMBER || json_int64(v, vn, &x)) {
		buf_printf(err, "gate acquired reply malformed: tcs must be an integer, not %s",
			   json_type_name(json_type(v)));
		return -1;
	}
	return 0;
}

/* hello_frame encodes the hello this sandbox sends: its name and, when set, its credentials. */
static void hello_frame(struct buf *req)
{
	buf_printf(req, "{\"type\":\"hello\",\"version\":%d", WIRE_GATE_VERSION);
	if (*cfg.sandbox) {
		buf_puts(req, ",\"sandbox\":");
		json_str_encode(req, cfg.sandbox, strlen(cfg.sandbox));
	}
	/* The sandbox's one-time capability for its activation (PROTOCOL.md, "Authentication"). */
	const char *tok = getenv("TEEMATE_GATE_TOKEN");

	if (tok && *tok) {
		static const char *const cred[][2] = { { "activation", "TEEMATE_ACTIVATION_ID" },
						       { "namespace", "TEEMATE_NAMESPACE" },
						       { "token", "TEEMATE_GATE_TOKEN" } };
		for (size_t i = 0; i < ARRAY_SIZE(cred); i++) {
			const char *v = getenv(cred[i][1]);

			if (v && *v) {
				buf_printf(req, ",\"%s\":", cred[i][0]);
				json_str_encode(req, v, strlen(v));
			}
		}
	}
	/* A hint the owner ranks its slots by (PROTOCOL.md, "hello"); it decides nothing. */
	const char *sealed = getenv("TEEMATE_SEALED");

	if (sealed && strcmp(sealed, "1") == 0)
		buf_puts(req, ",\"sealed\":true");
	buf_putc(req, '}');
}

/* frame_append adds msg to out as one length-prefixed gate frame. */
static void frame_append(struct buf *out, const struct buf *msg)
{
	unsigned char hdr[4];

	gate_frame_header(hdr, msg->len);
	buf_put(out, (const char *)hdr, 4);
	buf_put(out, msg->p, msg->len);
}

/*
 * Attaching ahead of /init. hello and acquire depend on the sandbox, not on the action, so the
 * shim dials its gate and sends both in one write as soon as it has its configuration: the
 * owner's accept of the connection (about half a millisecond of its event loop, cold, on this VM)
 * and both answers then overlap with the invoker's /init instead of following it, and acquire
 * does not wait for welcome. /init reads the two replies in order and reports a failure exactly
 * as before. A dial that fails ahead is tried again at /init.
 */
static struct {
	int sent;         /* hello and acquire are written */
	int write_failed; /* the write failed, as err says */
	struct buf err;
} ahead;

void attach_ahead(void)
{
	if (ahead.sent || ahead.write_failed || cfg.start_error || gate_fd >= 0)
		return;
	buf_reset(&ahead.err);
	if (gate_dial(&ahead.err) < 0)
		return;
	struct buf hello, out;

	buf_init(&hello, 0);
	buf_init(&out, 0);
	hello_frame(&hello);
	if (hello.len > MAX_OTHER_FRAME) {
		buf_printf(&ahead.err, "gate frame too large: %zu bytes exceeds the limit of %u",
			   hello.len, MAX_OTHER_FRAME);
		ahead.write_failed = 1;
		goto done;
	}
	frame_append(&out, &hello);
	buf_reset(&hello);
	buf_puts(&hello, "{\"type\":\"acquire\"}");
	frame_append(&out, &hello);
	if (!buf_stored(&out)) {
		buf_puts(&ahead.err, "encode gate message: out of memory");
		ahead.write_failed = 1;
	} else if (gate_write(out.p, out.len, now_ms() + cfg.timeout_ms + GRACE_MS, NULL,
			      &ahead.err)) {
		ahead.write_failed = 1;
	} else {
		ahead.sent = 1;
	}
done:
	buf_free(&hello);
	buf_free(&out);
}

void handle_init(struct conn *c, const char *body, size_t n, int over)
{
	struct init_req r;

	memset(&r, 0, sizeof(r));
	struct buf err, msg, req, rb;

	buf_init(&err, 0);
	buf_init(&msg, 0);
	buf_init(&req, MAX_INIT_FRAME);
	buf_init(&rb, 0);
	struct gerr ge;

	memset(&ge, 0, sizeof(ge));
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
	if (cfg.start_error) {
		timings.boot = timings.attach = cfg.boot_ms;
		buf_puts(&msg, "The enclave runtime did not start: ");
		buf_puts(&msg, cfg.start_error);
		buf_putc(&msg, 0);
		init_failed(c, 502, WIRE_OUTCOME_GATE, msg.p ? msg.p : "");
		goto out;
	}
	int64_t deadline = now_ms() + cfg.timeout_ms + GRACE_MS;
	int64_t t0 = now_ns();

	attach_ahead(); /* done at the start unless its dial failed then */
	if (!ahead.sent) {
		buf_put(&err, ahead.err.p, ahead.err.len);
		buf_puts(&msg, ahead.write_failed ? "The enclave refused to attach: " :
						    "The enclave is not reachable: ");
		goto gate_failure;
	}
	rc = gate_call(NULL, MAX_OTHER_FRAME, "welcome", deadline, c, &rb, &obj, &objn, &ge, &err);
	if (rc == 0)
		rc = check_welcome(obj, objn, &err);
	if (rc != 0) {
		buf_puts(&msg, "The enclave refused to attach: ");
		goto gate_failure_rc;
	}
	int64_t t1 = now_ns();
	/* A strawman sandbox booted its runtime first: that is part of attaching to an enclave. */
	timings.boot = cfg.boot_ms;
	timings.attach = (double)((t1 - t0) / 1000) / 1000.0 + cfg.boot_ms;
	rc = gate_call(NULL, MAX_OTHER_FRAME, "acquired", deadline, c, &rb, &obj, &objn, &ge, &err);
	if (rc == 0)
		rc = check_acquired(obj, objn, &err);
	if (rc != 0) {
		buf_puts(&msg, "No enclave thread could be taken: ");
		if (rc == 1) {
			gerr_text(&msg, &ge);
			buf_putc(&msg, 0);
			init_failed(c, strcmp(ge.cls, "busy") == 0 ? 503 : 502, WIRE_OUTCOME_GATE,
				    msg.p);
		} else {
			buf_put(&msg, err.p, err.len);
			buf_putc(&msg, 0);
			init_failed(c, 502, WIRE_OUTCOME_GATE, msg.p ? msg.p : "");
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
	rc = gate_call(&req, MAX_INIT_FRAME, "initialized", deadline, c, &rb, &obj, &objn, &ge,
		       &err);
	timings.init = ms_since(t2);
	if (rc == 1 && strcmp(ge.cls, "init") == 0) {
		buf_put(&msg, ge.msg.p, ge.msg.len);
		buf_putc(&msg, 0);
		init_failed(c, 502, WIRE_OUTCOME_DEVELOPER, msg.p ? msg.p : "");
		goto out;
	}
	if (rc == 1) {
		buf_puts(&msg, "The enclave failed to initialize the action: ");
		gerr_text(&msg, &ge);
		buf_putc(&msg, 0);
		init_failed(c, 502, WIRE_OUTCOME_GATE, msg.p);
		goto out;
	}
	if (rc < 0) {
		/* The connection broke: the owner went away while preparing the action. */
		init_failed(c, 502, WIRE_OUTCOME_DEVELOPER, MSG_ABNORMAL_INIT);
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
		init_failed(c, 502, WIRE_OUTCOME_GATE, msg.p);
		goto out;
	}
gate_failure:
	buf_put(&msg, err.p, err.len);
	buf_putc(&msg, 0);
	init_failed(c, 502, WIRE_OUTCOME_GATE, msg.p ? msg.p : "");
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

static long long clamp(long long v, long long lo, long long hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* run_message builds the gate run frame from OpenWhisk's /run body (Go's runMessage). */
static int run_message(const char *body, size_t n, int over, struct buf *frame, struct buf *err)
{
	size_t vs, ve;

	if (scan_body(body, n, over, &vs, &ve, err) < 0)
		return -1;
	const char *v = body + vs;
	size_t vn = ve - vs;
	enum jtype t = json_type(v);

	if (t == JT_NULL) {
		buf_puts(err, "body must be a JSON object");
		return -1;
	}
	if (t != JT_OBJECT) {
		buf_printf(err, "the body must be an object, not %s", json_type_name(t));
		return -1;
	}
	const char *value = NULL;
	size_t valuen = 0;
	struct envlist env;

	memset(&env, 0, sizeof(env));
	struct jiter it;
	const char *k, *x;
	size_t kn, xn;

	jiter_begin(&it, v, vn);
	struct buf key, val;

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
		enum jtype xt = json_type(x);
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
		if (val.oom || key.oom ||
		    env_add(&env, val.p, klen, val.p + klen, val.len - klen)) {
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
		   clamp(cfg.timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS),
		   clamp(cfg.memory_mb, MIN_MEMORY_MB, MAX_MEMORY_MB),
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
	struct buf outcome;
	const char *res;
	size_t resn;
	const char *logs;
	size_t logsn;
	int have_timings;
	double isolate, run, teardown, last_teardown;
};

/* decode_result checks a result reply with Go's typing rules. Returns 0 or -1 (e set). */
static int decode_result(const char *obj, size_t n, struct result *r, struct buf *e)
{
	struct jiter it;
	const char *k, *x;
	size_t kn, xn;

	jiter_begin(&it, obj, n);
	while (jobj_next(&it, &k, &kn, &x, &xn)) {
		enum jtype t = json_type(x);

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
			struct jiter ai;
			const char *el;
			size_t eln;

			jiter_begin(&ai, x, xn);
			while (jarr_next(&ai, &el, &eln)) {
				enum jtype et = json_type(el);

				if (et == JT_NULL)
					continue;
				if (et != JT_OBJECT)
					goto bad;
				struct jiter fi;
				const char *fk, *fv;
				size_t fkn, fvn;

				jiter_begin(&fi, el, eln);
				while (jobj_next(&fi, &fk, &fkn, &fv, &fvn)) {
					if ((json_key_is(fk, fkn, "stream") ||
					     json_key_is(fk, fkn, "time") ||
					     json_key_is(fk, fkn, "line")) &&
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
			struct jiter ti;
			const char *tk, *tv;
			size_t tkn, tvn;

			jiter_begin(&ti, x, xn);
			while (jobj_next(&ti, &tk, &tkn, &tv, &tvn)) {
				double d = 0;
				enum jtype tt = json_type(tv);

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
	static const char *const outcomes[] = { WIRE_OUTCOME_SUCCESS, WIRE_OUTCOME_APPLICATION,
						WIRE_OUTCOME_DEVELOPER, WIRE_OUTCOME_TIMEOUT,
						WIRE_OUTCOME_MEMORY };
	for (size_t i = 0; i < ARRAY_SIZE(outcomes); i++)
		if (r->outcome.len == strlen(outcomes[i]) &&
		    memcmp(r->outcome.p, outcomes[i], r->outcome.len) == 0)
			return 0;
	buf_puts(e, "gate result with unknown outcome ");
	go_quote(e, r->outcome.p ? r->outcome.p : "", r->outcome.len);
	return -1;
bad:
	buf_puts(e, "gate result reply malformed: wrong JSON type");
	return -1;
}

/* put_stamp appends a log line's time as the enclave wrote it, or "-" when it is missing or not one
 * word (the host then stamps the line itself).
 */
static void put_stamp(struct buf *out, const struct buf *stamp)
{
	int ok = stamp->len > 0 && stamp->len <= 64;

	for (size_t i = 0; ok && i < stamp->len; i++)
		ok = stamp->p[i] > ' ' && stamp->p[i] < 0x7f;
	if (ok)
		buf_put(out, stamp->p, stamp->len);
	else
		buf_putc(out, '-');
	buf_putc(out, ' ');
}

/* write_logs prints the activation's captured lines, each on its own stream and prefixed with the
 * time the enclave gave it ("<time> <line>"), so the host keeps the enclave's stream and time (see
 * invoker/internal/proxy, LogConfig.Stamped). A line holding newlines becomes several lines with
 * the same time. Runs of lines for the same stream are coalesced into one write.
 */
static void write_logs(const char *logs, size_t n)
{
	if (!logs)
		return;
	struct buf out, line, stamp;

	buf_init(&out, 0);
	buf_init(&line, 0);
	buf_init(&stamp, 0);
	int cur = 1;
	struct jiter ai;
	const char *el;
	size_t eln;

	jiter_begin(&ai, logs, n);
	while (jarr_next(&ai, &el, &eln)) {
		int fd = 1;

		buf_reset(&line);
		buf_reset(&stamp);
		if (json_type(el) == JT_OBJECT) {
			const char *v;
			size_t vn;

			if (field(el, eln, "stream", &v, &vn) && vn == 8 &&
			    memcmp(v, "\"stderr\"", 8) == 0)
				fd = 2;
			if (field(el, eln, "line", &v, &vn) && json_type(v) == JT_STRING)
				json_str_decode(v, vn, &line);
			if (field(el, eln, "time", &v, &vn) && json_type(v) == JT_STRING)
				json_str_decode(v, vn, &stamp);
		}
		if (fd != cur || out.len > (1u << 20)) {
			if (buf_stored(&out))
				write_all(cur, out.p, out.len);
			buf_reset(&out);
			cur = fd;
		}
		size_t from = 0;

		for (size_t i = 0; i <= line.len; i++) {
			if (i < line.len && line.p[i] != '\n')
				continue;
			put_stamp(&out, &stamp);
			buf_put(&out, line.p ? line.p + from : "", i - from);
			buf_putc(&out, '\n');
			from = i + 1;
		}
	}
	if (buf_stored(&out))
		write_all(cur, out.p, out.len);
	buf_free(&out);
	buf_free(&line);
	buf_free(&stamp);
}

static int release_pending;
int64_t release_deadline;
static char *release_error;

/* await_release reads the answer to the release sent before the reply, then logs a failure. */
void await_release(void)
{
	if (release_pending) {
		struct buf e, rb;

		buf_init(&e, 0);
		buf_init(&rb, 0);
		struct gerr ge;

		memset(&ge, 0, sizeof(ge));
		buf_init(&ge.msg, 0);
		const char *obj;
		size_t objn;
		int rr = gate_call(NULL, 0, "released", release_deadline, NULL, &rb, &obj, &objn,
				   &ge, &e);
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

void handle_run(struct conn *c, const char *body, size_t n, int over)
{
	struct buf frame, err, msg, rb;

	buf_init(&frame, MAX_OTHER_FRAME);
	buf_init(&err, 0);
	buf_init(&msg, 0);
	buf_init(&rb, 0);
	struct gerr ge;

	memset(&ge, 0, sizeof(ge));
	buf_init(&ge.msg, 0);
	struct result res;

	memset(&res, 0, sizeof(res));
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
	int64_t deadline =
		now_ms() + clamp(cfg.timeout_ms, MIN_TIMEOUT_MS, MAX_TIMEOUT_MS) + GRACE_MS;
	int rc = gate_call(&frame, MAX_OTHER_FRAME, "result", deadline, c, &rb, &obj, &objn, &ge,
			   &err);
	if (rc == 0 && decode_result(obj, objn, &res, &err))
		rc = -1;
	if (rc == 1) {
		sentinels();
		buf_puts(&msg, "The enclave failed to run the action: ");
		gerr_text(&msg, &ge);
		buf_putc(&msg, 0);
		reply_error(c, 502, WIRE_OUTCOME_GATE, 1, msg.p);
		goto out;
	}
	if (rc < 0) {
		/* The owner went away (or stopped answering) while the action ran: OpenWhisk's answer
		 * for a container that died mid-run.
		 */
		sentinels();
		reply_error(c, 502, WIRE_OUTCOME_DEVELOPER, 1, MSG_ABNORMAL_RUN);
		buf_putc(&err, 0);
		log_json("warn", "gate connection lost during run", err.p ? err.p : "");
		goto out;
	}
	timings.isolate = res.isolate;
	timings.run = res.run;
	/* The addon tears an isolate down after answering, so it reports the slot's previous
	 * teardown instead.
	 */
	timings.teardown = res.teardown != 0 ? res.teardown : res.last_teardown;
	write_logs(res.logs, res.logsn);
	sentinels();
	/* The release goes out before the reply, so the slot is free by the time the invoker hands
	 * it out again; its answer is read after the reply, off the activation's path. Closing the
	 * connection frees the slot anyway; the release is only the fast path.
	 */
	{
		static const char rel[] = "\0\0\0\x12{\"type\":\"release\"}";
		struct buf rerr;

		buf_init(&rerr, 0);
		release_deadline = now_ms() + 2000;
		if (gate_write(rel, sizeof(rel) - 1, release_deadline, NULL, &rerr) == 0) {
			release_pending = 1;
		} else {
			buf_putc(&rerr, 0);
			release_error = strdup(rerr.p ? rerr.p : "");
		}
		buf_free(&rerr);
	}
	/* The outcome goes on unchanged in its header; the status only says whether the action
	 * produced its result (200) or failed (502), as an OpenWhisk action proxy does.
	 */
	int ok = (res.outcome.len == strlen(WIRE_OUTCOME_SUCCESS) &&
		  memcmp(res.outcome.p, WIRE_OUTCOME_SUCCESS, res.outcome.len) == 0) ||
		 (res.outcome.len == strlen(WIRE_OUTCOME_APPLICATION) &&
		  memcmp(res.outcome.p, WIRE_OUTCOME_APPLICATION, res.outcome.len) == 0);
	char oc[16];

	snprintf(oc, sizeof(oc), "%.*s", (int)res.outcome.len, res.outcome.p);
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
