/* log.c — line-at-a-time logging in text or JSON; see log.h. */
#include "server/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"debug", "info", "warn", "error", "fatal"};

void srv_log_init(struct srv_log *log, enum srv_log_level level, enum srv_log_format format, int fd)
{
	log->level = level;
	log->format = format;
	log->fd = fd;
}

struct line {
	char buf[4096];
	size_t len;
};

static void put(struct line *l, const char *s, size_t n)
{
	if (n > sizeof(l->buf) - 2 - l->len)
		n = sizeof(l->buf) - 2 - l->len; /* keep room for the newline */
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void put_json_string(struct line *l, const char *s)
{
	put(l, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			put(l, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			put(l, esc, 6);
		} else {
			put(l, (const char *)&c, 1);
		}
	}
	put(l, "\"", 1);
}

static void put_text_value(struct line *l, const char *s)
{
	if (*s && !strpbrk(s, " \t\"=\n"))
		puts_(l, s);
	else
		put_json_string(l, s); /* quoted and escaped, like logfmt */
}

void srv_log(const struct srv_log *log, enum srv_log_level level, const char *msg, ...)
{
	if (level < log->level)
		return;
	struct line l = {.len = 0};
	struct timespec ts;
	struct tm tm;
	char tbuf[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t tl = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tbuf + tl, sizeof(tbuf) - tl, ".%03ldZ", ts.tv_nsec / 1000000);

	va_list ap;
	va_start(ap, msg);
	if (log->format == SRV_LOG_JSON) {
		puts_(&l, "{\"level\":\"");
		puts_(&l, level_names[level]);
		puts_(&l, "\",\"ts\":\"");
		puts_(&l, tbuf);
		puts_(&l, "\",\"msg\":");
		put_json_string(&l, msg);
		for (const char *k; (k = va_arg(ap, const char *));) {
			const char *v = va_arg(ap, const char *);
			put(&l, ",", 1);
			put_json_string(&l, k);
			put(&l, ":", 1);
			put_json_string(&l, v ? v : "");
		}
		put(&l, "}", 1);
	} else {
		char lv[8];
		snprintf(lv, sizeof(lv), "%-5s", level_names[level]);
		for (char *c = lv; *c; c++)
			*c = (*c >= 'a' && *c <= 'z') ? (char)(*c - 32) : *c;
		puts_(&l, tbuf);
		put(&l, " ", 1);
		puts_(&l, lv);
		put(&l, " ", 1);
		puts_(&l, msg);
		for (const char *k; (k = va_arg(ap, const char *));) {
			const char *v = va_arg(ap, const char *);
			put(&l, " ", 1);
			puts_(&l, k);
			put(&l, "=", 1);
			put_text_value(&l, v ? v : "");
		}
	}
	va_end(ap);
	l.buf[l.len++] = '\n';
	ssize_t off = 0;
	while (off < (ssize_t)l.len) {
		ssize_t n = write(log->fd, l.buf + off, l.len - (size_t)off);
		if (n <= 0)
			break;
		off += n;
	}
}
