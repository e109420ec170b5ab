/*
 * Shared declarations of the teemate shim's parts: main.c (configuration, output, the main loop,
 * the listener), http.c (the action-proxy HTTP server towards the invoker), gate.c (the gate client
 * towards the enclave owner) and action.c (the /init and /run handlers that join the two).
 */
#ifndef TEEMATE_SHIM_H
#define TEEMATE_SHIM_H

#define _GNU_SOURCE
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "../json/json.h"
#include "wire.h"

#define MAX_BODY          WIRE_MAX_BODY
#define MAX_INIT_FRAME    WIRE_MAX_INIT_FRAME
#define MAX_OTHER_FRAME   WIRE_MAX_OTHER_FRAME
#define MAX_REPLY_FRAME   WIRE_MAX_REPLY_FRAME
#define MAX_HEAD          (64u << 10)
#define FIRST_READ        (16u << 10) /* a connection's first buffer: an /init or /run of a small action */
#define MAX_DISCARD       (256u << 10)
#define MAX_CONNS         64
#define GRACE_MS          5000
#define HEADER_TIMEOUT_MS 10000
#define SHUTDOWN_MS       5000

/* ARRAY_SIZE is the element count of an array (not of a pointer). */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Gate run limits; limits outside are clamped, not refused. */
#define MIN_TIMEOUT_MS WIRE_MIN_TIMEOUT_MS
#define MAX_TIMEOUT_MS WIRE_MAX_TIMEOUT_MS
#define MIN_MEMORY_MB  WIRE_MIN_MEMORY_MB
#define MAX_MEMORY_MB  WIRE_MAX_MEMORY_MB
#define MAX_LOG_LIMIT  WIRE_MAX_LOG_LIMIT

/* OpenWhisk's action-proxy texts. */
#define MSG_INIT_TWICE      "Cannot initialize the action more than once."
#define MSG_NOT_INITIALIZED "System not initialized."
#define MSG_MISSING_CODE    "Missing main/no code to execute."
#define MSG_ONE_ACTIVATION  "This sandbox serves exactly one activation."
#define MSG_ABNORMAL_INIT   "The action did not initialize and exited unexpectedly."
#define MSG_ABNORMAL_RUN    "The action did not produce a valid response and exited unexpectedly."

struct config {
	const char *proxy_socket, *proxy_addr, *gate, *sandbox;
	long long memory_mb, log_limit, timeout_ms;
	int network;             /* TEEMATE_NETWORK=1: the run says the action has network */
	int proxy_fd;            /* -1: bind proxy_socket or proxy_addr */
	double boot_ms;          /* strawman: the enclave runtime's boot time (TEEMATE_BOOT_MS) */
	const char *start_error; /* strawman: why the runtime did not start (TEEMATE_START_ERROR) */
};

struct timings {
	double boot, attach, tcs, init, isolate, run, teardown;
};

enum { ST_FRESH, ST_INITIALIZING, ST_READY, ST_RUNNING, ST_DONE };
enum { C_HEAD, C_BODY, C_DISCARD, C_HANDLING, C_WRITE };
enum { R_NONE, R_INIT, R_RUN };

struct conn {
	int fd;
	int phase;
	struct buf in;
	struct buf out;
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

struct gerr {
	char cls[64];
	struct buf msg;
};

extern struct config cfg;
extern struct timings timings;
extern int state;
extern int gate_fd;
extern volatile sig_atomic_t terminated;
extern int listen_fd;
extern struct conn *conns[MAX_CONNS];
extern struct conn *exit_conn;
extern int exit_pending;
extern int64_t exit_deadline;
extern int64_t release_deadline;

int64_t now_ns(void);
int64_t now_ms(void);
double ms_since(int64_t t0);
void write_all(int fd, const char *p, size_t n);
void sentinels(void);
void log_json(const char *level, const char *msg, const char *err);
void close_gate(void);
void conn_close(struct conn *c);
void reply(struct conn *c, int status, const char *outcome, int with_timings, const char *body,
	   size_t n);
void reply_error(struct conn *c, int status, const char *outcome, int with_timings,
		 const char *msg);
int fill_pollfds(struct pollfd *pf, struct conn **who, struct conn *active);
int service(struct pollfd *pf, int npf, struct conn *active);
void gate_frame_header(unsigned char hdr[4], size_t n);
int gate_write(const char *p, size_t n, int64_t deadline, struct conn *active, struct buf *e);
int field(const char *obj, size_t n, const char *name, const char **v, size_t *vn);
int gate_call(const struct buf *req, size_t limit, const char *want, int64_t deadline,
	      struct conn *active, struct buf *rb, const char **obj, size_t *objn, struct gerr *ge,
	      struct buf *e);
void gerr_text(struct buf *b, const struct gerr *ge);
int gate_dial(struct buf *e);
void attach_ahead(void);
void handle_init(struct conn *c, const char *body, size_t n, int over);
void await_release(void);
void handle_run(struct conn *c, const char *body, size_t n, int over);

#endif
