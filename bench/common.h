/*
 * common.h - timing and statistics for lokrd's benchmarks (bench/), and
 * hand-built adapters through the internal library (no file loading).
 *
 * Timing: CLOCK_MONOTONIC; an operation is repeated until one sample lasts
 * at least `min_sample` seconds, and a sample's time per operation is kept.
 * Ratios are formed sample by sample between operations timed back to back
 * (interleaved), then the median is taken: absolute times on these VMs
 * drift by 10-30 % between minutes, ratios inside a sample do not.
 */
#ifndef LOKR_BENCH_COMMON_H
#define LOKR_BENCH_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kron.h"

/* The clock: CLOCK_THREAD_CPUTIME_ID when all work runs on the calling
 * thread (OpenBLAS with one thread, torch with one thread), so that time
 * other processes take from a shared machine is not counted; wall time
 * (CLOCK_MONOTONIC) when BLAS threads work too. */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(bench_clock, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static inline double median(const double *v, int n)
{
	double tmp[256];
	if (n <= 0)
		return NAN;
	if (n > 256)
		n = 256;
	memcpy(tmp, v, (size_t)n * sizeof *tmp);
	qsort(tmp, (size_t)n, sizeof *tmp, cmp_double);
	return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
}

typedef void (*bench_fn)(void *ctx);

/* Repeat count so that one sample lasts >= min_s (at least 1). */
static inline long calibrate(bench_fn f, void *ctx, double min_s)
{
	long reps = 1;
	for (;;) {
		double t0 = now_s();
		for (long i = 0; i < reps; i++)
			f(ctx);
		double dt = now_s() - t0;
		if (dt >= min_s || reps > (1L << 30))
			return reps;
		long next = dt > 0 ? (long)(reps * (min_s / dt) * 1.2) + 1 : reps * 10;
		reps = next > reps * 10 ? reps * 10 : (next > reps ? next : reps + 1);
	}
}

/* Seconds per call over `reps` calls. */
static inline double time_per_call(bench_fn f, void *ctx, long reps)
{
	double t0 = now_s();
	for (long i = 0; i < reps; i++)
		f(ctx);
	return (now_s() - t0) / (double)reps;
}

typedef struct brng {
	uint64_t s;
} brng;

static inline float brng_f(brng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return (float)((double)(r->s >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static inline float *bench_alloc(size_t n)
{
	float *p = lokr__try_aligned((n ? n : 1) * sizeof(float));
	if (!p) {
		fprintf(stderr, "bench: out of memory (%zu floats)\n", n);
		exit(2);
	}
	return p;
}

static inline float *bench_rand(brng *r, size_t n, float scale)
{
	float *p = bench_alloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = brng_f(r) * scale;
	return p;
}

#endif /* LOKR_BENCH_COMMON_H */
