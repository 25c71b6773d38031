/*
 * log.h — cairnd's log: one line per event on stderr, with a level.
 *
 * Text:  2026-11-26T03:10:00.123Z INFO  starting member name=default data-dir=./data
 * JSON:  {"level":"info","ts":"2026-11-26T03:10:00.123Z","msg":"starting member",
 *         "name":"default","data-dir":"./data"}
 *
 * Fields are given as alternating key, value C strings ending with NULL, so a
 * line is written with one write(2) and never interleaves with another
 * thread's. The logger is a value the member owns and passes down; it holds no
 * global state. Any thread may log (write(2) of one line is atomic enough for
 * stderr lines under PIPE_BUF; longer lines may interleave).
 */
#ifndef SRV_LOG_H
#define SRV_LOG_H

#include "server/config.h"

struct srv_log {
	enum srv_log_level level;
	enum srv_log_format format;
	int fd;
};

void srv_log_init(struct srv_log *log, enum srv_log_level level, enum srv_log_format format,
                  int fd);

/* Logs msg with fields (key, value, ..., NULL). Values are escaped for JSON;
 * in text a value with spaces is quoted. */
void srv_log(const struct srv_log *log, enum srv_log_level level, const char *msg, ...);

#endif
