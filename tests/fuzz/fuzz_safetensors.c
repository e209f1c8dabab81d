/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (reliability.md 5.7), and a replay driver for `make check`.
 *
 * Each input goes through lokr_st_open_memory.  A rejection must come with
 * a message.  An accepted file must satisfy, beyond "no crash":
 *   - every tensor slice lies inside the buffer, and the slices sorted by
 *     offset tile the data section exactly (no gap, no overlap, no tail);
 *   - tensors are sorted by name and lokr_st_find finds each of them;
 *   - every F32/F16/BF16/F64 tensor decodes;
 *   - parse(serialize(parse(x))) == parse(x): re-written with the writer's
 *     layout, the file parses to the same names, dtypes, shapes, bytes and
 *     metadata.
 * A violated property aborts, which libFuzzer and the replay driver report.
 *
 * Built with -DLOKR_LIBFUZZER and -fsanitize=fuzzer under --enable-fuzzing
 * (tests/fuzz/fuzz_safetensors); without it, main() replays every file of
 * the directories or files given (default: the seed corpus), so `make check`
 * runs the corpus with the ordinary compiler.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_safetensors: property failed: %s (line %d)\n",       \
			        #cond, __LINE__);                                                  \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static int cmp_by_offset(const void *a, const void *b)
{
	const lokr_st_tensor *x = *(const lokr_st_tensor *const *)a;
	const lokr_st_tensor *y = *(const lokr_st_tensor *const *)b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static void check_tiling(const lokr_st_file *f, const uint8_t *buf, size_t len)
{
	size_t n = lokr_st_count(f);
	const lokr_st_tensor **by = calloc(n ? n : 1, sizeof *by);
	CHECK(by);
	uint64_t hdr = 0;
	for (int i = 7; i >= 0; i--)
		hdr = hdr << 8 | buf[i];
	for (size_t i = 0; i < n; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		by[i] = t;
		CHECK(t->data == buf + t->offset);
		CHECK(t->offset >= 8 + hdr && t->offset <= len && t->nbytes <= len - t->offset);
		if (i)
			CHECK(strcmp(lokr_st_at(f, i - 1)->name, t->name) < 0);
		CHECK(lokr_st_find(f, t->name) == t);
		CHECK(t->ndim >= 0 && t->ndim <= LOKR_MAX_DIMS);
	}
	qsort(by, n, sizeof *by, cmp_by_offset);
	uint64_t at = 8 + hdr;
	for (size_t i = 0; i < n; i++) {
		CHECK(by[i]->offset == at);
		at += by[i]->nbytes;
	}
	CHECK(at == len);
	free(by);
}

static void check_decode(const lokr_st_file *f)
{
	for (size_t i = 0; i < lokr_st_count(f); i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		if (t->dtype == LOKR_DTYPE_OTHER)
			continue;
		CHECK(t->nelem * lokr_dtype_size(t->dtype) == t->nbytes);
		float *dst = malloc((size_t)t->nelem * sizeof *dst + 1);
		CHECK(dst);
		lokr_error e;
		CHECK(lokr_st_tensor_f32(t, dst, &e) == 0);
		free(dst);
	}
}

/* Serialize with the writer's layout and parse again: same content. */
static void check_rewrite(const lokr_st_file *f)
{
	size_t n = lokr_st_count(f), nm = lokr_st_metadata_count(f);
	lokr_st_spec *specs = calloc(n ? n : 1, sizeof *specs);
	const char **mk = calloc(nm ? nm : 1, sizeof *mk), **mv = calloc(nm ? nm : 1, sizeof *mv);
	CHECK(specs && mk && mv);
	for (size_t i = 0; i < n; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		specs[i] = (lokr_st_spec){
		    .name = t->name, .dtype_name = t->dtype_name, .ndim = t->ndim, .data = t->data};
		memcpy(specs[i].shape, t->shape, sizeof t->shape);
	}
	for (size_t i = 0; i < nm; i++)
		CHECK(lokr_st_metadata_at(f, i, &mk[i], &mv[i]) == 0);
	lokr_st_layout l;
	lokr_error e;
	int rc = lokr_st_layout_make(specs, n, mk, mv, nm, &l, &e);
	if (rc == LOKR_ERANGE) /* re-escaped header over the 100 MB limit */
		goto out;
	if (rc != 0)
		fprintf(stderr, "rewrite: %s\n", e.msg);
	CHECK(rc == 0);
	uint8_t *buf = malloc((size_t)l.total + 1);
	CHECK(buf);
	memcpy(buf, l.header, l.header_len);
	for (size_t k = 0; k < l.count; k++) {
		size_t i = l.order[k];
		if (l.nbytes[i])
			memcpy(buf + l.header_len + l.offset[i], specs[i].data,
			       (size_t)l.nbytes[i]);
	}
	lokr_st_file *g;
	rc = lokr_st_open_memory(buf, (size_t)l.total, "rewrite", &g, &e);
	if (rc != 0)
		fprintf(stderr, "rewrite: %s\n", e.msg);
	CHECK(rc == 0);
	CHECK(lokr_st_count(g) == n && lokr_st_metadata_count(g) == nm);
	for (size_t i = 0; i < n; i++) {
		const lokr_st_tensor *a = lokr_st_at(f, i), *b = lokr_st_at(g, i);
		CHECK(strcmp(a->name, b->name) == 0);
		CHECK(strcmp(a->dtype_name, b->dtype_name) == 0 && a->dtype == b->dtype);
		CHECK(a->ndim == b->ndim && a->nelem == b->nelem && a->nbytes == b->nbytes);
		CHECK(memcmp(a->shape, b->shape, sizeof a->shape) == 0);
		CHECK(a->nbytes == 0 || memcmp(a->data, b->data, (size_t)a->nbytes) == 0);
	}
	for (size_t i = 0; i < nm; i++) {
		const char *k, *v;
		CHECK(lokr_st_metadata_at(g, i, &k, &v) == 0);
		CHECK(strcmp(k, mk[i]) == 0 && strcmp(v, mv[i]) == 0);
	}
	lokr_st_close(g);
	free(buf);
	lokr_st_layout_free(&l);
out:
	free(specs);
	free(mk);
	free(mv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	int rc = lokr_st_open_memory(data, size, "fuzz", &f, &e);
	if (rc != 0) {
		CHECK(f == NULL);
		CHECK(rc == LOKR_EFORMAT || rc == LOKR_ENOMEM);
		CHECK(e.code == rc && e.msg[0] != '\0');
		return 0;
	}
	check_tiling(f, data, size);
	check_decode(f);
	check_rewrite(f);
	lokr_st_close(f);
	return 0;
}

#ifndef LOKR_LIBFUZZER
#include "replay_main.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif

int main(int argc, char **argv)
{
	const char *def[] = {SRCDIR "/tests/fuzz/corpus/safetensors"};
	int files = replay_args(argc, argv, def, (int)(sizeof def / sizeof def[0]));
	if (files < 0)
		return 1;
	printf("fuzz_safetensors: replayed %d inputs\n", files);
	return files > 0 ? 0 : 1;
}
#endif
