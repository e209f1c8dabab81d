/*
 * adapter_shapes.h - internal interface between adapter.c (grouping keys,
 * decoding, the load passes) and adapter_shapes.c (what the stored shapes of
 * each algorithm mean: factorization, rank, Tucker, scale, DoRA axis).
 * Never installed.
 */
#ifndef LOKR_ADAPTER_SHAPES_H
#define LOKR_ADAPTER_SHAPES_H

#include "internal.h"

/* Parameter names we understand, per algorithm (lycoris-format.md 2.1). */
enum param {
	P_ALPHA,
	P_DORA,
	P_LOKR_W1,
	P_LOKR_W1_A,
	P_LOKR_W1_B,
	P_LOKR_W2,
	P_LOKR_W2_A,
	P_LOKR_W2_B,
	P_LOKR_T2,
	P_HADA_W1_A,
	P_HADA_W1_B,
	P_HADA_W2_A,
	P_HADA_W2_B,
	P_HADA_T1,
	P_HADA_T2,
	P_LORA_UP,
	P_LORA_DOWN,
	P_LORA_MID,
	P_COUNT
};

/* A factor tensor to decode in pass 2, and where it goes. */
struct decode {
	const lokr_st_tensor *t;
	lokr_mat *mat;
};

/* Per-module scratch between the passes. */
struct slots {
	size_t first, last; /* tensor index range [first, last) in the file */
	const lokr_st_tensor *p[P_COUNT];
	struct decode dec[8];
	int ndec;
	const lokr_layer *layer;
};

/* Context for messages: every one names the module and the layer shape. */
struct ctx {
	const lokr_base *base;
	const lokr_module *m;
	const lokr_layer *layer;
	lokr_error *err;
};

struct shp {
	char s[128];
};

/* "(a, b)" for a stored tensor, "(absent)" for NULL; returns b->s. */
LOKR_HIDDEN const char *lokr__adapter_shp(struct shp *b, const lokr_st_tensor *t);
/* Fail with "module NAME (layer L (shape)): <message>"; returns code. */
LOKR_HIDDEN int lokr__adapter_bad(const struct ctx *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Append a warning to the adapter; LOKR_ENOMEM on failure. */
LOKR_HIDDEN int lokr__adapter_warn(lokr_adapter *a, lokr_error *err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Pass 1, per algorithm: check the module's stored shapes against its layer
 * (lycoris-format.md 3.6, 6.1, 6.2, 9.23), fill m's dims, rank and Tucker
 * flag, and queue the factors to decode in s.  0 or a LOKR_E* code with the
 * message in c->err. */
LOKR_HIDDEN int lokr__adapter_parse_lokr(const struct ctx *c, lokr_module *m, struct slots *s);
LOKR_HIDDEN int lokr__adapter_parse_loha(const struct ctx *c, lokr_module *m, struct slots *s);
LOKR_HIDDEN int lokr__adapter_parse_lora(const struct ctx *c, lokr_module *m, struct slots *s);
/* DoRA axis from the dora_scale shape alone (lycoris-format.md 5.2). */
LOKR_HIDDEN int lokr__adapter_dora_axis(const struct ctx *c, lokr_module *m,
                                        const lokr_st_tensor *t);
/* The file scale s (lycoris-format.md 3.7, lokrd's decision 4); may add
 * warnings to a. */
LOKR_HIDDEN int lokr__adapter_module_scale(const struct ctx *c, lokr_adapter *a, lokr_module *m,
                                           const struct slots *s);
LOKR_HIDDEN int lokr__adapter_is_float_dtype(lokr_dtype dt);

#endif /* LOKR_ADAPTER_SHAPES_H */
