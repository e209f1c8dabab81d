/*
 * compute.h - apply jobs and the batch function the worker pool runs.
 *
 * An apply job is self-contained (STYLE.md 8): the decoded input, the
 * resolved adapter versions it holds, and, after the worker ran it, the
 * encoded response body.  Linear jobs of one layer taken together by a
 * worker go through lokr_exec_linear in one call (one base GEMM for the
 * whole batch, factored deltas per adapter-set segment); conv2d jobs with
 * equal sets, geometry and parameters are stacked along the batch axis.
 */
#ifndef LOKRD_COMPUTE_H
#define LOKRD_COMPUTE_H

#include "adapterset.h"
#include "pool.h"
#include "tensor_json.h"

struct lokrd_server;
struct lokrd_req;

typedef struct lokrd_apply_job {
	lokrd_task task; /* batch_key = layer index */
	struct lokrd_server *srv;
	struct lokrd_req *req; /* a held reference */
	int admitted;          /* counted in the server's in-flight jobs */
	size_t layer;
	lokrd_set set; /* resolved */
	lokrd_tensor in;
	int conv;
	int unbatched; /* input had no batch axis (answer has none) */
	lokr_conv2d_params cp;
	int64_t rows;         /* linear: input rows; conv: batch */
	int64_t h, w, ho, wo; /* conv geometry */
	/* results, written by the worker */
	unsigned status; /* 200 or an error status */
	char code[32];
	char msg[LOKR_ERROR_MAX];
	char *body; /* malloc'd JSON response */
	size_t body_len;
	uint64_t started_ns, ended_ns;
} lokrd_apply_job;

/* The pool's batch function (ctx is the server). */
void lokrd_compute_batch(void *ctx, lokrd_task *head, size_t n);

/* True when `j` is small enough to run on the loop thread instead of the
 * pool: a linear job of at most LOKRD_INLINE_MACS multiply-adds through
 * the base weight and at most 4 adapters, while no task waits in the pool
 * (so nothing it could batch with is queued).  Loop thread. */
#define LOKRD_INLINE_MACS (1 << 18)
int lokrd_compute_inline_ok(struct lokrd_server *s, const lokrd_apply_job *j);

/* Run `j` now on the calling thread as a batch of one, with the task's
 * pool fields set as the pool would set them (batch_size 1, not
 * cancelled); the caller then calls its done callback. */
void lokrd_compute_run_inline(struct lokrd_server *s, lokrd_apply_job *j);

#endif
