/*
 * lokr.h - the whole public API of liblokr.
 *
 * liblokr reads LyCORIS adapter files (LoKr, LoHa, LoRA/LoCon, DoRA on each)
 * and a base model in safetensors form, validates adapters against the base,
 * and computes merged weights and adapted layer outputs.  It has no sockets,
 * no event loop and no mutable globals: every object is created and freed by
 * the caller, and objects documented as immutable may be shared between
 * threads after creation.
 *
 * Conventions (see STYLE.md):
 *  - Functions return 0 (LOKR_OK) or a negative lokr_status code.
 *  - Where a human reads the failure, a lokr_error buffer receives a message
 *    that names the file / module / tensor and the shapes involved.  `err`
 *    may always be NULL.
 *  - Ownership is stated in fixed words: "returns new" (caller frees with the
 *    matching _free), "borrowed" (valid while the owner lives), "steals".
 *  - Matrices are row-major float32.  A base layer weight is (out, in) for a
 *    linear layer and (out, in, kh, kw) for a conv2d; "flat" means viewed as
 *    (out, in * kk) where kk is the product of the kernel dims (1 for linear).
 */
#ifndef LOKR_H
#define LOKR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LOKR_BUILDING) && defined(__GNUC__)
#define LOKR_API __attribute__((visibility("default")))
#else
#define LOKR_API
#endif

/* ------------------------------------------------------------------ errors */

typedef enum lokr_status {
	LOKR_OK = 0,
	LOKR_ENOMEM = -1,       /* allocation failed */
	LOKR_EIO = -2,          /* open/read/write/mmap failed (errno kept in message) */
	LOKR_EFORMAT = -3,      /* malformed safetensors container */
	LOKR_EADAPTER = -4,     /* adapter content invalid (keys, shapes, alpha) */
	LOKR_EMISMATCH = -5,    /* adapter does not fit the base (layer, shapes) */
	LOKR_EINVAL = -6,       /* bad argument from the caller (shape, dtype, NaN input) */
	LOKR_ENOTFOUND = -7,    /* no such layer / tensor */
	LOKR_EUNSUPPORTED = -8, /* valid but not handled (dtype, algorithm, op) */
	LOKR_ERANGE = -9,       /* a size overflowed or exceeded a limit */
} lokr_status;

#define LOKR_ERROR_MAX 512

/* Human-readable failure description filled by functions that take one. */
typedef struct lokr_error {
	int code;                 /* the lokr_status returned */
	char msg[LOKR_ERROR_MAX]; /* NUL-terminated, never empty on failure */
} lokr_error;

/* Static string for a status code; never NULL. */
LOKR_API const char *lokr_strerror(int code);

/* ------------------------------------------------------------------ dtypes */

typedef enum lokr_dtype {
	LOKR_DTYPE_F32 = 0,
	LOKR_DTYPE_F16,
	LOKR_DTYPE_BF16,
	LOKR_DTYPE_F64,
	LOKR_DTYPE_OTHER, /* any valid safetensors dtype we do not decode (I64, U8, ...) */
} lokr_dtype;

/* Bytes per element of a decodable dtype (4, 2, 2, 8); 0 for OTHER. */
LOKR_API size_t lokr_dtype_size(lokr_dtype dt);
/* "F32", "F16", "BF16", "F64", "OTHER". */
LOKR_API const char *lokr_dtype_name(lokr_dtype dt);
/* Parse "f32"/"F32", "f16"/"F16", "bf16"/"BF16", "f64"/"F64"; -1 if unknown. */
LOKR_API int lokr_dtype_parse(const char *s);

/* Decode n little-endian elements from possibly unaligned `src` to float.
 * F16 handles subnormals, inf and NaN exactly; BF16 is a shift. */
LOKR_API int lokr_decode_f32(lokr_dtype dt, const void *src, size_t n, float *dst);
/* Encode n floats to little-endian `dst` in dtype dt, round to nearest even
 * (F16 overflows to inf, NaN stays NaN). */
LOKR_API int lokr_encode_f32(lokr_dtype dt, const float *src, size_t n, void *dst);

/* -------------------------------------------------------------- safetensors */

#define LOKR_MAX_DIMS 8
/* Header size limit of the reference parser (lycoris-format.md 1.3). */
#define LOKR_ST_MAX_HEADER 100000000u

typedef struct lokr_st_tensor {
	const char *name;       /* borrowed, NUL-terminated, valid UTF-8 */
	const char *dtype_name; /* as in the file, e.g. "F16", "I64" */
	lokr_dtype dtype;
	int ndim; /* 0 for a scalar */
	int64_t shape[LOKR_MAX_DIMS];
	uint64_t nelem;  /* product of shape (1 for a scalar) */
	uint64_t offset; /* byte offset in the file */
	uint64_t nbytes;
	const uint8_t *data; /* borrowed, NOT aligned: decode, never cast */
} lokr_st_tensor;

typedef struct lokr_st_file lokr_st_file;

/* Open and fully validate a safetensors file through a read-only mmap
 * (every rule of lycoris-format.md 1.3, duplicate keys rejected).
 * Returns new via *out; free with lokr_st_close.  LOKR_EIO or LOKR_EFORMAT
 * with a message naming the path and the offending tensor. */
LOKR_API int lokr_st_open(const char *path, lokr_st_file **out, lokr_error *err);
/* The same over a caller's buffer, which is borrowed and must outlive the
 * returned object (used for HTTP bodies and fuzzing).  `what` names the
 * source in messages. */
LOKR_API int lokr_st_open_memory(const void *buf, size_t len, const char *what, lokr_st_file **out,
                                 lokr_error *err);
LOKR_API void lokr_st_close(lokr_st_file *f);

/* Tensors sorted by name.  Borrowed. */
LOKR_API size_t lokr_st_count(const lokr_st_file *f);
LOKR_API const lokr_st_tensor *lokr_st_at(const lokr_st_file *f, size_t i);
LOKR_API const lokr_st_tensor *lokr_st_find(const lokr_st_file *f, const char *name);
/* __metadata__ entries (string -> string), in file order.  Borrowed. */
LOKR_API size_t lokr_st_metadata_count(const lokr_st_file *f);
LOKR_API int lokr_st_metadata_at(const lokr_st_file *f, size_t i, const char **key,
                                 const char **value);
LOKR_API const char *lokr_st_metadata_get(const lokr_st_file *f, const char *key);
/* Total file size in bytes and the raw bytes (borrowed). */
LOKR_API uint64_t lokr_st_size(const lokr_st_file *f);
LOKR_API const uint8_t *lokr_st_bytes(const lokr_st_file *f);

/* Decode a tensor of F32/F16/BF16/F64 into `dst` (nelem floats). */
LOKR_API int lokr_st_tensor_f32(const lokr_st_tensor *t, float *dst, lokr_error *err);

/* Writing.  The layout is the reference writer's: tensors sorted by dtype
 * alignment descending, then by name; header JSON padded with spaces to a
 * multiple of 8.  A layout is computed first so that the data can be
 * streamed afterwards in lokr_st_layout order (for HTTP responses). */
typedef struct lokr_st_spec {
	const char *name;
	const char *dtype_name; /* e.g. "F32"; any safetensors dtype string */
	int ndim;
	int64_t shape[LOKR_MAX_DIMS];
	const void *data; /* encoded bytes, may be NULL when only laying out */
} lokr_st_spec;

typedef struct lokr_st_layout {
	uint8_t *header; /* new: 8-byte length + padded JSON; free with lokr_st_layout_free */
	size_t header_len;
	size_t count;
	size_t *order;    /* new: spec index of the i-th tensor in the data section */
	uint64_t *offset; /* new: data offset of spec[i] (indexed like the specs),
	                   * relative to the data section like data_offsets */
	uint64_t *nbytes; /* new: byte size of spec[i] */
	uint64_t total;   /* header_len + all data */
} lokr_st_layout;

/* metadata: `nmeta` key/value pairs, may be 0. */
LOKR_API int lokr_st_layout_make(const lokr_st_spec *specs, size_t n, const char *const *meta_keys,
                                 const char *const *meta_values, size_t nmeta, lokr_st_layout *out,
                                 lokr_error *err);
LOKR_API void lokr_st_layout_free(lokr_st_layout *l);
/* Lay out and write a whole file (every spec needs data).  Writes to a temp
 * file in the same directory, fsyncs and renames, so a reader never sees a
 * partial file. */
LOKR_API int lokr_st_write_file(const char *path, const lokr_st_spec *specs, size_t n,
                                const char *const *meta_keys, const char *const *meta_values,
                                size_t nmeta, lokr_error *err);

/* ----------------------------------------------------------- factorization */

/* LyCORIS's factorization(dim, factor) (lycoris-format.md 3.4): small*large
 * == dim, small <= large.  factor -1 means automatic. */
LOKR_API int lokr_factorize(int64_t dim, int64_t factor, int64_t *small, int64_t *large);

/* --------------------------------------------------------------- base model */

typedef enum lokr_layer_kind {
	LOKR_LAYER_LINEAR = 0, /* weight (out, in) */
	LOKR_LAYER_CONV,       /* weight (out, in, k...) with 1..3 kernel dims */
} lokr_layer_kind;

/* One base layer: tensor NAME.weight of rank 2..5 (bias NAME.bias, optional). */
typedef struct lokr_layer {
	const char *name; /* "down.attn.to_q" (without ".weight") */
	lokr_layer_kind kind;
	int ndim;             /* 2 for linear, 3..5 for conv */
	int64_t shape[4 + 1]; /* weight shape */
	int64_t out, in;      /* shape[0], shape[1] */
	int64_t kk;           /* product of kernel dims; 1 for linear */
	const float *weight;  /* borrowed, out * in * kk floats, 64-byte aligned */
	const float *bias;    /* borrowed, `out` floats, or NULL */
	lokr_dtype src_dtype; /* dtype of NAME.weight in the source file */
	double *row_norm2;    /* reserved for caches; may be NULL */
} lokr_layer;

typedef struct lokr_base lokr_base;

/* Load base safetensors files (layers across files must not collide),
 * convert every layer weight and bias to float32 in private memory.
 * Returns new. */
LOKR_API int lokr_base_load(const char *const *paths, size_t npaths, lokr_base **out,
                            lokr_error *err);
LOKR_API void lokr_base_free(lokr_base *b);
LOKR_API size_t lokr_base_layer_count(const lokr_base *b);
/* Borrowed; layers are sorted by name. */
LOKR_API const lokr_layer *lokr_base_layer_at(const lokr_base *b, size_t i);
/* Index of layer `name`, or -1. */
LOKR_API int64_t lokr_base_layer_find(const lokr_base *b, const char *name);
/* Index of the layer an adapter module name maps to (prefix + "_" + layer
 * name with "." -> "_", prefixes lycoris, lora_unet, lora_te, lora_te1,
 * lora_te2, lora_te3, and the bare mangled name), or -1 if none.  Returns
 * -2 if two layers mangle to the same module name (collision). */
LOKR_API int64_t lokr_base_map_module(const lokr_base *b, const char *module);
/* Bytes of float32 weights and biases held. */
LOKR_API uint64_t lokr_base_bytes(const lokr_base *b);

/* Serialize a base into one self-describing, position-independent blob
 * (magic, version, source identity, layer table, checksum, 64-byte aligned
 * f32 data) for shared memory.  lokr_base_blob_size gives the size;
 * lokr_base_blob_write fills `dst` (zeroed by the caller). */
LOKR_API uint64_t lokr_base_blob_size(const lokr_base *b);
LOKR_API int lokr_base_blob_write(const lokr_base *b, void *dst, uint64_t len);
/* Attach to a blob written by lokr_base_blob_write, verifying magic,
 * version, bounds and the checksum; `blob` is borrowed (e.g. a read-only
 * mapping) and must outlive the base.  Returns new. */
LOKR_API int lokr_base_attach(const void *blob, uint64_t len, lokr_base **out, lokr_error *err);
/* Source identity of a base: per file "path<TAB>size<TAB>mtime<TAB>dev:ino"
 * lines, recorded at load and kept in the blob, so a process that finds a
 * blob (e.g. in systemd's fd store) can tell whether it still matches the
 * files.  lokr_base_identity returns borrowed; lokr_base_source_identity
 * computes the same string for `paths` into buf (LOKR_ERANGE if too small,
 * LOKR_EIO if a file cannot be stat'ed). */
LOKR_API const char *lokr_base_identity(const lokr_base *b);
LOKR_API int lokr_base_source_identity(const char *const *paths, size_t npaths, char *buf,
                                       size_t len, lokr_error *err);

/* ----------------------------------------------------------- adapter model */

typedef enum lokr_algo {
	LOKR_ALGO_LOKR = 0,
	LOKR_ALGO_LOHA,
	LOKR_ALGO_LORA, /* LoRA / LoCon */
} lokr_algo;

typedef enum lokr_dora_axis {
	LOKR_DORA_NONE = 0,
	LOKR_DORA_OUT, /* dora_scale (out,1[,1,1]) or (out,): norm per output row */
	LOKR_DORA_IN,  /* dora_scale (1,in[,1,1]): norm per input channel */
} lokr_dora_axis;

/* A float32 matrix owned by its module. */
typedef struct lokr_mat {
	int64_t rows, cols;
	float *data; /* rows * cols, row-major; NULL when absent */
} lokr_mat;

/* A stored tensor as it was in the file, for inspect. */
typedef struct lokr_stored {
	char *key;   /* param name after "<module>." */
	char *dtype; /* "F32" ... */
	int ndim;
	int64_t shape[LOKR_MAX_DIMS];
} lokr_stored;

/* One adapter module = the delta on one base layer.  All factor matrices are
 * decoded to float32 and reshaped to 2-D as documented per field. */
typedef struct lokr_module {
	char *name;   /* module name as in the file */
	size_t layer; /* index into the base */
	lokr_algo algo;
	int64_t out, in, kk; /* the layer's dims (copied for convenience) */
	int64_t rank;        /* 0 when no factor is low-rank (LoKr both full) */
	int tucker;          /* LoKr t2 / LoHa t1,t2 / LoCon lora_mid present */
	double alpha;        /* stored alpha (NaN when absent) */
	int has_alpha;
	int alpha_ignored; /* LoKr both full: s = 1 whatever alpha says */
	float scale;       /* s, the file's own scale (lycoris-format.md 3.7) */

	/* LoKr: dW = s * kron(W1, W2flat), W1 (m1 x n1), W2flat (m2 x n2*kk). */
	int64_t m1, n1, m2, n2;
	lokr_mat w1;         /* full W1, or NULL data if low-rank */
	lokr_mat w1_a, w1_b; /* (m1 x r), (r x n1) */
	lokr_mat w2;         /* full W2 flat (m2 x n2*kk) */
	lokr_mat w2_a, w2_b; /* no Tucker: (m2 x r), (r x n2*kk); Tucker: (r x m2), (r x n2) */
	lokr_mat t2;         /* Tucker core (r*r x kk): t2[a,b,k] at (a*r+b, k) */

	/* LoHa: dW = s * R1 .* R2.  Plain: R = w_a w_b, hada_w*_a (out x r),
	 * hada_w*_b (r x in*kk), t NULL.  Tucker (lycoris-format.md 6.1):
	 * hada_w*_a (r x out) -- transposed --, hada_w*_b (r x in), hada_t*
	 * (r*r x kk) with t[a,b,k] at (a*r+b, k), and
	 * R[p, q*kk+k] = sum_{a,b} t[a,b,k] w_a[a,p] w_b[b,q]. */
	lokr_mat hada_w1_a, hada_w1_b, hada_w2_a, hada_w2_b, hada_t1, hada_t2;

	/* LoRA/LoCon: dW = s * up (mid) down. up (out x r); down (r x in*kk), or
	 * (r x in) with Tucker mid (r*r x kk), mid[a,b,k] at (a*r+b, k):
	 * dW[o, c*kk+k] = s * sum_{a,b} up[o,a] mid[a,b,k] down[b,c]. */
	lokr_mat up, down, mid;

	/* DoRA */
	lokr_dora_axis dora_axis;
	float *dora_scale; /* out or in floats (per axis) or NULL */
	float *dora_g;     /* cached g = dora_scale / (|W0 + s dW| + 2^-23), same length */

	struct lokr_plan *plan; /* planner's choices and caches (lib/plan.c), or NULL */

	size_t nstored;
	lokr_stored *stored; /* the file's tensors of this module, for inspect */
} lokr_module;

typedef struct lokr_adapter {
	size_t nmodules;
	lokr_module *modules; /* sorted by layer index; at most one per layer */
	size_t nwarnings;
	char **warnings; /* e.g. "lycoris_x: no alpha, scale 1" */
	size_t nmeta;
	char **meta_keys, **meta_values;
	uint64_t resident_bytes;   /* memory this adapter holds (factors, caches) */
	uint64_t param_count;      /* parameters stored */
	uint64_t full_param_count; /* parameters of the full deltas it represents */
} lokr_adapter;

/* Build an adapter from an open safetensors file, validated completely
 * against `base` (all or nothing, lycoris-format.md "lokrd's decisions").
 * Computes the per-layer DoRA vectors.  Returns new; the file may be closed
 * afterwards.  LOKR_EADAPTER / LOKR_EMISMATCH with a message naming the
 * module and both shapes. */
LOKR_API int lokr_adapter_load(const lokr_base *base, const lokr_st_file *file, lokr_adapter **out,
                               lokr_error *err);
LOKR_API void lokr_adapter_free(lokr_adapter *a);
/* Module of the adapter on layer index `layer`, or NULL.  Borrowed. */
LOKR_API const lokr_module *lokr_adapter_module_for(const lokr_adapter *a, size_t layer);
LOKR_API const char *lokr_algo_name(lokr_algo algo); /* "lokr", "loha", "lora" */

/* ------------------------------------------------------------------- math */

/* An adapter in a set, with the user's strength (multiplier). */
typedef struct lokr_adapter_ref {
	const lokr_adapter *adapter; /* borrowed */
	float multiplier;
} lokr_adapter_ref;

/* s * dW of one module, flat (out x in*kk), into dst.  Naive and exact. */
LOKR_API int lokr_module_delta(const lokr_module *m, float *dst);

/* Merged weight of `layer` under an adapter set, flat (out x in*kk) into dst:
 * W' = W0 + sum_a (W'_a - W0), W'_a = W0 + l s dW (no DoRA) or
 * W0 + l (g .* V - W0) with V = W0 + s dW (DoRA).  Adapters without a module
 * on this layer contribute nothing.  `delta_only` writes W' - W0 instead. */
LOKR_API int lokr_merge_layer(const lokr_base *base, size_t layer, const lokr_adapter_ref *set,
                              size_t nset, int delta_only, float *dst, lokr_error *err);

/* Adapted linear layer: y (rows x out) = x (rows x in) W'^T + bias, without
 * building an (out x in) matrix for LoKr/LoRA (factored, cheaper order
 * chosen from the shapes); LoHa uses the dW its plan cached at load.  One
 * request through the batch executor below (lokr_exec_linear); a temporary
 * workspace is made per call.  NaN/Inf in x: LOKR_EINVAL. */
LOKR_API int lokr_apply_linear(const lokr_base *base, size_t layer, const lokr_adapter_ref *set,
                               size_t nset, const float *x, int64_t rows, float *y,
                               lokr_error *err);

/* Conv2d parameters, NCHW. */
typedef struct lokr_conv2d_params {
	int64_t stride[2], padding[2], dilation[2];
} lokr_conv2d_params;

/* Adapted conv2d: x (batch, in, H, W) -> y (batch, out, Ho, Wo) with the base
 * bias; Ho/Wo from lokr_conv2d_out_size. */
LOKR_API int lokr_conv2d_out_size(const lokr_layer *l, const lokr_conv2d_params *p, int64_t h,
                                  int64_t w, int64_t *ho, int64_t *wo);
LOKR_API int lokr_apply_conv2d(const lokr_base *base, size_t layer, const lokr_adapter_ref *set,
                               size_t nset, const lokr_conv2d_params *p, const float *x,
                               int64_t batch, int64_t h, int64_t w, float *y, lokr_error *err);

/* ------------------------------------------------ batch executor and planner */

/*
 * The batch executor computes one linear layer for many requests at once:
 * the rows of every item are stacked and multiplied by the base weight in
 * ONE sgemm (sgemv for a single row); then, per adapter-set segment (items
 * whose sets are equal as multisets of (adapter, multiplier) after dropping
 * multipliers of 0 and adapters without a module on the layer), the
 * factored deltas of the set's adapters are added as GEMMs over the whole
 * segment (alpha = multiplier * s).  No (out x in) matrix is built except
 * LoHa's dense dW, cached once per (layer, adapter) by the planner.  DoRA
 * follows lokrd's interpolation rule (lycoris-format.md, decisions 2 and 3):
 * output axis y += l * (g .* (W0 x + s K x) - W0 x) on the shared base
 * output; input axis y += l * (W0 (g .* x) + s K (g .* x) - W0 x), which
 * costs one more base GEMM for that segment.  Bias is added once.
 *
 * Threads.  The executor itself never starts threads; parallelism comes from
 * exactly one of two places, chosen by the caller (reliability.md 4):
 *  - LOKR_THREADING_WORKERS (throughput, the daemon's default): N worker
 *    threads, each with its own lokr_exec, and OpenBLAS single-threaded;
 *  - LOKR_THREADING_BLAS (latency): one worker (one call at a time) and
 *    OpenBLAS with one thread per core.
 * lokr_threading_setup sets OpenBLAS's process-wide thread count for the
 * chosen mode; call it once in main before any worker starts.  Mixing the
 * two oversubscribes the cores.
 */

/* One request of a batch: `rows` input rows with their adapter set. */
typedef struct lokr_batch_item {
	const lokr_adapter_ref *set; /* borrowed; nset entries, may be NULL when nset == 0 */
	size_t nset;
	const float *x; /* borrowed, rows x in, contiguous; must be finite */
	int64_t rows;   /* >= 0 */
	float *y;       /* rows x out, written; must not overlap any x */
} lokr_batch_item;

/* Per-thread workspace: scratch that grows up to a ceiling and is reused
 * across calls.  Not thread-safe: one per worker thread. */
typedef struct lokr_exec lokr_exec;

/* Counters of one workspace (cumulative since lokr_exec_new). */
typedef struct lokr_exec_stats {
	uint64_t calls;         /* lokr_exec_linear calls that succeeded */
	uint64_t rows;          /* rows computed */
	uint64_t segments;      /* adapter-set segments with a non-empty set */
	uint64_t deltas;        /* factored (or LoHa dense) delta applications */
	uint64_t scratch_bytes; /* current scratch size */
} lokr_exec_stats;

#define LOKR_EXEC_DEFAULT_MAX_SCRATCH ((uint64_t)1 << 30) /* 1 GiB */

/* Returns new via *out.  `max_scratch` caps the scratch (bytes; 0 means
 * LOKR_EXEC_DEFAULT_MAX_SCRATCH): a call needing more fails with
 * LOKR_ERANGE and leaves the workspace usable. */
LOKR_API int lokr_exec_new(uint64_t max_scratch, lokr_exec **out, lokr_error *err);
LOKR_API void lokr_exec_free(lokr_exec *ctx);
LOKR_API void lokr_exec_stats_get(const lokr_exec *ctx, lokr_exec_stats *st);

/* Compute items[i].y = items[i].x W'_i^T + bias for the linear layer `layer`
 * of `base`, W'_i being the base weight under items[i].set, for all n items
 * in one base GEMM.  Every adapter must have been loaded against `base`.
 * Errors: LOKR_EINVAL (NULL pointers, negative rows, a non-finite input or
 * multiplier, a conv layer, a DoRA module without its cached vector),
 * LOKR_ENOTFOUND (layer index), LOKR_ERANGE (sizes past BLAS ints or the
 * scratch ceiling), LOKR_ENOMEM.  On error no y is guaranteed. */
LOKR_API int lokr_exec_linear(lokr_exec *ctx, const lokr_base *base, size_t layer,
                              const lokr_batch_item *items, size_t n, lokr_error *err);

typedef enum lokr_threading {
	LOKR_THREADING_WORKERS = 0, /* ncores workers x 1 BLAS thread */
	LOKR_THREADING_BLAS,        /* 1 worker x ncores BLAS threads */
} lokr_threading;

/* Decide workers and BLAS threads for `ncores` (>= 1) and set OpenBLAS's
 * thread count accordingly (process-wide; call once in main, before workers
 * start).  Either output pointer may be NULL. */
LOKR_API int lokr_threading_setup(lokr_threading mode, int ncores, int *workers, int *blas_threads);

/* "OpenBLAS 0.3.21 ... | core Cooperlake | threads 1 | pthreads" into buf
 * (always NUL-terminated).  Returns the BLAS thread count. */
LOKR_API int lokr_blas_describe(char *buf, size_t len);

/* The planner's decision for a module, one line, for `lokr inspect`:
 * evaluation order, expanded factors, multiply-adds per row vs the base
 * layer, and the merge-and-cache threshold.  Returns 0, or LOKR_EINVAL when
 * the module has no plan.  Truncates to len - 1 characters. */
LOKR_API int lokr_plan_describe(const lokr_module *m, char *buf, size_t len);

/* -------------------------------------------------------------- extraction */

/* A Kronecker split of a layer: W1 (m1 x n1), W2 (m2 x n2 [x kernel]),
 * out = m1*m2, in = n1*n2 input channels (the kernel stays in W2). */
typedef struct lokr_kron_split {
	int64_t m1, n1, m2, n2;
} lokr_kron_split;

/* LyCORIS's split (lycoris-format.md 3.4-3.5): (out_l, out_k) =
 * lokr_factorize(out, F), (in_m, in_n) = lokr_factorize(in, F); W1 =
 * out_l x in_m, W2 = out_k x in_n; `unbalanced` swaps the output pair. */
LOKR_API int lokr_extract_split(int64_t out, int64_t in, int64_t factor, int unbalanced,
                                lokr_kron_split *s);

/* Minimum side of the rearranged matrix up to which the leading singular
 * pair comes from a Gram matrix + LAPACK dsyevr; above it, from a block
 * subspace iteration on BLAS. */
#define LOKR_EXTRACT_GRAM_MAX 4096

enum { LOKR_EXTRACT_AUTO = 0, LOKR_EXTRACT_GRAM, LOKR_EXTRACT_ITERATE };

typedef struct lokr_extract_opts {
	int64_t rank;       /* 0: both factors full; r > 0: W2 as (m2 x r)(r x n2*kk) when
	                     * that stores fewer parameters than full W2 */
	int decompose_both; /* with rank: W1 as (m1 x r)(r x n1) under the same rule */
	int refine;         /* alternating least-squares sweeps after truncation; <0: default */
	int method;         /* LOKR_EXTRACT_AUTO / _GRAM / _ITERATE (tests) */
} lokr_extract_opts;

/* Result of lokr_extract_kron: dW ~ W1 (x) W2 with scale 1.  Exactly one of
 * w1 / (w1_a, w1_b) and one of w2 / (w2_a, w2_b) has data. */
typedef struct lokr_kron_fit {
	lokr_kron_split split;
	int64_t kk;
	int64_t rank; /* rank of the low-rank factors; 0 if both are full */
	int w1_lowrank, w2_lowrank;
	lokr_mat w1, w1_a, w1_b; /* (m1 x n1) | (m1 x r), (r x n1) */
	lokr_mat w2, w2_a, w2_b; /* (m2 x n2*kk) | (m2 x r), (r x n2*kk) */
	double norm;             /* |dW|_F */
	double sigma1;           /* leading singular value of the rearranged dW */
	double err_nkp;          /* sqrt(1 - sigma1^2/|dW|^2): error of the full NKP */
	double resid;            /* |dW - W1 (x) W2|_F of the stored float factors, exact */
	double rel_err;          /* resid / norm (0 when dW = 0) */
	uint64_t params;         /* parameters stored (alpha not counted) */
	int sweeps;              /* subspace iterations used (0 for the Gram path) */
} lokr_kron_fit;

/* Nearest Kronecker product of dw (out x in*kk, row-major) for `split`,
 * optionally low-rank (opts may be NULL: full).  Fills *fit with new
 * matrices; free with lokr_extract_fit_free (also safe after a failure).
 * Thread-safe.  LOKR_EINVAL (split does not fit, non-finite dW), LOKR_ERANGE,
 * LOKR_ENOMEM (needs about 8*out*in*kk bytes of scratch). */
LOKR_API int lokr_extract_kron(const float *dw, int64_t out, int64_t in, int64_t kk,
                               const lokr_kron_split *split, const lokr_extract_opts *opts,
                               lokr_kron_fit *fit, lokr_error *err);
LOKR_API void lokr_extract_fit_free(lokr_kron_fit *fit);

/* Which factors a rank makes low-rank (the rule lokr_extract_kron uses). */
LOKR_API int lokr_extract_lowrank(const lokr_kron_split *s, int64_t kk, int64_t rank,
                                  int decompose_both, int *w1_lowrank, int *w2_lowrank);
/* Parameters stored for a split and rank (0 = full). */
LOKR_API uint64_t lokr_extract_params(const lokr_kron_split *s, int64_t kk, int64_t rank,
                                      int decompose_both);

/* Evaluation orders of (W1 (x) W2) x (lycoris-format.md 4.2). */
enum {
	LOKR_ORDER_W2_FIRST = 0,      /* order A: X W2^T, then W1 */
	LOKR_ORDER_W1_FIRST,          /* order B: W1 X, then W2^T */
	LOKR_ORDER_W2_FIRST_FACTORED, /* order A with W2 kept as w2_a w2_b */
	LOKR_ORDER_W1_FIRST_FACTORED, /* order B with W2 kept as w2_a w2_b */
	LOKR_ORDER_SANDWICH,          /* low-rank W2: X w2_b^T, then W1, then w2_a^T */
};
/* Multiply-adds per row (token, or im2col patch for conv) of the cheapest
 * order for a split and W2 rank (0 = full); *order (may be NULL) gets it. */
LOKR_API uint64_t lokr_extract_macs(const lokr_kron_split *s, int64_t kk, int64_t rank, int *order);
/* "W2-first", "W1-first", "W2-first(factored)", "W1-first(factored)",
 * "sandwich". */
LOKR_API const char *lokr_extract_order_name(int order);

#ifdef __cplusplus
}
#endif
#endif /* LOKR_H */
