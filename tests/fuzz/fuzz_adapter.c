/*
 * fuzz_adapter.c - libFuzzer target for adapter validation against a base
 * (issue 6; reliability.md 5.6-5.7: the LoKr/DoRA semantic layer after the
 * container), and a replay driver for `make check`.
 *
 * The base is the fixture base (tests/data/fixtures/base.safetensors: linear
 * and conv layers, with and without bias).  Each input is parsed with
 * lokr_st_open_memory and, if the container is accepted, loaded with
 * lokr_adapter_load.  Properties beyond "no crash":
 *   - a rejection comes with its code and a message;
 *   - an accepted adapter has at least zero modules, sorted by layer, each
 *     on a valid layer with the layer's dims, at most one per layer, and
 *     finite scale; lokr_adapter_module_for finds each module;
 *   - for every module: the merged weight (lokr_merge_layer) succeeds, and
 *     for a linear layer, lokr_apply_linear on two rows equals x W'^T + b
 *     computed naively from that merged weight (relative error <= 1e-3 of
 *     the largest magnitude, when everything is finite) -- so the factored
 *     kernels are checked against the reference on every accepted input.
 * A violated property aborts (libFuzzer and the replay driver report it).
 *
 * -DLOKR_LIBFUZZER builds the libFuzzer entry only (tests/fuzz/fuzz_adapter
 * under --enable-fuzzing); otherwise main() replays the files or
 * directories given (default: tests/fuzz/corpus/adapter and the adapters of
 * tests/data, which are the seeds).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FUZZ_NAME "fuzz_adapter"
#include "fuzz_common.h"

/* Compare lokr_apply_linear with x W'^T + b from the merged weight. */
static void check_linear(const lokr_adapter *a, const lokr_module *m, const float *merged)
{
	const lokr_layer *L = lokr_base_layer_at(base, m->layer);
	const int64_t rows = 2;
	float *x = malloc((size_t)(rows * L->in) * sizeof *x);
	float *y = malloc((size_t)(rows * L->out) * sizeof *y);
	CHECK(x && y);
	for (int64_t i = 0; i < rows * L->in; i++)
		x[i] = (float)((i * 7 + 3) % 11) / 11.0f - 0.5f;
	lokr_adapter_ref ref = {a, 0.75f};
	lokr_error e = {0};
	int rc = lokr_apply_linear(base, m->layer, &ref, 1, x, rows, y, &e);
	CHECK(rc == 0 || rc == LOKR_ENOMEM);
	if (rc == 0) {
		double maxabs = 0, maxdiff = 0;
		int finite = 1;
		for (int64_t r = 0; r < rows; r++)
			for (int64_t o = 0; o < L->out; o++) {
				double want = L->bias ? L->bias[o] : 0.0;
				for (int64_t c = 0; c < L->in; c++)
					want += (double)merged[o * L->in + c] * x[r * L->in + c];
				double got = y[r * L->out + o];
				if (!isfinite(want) || !isfinite(got) || fabs(want) > 1e30) {
					finite = 0;
					continue;
				}
				maxabs = fmax(maxabs, fabs(want));
				maxdiff = fmax(maxdiff, fabs(got - want));
			}
		if (finite && maxdiff > 1e-3 * fmax(maxabs, 1e-6)) {
			fprintf(stderr,
			        "fuzz_adapter: layer %s: apply differs from merge by %g (max %g)\n",
			        L->name, maxdiff, maxabs);
			CHECK(!"apply_linear matches the merged weight");
		}
	}
	free(x);
	free(y);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load_base();
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	int rc = lokr_st_open_memory(data, size, "fuzz.safetensors", &f, &e);
	if (rc) {
		CHECK(f == NULL && e.msg[0] != '\0');
		return 0;
	}
	lokr_adapter *a = NULL;
	memset(&e, 0, sizeof e);
	rc = lokr_adapter_load(base, f, &a, &e);
	lokr_st_close(f);
	if (rc) {
		CHECK(a == NULL);
		CHECK(e.code == rc && e.msg[0] != '\0');
		return 0;
	}
	CHECK(a != NULL);
	size_t nl = lokr_base_layer_count(base);
	for (size_t i = 0; i < a->nmodules; i++) {
		const lokr_module *m = &a->modules[i];
		CHECK(m->layer < nl);
		if (i)
			CHECK(a->modules[i - 1].layer < m->layer);
		const lokr_layer *L = lokr_base_layer_at(base, m->layer);
		CHECK(m->out == L->out && m->in == L->in && m->kk == L->kk);
		CHECK(isfinite(m->scale));
		CHECK(lokr_adapter_module_for(a, m->layer) == m);
		uint64_t n = (uint64_t)L->out * (uint64_t)L->in * (uint64_t)L->kk;
		float *w = malloc((size_t)n * sizeof *w);
		CHECK(w);
		lokr_adapter_ref ref = {a, 0.75f};
		rc = lokr_merge_layer(base, m->layer, &ref, 1, 0, w, &e);
		CHECK(rc == 0 || rc == LOKR_ENOMEM);
		if (rc == 0 && L->kind == LOKR_LAYER_LINEAR)
			check_linear(a, m, w);
		free(w);
	}
	lokr_adapter_free(a);
	return 0;
}

#ifndef LOKR_LIBFUZZER
#include "replay_main.h"

int main(int argc, char **argv)
{
	/* The committed corpus holds what fuzzing found; the test data are the
	 * seeds (valid adapters of every kind and the bad ones of gen/). */
	const char *def[] = {SRCDIR "/tests/fuzz/corpus/adapter",
	                     SRCDIR "/tests/data/fixtures/adapters",
	                     SRCDIR "/tests/data/gen/adapters", SRCDIR "/tests/data/gen/bad"};
	int files = replay_args(argc, argv, def, (int)(sizeof def / sizeof def[0]));
	if (files < 0)
		return 1;
	lokr_base_free(base);
	printf("fuzz_adapter: replayed %d inputs\n", files);
	return files > 0 ? 0 : 1;
}
#endif
