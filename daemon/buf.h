/*
 * buf.h - a growable byte buffer with a ceiling set at creation (STYLE.md:
 * every buffer grown from input has one).  Used for request bodies and
 * response text.
 */
#ifndef LOKRD_BUF_H
#define LOKRD_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct lokrd_buf {
	char *data; /* owned; NUL-terminated after every append */
	size_t len;
	size_t cap;
	size_t limit; /* appends that would exceed it fail */
	int failed;   /* sticky: an append failed (limit or memory) */
} lokrd_buf;

void lokrd_buf_init(lokrd_buf *b, size_t limit);
void lokrd_buf_free(lokrd_buf *b);
/* Return 0 or -1 (over the limit / out of memory; the buffer is unchanged
 * and `failed` set). */
int lokrd_buf_append(lokrd_buf *b, const void *p, size_t n);
int lokrd_buf_puts(lokrd_buf *b, const char *s);
int lokrd_buf_printf(lokrd_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Make room for n more bytes; returns a pointer to write them at (then
 * call lokrd_buf_commit), or NULL. */
char *lokrd_buf_reserve(lokrd_buf *b, size_t n);
void lokrd_buf_commit(lokrd_buf *b, size_t n);
/* Hand the bytes to the caller (free() them); the buffer is reset. */
char *lokrd_buf_steal(lokrd_buf *b, size_t *len);

#endif
