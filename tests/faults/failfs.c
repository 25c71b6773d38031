/*
 * failfs.c — LD_PRELOAD shim that makes file writes and syncs fail on
 * demand, to test that cairnd fail-stops on a failed commit.
 *
 * Intercepted (regular files only; sockets and pipes pass through):
 * fsync, fdatasync, msync, pwrite, pwrite64, pwritev, writev, write.
 *
 * Environment:
 *   FAILFS_CALLS     comma list of the calls to fail (default "fdatasync,fsync")
 *                    ("pwrite" also covers pwrite64 and pwritev)
 *   FAILFS_AFTER     fail the matching calls after this many succeeded (default 0)
 *   FAILFS_ARM_FILE  if set, nothing fails (and nothing is counted) until this
 *                    path exists: the test arms the shim when it wants
 *   FAILFS_ONCE      "1": fail only the first time, then succeed again (the
 *                    fsyncgate case: a retried fsync "succeeds" on lost data)
 *   FAILFS_ERRNO     errno to fail with (default EIO; ENOSPC = 28)
 *   FAILFS_LOG       "1": a line on stderr for every failure injected, with
 *                    its CLOCK_MONOTONIC time ("... at <sec>.<nsec>"), so a
 *                    test can tell which writes were invoked after it
 * No allocation, no locks beyond an atomic counter: safe in any thread.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static atomic_long counted;
static atomic_int failed_once;

static int getenv_int(const char *name, int def)
{
	const char *v = getenv(name);
	return v && *v ? atoi(v) : def;
}

static int listed(const char *call)
{
	const char *calls = getenv("FAILFS_CALLS");
	if (!calls || !*calls)
		calls = "fdatasync,fsync";
	size_t n = strlen(call);
	for (const char *p = calls; (p = strstr(p, call)) != NULL; p += n) {
		bool start = p == calls || p[-1] == ',';
		bool end = p[n] == '\0' || p[n] == ',';
		if (start && end)
			return 1;
	}
	return 0;
}

/* 1 if this call must fail (errno set). fd < 0: no file check (msync). */
static int should_fail(const char *call, int fd)
{
	if (!listed(call))
		return 0;
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
			return 0;
	}
	const char *arm = getenv("FAILFS_ARM_FILE");
	if (arm && *arm && access(arm, F_OK) != 0)
		return 0;
	if (atomic_fetch_add(&counted, 1) < getenv_int("FAILFS_AFTER", 0))
		return 0;
	if (getenv_int("FAILFS_ONCE", 0) && atomic_exchange(&failed_once, 1))
		return 0;
	if (getenv_int("FAILFS_LOG", 0)) {
		char line[128];
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		int len = snprintf(line, sizeof(line), "failfs: failing %s(fd %d) at %lld.%09ld\n",
		                   call, fd, (long long)ts.tv_sec, ts.tv_nsec);
		ssize_t (*real_write)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");
		if (real_write && len > 0)
			(void)!real_write(2, line, (size_t)len);
	}
	errno = getenv_int("FAILFS_ERRNO", EIO);
	return 1;
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

int fsync(int fd)
{
	if (should_fail("fsync", fd))
		return -1;
	return REAL(fsync)(fd);
}

int fdatasync(int fd)
{
	if (should_fail("fdatasync", fd))
		return -1;
	return REAL(fdatasync)(fd);
}

int msync(void *addr, size_t len, int flags)
{
	if (should_fail("msync", -1))
		return -1;
	return REAL(msync)(addr, len, flags);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	if (should_fail("pwrite", fd))
		return -1;
	return REAL(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	if (should_fail("pwrite", fd))
		return -1;
	return REAL(pwrite64)(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (should_fail("pwrite", fd))
		return -1;
	return REAL(pwritev)(fd, iov, cnt, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (should_fail("writev", fd))
		return -1;
	return REAL(writev)(fd, iov, cnt);
}

ssize_t write(int fd, const void *buf, size_t n)
{
	if (should_fail("write", fd))
		return -1;
	return REAL(write)(fd, buf, n);
}
