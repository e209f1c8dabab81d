/*
 * kron.h - internal: the factored kernels (lib/kron.c) and the per-module
 * plan they run (lib/plan.c), shared with the batch executor (lib/exec.c).
 *
 * Every kernel works on the flat view of a layer (out x in*kk) and on rows
 * that are contiguous (row stride = width), so that N stacked rows viewed as
 * (N*n1 x n2) need no copy (lycoris-format.md 4.1, 4.3).  Kernels never
 * allocate: the caller passes scratch of the size the _scratch function
 * returns.  All matrices are row-major float32.
 */
#ifndef LOKR_KRON_H
#define LOKR_KRON_H

#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Evaluation order of a Kronecker apply (lycoris-format.md 4.2). */
typedef enum lokr_kron_order {
	LOKR_KRON_A = 0, /* W2 first: M = X W2^T (n1 x m2), Y = W1 M; n1*m2*(n2 + m1) */
	LOKR_KRON_B = 1, /* W1 first: L = W1 X (m1 x n2), Y = L W2^T; m1*n2*(n1 + m2) */
	LOKR_KRON_S = 2, /* low-rank W2 only, W1 in the middle: T = X w2b^T (n1 x r),
	                  * U = W1 T (m1 x r), Y = U w2a^T; r*(n1*n2 + m1*n1 + m1*m2) */
} lokr_kron_order;

/* How the per-row W1 product is done when a call has several rows. */
typedef enum lokr_kron_w1step {
	LOKR_W1STEP_AUTO = 0, /* choose from the shapes (lokr__kron_w1step_pick) */
	LOKR_W1STEP_ROWS,     /* one small GEMM per row, written in place */
	LOKR_W1STEP_PERMUTE,  /* one GEMM over all rows between two chunk permutations */
} lokr_kron_w1step;

/* The factors of s-less W1 (x) W2 on the flat view; all borrowed. */
typedef struct lokr_kron_factors {
	int64_t m1, n1;   /* W1 is m1 x n1 */
	int64_t m2, n2;   /* W2flat is m2 x n2 (n2 already includes the kernel) */
	const float *w1;  /* m1 x n1, dense (low-rank W1 is expanded by the plan) */
	const float *w2;  /* m2 x n2 dense, or NULL when kept low-rank */
	const float *w2a; /* m2 x r  (when w2 == NULL) */
	const float *w2b; /* r x n2  (when w2 == NULL) */
	int64_t r;        /* rank of the kept factors, 0 when w2 is dense */
	/* Optional transposed copies (NULL when absent): W2^T (n2 x m2), w2a^T
	 * (r x m2), w2b^T (n2 x r).  With them every product is NoTrans x
	 * NoTrans, the only form OpenBLAS 0.3.21 sends to its small-matrix
	 * kernels; the others allocate and pack buffers on every call. */
	const float *w2t, *w2at, *w2bt;
} lokr_kron_factors;

/* Floats of scratch lokr__kron_apply needs for `rows` rows. */
LOKR_HIDDEN size_t lokr__kron_scratch(const lokr_kron_factors *f, lokr_kron_order order,
                                      lokr_kron_w1step step, int64_t rows);

/* Which W1 step AUTO means for this call. */
LOKR_HIDDEN lokr_kron_w1step lokr__kron_w1step_pick(const lokr_kron_factors *f,
                                                    lokr_kron_order order, int64_t rows);

/* y (rows x m1*m2) = alpha * x (rows x n1*n2) (W1 (x) W2)^T + beta * y.
 * x and y are contiguous; y must not alias x or scratch.  beta is 0 or 1
 * (0 overwrites y, even NaN garbage).  Dimensions must fit BLAS ints
 * (the plan and the executor check). */
LOKR_HIDDEN void lokr__kron_apply(const lokr_kron_factors *f, lokr_kron_order order,
                                  lokr_kron_w1step step, int64_t rows, const float *x, float alpha,
                                  float beta, float *y, float *scratch);

/* Naive dense W1 (x) W2 into dst (m1*m2 x n1*n2): the reference. */
LOKR_HIDDEN void lokr__kron_dense(const lokr_kron_factors *f, float *dst);

/* Multiply-adds per row of each evaluation (lycoris-format.md 4.2). */
LOKR_HIDDEN double lokr__kron_macs(const lokr_kron_factors *f, lokr_kron_order order);

/* GEMM helpers, row-major, routing one-row (and one-column) products to
 * sgemv: OpenBLAS 0.3.21's sgemm with M = 1 is ~5x slower (perf-limits.md 3).
 *   mm_nt: C (M x N) = alpha A (M x K) B^T (B is N x K) + beta C
 *   mm_nn: C (M x N) = alpha A (M x K) B   (B is K x N) + beta C */
LOKR_HIDDEN void lokr__mm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc);
LOKR_HIDDEN void lokr__mm_nn(int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                             int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                             int64_t ldc);

/* ------------------------------------------------------------------ plan */

/* What lib/plan.c decided for one module; read-only after lokr__plan_module,
 * so it can be shared by every thread that applies the adapter. */
typedef enum lokr_plan_kind {
	LOKR_PLAN_KRON = 0, /* LoKr: factored W1 (x) W2 */
	LOKR_PLAN_LOWRANK,  /* LoRA/LoCon: up (down x) */
	LOKR_PLAN_DENSE,    /* LoHa: cached dense dW */
} lokr_plan_kind;

struct lokr_plan {
	lokr_plan_kind kind;
	int64_t out, width; /* flat dims: out x width (= in * kk) */

	/* KRON */
	lokr_kron_factors kf; /* what the kernel runs (pointers into the module or below) */
	lokr_kron_order order;
	int w1_expanded; /* W1 = w1_a w1_b built here */
	int w2_expanded; /* W2 low-rank (or Tucker) built dense here */
	int w2_lowrank;  /* the module stores W2 low-rank (kept or expanded) */
	int tucker; /* W2 (LoKr) / down (LoCon) / both Hadamard factors (LoHa) rebuilt from a core
	             */
	double macs_opt[5]; /* per row: A dense, B dense, A low-rank, B low-rank, S (0 if n/a) */

	/* LOWRANK: dW = up (out x r) down (r x width) */
	const float *up, *down;
	int64_t r;

	/* DENSE: dW without s, out x width */
	const float *dense;

	float *own[5]; /* buffers this plan allocated (expanded factors, transposes, dW) */
	uint64_t own_bytes;

	double macs_row;      /* multiply-adds per input row of the chosen evaluation */
	double base_macs_row; /* out * width */
	uint64_t read_bytes;  /* factor bytes one apply reads (for the bandwidth floor) */
	int64_t merge_rows;   /* rows (over a cached merge's life) above which merging wins */
};

/* Planner cost constants (documented in plan.c). */
#define LOKR_PLAN_CALL_MACS 4096.0 /* one BLAS call's fixed cost, in multiply-adds */
#define LOKR_PLAN_BYTE_MACS 1.0    /* one byte of memory traffic, in multiply-adds */

/* Force an evaluation order on an existing plan (tests and benchmarks);
 * returns LOKR_EINVAL for a module that is not LoKr. */
LOKR_HIDDEN int lokr__plan_force_order(struct lokr_plan *plan, lokr_kron_order order);

/* Scratch floats lokr__plan_apply needs for `rows` rows. */
LOKR_HIDDEN size_t lokr__plan_scratch(const struct lokr_plan *plan, lokr_kron_w1step step,
                                      int64_t rows);

/* y (rows x out) = alpha * x (rows x width) dW^T + beta * y, dW without s.
 * beta is 0 or 1; `step` is normally LOKR_W1STEP_AUTO. */
LOKR_HIDDEN void lokr__plan_apply(const struct lokr_plan *plan, lokr_kron_w1step step, int64_t rows,
                                  const float *x, float alpha, float beta, float *y,
                                  float *scratch);

/* ------------------------------------------------------------- executor */

/* lokr_exec_linear on an explicit layer (what the public function calls
 * after looking the layer up; tests call it with hand-made layers).
 * `layer_index` selects each adapter's module. */
LOKR_HIDDEN int lokr__exec_layer(lokr_exec *ctx, const lokr_layer *layer, size_t layer_index,
                                 const lokr_batch_item *items, size_t n, lokr_error *err);
/* W1-step override for this context's applies (tests, benchmarks). */
LOKR_HIDDEN void lokr__exec_set_w1step(lokr_exec *ctx, lokr_kron_w1step step);

#endif /* LOKR_KRON_H */
