/*
 * fuzz_request.c - libFuzzer target for lokrd's request decoder (issue 6):
 * the JSON body of POST /v1/apply -> a validated apply job
 * (daemon/apply_req.c, the code the daemon runs, without a socket), against
 * the fixture base; and a replay driver for `make check`.
 *
 * Properties beyond "no crash" (ASan/UBSan in the fuzzing build):
 *   - a rejection has a 4xx status, a snake_case code and a message;
 *   - an accepted job names a real layer; its input has the layer's input
 *     width, n = product of the shape, at most max_elements elements and
 *     max_rows rows, all finite; the output fits max_elements; the set has
 *     at most max_set adapters with valid ids and finite multipliers;
 *   - the tensor codec round-trips: the decoded input, encoded in the
 *     request's form and dtype and decoded again, gives the same floats.
 * Limits are small here (4096 elements, 64 rows, 4 adapters, depth 16) so
 * the fuzzer reaches every limit quickly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apply_req.h"
#include "registry.h"
#include "tensor_json.h"

#define FUZZ_NAME "fuzz_request"
#include "fuzz_common.h"

static const lokrd_apply_limits lim = {4096, 64, 4, 16};

static void check_roundtrip(const lokrd_apply_job *j)
{
	lokrd_buf b;
	lokrd_buf_init(&b, (size_t)64 << 20);
	int rc =
	    lokrd_tensor_encode(&b, j->in.form, j->in.dtype, j->in.shape, j->in.ndim, j->in.data);
	CHECK(rc == 0);
	json_error_t je;
	json_t *v = json_loadb(b.data, b.len, 0, &je);
	CHECK(v != NULL);
	lokrd_tensor t;
	char err[256];
	rc = lokrd_tensor_decode(v, lim.max_elements, &t, err, sizeof err);
	if (rc)
		fprintf(stderr, "fuzz_request: re-decode: %s\n", err);
	CHECK(rc == 0);
	CHECK(t.n == j->in.n && t.ndim == j->in.ndim && t.dtype == j->in.dtype);
	for (uint64_t i = 0; i < t.n; i++) /* == : the JSON text "-0" reads back as +0 */
		CHECK(t.data[i] == j->in.data[i]);
	lokrd_tensor_free(&t);
	json_decref(v);
	lokrd_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	load_base();
	lokrd_apply_job j;
	memset(&j, 0, sizeof j);
	lokrd_perr e;
	memset(&e, 0, sizeof e);
	int rc = lokrd_apply_decode(base, &lim, (const char *)data, size, &j, &e);
	if (rc) {
		CHECK(e.status >= 400 && e.status < 500);
		CHECK(e.code[0] != '\0' && e.msg[0] != '\0');
		for (const char *c = e.code; *c; c++)
			CHECK((*c >= 'a' && *c <= 'z') || *c == '_');
	} else {
		CHECK(j.layer < lokr_base_layer_count(base));
		const lokr_layer *L = lokr_base_layer_at(base, j.layer);
		uint64_t n = 1;
		for (int d = 0; d < j.in.ndim; d++)
			n *= (uint64_t)j.in.shape[d];
		CHECK(n == j.in.n && n <= lim.max_elements);
		CHECK(j.in.ndim == (j.conv ? 4 : 2) && j.in.shape[1] == L->in);
		CHECK(j.rows == j.in.shape[0] && (uint64_t)j.rows <= lim.max_rows);
		for (uint64_t i = 0; i < n; i++)
			CHECK(isfinite(j.in.data[i]));
		uint64_t nout = (uint64_t)j.rows * (uint64_t)L->out;
		if (j.conv)
			nout *= (uint64_t)(j.ho * j.wo);
		CHECK(nout <= lim.max_elements);
		CHECK(j.set.n <= (size_t)lim.max_set);
		for (size_t i = 0; i < j.set.n; i++) {
			CHECK(lokrd_id_valid(j.set.items[i].id));
			CHECK(isfinite(j.set.items[i].multiplier));
		}
		check_roundtrip(&j);
	}
	lokrd_tensor_free(&j.in);
	lokrd_set_free(&j.set);
	return 0;
}

#ifndef LOKR_LIBFUZZER
#include "replay_main.h"

int main(int argc, char **argv)
{
	const char *def[] = {SRCDIR "/tests/fuzz/corpus/request"};
	int files = replay_args(argc, argv, def, (int)(sizeof def / sizeof def[0]));
	if (files < 0)
		return 1;
	lokr_base_free(base);
	printf("fuzz_request: replayed %d inputs\n", files);
	return files > 0 ? 0 : 1;
}
#endif
