// SPDX-License-Identifier: GPL-2.0
/*
 * print_ioctls - prints every /dev/teemate ioctl number and argument size
 * as "NAME value" lines, so other language bindings can check their
 * mirrored constants against the C header.
 */
#include <stddef.h>
#include <stdio.h>

#include "teemate.h"

#define NUM(x)    printf("%s 0x%lx\n", #x, (unsigned long)(x))
#define SIZE(x)   printf("sizeof_%s %zu\n", #x, sizeof(struct x))
#define OFF(s, f) printf("offsetof_%s_%s %zu\n", #s, #f, offsetof(struct s, f))

int main(void)
{
	NUM(TEEMATE_IOC_SHARE);
	NUM(TEEMATE_IOC_UNSHARE);
	NUM(TEEMATE_IOC_ATTACH);
	NUM(TEEMATE_IOC_TCS_ACQUIRE);
	NUM(TEEMATE_IOC_TCS_RELEASE);
	NUM(TEEMATE_IOC_TCS_UNQUARANTINE);
	NUM(TEEMATE_IOC_INFO);
	NUM(TEEMATE_MAX_SHARES);
	NUM(TEEMATE_MAX_RANGES);
	NUM(TEEMATE_MAX_TCS);
	NUM(TEEMATE_TOKEN_SIZE);
	SIZE(teemate_range);
	SIZE(teemate_share);
	SIZE(teemate_attach);
	SIZE(teemate_tcs);
	SIZE(teemate_info);
	OFF(teemate_share, share_id);
	OFF(teemate_share, token);
	OFF(teemate_attach, flags);
	OFF(teemate_attach, pages_populated);
	OFF(teemate_info, attach_count);
	return 0;
}
