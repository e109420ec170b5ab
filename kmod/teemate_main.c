// SPDX-License-Identifier: GPL-2.0
/*
 * teemate_main.c - /dev/teemate: sessions, the share registry and the check
 * that a file really is an enclave file.
 *
 * The module uses exported MM/FS APIs only and never looks inside the SGX
 * driver's private structures: an attach is a second mmap of the owner's
 * enclave file, so the driver registers the new address space itself and
 * its reclaimer, ETRACK IPIs and PTE zapping cover the alias too.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/device.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kdev_t.h>
#include <linux/major.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/sched/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/xarray.h>

#include "teemate.h"

/*
 * Enclave files are recognised by the misc device that backs them: a char
 * device with MISC_MAJOR whose device in the misc class is named
 * "sgx_enclave". This needs no SGX symbol and no path lookup; only code in the
 * kernel (built in or a module loaded by root) can register a misc device of
 * that name, and fget() never returns O_PATH files, so the file was opened
 * through the driver's own open(). The test backend's name is accepted only
 * when this parameter was set at load time (it is read-only afterwards).
 */
static bool allow_fake_enclave;
module_param(allow_fake_enclave, bool, 0444);
MODULE_PARM_DESC(
	allow_fake_enclave,
	"accept files of /dev/teemate_fake_enclave (test only, default off)");

#define TEEMATE_SGX_MISC_NAME  "sgx_enclave"
#define TEEMATE_FAKE_MISC_NAME "teemate_fake_enclave"

DEFINE_MUTEX(teemate_registry_lock);
atomic_t teemate_nr_sessions = ATOMIC_INIT(0);

static DEFINE_XARRAY_ALLOC1(teemate_shares);
static u32 teemate_share_next;
static u32 teemate_share_count;

static struct miscdevice teemate_misc;

/**
 * teemate_encl_file_check() - is @file an open enclave file we may share?
 * @file: file from fget()
 *
 * Return: 0 if accepted; -EINVAL if it is not an enclave file (or the test
 * backend while allow_fake_enclave is off); -EBADF if it is not open for both
 * reading and writing.
 */
int teemate_encl_file_check(struct file *file)
{
	struct inode *inode = file_inode(file);
	struct device *dev;
	bool ok;

	if (!S_ISCHR(inode->i_mode) || imajor(inode) != MISC_MAJOR)
		return -EINVAL;
	if (!file->f_op || !file->f_op->mmap)
		return -EINVAL;

	dev = class_find_device_by_devt(teemate_misc.this_device->class,
					inode->i_rdev);
	if (!dev)
		return -EINVAL;
	ok = !strcmp(dev_name(dev), TEEMATE_SGX_MISC_NAME) ||
	     (allow_fake_enclave &&
	      !strcmp(dev_name(dev), TEEMATE_FAKE_MISC_NAME));
	put_device(dev);
	if (!ok)
		return -EINVAL;

	if ((file->f_mode & (FMODE_READ | FMODE_WRITE)) !=
	    (FMODE_READ | FMODE_WRITE))
		return -EBADF;
	return 0;
}

static void teemate_share_free(struct kref *ref)
{
	struct teemate_shared *share =
		container_of(ref, struct teemate_shared, ref);

	fput(share->encl);
	kvfree(share->tcs);
	kfree(share->ranges);
	kfree(share);
}

/**
 * teemate_share_put() - drop one reference to @share
 * @share: share, may be NULL
 */
void teemate_share_put(struct teemate_shared *share)
{
	if (share)
		kref_put(&share->ref, teemate_share_free);
}

/**
 * teemate_share_lookup() - find a live share and take a reference
 * @id: share id
 *
 * Return: the share, or NULL if there is none with that id.
 */
struct teemate_shared *teemate_share_lookup(u64 id)
{
	struct teemate_shared *share;

	if (!id || id > U32_MAX)
		return NULL;
	mutex_lock(&teemate_registry_lock);
	share = xa_load(&teemate_shares, (unsigned long)id);
	if (share)
		kref_get(&share->ref);
	mutex_unlock(&teemate_registry_lock);
	return share;
}

/**
 * teemate_share_register() - publish a fully built share
 * @share: share with one reference (becomes the registry's)
 * @owner: owning session
 *
 * Return: 0; -ENOSPC if TEEMATE_MAX_SHARES shares are live; -ENOMEM.
 */
int teemate_share_register(struct teemate_shared *share,
			   struct teemate_session *owner)
{
	int ret;

	mutex_lock(&teemate_registry_lock);
	if (teemate_share_count >= TEEMATE_MAX_SHARES) {
		ret = -ENOSPC;
		goto out;
	}
	ret = xa_alloc_cyclic(&teemate_shares, &share->id, share,
			      XA_LIMIT(1, U32_MAX), &teemate_share_next,
			      GFP_KERNEL);
	if (ret < 0)
		goto out;
	share->owner = owner;
	list_add(&share->owner_node, &owner->owned);
	teemate_share_count++;
	ret = 0;
out:
	mutex_unlock(&teemate_registry_lock);
	return ret;
}

/* Caller holds teemate_registry_lock and keeps the registry's reference. */
static void teemate_share_unlink_locked(struct teemate_shared *share)
{
	xa_erase(&teemate_shares, share->id);
	list_del_init(&share->owner_node);
	share->owner = NULL;
	teemate_share_count--;
}

/* Stop new attaches and acquires; wake waiters so they see !live. */
static void teemate_share_kill(struct teemate_shared *share)
{
	mutex_lock(&share->lock);
	share->live = false;
	mutex_unlock(&share->lock);
	wake_up_all(&share->wq);
}

/**
 * teemate_share_unregister() - remove @share from the registry and drop the
 * registry's reference; the caller must hold its own reference
 * @share: share
 * @owner: session that must own it
 *
 * The ownership check and the unlink happen under one registry lock hold, so
 * racing unshares and the owner's release cannot unlink twice.
 *
 * Return: 0; -EPERM if @owner does not own @share; -ENOENT if it was already
 * unshared.
 */
int teemate_share_unregister(struct teemate_shared *share,
			     struct teemate_session *owner)
{
	mutex_lock(&teemate_registry_lock);
	if (share->owner != owner) {
		int ret = share->owner ? -EPERM : -ENOENT;

		mutex_unlock(&teemate_registry_lock);
		return ret;
	}
	teemate_share_unlink_locked(share);
	mutex_unlock(&teemate_registry_lock);
	teemate_share_kill(share);
	teemate_share_put(share);
	return 0;
}

/**
 * teemate_nr_shares() - live shares
 *
 * Return: the number of registered shares.
 */
u32 teemate_nr_shares(void)
{
	u32 n;

	mutex_lock(&teemate_registry_lock);
	n = teemate_share_count;
	mutex_unlock(&teemate_registry_lock);
	return n;
}

/**
 * teemate_share_quarantine_holder() - quarantine every slot @session holds
 * @share: share
 * @session: session going away
 *
 * A holder that goes away without a clean release may have left its thread
 * inside the enclave with an interrupted SSA frame; only the owner may vouch
 * for the slot again (TEEMATE_IOC_TCS_UNQUARANTINE).
 */
void teemate_share_quarantine_holder(struct teemate_shared *share,
				     struct teemate_session *session)
{
	u32 i;

	mutex_lock(&share->lock);
	for (i = 0; i < share->nr_tcs; i++) {
		struct teemate_tcs_slot *slot = &share->tcs[i];

		if (slot->state == TEEMATE_TCS_OWNED &&
		    slot->holder == session) {
			slot->state = TEEMATE_TCS_QUARANTINED;
			slot->holder = NULL;
		}
	}
	mutex_unlock(&share->lock);
}

static int teemate_open(struct inode *inode, struct file *file)
{
	struct teemate_session *session;

	if (!current->mm)
		return -EPERM;
	session = kzalloc(sizeof(*session), GFP_KERNEL);
	if (!session)
		return -ENOMEM;
	mutex_init(&session->lock);
	INIT_LIST_HEAD(&session->owned);
	/* Pins the mm_struct (not the address space) for the identity check. */
	mmgrab(current->mm);
	session->mm = current->mm;
	file->private_data = session;
	atomic_inc(&teemate_nr_sessions);
	return 0;
}

/*
 * Runs on close or in exit_files(). On process exit exit_mm() ran first, so
 * no thread of the process can still be inside the enclave and its alias
 * mappings are already gone.
 */
static int teemate_release(struct inode *inode, struct file *file)
{
	struct teemate_session *session = file->private_data;
	struct teemate_shared *share, *tmp;
	LIST_HEAD(dead);

	mutex_lock(&session->lock);
	mutex_lock(&teemate_registry_lock);
	list_for_each_entry_safe(share, tmp, &session->owned, owner_node) {
		teemate_share_unlink_locked(share);
		list_add(&share->owner_node, &dead);
	}
	mutex_unlock(&teemate_registry_lock);

	list_for_each_entry_safe(share, tmp, &dead, owner_node) {
		list_del_init(&share->owner_node);
		teemate_share_quarantine_holder(share, session);
		teemate_share_kill(share);
		teemate_share_put(share);
	}

	share = session->attached;
	if (share) {
		teemate_share_quarantine_holder(share, session);
		mutex_lock(&share->lock);
		share->nr_attached--;
		mutex_unlock(&share->lock);
		session->attached = NULL;
		teemate_share_put(share);
	}
	mutex_unlock(&session->lock);

	mmdrop(session->mm);
	kfree(session);
	atomic_dec(&teemate_nr_sessions);
	return 0;
}

static const struct file_operations teemate_fops = {
	.owner = THIS_MODULE,
	.open = teemate_open,
	.release = teemate_release,
	.unlocked_ioctl = teemate_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice teemate_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "teemate",
	.fops = &teemate_fops,
	.mode = 0660,
};

static int __init teemate_init(void)
{
	int ret;

	ret = misc_register(&teemate_misc);
	if (ret) {
		pr_err("misc_register failed: %d\n", ret);
		return ret;
	}
	if (allow_fake_enclave)
		pr_warn("accepting %s files: test configuration, not for production\n",
			TEEMATE_FAKE_MISC_NAME);
	return 0;
}

static void __exit teemate_exit(void)
{
	/* Every session holds a module reference, so the registry is empty. */
	misc_deregister(&teemate_misc);
	WARN_ON(!xa_empty(&teemate_shares));
	xa_destroy(&teemate_shares);
}

module_init(teemate_init);
module_exit(teemate_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION(
	"TeeMate: share a warm enclave with fresh processes and keep its TCS table");
