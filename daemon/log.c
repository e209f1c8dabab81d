/*
 * log.c - the logger of log.h.  Settings are process-wide and written once
 * in main before any thread starts (STYLE.md 7); after that the module only
 * reads them.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static lokrd_log_format log_format = LOKRD_LOG_TEXT;
static lokrd_log_level log_min = LOKRD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void lokrd_log_setup(lokrd_log_format fmt, lokrd_log_level min_level)
{
	log_format = fmt;
	log_min = min_level;
}

/* Bounded append into a line buffer; keeps *at <= cap - 1. */
static void put(char *buf, size_t cap, size_t *at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void put(char *buf, size_t cap, size_t *at, const char *fmt, ...)
{
	if (*at >= cap - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *at, cap - *at, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	*at += (size_t)n < cap - *at ? (size_t)n : cap - *at - 1;
}

/* Append `s` as the body of a JSON string (quotes not included). */
static void put_escaped(char *buf, size_t cap, size_t *at, const char *s)
{
	for (; *s && *at < cap - 8; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[(*at)++] = '\\';
			buf[(*at)++] = (char)c;
		} else if (c < 0x20) {
			put(buf, cap, at, "\\u%04x", c);
		} else {
			buf[(*at)++] = (char)c;
		}
	}
	buf[*at] = '\0';
}

static void stamp(char *out, size_t len)
{
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03dZ", (int)(tv.tv_usec / 1000));
}

static void emit(char *line, size_t at, size_t cap)
{
	if (at >= cap - 1)
		at = cap - 2;
	line[at++] = '\n';
	size_t off = 0;
	while (off < at) {
		ssize_t w = write(STDERR_FILENO, line + off, at - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		off += (size_t)w;
	}
}

void lokrd_log(lokrd_log_level level, const char *fmt, ...)
{
	if (level < log_min)
		return;
	char msg[2048], ts[40], line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	stamp(ts, sizeof ts);
	size_t at = 0;
	if (log_format == LOKRD_LOG_JSON) {
		put(line, sizeof line, &at, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
		    level_names[level]);
		put_escaped(line, sizeof line, &at, msg);
		put(line, sizeof line, &at, "\",\"pid\":%ld}", (long)getpid());
	} else {
		put(line, sizeof line, &at, "%s lokrd[%ld] %s: %s", ts, (long)getpid(),
		    level_names[level], msg);
	}
	emit(line, at, sizeof line);
}

void lokrd_log_request(const char *method, const char *path, unsigned status, const char *adapters,
                       long long rows, long long usec)
{
	if (LOKRD_LOG_INFO < log_min)
		return;
	char ts[40], line[4096];
	stamp(ts, sizeof ts);
	size_t at = 0;
	if (log_format == LOKRD_LOG_JSON) {
		put(line, sizeof line, &at,
		    "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",", ts);
		put(line, sizeof line, &at, "\"method\":\"");
		put_escaped(line, sizeof line, &at, method);
		put(line, sizeof line, &at, "\",\"path\":\"");
		put_escaped(line, sizeof line, &at, path);
		put(line, sizeof line, &at, "\",\"status\":%u,\"adapters\":\"", status);
		put_escaped(line, sizeof line, &at, adapters);
		put(line, sizeof line, &at, "\",\"rows\":%lld,\"us\":%lld,\"pid\":%ld}", rows, usec,
		    (long)getpid());
	} else {
		/* The path comes from the client: escaped so it cannot forge lines. */
		put(line, sizeof line, &at, "%s lokrd[%ld] info: %s ", ts, (long)getpid(), method);
		put_escaped(line, sizeof line, &at, path);
		put(line, sizeof line, &at, " %u adapters=%s rows=%lld us=%lld", status,
		    adapters[0] ? adapters : "-", rows, usec);
	}
	emit(line, at, sizeof line);
}
