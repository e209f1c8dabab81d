/*
 * error.c - status strings, error messages, the allocation wrapper and the
 * assertion handler: the few things every other module of liblokr needs.
 */
#include <stdarg.h>
#include <string.h>

#include "internal.h"

const char *lokr_strerror(int code)
{
	switch (code) {
	case LOKR_OK:
		return "success";
	case LOKR_ENOMEM:
		return "out of memory";
	case LOKR_EIO:
		return "input/output error";
	case LOKR_EFORMAT:
		return "malformed safetensors file";
	case LOKR_EADAPTER:
		return "invalid adapter";
	case LOKR_EMISMATCH:
		return "adapter does not fit the base model";
	case LOKR_EINVAL:
		return "invalid argument";
	case LOKR_ENOTFOUND:
		return "not found";
	case LOKR_EUNSUPPORTED:
		return "unsupported";
	case LOKR_ERANGE:
		return "size out of range";
	default:
		return "unknown error";
	}
}

int lokr__fail(lokr_error *err, int code, const char *fmt, ...)
{
	if (err) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
		va_end(ap);
		if (n <= 0)
			snprintf(err->msg, sizeof err->msg, "%s", lokr_strerror(code));
		err->code = code;
	}
	return code;
}

_Noreturn void lokr__assert_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "lokr: assertion failed: %s (%s:%d)\n", what, file, line);
	abort();
}

const char *lokr__shape_str(char *buf, size_t len, const int64_t *shape, int ndim)
{
	size_t at = 0;
	at += (size_t)snprintf(buf, len, "(");
	for (int i = 0; i < ndim && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "",
		                       (long long)shape[i]);
	if (at < len)
		snprintf(buf + at, len - at, ")");
	return buf;
}

#ifdef LOKR_FAULT_INJECTION
static _Thread_local long alloc_budget = -1;
void lokr__alloc_fail_after(long n)
{
	alloc_budget = n;
}
static int alloc_should_fail(void)
{
	if (alloc_budget < 0)
		return 0;
	if (alloc_budget == 0)
		return 1;
	alloc_budget--;
	return 0;
}
#else
void lokr__alloc_fail_after(long n)
{
	(void)n;
}
static int alloc_should_fail(void)
{
	return 0;
}
#endif

void *lokr__try_malloc(size_t n)
{
	return alloc_should_fail() ? NULL : malloc(n ? n : 1);
}

void *lokr__try_calloc(size_t count, size_t size)
{
	return alloc_should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *lokr__try_aligned(size_t n)
{
	void *p = NULL;
	if (alloc_should_fail())
		return NULL;
	size_t rounded = (n + 63) & ~(size_t)63;
	if (rounded < n || posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
		return NULL;
	return p;
}

static _Noreturn void oom(void)
{
	fprintf(stderr, "lokr: out of memory\n");
	abort();
}

void *lokr__xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *lokr__xcalloc(size_t count, size_t size)
{
	void *p = calloc(count ? count : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *lokr__xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *lokr__xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(lokr__xmalloc(n), s, n);
}
