/*
 * refs.c - the reference programs bench/load forms its ratios against, run
 * in the same run as the HTTP measurements (perf-limits.md §9):
 *
 *   refs stream MIB THREADS REPS      STREAM copy bandwidth (2 arrays counted), GB/s
 *   refs sgemm M N K REPS             OpenBLAS sgemm Y = X W^T, rows/s (1 BLAS thread)
 *   refs apply BASE ADAPTER LAYER ROWS REPS
 *                                     lokr_exec_linear time for ROWS rows, us (the
 *                                     compute the daemon does for one request)
 *   refs attach FD_PATH REPS          mmap + lokr_base_attach (verify) of a base
 *                                     segment (e.g. /proc/PID/fd/N), ms
 *   refs read FILE REPS               plain read() of a file from page cache, GB/s
 *
 * Every command prints one line "name value" with the median over REPS.
 * Built by bench/load against the build directory's liblokr; not part of
 * the library or make check.
 */
#define _GNU_SOURCE
#include <cblas.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lokr.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_d);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static long num(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v <= 0) {
		fprintf(stderr, "refs: bad number '%s'\n", s);
		exit(2);
	}
	return v;
}

/* ------------------------------------------------------------ stream */

typedef struct stream_arg {
	double *a, *c;
	size_t n;
	pthread_barrier_t *bar;
} stream_arg;

static void *stream_thread(void *p)
{
	stream_arg *s = p;
	for (size_t i = 0; i < s->n; i++) /* first touch on this thread */
		s->a[i] = 1.0, s->c[i] = 0.0;
	pthread_barrier_wait(s->bar);
	pthread_barrier_wait(s->bar);
	for (size_t i = 0; i < s->n; i++)
		s->c[i] = s->a[i];
	pthread_barrier_wait(s->bar);
	return NULL;
}

static int cmd_stream(long mib, long threads, long reps)
{
	size_t n = (size_t)mib * 1048576 / sizeof(double);
	double *a = malloc(n * sizeof *a), *c = malloc(n * sizeof *c);
	double *gbs = calloc((size_t)reps, sizeof *gbs);
	if (!a || !c || !gbs)
		return 1;
	for (long r = 0; r < reps; r++) {
		pthread_barrier_t bar;
		pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
		pthread_t *t = calloc((size_t)threads, sizeof *t);
		stream_arg *args = calloc((size_t)threads, sizeof *args);
		size_t per = n / (size_t)threads;
		for (long i = 0; i < threads; i++) {
			args[i] = (stream_arg){a + (size_t)i * per, c + (size_t)i * per, per, &bar};
			pthread_create(&t[i], NULL, stream_thread, &args[i]);
		}
		pthread_barrier_wait(&bar);
		double t0 = now();
		pthread_barrier_wait(&bar);
		pthread_barrier_wait(&bar);
		double dt = now() - t0;
		for (long i = 0; i < threads; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&bar);
		gbs[r] = 2.0 * (double)(per * (size_t)threads) * sizeof(double) / dt / 1e9;
		free(t);
		free(args);
	}
	printf("stream_copy_gbs %.3f\n", median(gbs, (int)reps));
	free(a);
	free(c);
	free(gbs);
	return 0;
}

/* ------------------------------------------------------------ sgemm */

static int cmd_sgemm(long m, long n, long k, long reps)
{
	float *x = malloc((size_t)(m * k) * sizeof(float));
	float *w = malloc((size_t)(n * k) * sizeof(float));
	float *y = malloc((size_t)(m * n) * sizeof(float));
	double *rs = calloc((size_t)reps, sizeof *rs);
	if (!x || !w || !y || !rs)
		return 1;
	for (long i = 0; i < m * k; i++)
		x[i] = (float)(i % 7) * 0.1f;
	for (long i = 0; i < n * k; i++)
		w[i] = (float)(i % 5) * 0.1f;
	/* Each rep runs enough calls for ~20 ms. */
	long inner = 1;
	for (;;) {
		double t0 = now();
		for (long i = 0; i < inner; i++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k,
			            1.0f, x, (int)k, w, (int)k, 0.0f, y, (int)n);
		if (now() - t0 > 0.02 || inner > (1L << 24))
			break;
		inner *= 2;
	}
	for (long r = 0; r < reps; r++) {
		double t0 = now();
		for (long i = 0; i < inner; i++)
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)n, (int)k,
			            1.0f, x, (int)k, w, (int)k, 0.0f, y, (int)n);
		rs[r] = (double)(m * inner) / (now() - t0);
	}
	printf("sgemm_rows_per_s %.1f\n", median(rs, (int)reps));
	free(x);
	free(w);
	free(y);
	free(rs);
	return 0;
}

/* ------------------------------------------------------------ apply */

static int cmd_apply(const char *base_path, const char *adapter_path, const char *layer, long rows,
                     long reps)
{
	lokr_error e = {0};
	lokr_base *b = NULL;
	lokr_st_file *f = NULL;
	lokr_adapter *a = NULL;
	lokr_exec *ex = NULL;
	const char *paths[1] = {base_path};
	if (lokr_base_load(paths, 1, &b, &e) || lokr_st_open(adapter_path, &f, &e) ||
	    lokr_adapter_load(b, f, &a, &e) || lokr_exec_new(0, &ex, &e)) {
		fprintf(stderr, "refs apply: %s\n", e.msg);
		return 1;
	}
	int64_t li = lokr_base_layer_find(b, layer);
	if (li < 0) {
		fprintf(stderr, "refs apply: no layer %s\n", layer);
		return 1;
	}
	const lokr_layer *L = lokr_base_layer_at(b, (size_t)li);
	float *x = malloc((size_t)(rows * L->in) * sizeof(float));
	float *y = malloc((size_t)(rows * L->out) * sizeof(float));
	double *us = calloc((size_t)reps, sizeof *us);
	if (!x || !y || !us)
		return 1;
	for (long i = 0; i < rows * L->in; i++)
		x[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
	lokr_adapter_ref ref = {a, 1.0f};
	lokr_batch_item it = {&ref, 1, x, rows, y};
	long inner = 1;
	for (;;) {
		double t0 = now();
		for (long i = 0; i < inner; i++)
			lokr_exec_linear(ex, b, (size_t)li, &it, 1, &e);
		if (now() - t0 > 0.01 || inner > (1L << 24))
			break;
		inner *= 2;
	}
	for (long r = 0; r < reps; r++) {
		double t0 = now();
		for (long i = 0; i < inner; i++)
			if (lokr_exec_linear(ex, b, (size_t)li, &it, 1, &e)) {
				fprintf(stderr, "refs apply: %s\n", e.msg);
				return 1;
			}
		us[r] = (now() - t0) / (double)inner * 1e6;
	}
	printf("apply_us %.3f\n", median(us, (int)reps));
	free(x);
	free(y);
	free(us);
	lokr_exec_free(ex);
	lokr_adapter_free(a);
	lokr_st_close(f);
	lokr_base_free(b);
	return 0;
}

/* ------------------------------------------------------------ attach */

static int cmd_attach(const char *path, long reps)
{
	double *ms = calloc((size_t)reps, sizeof *ms);
	if (!ms)
		return 1;
	for (long r = 0; r < reps; r++) {
		double t0 = now();
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		struct stat st;
		if (fd < 0 || fstat(fd, &st)) {
			perror(path);
			return 1;
		}
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		if (map == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		lokr_base *b = NULL;
		lokr_error e = {0};
		if (lokr_base_attach(map, (uint64_t)st.st_size, &b, &e)) {
			fprintf(stderr, "refs attach: %s\n", e.msg);
			return 1;
		}
		ms[r] = (now() - t0) * 1e3;
		lokr_base_free(b);
		munmap(map, (size_t)st.st_size);
	}
	printf("attach_ms %.3f\n", median(ms, (int)reps));
	free(ms);
	return 0;
}

/* ------------------------------------------------------------ read */

static int cmd_read(const char *path, long reps)
{
	double *gbs = calloc((size_t)reps, sizeof *gbs);
	if (!gbs)
		return 1;
	struct stat st;
	if (stat(path, &st)) {
		perror(path);
		return 1;
	}
	char *buf = malloc((size_t)st.st_size);
	if (!buf)
		return 1;
	for (long r = 0; r < reps; r++) {
		double t0 = now();
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		size_t got = 0;
		ssize_t k;
		while (fd >= 0 && got < (size_t)st.st_size &&
		       (k = read(fd, buf + got, (size_t)st.st_size - got)) > 0)
			got += (size_t)k;
		if (fd >= 0)
			close(fd);
		gbs[r] = (double)got / (now() - t0) / 1e9;
	}
	printf("read_gbs %.3f\n", median(gbs, (int)reps));
	free(buf);
	free(gbs);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "stream"))
		return cmd_stream(num(argv[2]), num(argv[3]), num(argv[4]));
	if (argc == 6 && !strcmp(argv[1], "sgemm"))
		return cmd_sgemm(num(argv[2]), num(argv[3]), num(argv[4]), num(argv[5]));
	if (argc == 7 && !strcmp(argv[1], "apply"))
		return cmd_apply(argv[2], argv[3], argv[4], num(argv[5]), num(argv[6]));
	if (argc == 4 && !strcmp(argv[1], "attach"))
		return cmd_attach(argv[2], num(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "read"))
		return cmd_read(argv[2], num(argv[3]));
	fputs("usage: refs stream MIB THREADS REPS | sgemm M N K REPS |\n"
	      "       apply BASE ADAPTER LAYER ROWS REPS | attach PATH REPS | read FILE REPS\n",
	      stderr);
	return 2;
}
