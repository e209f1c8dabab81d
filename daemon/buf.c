/*
 * buf.c - the bounded growable buffer of buf.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

void lokrd_buf_init(lokrd_buf *b, size_t limit)
{
	memset(b, 0, sizeof *b);
	b->limit = limit;
}

void lokrd_buf_free(lokrd_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

char *lokrd_buf_reserve(lokrd_buf *b, size_t n)
{
	if (b->failed)
		return NULL;
	if (n > b->limit || b->len > b->limit - n) {
		b->failed = 1;
		return NULL;
	}
	size_t need = b->len + n + 1;
	if (need > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		char *d = realloc(b->data, cap);
		if (!d) {
			b->failed = 1;
			return NULL;
		}
		b->data = d;
		b->cap = cap;
	}
	return b->data + b->len;
}

void lokrd_buf_commit(lokrd_buf *b, size_t n)
{
	b->len += n;
	b->data[b->len] = '\0';
}

int lokrd_buf_append(lokrd_buf *b, const void *p, size_t n)
{
	char *at = lokrd_buf_reserve(b, n);
	if (!at)
		return -1;
	if (n)
		memcpy(at, p, n);
	lokrd_buf_commit(b, n);
	return 0;
}

int lokrd_buf_puts(lokrd_buf *b, const char *s)
{
	return lokrd_buf_append(b, s, strlen(s));
}

int lokrd_buf_printf(lokrd_buf *b, const char *fmt, ...)
{
	char small[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof small, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof small)
		return lokrd_buf_append(b, small, (size_t)n);
	char *at = lokrd_buf_reserve(b, (size_t)n);
	if (!at)
		return -1;
	va_start(ap, fmt);
	vsnprintf(at, (size_t)n + 1, fmt, ap);
	va_end(ap);
	lokrd_buf_commit(b, (size_t)n);
	return 0;
}

char *lokrd_buf_steal(lokrd_buf *b, size_t *len)
{
	if (!b->data && !lokrd_buf_reserve(b, 0))
		return NULL;
	char *d = b->data;
	*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return d;
}
