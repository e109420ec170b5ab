/* SPDX-License-Identifier: GPL-2.0 */
/*
 * teemate.h - internal types of teemate.ko.
 *
 * Lock order: session->lock -> teemate_registry_lock -> share->lock ->
 * mmap_lock (taken by vm_mmap() and the populate loop) -> the enclave
 * driver's own locks (taken by its fault handler). The enclave driver never
 * calls into this module, so the order cannot be inverted.
 */
#ifndef _TEEMATE_H
#define _TEEMATE_H

#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/types.h>
#include <linux/wait.h>

#include "uapi/teemate.h"

enum teemate_tcs_state {
	TEEMATE_TCS_FREE,
	TEEMATE_TCS_OWNED,
	TEEMATE_TCS_QUARANTINED,
};

struct teemate_session;

/**
 * struct teemate_tcs_slot - one donated TCS page
 * @addr:	its enclave virtual address
 * @state:	FREE -> OWNED -> FREE (clean release) or QUARANTINED
 * @holder:	session that owns the slot while OWNED, else NULL
 */
struct teemate_tcs_slot {
	u64 addr;
	enum teemate_tcs_state state;
	struct teemate_session *holder;
};

/**
 * struct teemate_shared - a registered warm enclave
 * @ref:	held by the registry while live and by every attached session
 * @id:		registry index
 * @token:	capability ATTACH must present
 * @encl:	the enclave file (one reference, dropped when @ref hits zero)
 * @owner:	owning session while live (registry lock)
 * @owner_node:	entry in owner->owned (registry lock)
 * @ranges:	sorted, non-overlapping, immutable after SHARE
 * @nr_ranges:	entries in @ranges
 * @lock:	protects everything below
 * @live:	false once unshared; ATTACH and TCS_ACQUIRE then fail
 * @wq:		TCS_ACQUIRE waiters
 * @tcs:	the TCS table
 * @nr_tcs:	entries in @tcs
 * @nr_free:	FREE entries in @tcs
 * @nr_attached: sessions currently attached
 * @attach_count: successful attaches so far
 */
struct teemate_shared {
	struct kref ref;
	u32 id;
	u8 token[TEEMATE_TOKEN_SIZE];
	struct file *encl;
	struct teemate_session *owner;
	struct list_head owner_node;
	struct teemate_range *ranges;
	u32 nr_ranges;

	struct mutex lock;
	bool live;
	wait_queue_head_t wq;
	struct teemate_tcs_slot *tcs;
	u32 nr_tcs;
	u32 nr_free;
	u32 nr_attached;
	u64 attach_count;
};

/**
 * struct teemate_session - one open file of /dev/teemate
 * @mm:		address space the session is bound to (mmgrab()ed at open)
 * @lock:	serializes ATTACH against itself and release
 * @attached:	share this session attached to (holds a reference), or NULL
 * @owned:	shares this session registered (registry lock)
 */
struct teemate_session {
	struct mm_struct *mm;
	struct mutex lock;
	struct teemate_shared *attached;
	struct list_head owned;
};

extern struct mutex teemate_registry_lock;
extern atomic_t teemate_nr_sessions;

int teemate_encl_file_check(struct file *file);
struct teemate_shared *teemate_share_lookup(u64 id);
int teemate_share_register(struct teemate_shared *share,
			   struct teemate_session *owner);
int teemate_share_unregister(struct teemate_shared *share,
			     struct teemate_session *owner);
u32 teemate_nr_shares(void);
void teemate_share_put(struct teemate_shared *share);
void teemate_share_quarantine_holder(struct teemate_shared *share,
				     struct teemate_session *session);

long teemate_ioctl(struct file *file, unsigned int cmd, unsigned long arg);

#endif /* _TEEMATE_H */
