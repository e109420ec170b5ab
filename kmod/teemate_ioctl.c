// SPDX-License-Identifier: GPL-2.0
/*
 * teemate_ioctl.c - the /dev/teemate ioctls.
 *
 * Every handler copies and validates its whole argument before it changes
 * any state, and unwinds with gotos in reverse order of acquisition.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <crypto/algapi.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/random.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/sort.h>
#include <linux/uaccess.h>

#include "teemate.h"

#define TEEMATE_PROT_ALL \
	(TEEMATE_PROT_READ | TEEMATE_PROT_WRITE | TEEMATE_PROT_EXEC)
#define TEEMATE_PROT_RW        (TEEMATE_PROT_READ | TEEMATE_PROT_WRITE)
#define TEEMATE_ATTACH_FLAGS   (TEEMATE_ATTACH_POPULATE | TEEMATE_ATTACH_WANT_FD)
#define TEEMATE_POPULATE_BATCH 256

static int teemate_range_cmp(const void *a, const void *b)
{
	const struct teemate_range *ra = a, *rb = b;

	if (ra->start < rb->start)
		return -1;
	return ra->start > rb->start;
}

/* Shape checks that need no mm: alignment, bounds, flags, no overlap. */
static int teemate_ranges_check(struct teemate_range *r, u32 n)
{
	u32 i;

	for (i = 0; i < n; i++) {
		if (!PAGE_ALIGNED(r[i].start) || !PAGE_ALIGNED(r[i].end) ||
		    r[i].start >= r[i].end || r[i].end > TASK_SIZE)
			return -EINVAL;
		if (!r[i].prot || (r[i].prot & ~TEEMATE_PROT_ALL) ||
		    (r[i].flags & ~TEEMATE_RANGE_POPULATE))
			return -EINVAL;
	}
	sort(r, n, sizeof(*r), teemate_range_cmp, NULL);
	for (i = 1; i < n; i++)
		if (r[i].start < r[i - 1].end)
			return -EINVAL;
	return 0;
}

static unsigned long teemate_prot_to_vm(u32 prot)
{
	return ((prot & TEEMATE_PROT_READ) ? VM_READ : 0) |
	       ((prot & TEEMATE_PROT_WRITE) ? VM_WRITE : 0) |
	       ((prot & TEEMATE_PROT_EXEC) ? VM_EXEC : 0);
}

/*
 * Every range must be covered, without holes, by the owner's own mappings of
 * @encl that allow at least the range's protection: a share can only hand
 * out what the owner has mapped itself.
 */
static int teemate_ranges_check_mm(struct mm_struct *mm, struct file *encl,
				   const struct teemate_range *r, u32 n)
{
	int ret = 0;
	u32 i;

	mmap_read_lock(mm);
	for (i = 0; i < n && !ret; i++) {
		unsigned long want = teemate_prot_to_vm(r[i].prot);
		unsigned long addr = r[i].start;

		while (addr < r[i].end) {
			struct vm_area_struct *vma = find_vma(mm, addr);

			if (!vma || vma->vm_start > addr ||
			    vma->vm_file != encl) {
				ret = -EINVAL;
				break;
			}
			if ((vma->vm_flags & want) != want) {
				ret = -EACCES;
				break;
			}
			addr = vma->vm_end;
		}
	}
	mmap_read_unlock(mm);
	return ret;
}

static int teemate_tcs_check(const u64 *addrs, u32 n,
			     const struct teemate_range *r, u32 nr)
{
	u32 i, j;

	for (i = 0; i < n; i++) {
		bool inside = false;

		if (!PAGE_ALIGNED(addrs[i]))
			return -EINVAL;
		for (j = 0; j < nr; j++) {
			if (addrs[i] >= r[j].start && addrs[i] < r[j].end &&
			    (r[j].prot & TEEMATE_PROT_RW) == TEEMATE_PROT_RW) {
				inside = true;
				break;
			}
		}
		if (!inside)
			return -EINVAL;
		/* n <= TEEMATE_MAX_TCS, so the quadratic scan stays small. */
		for (j = 0; j < i; j++)
			if (addrs[j] == addrs[i])
				return -EINVAL;
	}
	return 0;
}

/**
 * teemate_ioctl_share() - TEEMATE_IOC_SHARE: register a warm enclave
 * @session: caller's session (the owner)
 * @uarg: user pointer to struct teemate_shared
 *
 * Return: 0 with share_id and token filled in;
 * -EFAULT on a bad user pointer;
 * -EINVAL on non-zero flags, bad counts, malformed or overlapping ranges,
 * ranges not covered by the caller's own mappings of the file, bad or
 * duplicate TCS addresses, or a file that is not an enclave file;
 * -EACCES if a range asks for more protection than the owner's mapping has;
 * -EBADF if encl_fd is not an open fd or not open read-write;
 * -ENOSPC if TEEMATE_MAX_SHARES shares are live;
 * -ENOMEM.
 */
static int teemate_ioctl_share(struct teemate_session *session,
			       struct teemate_share __user *uarg)
{
	struct teemate_share arg;
	struct teemate_shared *share;
	struct teemate_range *ranges = NULL;
	u64 *addrs = NULL;
	struct file *encl;
	u32 i;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags || !arg.nr_ranges || arg.nr_ranges > TEEMATE_MAX_RANGES ||
	    arg.nr_tcs > TEEMATE_MAX_TCS)
		return -EINVAL;

	ranges = memdup_user(u64_to_user_ptr(arg.ranges),
			     array_size(arg.nr_ranges, sizeof(*ranges)));
	if (IS_ERR(ranges))
		return PTR_ERR(ranges);
	ret = teemate_ranges_check(ranges, arg.nr_ranges);
	if (ret)
		goto err_ranges;

	if (arg.nr_tcs) {
		addrs = vmemdup_user(u64_to_user_ptr(arg.tcs_addrs),
				     array_size(arg.nr_tcs, sizeof(*addrs)));
		if (IS_ERR(addrs)) {
			ret = PTR_ERR(addrs);
			addrs = NULL;
			goto err_ranges;
		}
		ret = teemate_tcs_check(addrs, arg.nr_tcs, ranges,
					arg.nr_ranges);
		if (ret)
			goto err_addrs;
	}

	encl = fget(arg.encl_fd);
	if (!encl) {
		ret = -EBADF;
		goto err_addrs;
	}
	ret = teemate_encl_file_check(encl);
	if (ret)
		goto err_file;
	ret = teemate_ranges_check_mm(current->mm, encl, ranges, arg.nr_ranges);
	if (ret)
		goto err_file;

	share = kzalloc(sizeof(*share), GFP_KERNEL);
	if (!share) {
		ret = -ENOMEM;
		goto err_file;
	}
	if (arg.nr_tcs) {
		share->tcs =
			kvcalloc(arg.nr_tcs, sizeof(*share->tcs), GFP_KERNEL);
		if (!share->tcs) {
			ret = -ENOMEM;
			goto err_share;
		}
	}
	for (i = 0; i < arg.nr_tcs; i++)
		share->tcs[i].addr = addrs[i];
	kref_init(&share->ref);
	mutex_init(&share->lock);
	init_waitqueue_head(&share->wq);
	INIT_LIST_HEAD(&share->owner_node);
	get_random_bytes(share->token, sizeof(share->token));
	share->encl = encl;
	share->ranges = ranges;
	share->nr_ranges = arg.nr_ranges;
	share->nr_tcs = arg.nr_tcs;
	share->nr_free = arg.nr_tcs;
	share->live = true;

	ret = teemate_share_register(share, session);
	if (ret)
		goto err_tcs;

	arg.share_id = share->id;
	memcpy(arg.token, share->token, sizeof(arg.token));
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		/* Drops the registry's reference: the file and tables go with it. */
		teemate_share_unregister(share, session);
		kvfree(addrs);
		return -EFAULT;
	}
	kvfree(addrs);
	return 0;

err_tcs:
	kvfree(share->tcs);
err_share:
	kfree(share);
err_file:
	fput(encl);
err_addrs:
	kvfree(addrs);
err_ranges:
	kfree(ranges);
	return ret;
}

/**
 * teemate_ioctl_unshare() - TEEMATE_IOC_UNSHARE: stop sharing
 * @session: caller's session (must own the share)
 * @uarg: user pointer to the __u64 share id
 *
 * Existing aliases keep their mappings (each VMA holds the enclave file) and
 * may still release their TCSs; new ATTACH and TCS_ACQUIRE calls fail.
 *
 * Return: 0; -EFAULT; -ENOENT if no live share has that id; -EPERM if the
 * caller does not own it.
 */
static int teemate_ioctl_unshare(struct teemate_session *session,
				 u64 __user *uarg)
{
	struct teemate_shared *share;
	u64 id;
	int ret;

	if (get_user(id, uarg))
		return -EFAULT;
	share = teemate_share_lookup(id);
	if (!share)
		return -ENOENT;
	ret = teemate_share_unregister(share, session);
	teemate_share_put(share);
	return ret;
}

/* Unmap the first @n ranges of @share from the caller. */
static void teemate_unmap_ranges(struct teemate_shared *share, u32 n)
{
	while (n--)
		vm_munmap(share->ranges[n].start,
			  share->ranges[n].end - share->ranges[n].start);
}

/*
 * Pre-fault through the enclave driver's own fault handler, so it takes its
 * own locks, reloads evicted pages and never installs a stale frame. A read
 * fault suffices: a shared PFN mapping gets the VMA's full protection.
 */
static int teemate_populate(struct teemate_shared *share, u64 *populated)
{
	struct mm_struct *mm = current->mm;
	unsigned long addr;
	u64 count = 0;
	int ret = 0;
	u32 i;

	mmap_read_lock(mm);
	for (i = 0; i < share->nr_ranges && !ret; i++) {
		const struct teemate_range *r = &share->ranges[i];

		if (!(r->flags & TEEMATE_RANGE_POPULATE))
			continue;
		for (addr = r->start; addr < r->end; addr += PAGE_SIZE) {
			ret = fixup_user_fault(mm, addr, 0, NULL);
			if (ret)
				break;
			if (!(++count % TEEMATE_POPULATE_BATCH)) {
				if (fatal_signal_pending(current)) {
					ret = -EINTR;
					break;
				}
				cond_resched();
			}
		}
	}
	mmap_read_unlock(mm);
	*populated = count;
	return ret;
}

/**
 * teemate_ioctl_attach() - TEEMATE_IOC_ATTACH: map a shared enclave here
 * @session: caller's session (a fresh process)
 * @uarg: user pointer to struct teemate_attach
 *
 * Maps every range with vm_mmap() of the owner's enclave file at the owner's
 * address (MAP_SHARED | MAP_FIXED_NOREPLACE), so the enclave driver's
 * get_unmapped_area and mmap run exactly as for the owner. On any failure
 * everything mapped so far is unmapped again.
 *
 * Return: 0 with the out fields filled in;
 * -EFAULT; -EINVAL on unknown flags or non-zero reserved;
 * -EBUSY if this session already attached;
 * -ENOENT if no live share has that id;
 * -EACCES if the token does not match;
 * -EEXIST if an address range is already mapped in the caller;
 * -EINTR if a fatal signal arrived while populating;
 * any error of the enclave driver's mmap or fault handler;
 * -EMFILE and friends from fd allocation with TEEMATE_ATTACH_WANT_FD.
 */
static int teemate_ioctl_attach(struct teemate_session *session,
				struct teemate_attach __user *uarg)
{
	struct teemate_attach arg;
	struct teemate_shared *share;
	unsigned long addr;
	u64 populated = 0;
	int fd = -1;
	u32 i = 0;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if ((arg.flags & ~TEEMATE_ATTACH_FLAGS) || arg.reserved)
		return -EINVAL;

	mutex_lock(&session->lock);
	if (session->attached) {
		ret = -EBUSY;
		goto err_unlock;
	}
	share = teemate_share_lookup(arg.share_id);
	if (!share) {
		ret = -ENOENT;
		goto err_unlock;
	}
	if (crypto_memneq(arg.token, share->token, sizeof(arg.token))) {
		ret = -EACCES;
		goto err_put;
	}
	if (arg.flags & TEEMATE_ATTACH_WANT_FD) {
		fd = get_unused_fd_flags(O_CLOEXEC);
		if (fd < 0) {
			ret = fd;
			goto err_put;
		}
	}

	for (i = 0; i < share->nr_ranges; i++) {
		const struct teemate_range *r = &share->ranges[i];

		addr = vm_mmap(share->encl, r->start, r->end - r->start,
			       r->prot, MAP_SHARED | MAP_FIXED_NOREPLACE, 0);
		if (IS_ERR_VALUE(addr)) {
			ret = (int)addr;
			goto err_unmap;
		}
		if (addr != r->start) {
			/* Only a kernel without MAP_FIXED_NOREPLACE does this. */
			vm_munmap(addr, r->end - r->start);
			ret = -EEXIST;
			goto err_unmap;
		}
	}
	if (arg.flags & TEEMATE_ATTACH_POPULATE) {
		ret = teemate_populate(share, &populated);
		if (ret)
			goto err_unmap;
	}

	arg.encl_fd = fd;
	arg.encl_start = share->ranges[0].start;
	arg.encl_end = share->ranges[share->nr_ranges - 1].end;
	arg.pages_populated = populated;
	arg.nr_ranges = share->nr_ranges;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		ret = -EFAULT;
		goto err_unmap;
	}

	/* The share may have been unshared meanwhile: then refuse. */
	mutex_lock(&share->lock);
	if (!share->live) {
		mutex_unlock(&share->lock);
		ret = -ENOENT;
		goto err_unmap;
	}
	share->nr_attached++;
	share->attach_count++;
	mutex_unlock(&share->lock);

	if (fd >= 0)
		fd_install(fd, get_file(share->encl));
	session->attached = share; /* keeps the lookup reference */
	mutex_unlock(&session->lock);
	return 0;

err_unmap:
	teemate_unmap_ranges(share, i);
	if (fd >= 0)
		put_unused_fd(fd);
err_put:
	teemate_share_put(share);
err_unlock:
	mutex_unlock(&session->lock);
	return ret;
}

/*
 * The share a TCS ioctl addresses: id 0 or the attached share's id means the
 * attached share; otherwise the caller must own it. Returns a reference.
 */
static struct teemate_shared *
teemate_session_share(struct teemate_session *session, u64 id, bool *owner,
		      int *err)
{
	struct teemate_shared *share;

	*owner = false;
	mutex_lock(&session->lock);
	share = session->attached;
	if (share && (!id || id == share->id)) {
		kref_get(&share->ref);
		mutex_unlock(&session->lock);
		return share;
	}
	mutex_unlock(&session->lock);

	share = teemate_share_lookup(id);
	if (!share) {
		*err = -ENOENT;
		return NULL;
	}
	mutex_lock(&teemate_registry_lock);
	*owner = share->owner == session;
	mutex_unlock(&teemate_registry_lock);
	if (!*owner) {
		teemate_share_put(share);
		*err = -EPERM;
		return NULL;
	}
	return share;
}

/* Lowest FREE slot becomes OWNED by @session. Caller holds share->lock. */
static int teemate_tcs_take_locked(struct teemate_shared *share,
				   struct teemate_session *session,
				   struct teemate_tcs *arg)
{
	u32 i;

	for (i = 0; i < share->nr_tcs; i++) {
		struct teemate_tcs_slot *slot = &share->tcs[i];

		if (slot->state != TEEMATE_TCS_FREE)
			continue;
		slot->state = TEEMATE_TCS_OWNED;
		slot->holder = session;
		share->nr_free--;
		arg->tcs_addr = slot->addr;
		arg->slot = i;
		return 0;
	}
	return -EAGAIN;
}

/**
 * teemate_ioctl_tcs_acquire() - TEEMATE_IOC_TCS_ACQUIRE: take a free TCS
 * @session: caller's session (attached, or the owner naming its share)
 * @uarg: user pointer to struct teemate_tcs
 *
 * Waits for a free slot unless TEEMATE_TCS_NONBLOCK is set.
 *
 * Return: 0 with tcs_addr and slot filled in;
 * -EFAULT; -EINVAL on unknown flags;
 * -ENOENT if the share is gone (or id 0 and not attached);
 * -EPERM if the caller neither attached to nor owns the share;
 * -EAGAIN if no slot is free and NONBLOCK was set (also for an empty table);
 * -ERESTARTSYS if a signal interrupted the wait.
 */
static int teemate_ioctl_tcs_acquire(struct teemate_session *session,
				     struct teemate_tcs __user *uarg)
{
	struct teemate_shared *share;
	struct teemate_tcs arg;
	bool owner;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~TEEMATE_TCS_NONBLOCK)
		return -EINVAL;
	share = teemate_session_share(session, arg.share_id, &owner, &ret);
	if (!share)
		return ret;

	for (;;) {
		mutex_lock(&share->lock);
		if (!share->live)
			ret = -ENOENT;
		else
			ret = teemate_tcs_take_locked(share, session, &arg);
		mutex_unlock(&share->lock);
		if (ret != -EAGAIN || (arg.flags & TEEMATE_TCS_NONBLOCK) ||
		    !share->nr_tcs)
			break;
		ret = wait_event_interruptible(share->wq,
					       READ_ONCE(share->nr_free) ||
						       !READ_ONCE(share->live));
		if (ret)
			break;
	}
	if (ret)
		goto out;

	arg.share_id = share->id;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		/* Nobody learnt the slot: give it back clean. */
		mutex_lock(&share->lock);
		share->tcs[arg.slot].state = TEEMATE_TCS_FREE;
		share->tcs[arg.slot].holder = NULL;
		share->nr_free++;
		mutex_unlock(&share->lock);
		wake_up(&share->wq);
		ret = -EFAULT;
	}
out:
	teemate_share_put(share);
	return ret;
}

static int teemate_tcs_find(struct teemate_shared *share, u64 addr)
{
	u32 i;

	for (i = 0; i < share->nr_tcs; i++)
		if (share->tcs[i].addr == addr)
			return i;
	return -EINVAL;
}

/**
 * teemate_ioctl_tcs_release() - TEEMATE_IOC_TCS_RELEASE: give a TCS back
 * @session: the session holding the slot
 * @uarg: user pointer to struct teemate_tcs
 *
 * With TEEMATE_TCS_CLEAN the slot becomes FREE; without, QUARANTINED.
 *
 * Return: 0; -EFAULT; -EINVAL on unknown flags or an address not in the
 * table; -ENOENT, -EPERM as for TCS_ACQUIRE; -EPERM if the caller does not
 * hold the slot.
 */
static int teemate_ioctl_tcs_release(struct teemate_session *session,
				     struct teemate_tcs __user *uarg)
{
	struct teemate_shared *share;
	struct teemate_tcs arg;
	bool owner, wake = false;
	int ret, i;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags & ~TEEMATE_TCS_CLEAN)
		return -EINVAL;
	share = teemate_session_share(session, arg.share_id, &owner, &ret);
	if (!share)
		return ret;

	mutex_lock(&share->lock);
	i = teemate_tcs_find(share, arg.tcs_addr);
	if (i < 0) {
		ret = i;
	} else if (share->tcs[i].state != TEEMATE_TCS_OWNED ||
		   share->tcs[i].holder != session) {
		ret = -EPERM;
	} else {
		share->tcs[i].holder = NULL;
		if (arg.flags & TEEMATE_TCS_CLEAN) {
			share->tcs[i].state = TEEMATE_TCS_FREE;
			share->nr_free++;
			wake = true;
		} else {
			share->tcs[i].state = TEEMATE_TCS_QUARANTINED;
		}
		ret = 0;
	}
	mutex_unlock(&share->lock);
	if (wake)
		wake_up(&share->wq);
	teemate_share_put(share);
	return ret;
}

/**
 * teemate_ioctl_tcs_unquarantine() - TEEMATE_IOC_TCS_UNQUARANTINE
 * @session: the owner's session
 * @uarg: user pointer to struct teemate_tcs (share_id and tcs_addr)
 *
 * The owner vouches that the enclave thread behind the TCS was reset.
 *
 * Return: 0; -EFAULT; -EINVAL on non-zero flags or an address not in the
 * table; -ENOENT if the share is gone; -EPERM if the caller is not the
 * owner; -EBUSY if the slot is not quarantined.
 */
static int teemate_ioctl_tcs_unquarantine(struct teemate_session *session,
					  struct teemate_tcs __user *uarg)
{
	struct teemate_shared *share;
	struct teemate_tcs arg;
	bool owner;
	int ret, i;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.flags)
		return -EINVAL;
	share = teemate_session_share(session, arg.share_id, &owner, &ret);
	if (!share)
		return ret;
	if (!owner) {
		ret = -EPERM;
		goto out;
	}

	mutex_lock(&share->lock);
	i = teemate_tcs_find(share, arg.tcs_addr);
	if (i < 0) {
		ret = i;
	} else if (share->tcs[i].state != TEEMATE_TCS_QUARANTINED) {
		ret = -EBUSY;
	} else {
		share->tcs[i].state = TEEMATE_TCS_FREE;
		share->nr_free++;
		ret = 0;
	}
	mutex_unlock(&share->lock);
	if (!ret)
		wake_up(&share->wq);
out:
	teemate_share_put(share);
	return ret;
}

/**
 * teemate_ioctl_info() - TEEMATE_IOC_INFO: counters
 * @session: caller's session
 * @uarg: user pointer to struct teemate_info
 *
 * share_id 0 returns only the global counters; otherwise the caller must own
 * or be attached to the share.
 *
 * Return: 0; -EFAULT; -EINVAL on non-zero reserved; -ENOENT if the share is
 * gone; -EPERM if the caller neither owns nor attached to it.
 */
static int teemate_ioctl_info(struct teemate_session *session,
			      struct teemate_info __user *uarg)
{
	struct teemate_shared *share;
	struct teemate_info arg;
	bool owner;
	int ret;
	u32 i;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.reserved)
		return -EINVAL;
	arg = (struct teemate_info){ .share_id = arg.share_id };

	if (arg.share_id) {
		share = teemate_session_share(session, arg.share_id, &owner,
					      &ret);
		if (!share)
			return ret;
		mutex_lock(&share->lock);
		arg.nr_tcs = share->nr_tcs;
		for (i = 0; i < share->nr_tcs; i++) {
			switch (share->tcs[i].state) {
			case TEEMATE_TCS_FREE:
				arg.nr_free++;
				break;
			case TEEMATE_TCS_OWNED:
				arg.nr_owned++;
				break;
			case TEEMATE_TCS_QUARANTINED:
				arg.nr_quarantined++;
				break;
			}
		}
		arg.nr_attached = share->nr_attached;
		arg.attach_count = share->attach_count;
		mutex_unlock(&share->lock);
		teemate_share_put(share);
	}
	arg.nr_shares = teemate_nr_shares();
	arg.nr_sessions = atomic_read(&teemate_nr_sessions);
	if (copy_to_user(uarg, &arg, sizeof(arg)))
		return -EFAULT;
	return 0;
}

/**
 * teemate_ioctl() - dispatcher
 * @file: a /dev/teemate session
 * @cmd: TEEMATE_IOC_*
 * @arg: user pointer
 *
 * Return: the handler's result; -EPERM if called from an address space other
 * than the one that opened the file (a forked child, or a process that
 * received the fd); -ENOTTY for unknown commands.
 */
long teemate_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct teemate_session *session = file->private_data;
	void __user *uarg = (void __user *)arg;

	if (current->mm != session->mm)
		return -EPERM;

	switch (cmd) {
	case TEEMATE_IOC_SHARE:
		return teemate_ioctl_share(session, uarg);
	case TEEMATE_IOC_UNSHARE:
		return teemate_ioctl_unshare(session, uarg);
	case TEEMATE_IOC_ATTACH:
		return teemate_ioctl_attach(session, uarg);
	case TEEMATE_IOC_TCS_ACQUIRE:
		return teemate_ioctl_tcs_acquire(session, uarg);
	case TEEMATE_IOC_TCS_RELEASE:
		return teemate_ioctl_tcs_release(session, uarg);
	case TEEMATE_IOC_TCS_UNQUARANTINE:
		return teemate_ioctl_tcs_unquarantine(session, uarg);
	case TEEMATE_IOC_INFO:
		return teemate_ioctl_info(session, uarg);
	default:
		return -ENOTTY;
	}
}
