/* See json.h. The scanner is a byte-at-a-time state machine so that it finds the same first error,
 * at the same byte, as Go's encoding/json; nesting is kept on an explicit stack (no recursion).
 */
#define _GNU_SOURCE
#include "json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffers ---- */

void buf_init(struct buf *b, size_t limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit;
}

void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->oom = 0;
}

int buf_stored(const struct buf *b)
{
	return !b->oom && (b->limit == 0 || b->len <= b->limit);
}

void buf_put(struct buf *b, const void *s, size_t n)
{
	if (n == 0)
		return;
	if (b->oom || n > SIZE_MAX - b->len) {
		b->oom = 1;
		return;
	}
	size_t need = b->len + n;

	if (b->limit && need > b->limit) {
		b->len = need; /* count only */
		return;
	}
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		char *p = realloc(b->p, cap);

		if (!p) {
			b->oom = 1;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len = need;
}

void buf_putc(struct buf *b, char c)
{
	buf_put(b, &c, 1);
}

void buf_puts(struct buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);

	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		buf_put(b, tmp, (size_t)n);
		return;
	}
	char *big = malloc((size_t)n + 1);

	if (!big) {
		b->oom = 1;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf_put(b, big, (size_t)n);
	free(big);
}

/* ---- UTF-8 ---- */

/* utf8_rune decodes one rune as Go's utf8.DecodeRune does; an invalid sequence is width 1, r -1. */
static size_t utf8_rune(const unsigned char *s, size_t n, long *r)
{
	unsigned int c = s[0];

	if (c < 0x80) {
		*r = c;
		return 1;
	}
	*r = -1;
	size_t w;
	unsigned int lo = 0x80, hi = 0xBF;
	long v;

	if (c >= 0xC2 && c <= 0xDF) {
		w = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		w = 3;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		w = 4;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 1;
	}
	if (n < w || s[1] < lo || s[1] > hi)
		return 1;
	v = (v << 6) | (s[1] & 0x3F);
	for (size_t i = 2; i < w; i++) {
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 1;
		v = (v << 6) | (s[i] & 0x3F);
	}
	*r = v;
	return w;
}

static void put_utf8(struct buf *b, long r)
{
	char t[4];

	if (r < 0x80) {
		t[0] = (char)r;
		buf_put(b, t, 1);
	} else if (r < 0x800) {
		t[0] = (char)(0xC0 | (r >> 6));
		t[1] = (char)(0x80 | (r & 0x3F));
		buf_put(b, t, 2);
	} else if (r < 0x10000) {
		t[0] = (char)(0xE0 | (r >> 12));
		t[1] = (char)(0x80 | ((r >> 6) & 0x3F));
		t[2] = (char)(0x80 | (r & 0x3F));
		buf_put(b, t, 3);
	} else {
		t[0] = (char)(0xF0 | (r >> 18));
		t[1] = (char)(0x80 | ((r >> 12) & 0x3F));
		t[2] = (char)(0x80 | ((r >> 6) & 0x3F));
		t[3] = (char)(0x80 | (r & 0x3F));
		buf_put(b, t, 4);
	}
}

/* ---- Go's quoting ---- */

/* go_isprint approximates strconv.IsPrint: the Latin-1 and common non-printables are exact;
 * beyond those, the few format and separator characters that matter in practice.
 */
static int go_isprint(long r)
{
	if (r < 0x20 || r == 0x7F)
		return 0;
	if (r < 0x7F)
		return 1;
	if (r < 0xA0 || r == 0xA0 || r == 0xAD)
		return 0;
	if ((r >= 0x2000 && r <= 0x200F) || (r >= 0x2028 && r <= 0x202F) ||
	    (r >= 0x205F && r <= 0x206F) || r == 0x3000 || r == 0xFEFF ||
	    (r >= 0xFFF9 && r <= 0xFFFB) || (r >= 0xD800 && r <= 0xDFFF) || r > 0x10FFFF)
		return 0;
	return 1;
}

static void quote_rune(struct buf *b, long r, char q)
{
	if (r == q || r == '\\') {
		buf_putc(b, '\\');
		buf_putc(b, (char)r);
		return;
	}
	if (go_isprint(r)) {
		put_utf8(b, r);
		return;
	}
	switch (r) {
	case '\a':
		buf_puts(b, "\\a");
		return;
	case '\b':
		buf_puts(b, "\\b");
		return;
	case '\f':
		buf_puts(b, "\\f");
		return;
	case '\n':
		buf_puts(b, "\\n");
		return;
	case '\r':
		buf_puts(b, "\\r");
		return;
	case '\t':
		buf_puts(b, "\\t");
		return;
	case '\v':
		buf_puts(b, "\\v");
		return;
	}
	if (r < 0x20 || r == 0x7F)
		buf_printf(b, "\\x%02x", (unsigned int)r);
	else if (r < 0x10000)
		buf_printf(b, "\\u%04x", (unsigned int)r);
	else
		buf_printf(b, "\\U%08x", (unsigned int)r);
}

void go_quote(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	buf_putc(b, '"');
	for (size_t i = 0; i < n;) {
		long r;
		size_t w = utf8_rune(u + i, n - i, &r);

		if (r < 0)
			buf_printf(b, "\\x%02x", u[i]);
		else
			quote_rune(b, r, '"');
		i += w;
	}
	buf_putc(b, '"');
}

/* quote_char is Go's scanner quoteChar: the byte is taken as a Latin-1 rune. */
static void quote_char(char *out, size_t cap, unsigned char c)
{
	struct buf b;

	buf_init(&b, 0);
	if (c == '\'')
		buf_puts(&b, "'\\''");
	else if (c == '"')
		buf_puts(&b, "'\"'");
	else {
		buf_putc(&b, '\'');
		quote_rune(&b, c, '\'');
		buf_putc(&b, '\'');
	}
	snprintf(out, cap, "%.*s", b.p ? (int)b.len : 0, b.p ? b.p : "");
	buf_free(&b);
}

/* ---- scanner ---- */

enum {
	S_VALUE,        /* expecting a value */
	S_VALUE_OR_END, /* just after '[' */
	S_KEY,          /* after ',' in an object */
	S_KEY_OR_END,   /* just after '{' */
	S_END,          /* after a value */
	S_TOP,          /* after the top-level value (whole-input mode) */
	S_STR,
	S_ESC,
	S_U,
	S_NEG,
	S_ZERO,
	S_INT,
	S_DOT,
	S_FRAC,
	S_EXP,
	S_EXPSIGN,
	S_EXPDIG,
	S_LIT,
};
enum { P_KEY = 1, P_OBJVAL, P_ARR };
#define MAX_DEPTH 10000

static int is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int scan_err(char *err, size_t cap, unsigned char c, const char *ctx)
{
	char q[32];

	quote_char(q, sizeof(q), c);
	snprintf(err, cap, "invalid character %s %s", q, ctx);
	return JSON_SYNTAX;
}

int json_scan(const char *s, size_t n, int stream, size_t *vstart, size_t *vend, char *err,
	      size_t errcap)
{
	static unsigned char stack[MAX_DEPTH + 1];
	size_t depth = 0, start = (size_t)-1, end = 0;
	int st = S_VALUE, is_key = 0, u = 0;
	const char *lit = NULL;
	size_t litpos = 0;
	const unsigned char *p = (const unsigned char *)s;

	if (err && errcap)
		err[0] = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
again:
		switch (st) {
		case S_VALUE_OR_END:
			if (is_ws(c))
				continue;
			if (c == ']') {
				depth--;
				end = i + 1;
				st = S_END;
				if (depth == 0 && stream)
					goto done;
				continue;
			}
			st = S_VALUE;
			goto again;
		case S_KEY_OR_END:
			if (is_ws(c))
				continue;
			if (c == '}') {
				depth--;
				end = i + 1;
				st = S_END;
				if (depth == 0 && stream)
					goto done;
				continue;
			}
			st = S_KEY;
			goto again;
		case S_KEY:
			if (is_ws(c))
				continue;
			if (c != '"')
				return scan_err(err, errcap, c,
						"looking for beginning of object key string");
			st = S_STR;
			is_key = 1;
			continue;
		case S_VALUE:
			if (is_ws(c))
				continue;
			if (start == (size_t)-1)
				start = i;
			switch (c) {
			case '{':
			case '[':
				if (depth >= MAX_DEPTH)
					return scan_err(err, errcap, c, "exceeded max depth");
				stack[depth++] = c == '{' ? P_KEY : P_ARR;
				st = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
				continue;
			case '"':
				st = S_STR;
				is_key = 0;
				continue;
			case '-':
				st = S_NEG;
				continue;
			case '0':
				st = S_ZERO;
				continue;
			case 't':
				lit = "true";
				litpos = 1;
				st = S_LIT;
				continue;
			case 'f':
				lit = "false";
				litpos = 1;
				st = S_LIT;
				continue;
			case 'n':
				lit = "null";
				litpos = 1;
				st = S_LIT;
				continue;
			}
			if (c >= '1' && c <= '9') {
				st = S_INT;
				continue;
			}
			return scan_err(err, errcap, c, "looking for beginning of value");
		case S_STR: {
			/* Fast path over plain bytes. */
			size_t j = i;

			while (j < n && p[j] >= 0x20 && p[j] != '"' && p[j] != '\\')
				j++;
			if (j == n) {
				i = n - 1;
				continue;
			}
			i = j;
			c = p[i];
			if (c == '"') {
				end = i + 1;
				st = S_END;
				(void)is_key;
				continue;
			}
			if (c == '\\') {
				st = S_ESC;
				continue;
			}
			return scan_err(err, errcap, c, "in string literal");
		}
		case S_ESC:
			if (strchr("bfnrt\\/\"", c) && c) {
				st = S_STR;
				continue;
			}
			if (c == 'u') {
				st = S_U;
				u = 0;
				continue;
			}
			return scan_err(err, errcap, c, "in string escape code");
		case S_U:
			if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			    (c >= 'A' && c <= 'F')) {
				if (++u == 4)
					st = S_STR;
				continue;
			}
			return scan_err(err, errcap, c, "in \\u hexadecimal character escape");
		case S_NEG:
			if (c == '0') {
				st = S_ZERO;
				continue;
			}
			if (c >= '1' && c <= '9') {
				st = S_INT;
				continue;
			}
			return scan_err(err, errcap, c, "in numeric literal");
		case S_INT:
			if (c >= '0' && c <= '9')
				continue;
			/* fall through */
		case S_ZERO:
			if (c == '.') {
				st = S_DOT;
				continue;
			}
			if (c == 'e' || c == 'E') {
				st = S_EXP;
				continue;
			}
			end = i;
			st = S_END;
			goto again;
		case S_DOT:
			if (c >= '0' && c <= '9') {
				st = S_FRAC;
				continue;
			}
			return scan_err(err, errcap, c, "after decimal point in numeric literal");
		case S_FRAC:
			if (c >= '0' && c <= '9')
				continue;
			if (c == 'e' || c == 'E') {
				st = S_EXP;
				continue;
			}
			end = i;
			st = S_END;
			goto again;
		case S_EXP:
			if (c == '+' || c == '-') {
				st = S_EXPSIGN;
				continue;
			}
			/* fall through */
		case S_EXPSIGN:
			if (c >= '0' && c <= '9') {
				st = S_EXPDIG;
				continue;
			}
			return scan_err(err, errcap, c, "in exponent of numeric literal");
		case S_EXPDIG:
			if (c >= '0' && c <= '9')
				continue;
			end = i;
			st = S_END;
			goto again;
		case S_LIT:
			if (c != (unsigned char)lit[litpos]) {
				char ctx[64];

				snprintf(ctx, sizeof(ctx), "in literal %s (expecting '%c')", lit,
					 lit[litpos]);
				return scan_err(err, errcap, c, ctx);
			}
			if (lit[++litpos] == 0) {
				end = i + 1;
				st = S_END;
			}
			continue;
		case S_END:
			if (depth == 0) {
				if (stream)
					goto done;
				st = S_TOP;
				goto again;
			}
			if (is_ws(c))
				continue;
			switch (stack[depth - 1]) {
			case P_KEY:
				if (c == ':') {
					stack[depth - 1] = P_OBJVAL;
					st = S_VALUE;
					continue;
				}
				return scan_err(err, errcap, c, "after object key");
			case P_OBJVAL:
				if (c == ',') {
					stack[depth - 1] = P_KEY;
					st = S_KEY;
					continue;
				}
				if (c == '}') {
					depth--;
					end = i + 1;
					if (depth == 0 && stream)
						goto done;
					continue;
				}
				return scan_err(err, errcap, c, "after object key:value pair");
			default:
				if (c == ',') {
					st = S_VALUE;
					continue;
				}
				if (c == ']') {
					depth--;
					end = i + 1;
					if (depth == 0 && stream)
						goto done;
					continue;
				}
				return scan_err(err, errcap, c, "after array element");
			}
		case S_TOP:
			if (is_ws(c))
				continue;
			return scan_err(err, errcap, c, "after top-level value");
		}
	}
	/* End of input. */
	if (depth == 0) {
		switch (st) {
		case S_ZERO:
		case S_INT:
		case S_FRAC:
		case S_EXPDIG:
			end = n;
			goto done;
		case S_END:
		case S_TOP:
			goto done;
		case S_VALUE:
			if (start == (size_t)-1)
				return stream ? JSON_EOF : JSON_UNEXPECTED_EOF;
			break;
		}
	}
	return JSON_UNEXPECTED_EOF;
done:
	*vstart = start;
	*vend = end;
	return JSON_OK;
}

/* ---- walking validated JSON ---- */

enum jtype json_type(const char *v)
{
	switch (*v) {
	case 'n':
		return JT_NULL;
	case 't':
	case 'f':
		return JT_BOOL;
	case '"':
		return JT_STRING;
	case '{':
		return JT_OBJECT;
	case '[':
		return JT_ARRAY;
	default:
		return JT_NUMBER;
	}
}

const char *json_type_name(enum jtype t)
{
	static const char *const names[] = {
		"null", "bool", "number", "string", "object", "array"
	};
	return names[t];
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
	while (i < n && is_ws((unsigned char)s[i]))
		i++;
	return i;
}

static size_t skip_string(const char *s, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (s[i] == '\\')
			i++;
		else if (s[i] == '"')
			return i + 1;
	}
	return n;
}

size_t json_skip(const char *s, size_t n, size_t i)
{
	if (i >= n)
		return n;
	char c = s[i];

	if (c == '"')
		return skip_string(s, n, i);
	if (c == '{' || c == '[') {
		size_t d = 0;

		while (i < n) {
			c = s[i];
			if (c == '"') {
				i = skip_string(s, n, i);
				continue;
			}
			if (c == '{' || c == '[')
				d++;
			else if ((c == '}' || c == ']') && --d == 0)
				return i + 1;
			i++;
		}
		return n;
	}
	while (i < n && !is_ws((unsigned char)s[i]) && s[i] != ',' && s[i] != ']' && s[i] != '}' &&
	       s[i] != ':')
		i++;
	return i;
}

void jiter_begin(struct jiter *it, const char *v, size_t vn)
{
	it->s = v;
	it->n = vn;
	it->i = 1;
}

int jobj_next(struct jiter *it, const char **k, size_t *kn, const char **v, size_t *vn)
{
	size_t i = skip_ws(it->s, it->n, it->i);

	if (i < it->n && it->s[i] == ',')
		i = skip_ws(it->s, it->n, i + 1);
	if (i >= it->n || it->s[i] != '"')
		return 0;
	size_t ke = skip_string(it->s, it->n, i);
	*k = it->s + i;
	*kn = ke - i;
	i = skip_ws(it->s, it->n, ke);
	i = skip_ws(it->s, it->n, i + 1); /* ':' */
	size_t ve = json_skip(it->s, it->n, i);
	*v = it->s + i;
	*vn = ve - i;
	it->i = ve;
	return 1;
}

int jarr_next(struct jiter *it, const char **v, size_t *vn)
{
	size_t i = skip_ws(it->s, it->n, it->i);

	if (i < it->n && it->s[i] == ',')
		i = skip_ws(it->s, it->n, i + 1);
	if (i >= it->n || it->s[i] == ']')
		return 0;
	size_t ve = json_skip(it->s, it->n, i);
	*v = it->s + i;
	*vn = ve - i;
	it->i = ve;
	return 1;
}

/* ---- strings ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c - 'A' + 10;
}

static long hex4(const char *s)
{
	return (hexval(s[0]) << 12) | (hexval(s[1]) << 8) | (hexval(s[2]) << 4) | hexval(s[3]);
}

void json_str_decode(const char *lit, size_t n, struct buf *out)
{
	const unsigned char *u = (const unsigned char *)lit;
	size_t end = n - 1; /* closing quote */

	for (size_t i = 1; i < end;) {
		size_t j = i;

		while (j < end && u[j] != '\\' && u[j] < 0x80)
			j++;
		buf_put(out, lit + i, j - i);
		i = j;
		if (i >= end)
			break;
		if (u[i] == '\\') {
			char e = lit[i + 1];

			i += 2;
			switch (e) {
			case 'b':
				buf_putc(out, '\b');
				continue;
			case 'f':
				buf_putc(out, '\f');
				continue;
			case 'n':
				buf_putc(out, '\n');
				continue;
			case 'r':
				buf_putc(out, '\r');
				continue;
			case 't':
				buf_putc(out, '\t');
				continue;
			case 'u':
				break;
			default:
				buf_putc(out, e);
				continue;
			}
			long r = hex4(lit + i);

			i += 4;
			if (r >= 0xD800 && r < 0xE000) {
				long r2 = -1;

				if (i + 6 <= end && lit[i] == '\\' && lit[i + 1] == 'u')
					r2 = hex4(lit + i + 2);
				if (r < 0xDC00 && r2 >= 0xDC00 && r2 < 0xE000) {
					r = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
					i += 6;
				} else {
					r = 0xFFFD;
				}
			}
			put_utf8(out, r);
			continue;
		}
		long r;
		size_t w = utf8_rune(u + i, end - i, &r);

		if (r < 0)
			put_utf8(out, 0xFFFD);
		else
			buf_put(out, lit + i, w);
		i += w;
	}
}

int json_key_is(const char *lit, size_t n, const char *name)
{
	size_t nl = strlen(name);
	/* Keys that are much longer than the name cannot match, even with escapes. */
	if (n < 2 || n > nl * 6 + 2)
		return 0;
	struct buf b;

	buf_init(&b, 0);
	json_str_decode(lit, n, &b);
	int eq = !b.oom && b.len == nl && strncasecmp(b.p ? b.p : "", name, nl) == 0;

	buf_free(&b);
	return eq;
}

static const char hexdig[] = "0123456789abcdef";

void json_str_encode(struct buf *b, const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	buf_putc(b, '"');
	size_t i = 0, start = 0;

	while (i < n) {
		unsigned char c = u[i];

		if (c < 0x80) {
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
			    c != '&') {
				i++;
				continue;
			}
			buf_put(b, s + start, i - start);
			switch (c) {
			case '"':
				buf_puts(b, "\\\"");
				break;
			case '\\':
				buf_puts(b, "\\\\");
				break;
			case '\b':
				buf_puts(b, "\\b");
				break;
			case '\f':
				buf_puts(b, "\\f");
				break;
			case '\n':
				buf_puts(b, "\\n");
				break;
			case '\r':
				buf_puts(b, "\\r");
				break;
			case '\t':
				buf_puts(b, "\\t");
				break;
			default: {
				char e[6] = { '\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15] };

				buf_put(b, e, 6);
			}
			}
			i++;
			start = i;
			continue;
		}
		long r;
		size_t w = utf8_rune(u + i, n - i, &r);

		if (r < 0 || r == 0x2028 || r == 0x2029) {
			buf_put(b, s + start, i - start);
			buf_puts(b, r < 0 ? "\\ufffd" : r == 0x2028 ? "\\u2028" : "\\u2029");
			i += w;
			start = i;
			continue;
		}
		i += w;
	}
	buf_put(b, s + start, n - start);
	buf_putc(b, '"');
}

void json_compact(struct buf *b, const char *v, size_t n)
{
	const unsigned char *u = (const unsigned char *)v;
	size_t start = 0;
	int in_str = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = u[i];

		if (in_str) {
			if (c == '\\') {
				i++;
				continue;
			}
			if (c == '"') {
				in_str = 0;
				continue;
			}
			if (c == '<' || c == '>' || c == '&') {
				buf_put(b, v + start, i - start);
				char e[6] = { '\\', 'u', '0', '0', hexdig[c >> 4], hexdig[c & 15] };

				buf_put(b, e, 6);
				start = i + 1;
			} else if (c == 0xE2 && i + 2 < n && u[i + 1] == 0x80 &&
				   (u[i + 2] == 0xA8 || u[i + 2] == 0xA9)) {
				buf_put(b, v + start, i - start);
				buf_puts(b, u[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
				i += 2;
				start = i + 1;
			}
			continue;
		}
		if (c == '"') {
			in_str = 1;
		} else if (is_ws(c)) {
			buf_put(b, v + start, i - start);
			start = i + 1;
		}
	}
	buf_put(b, v + start, n - start);
}

/* ---- numbers ---- */

int json_int64(const char *v, size_t n, long long *out)
{
	char tmp[32];

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || (i == 0 && v[i] == '-')))
			return -1;
	memcpy(tmp, v, n);
	tmp[n] = 0;
	errno = 0;
	char *e;
	long long x = strtoll(tmp, &e, 10);

	if (errno || *e)
		return -1;
	*out = x;
	return 0;
}

int json_float(const char *v, size_t n, double *out)
{
	char tmp[64];
	char *s = n < sizeof(tmp) ? tmp : malloc(n + 1);

	if (!s)
		return -1;
	memcpy(s, v, n);
	s[n] = 0;
	char *e;
	double x = strtod(s, &e);
	int bad = *e != 0 || isinf(x) || isnan(x);

	if (s != tmp)
		free(s);
	if (bad)
		return -1;
	*out = x;
	return 0;
}

void go_float(struct buf *b, double v)
{
	if (v == 0) {
		buf_puts(b, signbit(v) ? "-0" : "0");
		return;
	}
	if (isnan(v) || isinf(v)) {
		buf_puts(b, "0");
		return;
	}
	char tmp[64];
	int p;

	for (p = 1; p <= 17; p++) {
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	/* tmp: [-]d[.ddd]e[+-]xx */
	char digits[32];
	size_t nd = 0;
	const char *q = tmp;
	int neg = 0;

	if (*q == '-') {
		neg = 1;
		q++;
	}
	for (; *q && *q != 'e'; q++)
		if (*q >= '0' && *q <= '9')
			digits[nd++] = *q;
	int exp = atoi(q + 1);
	double a = fabs(v);

	if (neg)
		buf_putc(b, '-');
	if (a < 1e-6 || a >= 1e21) {
		buf_putc(b, digits[0]);
		if (nd > 1) {
			buf_putc(b, '.');
			buf_put(b, digits + 1, nd - 1);
		}
		/* Go prints at least two exponent digits, then trims "e-0X" to "e-X". */
		if (exp < 0 && exp > -10)
			buf_printf(b, "e-%d", -exp);
		else
			buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
		return;
	}
	if (exp >= (int)nd - 1) {
		buf_put(b, digits, nd);
		for (int i = 0; i < exp - ((int)nd - 1); i++)
			buf_putc(b, '0');
	} else if (exp >= 0) {
		buf_put(b, digits, (size_t)exp + 1);
		buf_putc(b, '.');
		buf_put(b, digits + exp + 1, nd - (size_t)exp - 1);
	} else {
		buf_puts(b, "0.");
		for (int i = 0; i < -exp - 1; i++)
			buf_putc(b, '0');
		buf_put(b, digits, nd);
	}
}
