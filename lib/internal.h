/*
 * internal.h - helpers shared by liblokr's modules (lokr__ prefix), never
 * installed: the allocation wrapper, error formatting, checked arithmetic and
 * the always-on assertion.
 */
#ifndef LOKR_INTERNAL_H
#define LOKR_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lokr.h"

#define LOKR_HIDDEN __attribute__((visibility("hidden")))

/* Always-on invariant check: a failed one is a bug in lokr, never bad input. */
#define LOKR_ASSERT(cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			lokr__assert_fail(#cond, __FILE__, __LINE__);                              \
	} while (0)

LOKR_HIDDEN _Noreturn void lokr__assert_fail(const char *what, const char *file, int line);

/* Allocation (STYLE.md 6).  lokr__xmalloc and friends abort on OOM and are
 * for small internal objects; lokr__try_* return NULL and are for sizes a
 * file or a client controls.  Both go through one function so tests can fail
 * the Nth allocation (lokr__alloc_fail_after, internal library only). */
LOKR_HIDDEN void *lokr__try_malloc(size_t n);
LOKR_HIDDEN void *lokr__try_calloc(size_t count, size_t size);
LOKR_HIDDEN void *lokr__try_aligned(size_t n); /* 64-byte aligned, free with free() */
LOKR_HIDDEN void *lokr__xmalloc(size_t n);
LOKR_HIDDEN void *lokr__xcalloc(size_t count, size_t size);
LOKR_HIDDEN void *lokr__xrealloc(void *p, size_t n);
LOKR_HIDDEN char *lokr__xstrdup(const char *s);
/* Test hook: the next `n` allocations succeed, then every one fails; -1
 * (default) disables.  Thread-local; only the fault-injection build honours it. */
LOKR_HIDDEN void lokr__alloc_fail_after(long n);

/* Fill `err` (may be NULL) and return `code`.  printf-style. */
LOKR_HIDDEN int lokr__fail(lokr_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checked arithmetic: return 0 on success, -1 on overflow (result untouched). */
static inline int lokr__mul_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}
static inline int lokr__add_u64(uint64_t a, uint64_t b, uint64_t *r)
{
	return __builtin_add_overflow(a, b, r) ? -1 : 0;
}
static inline int lokr__mul_i64(int64_t a, int64_t b, int64_t *r)
{
	return __builtin_mul_overflow(a, b, r) ? -1 : 0;
}

/* Format a shape as "(a, b, c)" into buf; returns buf. */
LOKR_HIDDEN const char *lokr__shape_str(char *buf, size_t len, const int64_t *shape, int ndim);

/* ---- contracts between modules (each implemented by the module named) ---- */

/* lib/dora.c: g = dora_scale / (|W0 + s dW| + 2^-23) along m->dora_axis,
 * computed from the factors (no dense dW for LoKr/LoRA), accumulated in
 * double.  `g` has out (OUT axis) or in (IN axis) floats. */
LOKR_HIDDEN int lokr__dora_vector(const lokr_layer *layer, const lokr_module *m, float *g,
                                  lokr_error *err);

/* lib/delta.c: shared expansions of the factors (no scale s applied).
 * lokr__lokr_check: LOKR_EINVAL unless a LoKr module's factor shapes agree
 * with m1, n1, m2, n2, kk, out, in and every dimension fits a BLAS int.
 * lokr__lokr_factors: dense W1 (m1 x n1) into w1 and W2flat (m2 x n2*kk) into
 * w2 (either may be NULL); products of low-rank pairs and the Tucker core
 * done with sgemm; LOKR_ENOMEM only for Tucker's small temporary.
 * lokr__tucker_core: dst[a, q*kk + k] = sum_b t[a*r + b, k] * wb[b, q] with
 * t (r*r x kk), wb (r x q), dst (r x q*kk); the common first step of the
 * LoKr t2, LoHa t1/t2 and LoCon mid rebuilds (lycoris-format.md 3.2, 6). */
LOKR_HIDDEN int lokr__lokr_check(const lokr_module *m);
LOKR_HIDDEN int lokr__lokr_factors(const lokr_module *m, float *w1, float *w2);
LOKR_HIDDEN void lokr__tucker_core(const float *t, int64_t r, const float *wb, int64_t q,
                                   int64_t kk, float *dst);

/* lib/plan.c: decide how `m` is applied on `layer` (evaluation order,
 * expansions, caches) and store it in m->plan; called once by
 * lokr_adapter_load after validation.  lokr__plan_free releases it. */
LOKR_HIDDEN int lokr__plan_module(const lokr_layer *layer, lokr_module *m, lokr_error *err);
LOKR_HIDDEN void lokr__plan_free(struct lokr_plan *plan);
/* Bytes the plan holds (counted in the adapter's resident bytes). */
LOKR_HIDDEN uint64_t lokr__plan_bytes(const struct lokr_plan *plan);

/* lib/dtype.c: look up a safetensors dtype string of `len` bytes (every dtype
 * of lycoris-format.md 1.2); 0 and the canonical name (static), the element
 * size in bits and the decodable lokr_dtype (OTHER if none), or -1. */
LOKR_HIDDEN int lokr__st_dtype_lookup(const char *s, size_t len, const char **canon, unsigned *bits,
                                      lokr_dtype *dt);

/* lib/safetensors.c: strict UTF-8 check (no overlongs, no surrogates,
 * <= U+10FFFF) of `len` bytes; the offset of the first bad byte, or len if
 * all is well.  The reader checks the header with it, the writer
 * (lib/st_write.c) the names and metadata it is asked to write. */
LOKR_HIDDEN size_t lokr__utf8_bad_at(const uint8_t *s, size_t len);

/* lib/base.c: the base blob's checksum over `len` bytes (len % 32 == 0),
 * the checksum field taken as zero (exposed for tests and benchmarks). */
LOKR_HIDDEN uint64_t lokr__blob_checksum(const void *blob, uint64_t len);

#endif /* LOKR_INTERNAL_H */
