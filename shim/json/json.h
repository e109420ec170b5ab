/*
 * Small JSON toolkit for the programs in shim/: a validating scanner that reports the first syntax
 * error (in the wording of Go's encoding/json, which the invoker's side also uses), a walker over
 * already validated text, string decoding and encoding, and number formatting (the shortest form
 * that reads back as the same float64, as the invoker's side prints it).
 *
 * Nothing here allocates per value: callers work on spans of the input and growable buffers.
 */
#ifndef TEEMATE_JSON_H
#define TEEMATE_JSON_H

#include <stddef.h>
#include <stdint.h>

/* struct buf is a growable byte buffer. With limit > 0 it stops storing past limit bytes but keeps
 * counting len, so a caller can learn the size of an oversize frame without holding it. A failed
 * allocation sets oom; every writer checks it so a caller only has to look once at the end.
 */
struct buf {
	char *p;
	size_t len, cap, limit;
	int oom;
};

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_put(struct buf *b, const void *s, size_t n);
void buf_putc(struct buf *b, char c);
void buf_puts(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* stored reports whether every counted byte is also stored (not over limit, no oom). */
int buf_stored(const struct buf *b);

enum { JSON_OK = 0, JSON_EOF, JSON_UNEXPECTED_EOF, JSON_SYNTAX };

/* json_scan validates the first JSON value in s[0:n].
 * stream != 0 behaves like Go's json.Decoder: leading white space is skipped and anything after
 * the first complete value is ignored; empty input is JSON_EOF.
 * stream == 0 behaves like json.Unmarshal: only white space may follow the value.
 * On success vstart and vend delimit the value. On JSON_SYNTAX err holds Go's message.
 */
int json_scan(const char *s, size_t n, int stream, size_t *vstart, size_t *vend, char *err,
	      size_t errcap);

enum jtype { JT_NULL, JT_BOOL, JT_NUMBER, JT_STRING, JT_OBJECT, JT_ARRAY };

/* The functions below require validated input. */
enum jtype json_type(const char *v);
/* json_type_name is Go's name of a JSON value kind in type errors ("number", "object", ...). */
const char *json_type_name(enum jtype t);
size_t json_skip(const char *s, size_t n, size_t i);

struct jiter {
	const char *s;
	size_t n, i;
};

/* Iterate over the members of an object (v at '{') or the elements of an array (v at '['). */
void jiter_begin(struct jiter *it, const char *v, size_t vn);
int jobj_next(struct jiter *it, const char **k, size_t *kn, const char **v, size_t *vn);
int jarr_next(struct jiter *it, const char **v, size_t *vn);

/* json_str_decode appends the decoded text of a string literal (quotes included in lit) to out,
 * with Go's rules: invalid UTF-8 and lone surrogates become U+FFFD.
 */
void json_str_decode(const char *lit, size_t n, struct buf *out);
/* json_key_is reports whether a key literal decodes to name, ignoring ASCII case (Go matches
 * struct fields that way).
 */
int json_key_is(const char *lit, size_t n, const char *name);
/* json_str_encode appends s as a JSON string literal exactly as Go's json.Marshal writes it. */
void json_str_encode(struct buf *b, const char *s, size_t n);
/* json_compact appends a validated value without insignificant white space, escaping <, >, &,
 * U+2028 and U+2029 as Go's json.Marshal does for a json.RawMessage.
 */
void json_compact(struct buf *b, const char *v, size_t n);
/* go_float appends v the way Go's encoding/json prints a float64. */
void go_float(struct buf *b, double v);
/* go_quote appends s quoted as Go's strconv.Quote (fmt %q) does. */
void go_quote(struct buf *b, const char *s, size_t n);
/* json_int64 parses a JSON number that must be an integer in int64 range (Go's int decoding). */
int json_int64(const char *v, size_t n, long long *out);
/* json_float parses a JSON number into a finite double (Go's float64 decoding). */
int json_float(const char *v, size_t n, double *out);

#endif
