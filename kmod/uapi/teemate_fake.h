/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * teemate_fake.h - user API of /dev/teemate_fake_enclave, the test-only
 * stand-in for /dev/sgx_enclave used by the VM tests of teemate.ko.
 *
 * Each open file is one "enclave" with a power-of-two ELRANGE fixed by
 * CREATE. mmap() must be MAP_SHARED and inside ELRANGE; pages are ordinary
 * zeroed kernel pages, created on first touch and keyed by virtual address,
 * so every process that maps the same file at the same address sees the same
 * page, as with EPC.
 */
#ifndef _UAPI_TEEMATE_FAKE_H
#define _UAPI_TEEMATE_FAKE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define TEEMATE_FAKE_MAGIC 0xB3

/** struct teemate_fake_create - ELRANGE: @size a power of two, @base aligned to it */
struct teemate_fake_create {
	__u64 base;
	__u64 size;
};

/** struct teemate_fake_stats - module-wide counters, for leak checks */
struct teemate_fake_stats {
	__u64 nr_encls;  /* open enclave files */
	__u64 nr_vmas;   /* live VMAs of enclave files */
	__u64 nr_pages;  /* allocated "EPC" pages */
	__u64 nr_faults; /* fault handler calls */
};

#define TEEMATE_FAKE_IOC_CREATE \
	_IOW(TEEMATE_FAKE_MAGIC, 0x00, struct teemate_fake_create)
#define TEEMATE_FAKE_IOC_STATS \
	_IOR(TEEMATE_FAKE_MAGIC, 0x01, struct teemate_fake_stats)

#endif /* _UAPI_TEEMATE_FAKE_H */
