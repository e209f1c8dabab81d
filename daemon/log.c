/*
 * log.c - the logger of log.h.  Settings are process-wide: written in main
 * before any thread starts (STYLE.md 7) and again by a SIGHUP reload on the
 * loop thread, so they are read and written with relaxed atomics (a line
 * being formatted while the format changes is written in either format,
 * whole).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static lokrd_log_format log_format = LOKRD_LOG_TEXT;
static lokrd_log_level log_min = LOKRD_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
/* syslog priorities of the levels, for the journal's "<N>" line prefix. */
static const int level_prio[] = {7, 6, 4, 3};
static int to_journal; /* stderr is the journal's stream (set once in setup) */

/* True when stderr is the stream systemd named in $JOURNAL_STREAM
 * ("DEV:INO"): the journal then reads a "<N>" prefix as the priority
 * (daemon(7)) and adds its own timestamp. */
static int stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st))
		return 0;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void lokrd_log_setup(lokrd_log_format fmt, lokrd_log_level min_level)
{
	to_journal = stderr_is_journal();
	__atomic_store_n(&log_format, fmt, __ATOMIC_RELAXED);
	__atomic_store_n(&log_min, min_level, __ATOMIC_RELAXED);
}

#define LOG_FORMAT() __atomic_load_n(&log_format, __ATOMIC_RELAXED)
#define LOG_MIN()    __atomic_load_n(&log_min, __ATOMIC_RELAXED)

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
	if (level < LOG_MIN())
		return;
	char msg[2048], ts[40], line[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	stamp(ts, sizeof ts);
	size_t at = 0;
	if (LOG_FORMAT() == LOKRD_LOG_JSON) {
		put(line, sizeof line, &at, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts,
		    level_names[level]);
		put_escaped(line, sizeof line, &at, msg);
		put(line, sizeof line, &at, "\",\"pid\":%ld}", (long)getpid());
	} else {
		if (to_journal)
			put(line, sizeof line, &at, "<%d>", level_prio[level]);
		put(line, sizeof line, &at, "%s lokrd[%ld] %s: %s", ts, (long)getpid(),
		    level_names[level], msg);
	}
	emit(line, at, sizeof line);
}

void lokrd_log_request(const char *method, const char *path, unsigned status, const char *adapters,
                       long long rows, long long usec)
{
	if (LOKRD_LOG_INFO < LOG_MIN())
		return;
	char ts[40], line[4096];
	stamp(ts, sizeof ts);
	size_t at = 0;
	if (LOG_FORMAT() == LOKRD_LOG_JSON) {
		put(line, sizeof line, &at,
		    "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"request\",", ts);
		put(line, sizeof line, &at, "\"method\":\"");
		put_escaped(line, sizeof line, &at, method);
		put(line, sizeof line, &at, "\",\"path\":\"");
		put_escaped(line, sizeof line, &at, path);
		put(line, sizeof line, &at, "\",\"status\":%u,\"adapters\":[", status);
		/* The comma-separated ids as a JSON array of strings. */
		for (const char *p = adapters; *p;) {
			size_t n = strcspn(p, ",");
			char id[300];
			snprintf(id, sizeof id, "%.*s", (int)(n < sizeof id ? n : sizeof id - 1),
			         p);
			put(line, sizeof line, &at, "%s\"", p == adapters ? "" : ",");
			put_escaped(line, sizeof line, &at, id);
			put(line, sizeof line, &at, "\"");
			p += n;
			if (*p == ',')
				p++;
		}
		put(line, sizeof line, &at, "],\"rows\":%lld,\"us\":%lld,\"pid\":%ld}", rows, usec,
		    (long)getpid());
	} else {
		/* The path comes from the client: escaped so it cannot forge lines. */
		if (to_journal)
			put(line, sizeof line, &at, "<6>");
		put(line, sizeof line, &at, "%s lokrd[%ld] info: %s ", ts, (long)getpid(), method);
		put_escaped(line, sizeof line, &at, path);
		put(line, sizeof line, &at, " %u adapters=%s rows=%lld us=%lld", status,
		    adapters[0] ? adapters : "-", rows, usec);
	}
	emit(line, at, sizeof line);
}
