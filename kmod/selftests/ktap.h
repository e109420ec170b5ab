/* SPDX-License-Identifier: GPL-2.0 */
/*
 * ktap.h - minimal TAP 13 output in the kselftest style for the teemate
 * selftests: "ok N name", "not ok N name", "# diagnostics", and a non-zero
 * exit status when any test failed.
 */
#ifndef TEEMATE_KTAP_H
#define TEEMATE_KTAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int ktap_nr, ktap_failed, ktap_skipped;

static inline void ktap_header(int planned)
{
	printf("TAP version 13\n1..%d\n", planned);
	fflush(stdout);
}

static inline void ktap_diag(const char *fmt, ...)
{
	va_list ap;

	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static inline void ktap_result(int pass, const char *name)
{
	ktap_nr++;
	if (!pass)
		ktap_failed++;
	printf("%sok %d %s\n", pass ? "" : "not ", ktap_nr, name);
	fflush(stdout);
}

static inline void ktap_skip(const char *name, const char *why)
{
	ktap_nr++;
	ktap_skipped++;
	printf("ok %d %s # SKIP %s\n", ktap_nr, name, why);
	fflush(stdout);
}

static inline int ktap_finish(void)
{
	printf("# totals: pass:%d fail:%d skip:%d\n",
	       ktap_nr - ktap_failed - ktap_skipped, ktap_failed, ktap_skipped);
	fflush(stdout);
	return ktap_failed ? 1 : 0;
}

#endif /* TEEMATE_KTAP_H */
