/*
 * crashrec.c — LD_PRELOAD shim that records every write to an LMDB
 * data.mdb, and every flush of it, so that a test can rebuild the file as
 * a power loss could have left it (tests/faults/test_powerloss.py).
 *
 * A SIGKILL cannot show what a power loss does: the page cache survives
 * the process. What survives a power loss is the file as of its last
 * completed flush, plus any subset of the writes issued after it. This
 * shim logs enough to rebuild both: the bytes of each write in issue
 * order, and which writes each flush covers.
 *
 * Tracked: files whose path ends in "data.mdb" opened with open, open64,
 * openat or openat64 (LMDB opens it twice: O_RDWR for pages, O_WRONLY |
 * O_DSYNC for meta pages when meta sync is on); close forgets the fd.
 * Descriptors made by dup/fcntl are not tracked (LMDB makes none): a write
 * through one would show up as a replay that differs from the file, which
 * the test checks.
 *
 * Environment:
 *   CRASHREC_LOG        path of the log (appended to; nothing is recorded
 *                       without it)
 *   CRASHREC_SLOW_FILE  while this path exists, each flush of data.mdb is
 *                       delayed by CRASHREC_SLOW_US (default 20000) first: a
 *                       slow disk, which widens the window in which a member
 *                       has written but not flushed (a test makes the
 *                       followers' disks slow to see whether the leader
 *                       counts their acknowledgements too early)
 *
 * LOG FORMAT. Records, little-endian, each a 48-byte header
 *   u32 magic 'CREC', u32 type, u64 seq, u64 a, u64 b, u64 ino, u64 ts_ns
 * then, for WRITE and OPEN, b bytes of payload:
 *   OPEN     a = fd, b = path length, seq = open flags; payload = path
 *   WRITE    seq = write number (0, 1, ...), a = file offset, b = length;
 *            payload = the bytes. Logged BEFORE the write is made.
 *   WRITE_DS the same, on an O_DSYNC/O_SYNC fd: durable once it returns
 *   DONE     seq = write number, a = bytes written (int64, -1 = failed)
 *   BARRIER  seq = N: a flush that returned 0 made every write numbered
 *            below N durable; a = 1 for fsync, 0 for fdatasync
 *   TRUNCATE a = new length (seq = the next write number, for order)
 * ts_ns is CLOCK_MONOTONIC (Python's time.monotonic()) when the record was
 * made: for a BARRIER, when the flush returned.
 *
 * WHY THE INTENT COMES FIRST. Each record is one write() to the log fd
 * (O_APPEND), so a SIGKILL leaves at most a torn last record, which the
 * reader ignores. Logging a write's bytes before making it means the log
 * never lacks a write that reached the file; a WRITE without its DONE was
 * in progress at the kill, may have reached the file in part, and is never
 * covered by a flush.
 *
 * WHY A BARRIER COVERS "BELOW N". The mutex is held across each tracked
 * write (intent, call, DONE), not across a flush, which would change the
 * writer's timing. A flush takes N = writes begun so far under the mutex,
 * so every one of them has completed; writes made while it runs may or may
 * not be covered by it, so they are not counted as covered.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum {
	REC_OPEN = 1,
	REC_WRITE = 2,
	REC_WRITE_DS = 3,
	REC_DONE = 4,
	REC_BARRIER = 5,
	REC_TRUNCATE = 6
};
#define REC_MAGIC 0x43455243u /* "CREC" */
#define MAX_FD    65536

struct rec_header {
	uint32_t magic;
	uint32_t type;
	uint64_t seq;
	uint64_t a;
	uint64_t b;
	uint64_t ino;
	uint64_t ts_ns;
};

struct tracked {
	bool on;
	bool dsync;
	uint64_t ino;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct tracked fds[MAX_FD];
static int log_fd = -1;
static uint64_t next_write;
static char *buf; /* the record being built; grows, reused, under mu */
static size_t buf_cap;

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool is_tracked(int fd)
{
	return fd >= 0 && fd < MAX_FD && fds[fd].on;
}

/* Under mu. A buffer of at least n bytes, or NULL. */
static char *record_buf(size_t n)
{
	if (n > buf_cap) {
		char *p = realloc(buf, n);
		if (!p)
			return NULL;
		buf = p;
		buf_cap = n;
	}
	return buf;
}

/* Under mu. Appends one record (header, then the payload gathered from
 * iov) with a single write(); aborts the process if it cannot: a log with
 * a hole would make the test judge a file that never existed. */
static void emit(uint32_t type, uint64_t seq, uint64_t a, uint64_t b, uint64_t ino,
                 const struct iovec *iov, int cnt)
{
	if (log_fd < 0) {
		const char *path = getenv("CRASHREC_LOG");
		if (!path || !*path)
			return;
		log_fd = REAL(open)(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (log_fd < 0)
			abort();
	}
	size_t payload = 0;
	for (int i = 0; i < cnt; i++)
		payload += iov[i].iov_len;
	size_t n = sizeof(struct rec_header) + payload;
	char *p = record_buf(n);
	if (!p)
		abort();
	struct rec_header h = {REC_MAGIC, type, seq, a, b, ino, now_ns()};
	memcpy(p, &h, sizeof(h));
	size_t at = sizeof(h);
	for (int i = 0; i < cnt; i++) {
		memcpy(p + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	ssize_t (*real_write)(int, const void *, size_t) = REAL(write);
	for (size_t done = 0; done < n;) {
		ssize_t w = real_write(log_fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			abort();
		done += (size_t)w;
	}
}

static bool ends_with_data_mdb(const char *path)
{
	static const char suffix[] = "data.mdb";
	size_t n = strlen(path), k = sizeof(suffix) - 1;
	return n >= k && strcmp(path + n - k, suffix) == 0;
}

static int opened(int fd, const char *path, int flags)
{
	if (fd < 0 || fd >= MAX_FD || !ends_with_data_mdb(path))
		return fd;
	int saved = errno;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		pthread_mutex_lock(&mu);
		fds[fd] =
		    (struct tracked){true, (flags & (O_DSYNC | O_SYNC)) != 0, (uint64_t)st.st_ino};
		struct iovec iov = {(void *)path, strlen(path)};
		emit(REC_OPEN, (uint64_t)flags, (uint64_t)fd, iov.iov_len, (uint64_t)st.st_ino,
		     &iov, 1);
		pthread_mutex_unlock(&mu);
	}
	errno = saved;
	return fd;
}

static mode_t mode_arg(int flags, va_list ap)
{
	bool needs = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE; /* as glibc's fcntl.h */
	return needs ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return opened(REAL(open)(path, flags, mode), path, flags);
}

int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return opened(REAL(open64)(path, flags, mode), path, flags);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return opened(REAL(openat)(dirfd, path, flags, mode), path, flags);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = mode_arg(flags, ap);
	va_end(ap);
	return opened(REAL(openat64)(dirfd, path, flags, mode), path, flags);
}

int close(int fd)
{
	if (is_tracked(fd)) {
		pthread_mutex_lock(&mu);
		fds[fd].on = false;
		pthread_mutex_unlock(&mu);
	}
	return REAL(close)(fd);
}

/* Under mu: logs the intent of a write of iov at off, makes it with
 * call(), logs what it wrote. */
#define RECORDED_WRITE(fd, off, iov, cnt, call)                                                    \
	do {                                                                                       \
		uint64_t seq = next_write++;                                                       \
		size_t len = 0;                                                                    \
		for (int i_ = 0; i_ < (cnt); i_++)                                                 \
			len += (iov)[i_].iov_len;                                                  \
		emit(fds[fd].dsync ? REC_WRITE_DS : REC_WRITE, seq, (uint64_t)(off), len,          \
		     fds[fd].ino, (iov), (cnt));                                                   \
		ret = (call);                                                                      \
		int saved_ = errno;                                                                \
		emit(REC_DONE, seq, (uint64_t)(int64_t)ret, 0, fds[fd].ino, NULL, 0);              \
		errno = saved_;                                                                    \
	} while (0)

ssize_t pwrite(int fd, const void *p, size_t n, off_t off)
{
	if (!is_tracked(fd))
		return REAL(pwrite)(fd, p, n, off);
	ssize_t ret;
	struct iovec iov = {(void *)p, n};
	pthread_mutex_lock(&mu);
	RECORDED_WRITE(fd, off, &iov, 1, REAL(pwrite)(fd, p, n, off));
	pthread_mutex_unlock(&mu);
	return ret;
}

ssize_t pwrite64(int fd, const void *p, size_t n, off64_t off)
{
	if (!is_tracked(fd))
		return REAL(pwrite64)(fd, p, n, off);
	ssize_t ret;
	struct iovec iov = {(void *)p, n};
	pthread_mutex_lock(&mu);
	RECORDED_WRITE(fd, off, &iov, 1, REAL(pwrite64)(fd, p, n, off));
	pthread_mutex_unlock(&mu);
	return ret;
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	if (!is_tracked(fd))
		return REAL(pwritev)(fd, iov, cnt, off);
	ssize_t ret;
	pthread_mutex_lock(&mu);
	RECORDED_WRITE(fd, off, iov, cnt, REAL(pwritev)(fd, iov, cnt, off));
	pthread_mutex_unlock(&mu);
	return ret;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off)
{
	if (!is_tracked(fd))
		return REAL(pwritev64)(fd, iov, cnt, off);
	ssize_t ret;
	pthread_mutex_lock(&mu);
	RECORDED_WRITE(fd, off, iov, cnt, REAL(pwritev64)(fd, iov, cnt, off));
	pthread_mutex_unlock(&mu);
	return ret;
}

ssize_t write(int fd, const void *p, size_t n)
{
	if (!is_tracked(fd))
		return REAL(write)(fd, p, n);
	ssize_t ret;
	struct iovec iov = {(void *)p, n};
	pthread_mutex_lock(&mu);
	off_t off = lseek(fd, 0, SEEK_CUR);
	RECORDED_WRITE(fd, off, &iov, 1, REAL(write)(fd, p, n));
	pthread_mutex_unlock(&mu);
	return ret;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	if (!is_tracked(fd))
		return REAL(writev)(fd, iov, cnt);
	ssize_t ret;
	pthread_mutex_lock(&mu);
	off_t off = lseek(fd, 0, SEEK_CUR);
	RECORDED_WRITE(fd, off, iov, cnt, REAL(writev)(fd, iov, cnt));
	pthread_mutex_unlock(&mu);
	return ret;
}

/* A flush of a tracked fd: see WHY A BARRIER COVERS "BELOW N". */
static int flushed(int fd, int (*call)(int), uint64_t is_fsync)
{
	if (!is_tracked(fd))
		return call(fd);
	const char *slow = getenv("CRASHREC_SLOW_FILE");
	if (slow && *slow && access(slow, F_OK) == 0) {
		const char *us = getenv("CRASHREC_SLOW_US");
		long n = us && *us ? atol(us) : 20000;
		struct timespec ts = {n / 1000000, n % 1000000 * 1000};
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&mu);
	uint64_t covered = next_write;
	uint64_t ino = fds[fd].ino;
	pthread_mutex_unlock(&mu);
	int rc = call(fd);
	if (rc == 0) {
		int saved = errno;
		pthread_mutex_lock(&mu);
		emit(REC_BARRIER, covered, is_fsync, 0, ino, NULL, 0);
		pthread_mutex_unlock(&mu);
		errno = saved;
	}
	return rc;
}

int fdatasync(int fd)
{
	return flushed(fd, REAL(fdatasync), 0);
}

int fsync(int fd)
{
	return flushed(fd, REAL(fsync), 1);
}

int ftruncate(int fd, off_t len)
{
	if (!is_tracked(fd))
		return REAL(ftruncate)(fd, len);
	pthread_mutex_lock(&mu);
	int rc = REAL(ftruncate)(fd, len);
	if (rc == 0) {
		int saved = errno;
		emit(REC_TRUNCATE, next_write, (uint64_t)len, 0, fds[fd].ino, NULL, 0);
		errno = saved;
	}
	pthread_mutex_unlock(&mu);
	return rc;
}

int ftruncate64(int fd, off64_t len)
{
	if (!is_tracked(fd))
		return REAL(ftruncate64)(fd, len);
	pthread_mutex_lock(&mu);
	int rc = REAL(ftruncate64)(fd, len);
	if (rc == 0) {
		int saved = errno;
		emit(REC_TRUNCATE, next_write, (uint64_t)len, 0, fds[fd].ino, NULL, 0);
		errno = saved;
	}
	pthread_mutex_unlock(&mu);
	return rc;
}
