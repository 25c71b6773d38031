/*
 * cairn_error.h — the one table of cairn error codes.
 *
 * Every cairn function that can fail returns int: 0 on success or one of the
 * negative CAIRN_E* codes below. Expected outcomes that are not failures
 * ("not found") are codes too. Codes from libuv, LMDB and nghttp2 are
 * translated at the edge where they arise; the original code goes to the log.
 *
 * The table is an X-macro: X(name, value, message). Values are stable (they
 * may be logged and compared across versions), grouped by the layer that
 * mostly returns them. Add new codes at the end of a group.
 *
 * Thread-safety: cairn_strerror() and cairn_errname() are pure and may be
 * called from any thread; the returned strings are static.
 */
#ifndef CAIRN_ERROR_H
#define CAIRN_ERROR_H

#define CAIRN_ERRORS(X)                                                                            \
	/* generic: 1..99 */                                                                       \
	X(CAIRN_ENOMEM, -1, "out of memory")                                                       \
	X(CAIRN_EINVAL, -2, "invalid argument")                                                    \
	X(CAIRN_EIO, -3, "input/output error")                                                     \
	X(CAIRN_ECORRUPT, -4, "data is corrupt")                                                   \
	X(CAIRN_ENOTFOUND, -5, "not found")                                                        \
	X(CAIRN_EEXIST, -6, "already exists")                                                      \
	X(CAIRN_EBUSY, -7, "resource busy")                                                        \
	X(CAIRN_ELOCKED, -8, "data directory is locked by another process")                        \
	X(CAIRN_EREADONLY, -9, "opened read-only")                                                 \
	X(CAIRN_ECLOSED, -10, "closed")                                                            \
	X(CAIRN_ETIMEOUT, -11, "timed out")                                                        \
	X(CAIRN_ETOOBIG, -12, "too large")                                                         \
	X(CAIRN_EVERSION, -13, "unsupported format version")                                       \
	X(CAIRN_ECANCELED, -14, "canceled")                                                        \
	X(CAIRN_EPROTO, -15, "protocol error")                                                     \
	X(CAIRN_EAGAIN, -16, "try again")                                                          \
	/* store: 100..199 (messages match etcd's where etcd has one) */                           \
	X(CAIRN_EKEYEMPTY, -100, "etcdserver: key is not provided")                                \
	X(CAIRN_EKEYTOOLARGE, -101, "etcdserver: key is too large")                                \
	X(CAIRN_EVALUETOOLARGE, -102, "etcdserver: request is too large")                          \
	X(CAIRN_ENOSPACE, -103, "etcdserver: mvcc: database space exceeded")                       \
	X(CAIRN_ECOMPACTED, -104, "etcdserver: mvcc: required revision has been compacted")        \
	X(CAIRN_EFUTUREREV, -105, "etcdserver: mvcc: required revision is a future revision")      \
	X(CAIRN_EDUPKEY, -106, "etcdserver: duplicate key given in txn request")                   \
	X(CAIRN_ELEASENOTFOUND, -107, "etcdserver: requested lease not found")                     \
	X(CAIRN_ELEASEEXIST, -108, "etcdserver: lease already exists")                             \
	X(CAIRN_ETOOMANYOPS, -109, "etcdserver: too many operations in txn request")               \
	X(CAIRN_ELEASETTLTOOLARGE, -110, "etcdserver: too large lease TTL")                        \
	X(CAIRN_EKEYNOTFOUND, -111, "etcdserver: key not found")                                   \
	X(CAIRN_EMAPFULL, -112, "store map is full")                                               \
	X(CAIRN_EVALUEPROVIDED, -113, "etcdserver: value is provided")                             \
	X(CAIRN_ELEASEPROVIDED, -114, "etcdserver: lease is provided")                             \
	/* raft: 200..299 */                                                                       \
	X(CAIRN_ENOTLEADER, -200, "etcdserver: not leader")                                        \
	X(CAIRN_ENOLEADER, -201, "etcdserver: no leader")                                          \
	X(CAIRN_EPROPOSALDROPPED, -202, "raft: proposal dropped")                                  \
	X(CAIRN_ELOGCOMPACTED, -203, "raft: requested index is unavailable due to compaction")     \
	X(CAIRN_ELOGUNAVAILABLE, -204, "raft: requested entry at index is unavailable")            \
	X(CAIRN_ESNAPOUTOFDATE, -205, "raft: requested index is older than the existing snapshot") \
	X(CAIRN_ECONFCHANGE, -206, "raft: a membership change is already in progress")             \
	X(CAIRN_ESTOPPED, -207, "raft: member stopped")                                            \
	X(CAIRN_ELEADERCHANGED, -208, "etcdserver: leader changed")                                \
	/* rpc: 300..399 */                                                                        \
	X(CAIRN_ECONNRESET, -300, "connection reset")                                              \
	X(CAIRN_EHTTP2, -301, "HTTP/2 error")                                                      \
	X(CAIRN_EGRPC, -302, "gRPC error")                                                         \
	X(CAIRN_EADDR, -303, "bad address")                                                        \
	/* server: 400..499 */                                                                     \
	X(CAIRN_ECONFIG, -400, "invalid configuration")

enum cairn_error {
	CAIRN_OK = 0,
#define CAIRN_ERROR_ENUM(name, value, msg) name = (value),
	CAIRN_ERRORS(CAIRN_ERROR_ENUM)
#undef CAIRN_ERROR_ENUM
};

/* Message for a cairn error code; "unknown error" for a code not in the table,
 * "success" for 0. Never NULL. */
const char *cairn_strerror(int code);

/* Symbolic name ("CAIRN_ENOMEM") for a code; "CAIRN_UNKNOWN" if not in the table. */
const char *cairn_errname(int code);

#endif
