/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * teemate.h - user API of /dev/teemate.
 *
 * /dev/teemate shares one warm, initialized enclave (an open /dev/sgx_enclave
 * file) with fresh processes: the owner registers the enclave file, the
 * virtual ranges it has mapped and the TCS pages it donates (SHARE); a new
 * process maps the same enclave file at the same addresses through the enclave
 * driver's own mmap path (ATTACH) and takes TCS pages from a kernel-kept table
 * (TCS_ACQUIRE / TCS_RELEASE).
 *
 * Every open file of /dev/teemate is a session bound to the opening process's
 * address space; ioctls from any other address space fail with EPERM.
 *
 * All structures have explicit padding and fixed-size fields so that other
 * languages (the Go package invoker/internal/enclave/sgx/teemate) can mirror
 * them; kmod/selftests/print_ioctls.c prints the numbers and sizes.
 */
#ifndef _UAPI_TEEMATE_H
#define _UAPI_TEEMATE_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define TEEMATE_MAGIC 0xB2

#define TEEMATE_MAX_SHARES 64   /* live shares, whole system */
#define TEEMATE_MAX_RANGES 64   /* ranges per share */
#define TEEMATE_MAX_TCS    1024 /* donated TCS pages per share */
#define TEEMATE_TOKEN_SIZE 32   /* capability token, bytes */

/* teemate_range.prot: same values as PROT_READ/PROT_WRITE/PROT_EXEC. */
#define TEEMATE_PROT_READ  0x1
#define TEEMATE_PROT_WRITE 0x2
#define TEEMATE_PROT_EXEC  0x4

/* teemate_range.flags */
/* every page exists: may be pre-faulted on attach */
#define TEEMATE_RANGE_POPULATE 0x1

/**
 * struct teemate_range - one enclave mapping of the owner
 * @start:	first byte, page aligned
 * @end:	one past the last byte, page aligned, > @start
 * @prot:	TEEMATE_PROT_* the attaching process maps the range with
 * @flags:	TEEMATE_RANGE_*
 */
struct teemate_range {
	__u64 start;
	__u64 end;
	__u32 prot;
	__u32 flags;
};

/**
 * struct teemate_share - TEEMATE_IOC_SHARE argument
 * @encl_fd:	in: open enclave file (/dev/sgx_enclave), already mapped by the
 *		caller over every range
 * @flags:	in: must be 0
 * @ranges:	in: user pointer to struct teemate_range[@nr_ranges]
 * @nr_ranges:	in: 1..TEEMATE_MAX_RANGES
 * @nr_tcs:	in: 0..TEEMATE_MAX_TCS
 * @tcs_addrs:	in: user pointer to __u64[@nr_tcs], page-aligned TCS addresses
 *		inside readable+writable ranges, no duplicates
 * @share_id:	out: id for ATTACH, INFO, UNSHARE and the TCS ioctls
 * @token:	out: random capability ATTACH must present
 */
struct teemate_share {
	__s32 encl_fd;
	__u32 flags;
	__u64 ranges;
	__u32 nr_ranges;
	__u32 nr_tcs;
	__u64 tcs_addrs;
	__u64 share_id;
	__u8 token[TEEMATE_TOKEN_SIZE];
};

/* teemate_attach.flags */
/* pre-fault ranges flagged TEEMATE_RANGE_POPULATE */
#define TEEMATE_ATTACH_POPULATE 0x1
#define TEEMATE_ATTACH_WANT_FD  0x2 /* also return an O_CLOEXEC enclave fd */

/**
 * struct teemate_attach - TEEMATE_IOC_ATTACH argument
 * @share_id:	in
 * @token:	in: the token SHARE returned
 * @flags:	in: TEEMATE_ATTACH_*
 * @encl_fd:	out: enclave fd with TEEMATE_ATTACH_WANT_FD, else -1
 * @encl_start:	out: lowest range start
 * @encl_end:	out: highest range end
 * @pages_populated: out: pages pre-faulted
 * @nr_ranges:	out: ranges mapped
 * @reserved:	must be 0
 */
struct teemate_attach {
	__u64 share_id;
	__u8 token[TEEMATE_TOKEN_SIZE];
	__u32 flags;
	__s32 encl_fd;
	__u64 encl_start;
	__u64 encl_end;
	__u64 pages_populated;
	__u32 nr_ranges;
	__u32 reserved;
};

/* teemate_tcs.flags */
/* ACQUIRE: fail with EAGAIN instead of waiting */
#define TEEMATE_TCS_NONBLOCK 0x1
/* RELEASE: the thread left the enclave normally */
#define TEEMATE_TCS_CLEAN    0x2

/**
 * struct teemate_tcs - TCS_ACQUIRE / TCS_RELEASE / TCS_UNQUARANTINE argument
 * @share_id:	in: 0 means the share this session attached to
 * @tcs_addr:	out (ACQUIRE), in (RELEASE, UNQUARANTINE)
 * @flags:	in: TEEMATE_TCS_*
 * @slot:	out: index of the TCS in the share's table (stable)
 */
struct teemate_tcs {
	__u64 share_id;
	__u64 tcs_addr;
	__u32 flags;
	__u32 slot;
};

/**
 * struct teemate_info - TEEMATE_IOC_INFO argument
 * @share_id:	in: 0 for the global counters only
 * @nr_tcs:	out: TCS pages in the table
 * @nr_free:	out: FREE slots
 * @nr_owned:	out: slots held by a session
 * @nr_quarantined: out: slots whose holder died or released them unclean
 * @nr_attached: out: sessions currently attached
 * @nr_shares:	out: live shares (global)
 * @nr_sessions: out: open /dev/teemate files (global)
 * @reserved:	must be 0
 * @attach_count: out: successful attaches to this share so far
 */
struct teemate_info {
	__u64 share_id;
	__u32 nr_tcs;
	__u32 nr_free;
	__u32 nr_owned;
	__u32 nr_quarantined;
	__u32 nr_attached;
	__u32 nr_shares;
	__u32 nr_sessions;
	__u32 reserved;
	__u64 attach_count;
};

#define TEEMATE_IOC_SHARE       _IOWR(TEEMATE_MAGIC, 0x00, struct teemate_share)
#define TEEMATE_IOC_UNSHARE     _IOW(TEEMATE_MAGIC, 0x01, __u64)
#define TEEMATE_IOC_ATTACH      _IOWR(TEEMATE_MAGIC, 0x02, struct teemate_attach)
#define TEEMATE_IOC_TCS_ACQUIRE _IOWR(TEEMATE_MAGIC, 0x03, struct teemate_tcs)
#define TEEMATE_IOC_TCS_RELEASE _IOW(TEEMATE_MAGIC, 0x04, struct teemate_tcs)
/* 0x05 reserved for TEEMATE_IOC_TCS_ADD (owner adds an EDMM-created TCS). */
#define TEEMATE_IOC_TCS_UNQUARANTINE \
	_IOW(TEEMATE_MAGIC, 0x06, struct teemate_tcs)
#define TEEMATE_IOC_INFO _IOWR(TEEMATE_MAGIC, 0x07, struct teemate_info)

#endif /* _UAPI_TEEMATE_H */
