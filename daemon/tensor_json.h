/*
 * tensor_json.h - the JSON tensor codec of DESIGN.md "HTTP API v1":
 *   {"dtype": "f32", "shape": [4, 320], "data": [...]}      numbers, row-major
 *   {"dtype": "f32"|"f16"|"bf16", "shape": [...], "b64": "..."}  LE bytes
 * lokrd computes in f32: decoding yields floats, encoding rounds to the
 * requested dtype at the end.  Non-finite inputs are rejected.
 */
#ifndef LOKRD_TENSOR_JSON_H
#define LOKRD_TENSOR_JSON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "lokr.h"

typedef enum lokrd_tform {
	LOKRD_TFORM_DATA = 0,
	LOKRD_TFORM_B64,
} lokrd_tform;

typedef struct lokrd_tensor {
	lokrd_tform form;
	lokr_dtype dtype;
	int ndim;
	int64_t shape[LOKR_MAX_DIMS];
	uint64_t n;  /* elements */
	float *data; /* owned (free()), n floats, 64-byte aligned */
} lokrd_tensor;

/* Decode `obj` into `t` (new data).  At most max_elems elements.  Returns 0,
 * or -1 with a message for a 400 answer in err. */
int lokrd_tensor_decode(const json_t *obj, uint64_t max_elems, lokrd_tensor *t, char *err,
                        size_t errlen);
void lokrd_tensor_free(lokrd_tensor *t);

/* Append the JSON object of a tensor to `b`.  Returns 0, -1 when the buffer
 * failed (limit/memory), -2 when the data form meets a non-finite value
 * (JSON numbers cannot hold it). */
int lokrd_tensor_encode(lokrd_buf *b, lokrd_tform form, lokr_dtype dtype, const int64_t *shape,
                        int ndim, const float *data);

/* Base64 (RFC 4648, standard alphabet, padded).  decode accepts missing
 * padding, rejects any other character; returns bytes written or -1. */
size_t lokrd_b64_encoded_len(size_t n);
void lokrd_b64_encode(const uint8_t *src, size_t n, char *dst);
long long lokrd_b64_decode(const char *src, size_t len, uint8_t *dst, size_t cap);

/* Parse a request dtype: f32/f16/bf16 (also F32..., float32, float16,
 * bfloat16); -1 if unknown. */
int lokrd_dtype_parse(const char *s);
/* "f32" / "f16" / "bf16" for the dtypes a request may use. */
const char *lokrd_dtype_name(lokr_dtype dt);

#endif
