/*
 * log.h - lokrd's logger: one line per event on stderr (the journal reads
 * it), as text or as one JSON object per line (--log-format).
 *
 * Thread-safe: a line is formatted into a local buffer and written with one
 * write(2), so lines from the loop and from compute workers never interleave.
 */
#ifndef LOKRD_LOG_H
#define LOKRD_LOG_H

#include <stdarg.h>

typedef enum lokrd_log_level {
	LOKRD_LOG_DEBUG = 0,
	LOKRD_LOG_INFO,
	LOKRD_LOG_WARN,
	LOKRD_LOG_ERROR,
} lokrd_log_level;

typedef enum lokrd_log_format {
	LOKRD_LOG_TEXT = 0,
	LOKRD_LOG_JSON,
} lokrd_log_format;

/* Set in main before threads start; a SIGHUP reload sets it again (any
 * thread may log meanwhile). */
void lokrd_log_setup(lokrd_log_format fmt, lokrd_log_level min_level);

/* Log a lifecycle event.  printf-style; the message is escaped for JSON. */
void lokrd_log(lokrd_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line per finished HTTP request.  `adapters` is a comma-separated id
 * list or "" ; rows is the number of input rows (0 when not applicable). */
void lokrd_log_request(const char *method, const char *path, unsigned status, const char *adapters,
                       long long rows, long long usec);

#endif
