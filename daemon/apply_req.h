/*
 * apply_req.h - the request decoder of POST /v1/apply: JSON body -> a
 * validated apply job (layer, decoded input, conv parameters, adapter set),
 * or the exact 4xx answer.  No socket, no loop, no server: it reads only
 * the immutable base and the limits, so it runs on the loop thread, on a
 * pool thread (large bodies), and in the libFuzzer target
 * tests/fuzz/fuzz_request.c.
 */
#ifndef LOKRD_APPLY_REQ_H
#define LOKRD_APPLY_REQ_H

#include <stddef.h>
#include <stdint.h>

#include "compute.h"
#include "lokr.h"

/* The limits the decoder enforces (from lokrd_options). */
typedef struct lokrd_apply_limits {
	uint64_t max_elements; /* of the input tensor, and of the output */
	uint64_t max_rows;     /* batch rows (linear) or images (conv2d) */
	int max_set;           /* adapters in the set */
	int max_depth;         /* JSON nesting */
} lokrd_apply_limits;

/* An error answer: HTTP status, snake_case code, message. */
typedef struct lokrd_perr {
	unsigned status;
	char code[32];
	char msg[768];
} lokrd_perr;

/* Decode body[0..len) into j (j->layer, conv, in, unbatched, cp, rows, h,
 * w, ho, wo, set; other fields untouched).  Returns 0, or -1 with the answer
 * in *e; either way the caller releases j->in and j->set (lokrd_tensor_free,
 * lokrd_set_free; both are safe on a zeroed job).  Any thread. */
int lokrd_apply_decode(const lokr_base *base, const lokrd_apply_limits *lim, const char *body,
                       size_t len, lokrd_apply_job *j, lokrd_perr *e);

#endif
