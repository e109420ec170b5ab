// SPDX-License-Identifier: GPL-2.0
/*
 * teemate_fake_encl.c - test-only stand-in for /dev/sgx_enclave.
 *
 * Mimics what teemate.ko can observe of the SGX driver: one enclave object
 * per open file, an ELRANGE fixed before mapping, MAP_SHARED mappings inside
 * ELRANGE only, VM_PFNMAP|VM_IO VMAs whose fault handler inserts the frame of
 * the page kept for that virtual address. Ordinary zeroed pages stand in for
 * EPC. No production system loads this module; teemate.ko accepts its files
 * only with allow_fake_enclave=1.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/xarray.h>

#include "../uapi/teemate_fake.h"

/**
 * struct teemate_fake_encl - one fake enclave
 * @lock:	protects @pages and the ELRANGE fields
 * @pages:	page per virtual page number
 * @base:	ELRANGE start (0 until CREATE)
 * @size:	ELRANGE size (0 until CREATE)
 */
struct teemate_fake_encl {
	struct mutex lock;
	struct xarray pages;
	u64 base;
	u64 size;
};

static atomic_long_t teemate_fake_nr_encls;
static atomic_long_t teemate_fake_nr_vmas;
static atomic_long_t teemate_fake_nr_pages;
static atomic_long_t teemate_fake_nr_faults;

static vm_fault_t teemate_fake_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct teemate_fake_encl *encl = vma->vm_private_data;
	unsigned long addr = vmf->address & PAGE_MASK;
	unsigned long idx = addr >> PAGE_SHIFT;
	struct page *page;
	vm_fault_t ret;

	atomic_long_inc(&teemate_fake_nr_faults);
	mutex_lock(&encl->lock);
	page = xa_load(&encl->pages, idx);
	if (!page) {
		page = alloc_page(GFP_KERNEL | __GFP_ZERO);
		if (!page) {
			mutex_unlock(&encl->lock);
			return VM_FAULT_OOM;
		}
		if (xa_err(xa_store(&encl->pages, idx, page, GFP_KERNEL))) {
			__free_page(page);
			mutex_unlock(&encl->lock);
			return VM_FAULT_OOM;
		}
		atomic_long_inc(&teemate_fake_nr_pages);
	}
	ret = vmf_insert_pfn(vma, addr, page_to_pfn(page));
	mutex_unlock(&encl->lock);
	return ret;
}

/* A VMA duplicated by fork() or split. */
static void teemate_fake_vma_open(struct vm_area_struct *vma)
{
	atomic_long_inc(&teemate_fake_nr_vmas);
}

static void teemate_fake_vma_close(struct vm_area_struct *vma)
{
	atomic_long_dec(&teemate_fake_nr_vmas);
}

static const struct vm_operations_struct teemate_fake_vm_ops = {
	.open = teemate_fake_vma_open,
	.close = teemate_fake_vma_close,
	.fault = teemate_fake_fault,
};

static int teemate_fake_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct teemate_fake_encl *encl = file->private_data;
	int ret = 0;

	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	mutex_lock(&encl->lock);
	if (!encl->size || vma->vm_start < encl->base ||
	    vma->vm_end > encl->base + encl->size)
		ret = -EINVAL;
	mutex_unlock(&encl->lock);
	if (ret)
		return ret;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 3, 0)
	vm_flags_set(vma, VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP);
#else
	vma->vm_flags |= VM_PFNMAP | VM_IO | VM_DONTEXPAND | VM_DONTDUMP;
#endif
	vma->vm_ops = &teemate_fake_vm_ops;
	vma->vm_private_data = encl;
	atomic_long_inc(&teemate_fake_nr_vmas);
	return 0;
}

static long teemate_fake_create(struct teemate_fake_encl *encl,
				struct teemate_fake_create __user *uarg)
{
	struct teemate_fake_create arg;
	int ret = 0;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.size < PAGE_SIZE || !is_power_of_2(arg.size) ||
	    arg.base & (arg.size - 1) || arg.base + arg.size > TASK_SIZE ||
	    arg.base + arg.size < arg.base)
		return -EINVAL;
	mutex_lock(&encl->lock);
	if (encl->size) {
		ret = -EEXIST;
	} else {
		encl->base = arg.base;
		encl->size = arg.size;
	}
	mutex_unlock(&encl->lock);
	return ret;
}

static long teemate_fake_ioctl(struct file *file, unsigned int cmd,
			       unsigned long arg)
{
	struct teemate_fake_stats st;

	switch (cmd) {
	case TEEMATE_FAKE_IOC_CREATE:
		return teemate_fake_create(file->private_data,
					   (void __user *)arg);
	case TEEMATE_FAKE_IOC_STATS:
		st.nr_encls = atomic_long_read(&teemate_fake_nr_encls);
		st.nr_vmas = atomic_long_read(&teemate_fake_nr_vmas);
		st.nr_pages = atomic_long_read(&teemate_fake_nr_pages);
		st.nr_faults = atomic_long_read(&teemate_fake_nr_faults);
		if (copy_to_user((void __user *)arg, &st, sizeof(st)))
			return -EFAULT;
		return 0;
	default:
		return -ENOTTY;
	}
}

static int teemate_fake_open(struct inode *inode, struct file *file)
{
	struct teemate_fake_encl *encl;

	encl = kzalloc(sizeof(*encl), GFP_KERNEL);
	if (!encl)
		return -ENOMEM;
	mutex_init(&encl->lock);
	xa_init(&encl->pages);
	file->private_data = encl;
	atomic_long_inc(&teemate_fake_nr_encls);
	return 0;
}

/* Every VMA holds the file, so no mapping of these pages is left. */
static int teemate_fake_release(struct inode *inode, struct file *file)
{
	struct teemate_fake_encl *encl = file->private_data;
	struct page *page;
	unsigned long idx;

	xa_for_each(&encl->pages, idx, page) {
		__free_page(page);
		atomic_long_dec(&teemate_fake_nr_pages);
	}
	xa_destroy(&encl->pages);
	kfree(encl);
	atomic_long_dec(&teemate_fake_nr_encls);
	return 0;
}

static const struct file_operations teemate_fake_fops = {
	.owner = THIS_MODULE,
	.open = teemate_fake_open,
	.release = teemate_fake_release,
	.mmap = teemate_fake_mmap,
	.unlocked_ioctl = teemate_fake_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice teemate_fake_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "teemate_fake_enclave",
	.fops = &teemate_fake_fops,
	.mode = 0666,
};

static int __init teemate_fake_init(void)
{
	return misc_register(&teemate_fake_misc);
}

static void __exit teemate_fake_exit(void)
{
	misc_deregister(&teemate_fake_misc);
}

module_init(teemate_fake_init);
module_exit(teemate_fake_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Test-only fake enclave device for teemate.ko");
