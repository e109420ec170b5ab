// SPDX-License-Identifier: GPL-2.0
/*
 * teemate_test - selftests of /dev/teemate against the fake enclave device.
 *
 * The test process is the enclave owner. Attaching processes are fresh
 * execs of this binary ("teemate_test child <mode> ..."), so they start with
 * an address space that has nothing at the enclave addresses, exactly like a
 * new container process. Runs as root inside the VM (kmod/vm/run.sh).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "teemate.h"
#include "teemate_fake.h"
#include "ktap.h"

#define DEV_TEEMATE "/dev/teemate"
#define DEV_FAKE    "/dev/teemate_fake_enclave"

#define PG           4096UL
#define ELRANGE_SIZE (4UL << 20)
#define RANGE_A_SIZE (256UL << 10) /* RW, every page written: POPULATE */
#define RANGE_B_SIZE (256UL << 10) /* shared read-only */
#define RANGE_C_SIZE (64UL << 10)  /* owner maps read-only */
#define MARK_OFF     0x800UL       /* alias writes its mark here */
#define MARK_VAL     0xC0FFEE11u
#define RO_TEXT      "teemate read-only range"
#define CYCLES       100

struct owner {
	int efd; /* fake enclave file */
	int tfd; /* /dev/teemate session */
	uint64_t base;
	uint64_t id;
	uint8_t token[TEEMATE_TOKEN_SIZE];
	uint32_t nr_tcs;
};

static unsigned int owner_seq;

static uint8_t page_pattern(uint64_t i)
{
	return (uint8_t)(i * 7 + 0x5a);
}

static int owner_map(struct owner *o)
{
	struct teemate_fake_create c;
	uint64_t i;
	void *p;

	memset(o, 0, sizeof(*o));
	o->tfd = -1;
	o->base = 0x500000000000ULL + (uint64_t)(owner_seq++) * (16UL << 20);
	o->efd = open(DEV_FAKE, O_RDWR | O_CLOEXEC);
	if (o->efd < 0)
		return -errno;
	c.base = o->base;
	c.size = ELRANGE_SIZE;
	if (ioctl(o->efd, TEEMATE_FAKE_IOC_CREATE, &c))
		return -errno;
	p = mmap((void *)o->base, RANGE_A_SIZE + RANGE_B_SIZE,
		 PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE,
		 o->efd, 0);
	if (p == MAP_FAILED)
		return -errno;
	p = mmap((void *)(o->base + RANGE_A_SIZE + RANGE_B_SIZE), RANGE_C_SIZE,
		 PROT_READ, MAP_SHARED | MAP_FIXED_NOREPLACE, o->efd, 0);
	if (p == MAP_FAILED)
		return -errno;
	for (i = 0; i < RANGE_A_SIZE / PG; i++)
		*(volatile uint8_t *)(o->base + i * PG) = page_pattern(i);
	strcpy((char *)(o->base + RANGE_A_SIZE), RO_TEXT);
	return 0;
}

static void owner_ranges(const struct owner *o, struct teemate_range r[2])
{
	memset(r, 0, 2 * sizeof(r[0]));
	r[0].start = o->base;
	r[0].end = o->base + RANGE_A_SIZE;
	r[0].prot = TEEMATE_PROT_READ | TEEMATE_PROT_WRITE;
	r[0].flags = TEEMATE_RANGE_POPULATE;
	r[1].start = o->base + RANGE_A_SIZE;
	r[1].end = r[1].start + RANGE_B_SIZE;
	r[1].prot = TEEMATE_PROT_READ;
}

static int do_share(struct owner *o, struct teemate_range *r, uint32_t nr,
		    uint64_t *tcs, uint32_t nr_tcs)
{
	struct teemate_share s;

	memset(&s, 0, sizeof(s));
	s.encl_fd = o->efd;
	s.ranges = (uintptr_t)r;
	s.nr_ranges = nr;
	s.tcs_addrs = (uintptr_t)tcs;
	s.nr_tcs = nr_tcs;
	if (ioctl(o->tfd, TEEMATE_IOC_SHARE, &s))
		return -errno;
	o->id = s.share_id;
	memcpy(o->token, s.token, sizeof(o->token));
	o->nr_tcs = nr_tcs;
	return 0;
}

/* Map, open /dev/teemate and share with @nr_tcs TCS pages in range A. */
static int owner_setup(struct owner *o, uint32_t nr_tcs)
{
	struct teemate_range r[2];
	uint64_t tcs[16];
	uint32_t i;
	int ret;

	ret = owner_map(o);
	if (ret)
		return ret;
	o->tfd = open(DEV_TEEMATE, O_RDWR | O_CLOEXEC);
	if (o->tfd < 0)
		return -errno;
	owner_ranges(o, r);
	for (i = 0; i < nr_tcs && i < 16; i++)
		tcs[i] = o->base + (i + 1) * PG;
	return do_share(o, r, 2, tcs, nr_tcs);
}

static void owner_teardown(struct owner *o)
{
	if (o->tfd >= 0)
		close(o->tfd);
	munmap((void *)o->base, RANGE_A_SIZE + RANGE_B_SIZE + RANGE_C_SIZE);
	if (o->efd >= 0)
		close(o->efd);
}

static int info(int tfd, uint64_t id, struct teemate_info *in)
{
	memset(in, 0, sizeof(*in));
	in->share_id = id;
	return ioctl(tfd, TEEMATE_IOC_INFO, in) ? -errno : 0;
}

static int fake_stats(struct teemate_fake_stats *st)
{
	int fd = open(DEV_FAKE, O_RDWR | O_CLOEXEC);
	int ret = 0;

	if (fd < 0)
		return -errno;
	/* This open itself counts as one enclave file. */
	if (ioctl(fd, TEEMATE_FAKE_IOC_STATS, st))
		ret = -errno;
	close(fd);
	return ret;
}

static long mem_available_kb(void)
{
	char line[128];
	long kb = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
}

static int unhex(const char *s, uint8_t *b, size_t n)
{
	size_t i;
	unsigned int v;

	if (strlen(s) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return -1;
		b[i] = (uint8_t)v;
	}
	return 0;
}

/*
 * Start "teemate_test child <mode> <id> <token> <base> <arg> <pipefd>" and
 * return its pid. @pipe_w (or -1) is inherited for the child's reports.
 */
static pid_t spawn_child(const char *mode, const struct owner *o,
			 const uint8_t *token, long arg, int pipe_w)
{
	char id[32], tok[2 * TEEMATE_TOKEN_SIZE + 1], base[32], a[32], pw[16];
	pid_t pid;

	snprintf(id, sizeof(id), "%llu", (unsigned long long)o->id);
	hex(token, TEEMATE_TOKEN_SIZE, tok);
	snprintf(base, sizeof(base), "%llu", (unsigned long long)o->base);
	snprintf(a, sizeof(a), "%ld", arg);
	snprintf(pw, sizeof(pw), "%d", pipe_w);
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "teemate_test", "child", mode, id, tok,
		      base, a, pw, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Exit status of @pid, or -1 if it did not exit normally. */
static int wait_status(pid_t pid)
{
	int st;

	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

static int run_child(const char *mode, const struct owner *o, long arg)
{
	int st = wait_status(spawn_child(mode, o, o->token, arg, -1));

	if (st)
		ktap_diag("child %s exited with %d", mode, st);
	return st;
}

/* ---- child side --------------------------------------------------------- */

struct child {
	int tfd;
	uint64_t id;
	uint8_t token[TEEMATE_TOKEN_SIZE];
	uint64_t base;
	long arg;
	int pipe_w;
	struct teemate_attach at;
};

static int child_attach(struct child *c, uint32_t flags)
{
	memset(&c->at, 0, sizeof(c->at));
	c->at.share_id = c->id;
	memcpy(c->at.token, c->token, sizeof(c->token));
	c->at.flags = flags;
	return ioctl(c->tfd, TEEMATE_IOC_ATTACH, &c->at) ? -errno : 0;
}

static int child_acquire(struct child *c, uint32_t flags, struct teemate_tcs *t)
{
	memset(t, 0, sizeof(*t));
	t->flags = flags;
	return ioctl(c->tfd, TEEMATE_IOC_TCS_ACQUIRE, t) ? -errno : 0;
}

static void child_report(struct child *c, const char *msg)
{
	if (c->pipe_w >= 0 && write(c->pipe_w, msg, strlen(msg)) < 0)
		_exit(90);
}

static int child_main(int argc, char **argv)
{
	struct teemate_tcs t[17];
	struct child c;
	const char *mode;
	uint64_t i;
	int ret, n;

	if (argc != 8)
		return 99;
	mode = argv[2];
	c.id = strtoull(argv[3], NULL, 10);
	if (unhex(argv[4], c.token, sizeof(c.token)))
		return 98;
	c.base = strtoull(argv[5], NULL, 10);
	c.arg = strtol(argv[6], NULL, 10);
	c.pipe_w = atoi(argv[7]);
	c.tfd = open(DEV_TEEMATE, O_RDWR | O_CLOEXEC);
	if (c.tfd < 0)
		return 97;

	if (!strcmp(mode, "read") || !strcmp(mode, "populate")) {
		int pop = !strcmp(mode, "populate");

		if (child_attach(&c, pop ? TEEMATE_ATTACH_POPULATE : 0))
			return 10;
		if (c.at.encl_start != c.base || c.at.nr_ranges != 2 ||
		    c.at.encl_end != c.base + RANGE_A_SIZE + RANGE_B_SIZE ||
		    c.at.encl_fd != -1)
			return 11;
		if (c.at.pages_populated != (pop ? RANGE_A_SIZE / PG : 0))
			return 12;
		for (i = 0; i < RANGE_A_SIZE / PG; i++)
			if (*(volatile uint8_t *)(c.base + i * PG) !=
			    page_pattern(i))
				return 13;
		if (strcmp((char *)(c.base + RANGE_A_SIZE), RO_TEXT))
			return 14;
		*(volatile uint32_t *)(c.base + MARK_OFF) = MARK_VAL;
		return 0;
	}
	if (!strcmp(mode, "badtoken")) {
		c.token[0] ^= 1;
		ret = child_attach(&c, 0);
		/* Nothing may have been mapped. */
		if (ret != -EACCES ||
		    mmap((void *)c.base, PG, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0) != (void *)c.base)
			return 20;
		return 0;
	}
	if (!strcmp(mode, "gone"))
		return child_attach(&c, 0) == -ENOENT ? 0 : 30;
	if (!strcmp(mode, "occupied")) {
		/* Occupy a page of range B: the attach must fail and unwind. */
		if (mmap((void *)(c.base + RANGE_A_SIZE), PG, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0) == MAP_FAILED)
			return 40;
		if (child_attach(&c, 0) != -EEXIST)
			return 41;
		if (mmap((void *)c.base, PG, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1,
			 0) != (void *)c.base)
			return 42; /* range A was left mapped */
		munmap((void *)c.base, PG);
		munmap((void *)(c.base + RANGE_A_SIZE), PG);
		if (child_attach(&c, 0))
			return 43;
		if (child_attach(&c, 0) != -EBUSY)
			return 44; /* one attach per session */
		return 0;
	}
	if (!strcmp(mode, "exhaust")) {
		if (child_attach(&c, 0))
			return 50;
		for (n = 0; n < c.arg; n++) {
			if (child_acquire(&c, TEEMATE_TCS_NONBLOCK, &t[n]))
				return 51;
			if (t[n].slot != (uint32_t)n ||
			    t[n].tcs_addr != c.base + (n + 1) * PG)
				return 52;
		}
		if (child_acquire(&c, TEEMATE_TCS_NONBLOCK, &t[n]) != -EAGAIN)
			return 53;
		t[0].flags = TEEMATE_TCS_CLEAN;
		if (ioctl(c.tfd, TEEMATE_IOC_TCS_RELEASE, &t[0]))
			return 54;
		if (ioctl(c.tfd, TEEMATE_IOC_TCS_RELEASE, &t[0]) == 0 ||
		    errno != EPERM)
			return 55; /* double release */
		if (child_acquire(&c, TEEMATE_TCS_NONBLOCK, &t[0]) ||
		    t[0].slot != 0)
			return 56;
		/* Unclean release: quarantined. */
		t[1].flags = 0;
		if (ioctl(c.tfd, TEEMATE_IOC_TCS_RELEASE, &t[1]))
			return 57;
		t[1].flags = 0;
		if (ioctl(c.tfd, TEEMATE_IOC_TCS_UNQUARANTINE, &t[1]) == 0 ||
		    errno != EPERM)
			return 58; /* only the owner vouches */
		for (n = 0; n < c.arg; n++) {
			if (n == 1)
				continue;
			t[n].flags = TEEMATE_TCS_CLEAN;
			if (ioctl(c.tfd, TEEMATE_IOC_TCS_RELEASE, &t[n]))
				return 59;
		}
		return 0;
	}
	if (!strcmp(mode, "hold")) {
		char msg[32];

		if (child_attach(&c, 0) ||
		    child_acquire(&c, TEEMATE_TCS_NONBLOCK, &t[0]))
			return 60;
		snprintf(msg, sizeof(msg), "%u\n", t[0].slot);
		child_report(&c, msg);
		for (;;)
			pause();
	}
	if (!strcmp(mode, "wait")) {
		if (child_attach(&c, 0))
			return 70;
		child_report(&c, "waiting\n");
		if (child_acquire(&c, 0, &t[0]))
			return 71;
		t[0].flags = TEEMATE_TCS_CLEAN;
		if (ioctl(c.tfd, TEEMATE_IOC_TCS_RELEASE, &t[0]))
			return 72;
		return 0;
	}
	if (!strcmp(mode, "cycle")) {
		if (child_attach(&c, c.arg ? TEEMATE_ATTACH_POPULATE : 0))
			return 80;
		if (*(volatile uint8_t *)(c.base + PG) != page_pattern(1))
			return 81;
		if (child_acquire(&c, TEEMATE_TCS_NONBLOCK, &t[0]))
			return 82;
		return 0; /* exits holding the TCS: quarantined */
	}
	return 96;
}

/* ---- tests (owner side) ------------------------------------------------- */

static void test_share_rejects_bad_input(void)
{
	struct teemate_range r[2], bad[2];
	struct owner o;
	uint64_t tcs[2];
	int pass = 1, nullfd, ret;

	if (owner_map(&o)) {
		ktap_result(0, "share_rejects_bad_input");
		return;
	}
	o.tfd = open(DEV_TEEMATE, O_RDWR | O_CLOEXEC);
	if (o.tfd < 0) {
		ktap_result(0, "share_rejects_bad_input");
		return;
	}
	owner_ranges(&o, r);
	tcs[0] = o.base + PG;
#define EXPECT(cond, what)                                          \
	do {                                                        \
		if (!(cond)) {                                      \
			pass = 0;                                   \
			ktap_diag("share: %s (ret %d)", what, ret); \
		}                                                   \
	} while (0)
	ret = do_share(&o, r, 0, tcs, 1);
	EXPECT(ret == -EINVAL, "nr_ranges 0");
	ret = do_share(&o, r, TEEMATE_MAX_RANGES + 1, tcs, 1);
	EXPECT(ret == -EINVAL, "too many ranges");
	ret = do_share(&o, r, 2, tcs, TEEMATE_MAX_TCS + 1);
	EXPECT(ret == -EINVAL, "too many TCS");
	memcpy(bad, r, sizeof(bad));
	bad[0].start += 1;
	ret = do_share(&o, bad, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "unaligned range");
	memcpy(bad, r, sizeof(bad));
	bad[1].start -= PG;
	ret = do_share(&o, bad, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "overlapping ranges");
	memcpy(bad, r, sizeof(bad));
	bad[1].end = o.base + ELRANGE_SIZE; /* past the owner's mappings */
	ret = do_share(&o, bad, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "range not mapped by the owner");
	memcpy(bad, r, sizeof(bad));
	bad[1].start = o.base + RANGE_A_SIZE + RANGE_B_SIZE;
	bad[1].end = bad[1].start + RANGE_C_SIZE;
	bad[1].prot = TEEMATE_PROT_READ | TEEMATE_PROT_WRITE;
	ret = do_share(&o, bad, 2, tcs, 1);
	EXPECT(ret == -EACCES, "more protection than the owner's mapping");
	memcpy(bad, r, sizeof(bad));
	bad[1].prot = 0x8;
	ret = do_share(&o, bad, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "unknown prot bit");
	tcs[0] = o.base + RANGE_A_SIZE; /* read-only range */
	ret = do_share(&o, r, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "TCS in a read-only range");
	tcs[0] = tcs[1] = o.base + PG;
	ret = do_share(&o, r, 2, tcs, 2);
	EXPECT(ret == -EINVAL, "duplicate TCS");
	tcs[0] = o.base + PG + 8;
	ret = do_share(&o, r, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "unaligned TCS");
	tcs[0] = o.base + PG;
	nullfd = open("/dev/null", O_RDWR);
	o.efd ^= nullfd, nullfd ^= o.efd, o.efd ^= nullfd; /* swap */
	ret = do_share(&o, r, 2, tcs, 1);
	EXPECT(ret == -EINVAL, "not an enclave file");
	o.efd ^= nullfd, nullfd ^= o.efd, o.efd ^= nullfd;
	close(nullfd);
	nullfd = o.efd;
	o.efd = 1000;
	ret = do_share(&o, r, 2, tcs, 1);
	EXPECT(ret == -EBADF, "closed fd");
	o.efd = nullfd;
	ret = ioctl(o.tfd, TEEMATE_IOC_SHARE, NULL) ? -errno : 0;
	EXPECT(ret == -EFAULT, "NULL argument");
	ret = ioctl(o.tfd, _IO(TEEMATE_MAGIC, 0x3f)) ? -errno : 0;
	EXPECT(ret == -ENOTTY, "unknown ioctl");
	ret = do_share(&o, r, 2, tcs, 1);
	EXPECT(ret == 0 && o.id, "valid share");
#undef EXPECT
	owner_teardown(&o);
	ktap_result(pass, "share_rejects_bad_input");
}

static void test_share_info(struct owner *o)
{
	struct teemate_info in;
	int ok = !info(o->tfd, o->id, &in) && in.nr_tcs == o->nr_tcs &&
		 in.nr_free == o->nr_tcs && !in.nr_owned &&
		 !in.nr_quarantined && !in.nr_attached && in.nr_shares >= 1 &&
		 in.nr_sessions >= 1;

	ktap_result(ok, "share_info_counters");
}

static void test_attach_read_write(struct owner *o)
{
	volatile uint32_t *mark = (volatile uint32_t *)(o->base + MARK_OFF);
	struct teemate_info in;

	*mark = 0;
	ktap_result(run_child("read", o, 0) == 0,
		    "attach_same_addresses_reads_owner_bytes");
	ktap_result(*mark == MARK_VAL, "alias_write_seen_by_owner");
	ktap_result(!info(o->tfd, o->id, &in) && in.attach_count == 1 &&
			    in.nr_attached == 0,
		    "attach_counted_and_detached_on_exit");
}

static void test_attach_populate(struct owner *o)
{
	ktap_result(run_child("populate", o, 0) == 0,
		    "attach_populate_prefaults_range");
}

static void test_attach_occupied(struct owner *o)
{
	ktap_result(run_child("occupied", o, 0) == 0,
		    "attach_occupied_va_fails_and_unwinds");
}

static void test_wrong_token(struct owner *o)
{
	struct teemate_info in;
	uint64_t before = (!info(o->tfd, o->id, &in)) ? in.attach_count : 0;

	ktap_result(run_child("badtoken", o, 0) == 0 &&
			    !info(o->tfd, o->id, &in) &&
			    in.attach_count == before,
		    "wrong_token_rejected");
}

static void test_wrong_mm(struct owner *o)
{
	struct teemate_info in;
	pid_t pid = fork();

	if (pid == 0) {
		/* Same fd, different address space. */
		memset(&in, 0, sizeof(in));
		in.share_id = o->id;
		_exit(ioctl(o->tfd, TEEMATE_IOC_INFO, &in) == -1 &&
				      errno == EPERM ?
			      0 :
			      1);
	}
	ktap_result(wait_status(pid) == 0,
		    "forked_child_using_owner_fd_gets_eperm");
}

static void test_tcs_exhaustion(struct owner *o)
{
	struct teemate_info in;
	struct teemate_tcs t;
	int ok = run_child("exhaust", o, o->nr_tcs) == 0;

	/* The child left TCS 1 quarantined (unclean release). */
	ok = ok && !info(o->tfd, o->id, &in) && in.nr_quarantined == 1 &&
	     in.nr_free == o->nr_tcs - 1;
	memset(&t, 0, sizeof(t));
	t.share_id = o->id;
	t.tcs_addr = o->base + 2 * PG;
	ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_UNQUARANTINE, &t) &&
	     !info(o->tfd, o->id, &in) && in.nr_free == o->nr_tcs;
	ktap_result(ok, "tcs_exhaustion_and_unclean_release");
}

static void test_quarantine_on_kill(struct owner *o)
{
	struct teemate_info in;
	struct teemate_tcs t;
	char buf[32] = { 0 };
	int p[2], ok = 0;
	unsigned int slot;
	pid_t pid;

	if (pipe(p))
		goto out;
	pid = spawn_child("hold", o, o->token, 0, p[1]);
	close(p[1]);
	if (read(p[0], buf, sizeof(buf) - 1) <= 0 ||
	    sscanf(buf, "%u", &slot) != 1) {
		kill(pid, SIGKILL);
		wait_status(pid);
		close(p[0]);
		goto out;
	}
	close(p[0]);
	ok = !info(o->tfd, o->id, &in) && in.nr_owned == 1 &&
	     in.nr_attached == 1;
	kill(pid, SIGKILL);
	ok = ok && wait_status(pid) == 128 + SIGKILL;
	ok = ok && !info(o->tfd, o->id, &in) && in.nr_owned == 0 &&
	     in.nr_quarantined == 1 && in.nr_attached == 0;
	if (!ok)
		ktap_diag("owned %u quarantined %u attached %u", in.nr_owned,
			  in.nr_quarantined, in.nr_attached);
	memset(&t, 0, sizeof(t));
	t.share_id = o->id;
	t.tcs_addr = o->base + (slot + 1) * PG;
	t.flags = TEEMATE_TCS_CLEAN;
	/* The owner does not hold it, so it cannot "release" it either. */
	ok = ok && ioctl(o->tfd, TEEMATE_IOC_TCS_RELEASE, &t) == -1 &&
	     errno == EPERM;
	t.flags = 0;
	ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_UNQUARANTINE, &t);
	ok = ok && ioctl(o->tfd, TEEMATE_IOC_TCS_UNQUARANTINE, &t) == -1 &&
	     errno == EBUSY;
	ok = ok && !info(o->tfd, o->id, &in) && in.nr_free == o->nr_tcs;
out:
	ktap_result(ok, "tcs_quarantined_after_kill9_and_owner_unquarantines");
}

static void test_blocking_acquire(struct owner *o)
{
	struct teemate_tcs t[16];
	struct teemate_info in;
	char buf[16];
	uint32_t n;
	int p[2], ok = 1;
	pid_t pid;

	/* The owner takes every TCS, then frees one while the child waits. */
	for (n = 0; n < o->nr_tcs; n++) {
		memset(&t[n], 0, sizeof(t[n]));
		t[n].share_id = o->id;
		t[n].flags = TEEMATE_TCS_NONBLOCK;
		ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_ACQUIRE, &t[n]);
	}
	if (!ok || pipe(p)) {
		ktap_result(0, "tcs_acquire_blocks_until_release");
		return;
	}
	pid = spawn_child("wait", o, o->token, 0, p[1]);
	close(p[1]);
	ok = read(p[0], buf, sizeof(buf)) > 0;
	close(p[0]);
	/* Give the child time to block; correctness does not depend on it. */
	usleep(100 * 1000);
	t[0].flags = TEEMATE_TCS_CLEAN;
	ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_RELEASE, &t[0]);
	ok = wait_status(pid) == 0 && ok;
	for (n = 1; n < o->nr_tcs; n++) {
		t[n].flags = TEEMATE_TCS_CLEAN;
		ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_RELEASE, &t[n]);
	}
	ok = ok && !info(o->tfd, o->id, &in) && in.nr_free == o->nr_tcs;
	ktap_result(ok, "tcs_acquire_blocks_until_release");
}

static void test_cycles(struct owner *o)
{
	struct teemate_fake_stats st0, st1;
	struct teemate_info g0, g1, in;
	struct teemate_tcs t;
	long mem0, mem1;
	int i, ok = 1;

	ok = !fake_stats(&st0) && !info(o->tfd, 0, &g0) &&
	     !info(o->tfd, o->id, &in);
	mem0 = mem_available_kb();
	for (i = 0; i < CYCLES && ok; i++) {
		ok = run_child("cycle", o, i & 1) == 0;
		/* Each child exits holding a TCS: quarantined, then vouched for. */
		memset(&t, 0, sizeof(t));
		t.share_id = o->id;
		t.tcs_addr = o->base + PG;
		ok = ok && !ioctl(o->tfd, TEEMATE_IOC_TCS_UNQUARANTINE, &t);
	}
	mem1 = mem_available_kb();
	ok = ok && !fake_stats(&st1) && !info(o->tfd, 0, &g1);
	ok = ok && st1.nr_encls == st0.nr_encls && st1.nr_vmas == st0.nr_vmas &&
	     st1.nr_pages == st0.nr_pages && g1.nr_sessions == g0.nr_sessions &&
	     g1.nr_shares == g0.nr_shares;
	ktap_diag(
		"cycles: vmas %llu->%llu pages %llu->%llu sessions %u->%u MemAvailable %ld->%ld kB",
		(unsigned long long)st0.nr_vmas,
		(unsigned long long)st1.nr_vmas,
		(unsigned long long)st0.nr_pages,
		(unsigned long long)st1.nr_pages, g0.nr_sessions,
		g1.nr_sessions, mem0, mem1);
	ktap_result(ok, "attach_exit_cycles_leave_counters_unchanged");
	/* Sanity bound only: page cache and slab noise stay far below this. */
	ktap_result(mem0 > 0 && mem1 > 0 && mem0 - mem1 < 8 * 1024,
		    "attach_exit_cycles_memavailable_sane");
	ok = !info(o->tfd, o->id, &g1) &&
	     g1.attach_count == in.attach_count + CYCLES &&
	     g1.nr_attached == 0 && g1.nr_free == o->nr_tcs;
	ktap_result(ok, "attach_exit_cycles_share_counters");
}

static void test_goattach(struct owner *o)
{
	char id[32], tok[2 * TEEMATE_TOKEN_SIZE + 1], addr[32], want[8];
	pid_t pid;

	if (access("/bin/goattach", X_OK)) {
		ktap_skip("go_wrappers_attach_and_read",
			  "/bin/goattach not built");
		return;
	}
	snprintf(id, sizeof(id), "%llu", (unsigned long long)o->id);
	hex(o->token, TEEMATE_TOKEN_SIZE, tok);
	snprintf(addr, sizeof(addr), "0x%llx",
		 (unsigned long long)(o->base + 3 * PG));
	snprintf(want, sizeof(want), "%02x", page_pattern(3));
	pid = fork();
	if (pid == 0) {
		execl("/bin/goattach", "goattach", "-id", id, "-token", tok,
		      "-addr", addr, "-want", want, (char *)NULL);
		_exit(127);
	}
	ktap_result(wait_status(pid) == 0, "go_wrappers_attach_and_read");
}

static void test_unshare(struct owner *o)
{
	struct teemate_info g0, g1;
	uint64_t id = o->id;
	int ok;

	ok = !info(o->tfd, 0, &g0) && !ioctl(o->tfd, TEEMATE_IOC_UNSHARE, &id);
	ok = ok && ioctl(o->tfd, TEEMATE_IOC_UNSHARE, &id) == -1 &&
	     errno == ENOENT;
	ok = ok && !info(o->tfd, 0, &g1) && g1.nr_shares == g0.nr_shares - 1;
	ok = ok && run_child("gone", o, 0) == 0;
	ktap_result(ok, "attach_after_unshare_fails");
}

static void test_owner_close_unshares(void)
{
	struct teemate_info g0, g1;
	struct owner o;
	int ok, probe;

	ok = owner_setup(&o, 2) == 0;
	probe = open(DEV_TEEMATE, O_RDWR | O_CLOEXEC);
	ok = ok && probe >= 0 && !info(probe, 0, &g0);
	close(o.tfd);
	o.tfd = -1;
	ok = ok && !info(probe, 0, &g1) && g1.nr_shares == g0.nr_shares - 1;
	ok = ok && run_child("gone", &o, 0) == 0;
	close(probe);
	owner_teardown(&o);
	ktap_result(ok, "owner_close_unshares");
}

int main(int argc, char **argv)
{
	struct owner o;
	int ret;

	if (argc > 1 && !strcmp(argv[1], "child"))
		return child_main(argc, argv);

	ktap_header(19);
	test_share_rejects_bad_input();
	ret = owner_setup(&o, 4);
	ktap_result(ret == 0, "share");
	if (ret) {
		ktap_diag("owner setup failed: %s", strerror(-ret));
		return ktap_finish();
	}
	test_share_info(&o);
	test_attach_read_write(&o);
	test_attach_populate(&o);
	test_attach_occupied(&o);
	test_wrong_token(&o);
	test_wrong_mm(&o);
	test_tcs_exhaustion(&o);
	test_quarantine_on_kill(&o);
	test_blocking_acquire(&o);
	test_cycles(&o);
	test_goattach(&o);
	test_unshare(&o);
	owner_teardown(&o);
	test_owner_close_unshares();
	return ktap_finish();
}
