/*
 * adapter.c - the adapter model: turns an open safetensors file into a
 * validated lokr_adapter against a base model.
 *
 * Loading runs in passes so that a bad file fails before any large decode:
 *   1. group the keys by module (text before the first '.'), detect the
 *      algorithm of each module from its keys (lycoris-format.md 2.1), map it
 *      to a base layer, and check every shape, rank and the alpha
 *      (lycoris-format.md 3.6, 3.7, 5.2, 6, 9.23) from the header alone;
 *   2. decode every factor straight from the mapping into 64-byte aligned
 *      float32 buffers, rejecting NaN/Inf;
 *   3. compute the DoRA vectors (lib/dora.c) and the per-module plan
 *      (lib/plan.c).
 * Everything is all or nothing: any failure frees what was built and the
 * caller gets a message naming the module, the tensor and both shapes
 * (stored vs. layer).  Nothing here trusts metadata (lokrd's decision 5).
 */
#include <math.h>
#include <stdarg.h>
#include <string.h>

#include "adapter_shapes.h"

static const char *const param_names[P_COUNT] = {
    "alpha",     "dora_scale", "lokr_w1", "lokr_w1_a",      "lokr_w1_b",        "lokr_w2",
    "lokr_w2_a", "lokr_w2_b",  "lokr_t2", "hada_w1_a",      "hada_w1_b",        "hada_w2_a",
    "hada_w2_b", "hada_t1",    "hada_t2", "lora_up.weight", "lora_down.weight", "lora_mid.weight",
};

/* Keys of LyCORIS algorithms lokrd does not implement, with a name for the
 * message.  A module holding one of these is LOKR_EUNSUPPORTED, not an
 * unknown key. */
static const struct {
	const char *key;
	const char *algo;
} unsupported_keys[] = {
    {"diff", "full (diff)"},
    {"diff_b", "full (diff)"},
    {"w_norm", "norm"},
    {"b_norm", "norm"},
    {"oft_blocks", "OFT/BOFT"},
    {"rescale", "OFT/BOFT"},
    {"a1.weight", "GLoRA"},
    {"a2.weight", "GLoRA"},
    {"b1.weight", "GLoRA"},
    {"b2.weight", "GLoRA"},
    {"bm.weight", "GLoRA"},
    {"on_input", "(IA)^3"},
    {"weight", "(IA)^3"},
    {"lokr_t1", "LoKr lokr_t1 (never written by LyCORIS)"},
    {"bias_indices", "sparse bias"},
    {"bias_values", "sparse bias"},
    {"bias_size", "sparse bias"},
};

/* Resume-only keys of newer LyCORIS (lycoris-format.md 3.9): ignored. */
#define TRAINING_PREFIX "_lycoris_lokr_training_"

/* ------------------------------------------------------------ messages */

const char *lokr__adapter_shp(struct shp *b, const lokr_st_tensor *t)
{
	if (!t)
		return "(absent)";
	return lokr__shape_str(b->s, sizeof b->s, t->shape, t->ndim);
}

/* Fail with "module NAME (layer L (shape)): <message>". */
int lokr__adapter_bad(const struct ctx *c, int code, const char *fmt, ...)
{
	char what[LOKR_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	if (c->layer) {
		struct shp l;
		lokr__shape_str(l.s, sizeof l.s, c->layer->shape, c->layer->ndim);
		return lokr__fail(c->err, code, "module %s (layer %s %s): %s", c->m->name,
		                  c->layer->name, l.s, what);
	}
	return lokr__fail(c->err, code, "module %s: %s", c->m->name, what);
}

static char *try_strndup(const char *s, size_t n)
{
	char *p = lokr__try_malloc(n + 1);
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
	}
	return p;
}

int lokr__adapter_warn(lokr_adapter *a, lokr_error *err, const char *fmt, ...)
{
	char buf[LOKR_ERROR_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	char **grown = lokr__try_malloc((a->nwarnings + 1) * sizeof *grown);
	char *copy = try_strndup(buf, strlen(buf));
	if (!grown || !copy) {
		free(grown);
		free(copy);
		return lokr__fail(err, LOKR_ENOMEM, "out of memory recording a warning");
	}
	if (a->nwarnings)
		memcpy(grown, a->warnings, a->nwarnings * sizeof *grown);
	free(a->warnings);
	a->warnings = grown;
	a->warnings[a->nwarnings++] = copy;
	return 0;
}

/* -------------------------------------------------------------- passes */

enum algo_guess { GUESS_NONE = -1 };

static int param_index(const char *p)
{
	for (int i = 0; i < P_COUNT; i++)
		if (!strcmp(p, param_names[i]))
			return i;
	return -1;
}

static const char *unsupported_algo(const char *p)
{
	for (size_t i = 0; i < sizeof unsupported_keys / sizeof unsupported_keys[0]; i++)
		if (!strcmp(p, unsupported_keys[i].key))
			return unsupported_keys[i].algo;
	return NULL;
}

static int allowed(lokr_algo algo, int p)
{
	if (p == P_ALPHA || p == P_DORA)
		return 1;
	switch (algo) {
	case LOKR_ALGO_LOKR:
		return p >= P_LOKR_W1 && p <= P_LOKR_T2;
	case LOKR_ALGO_LOHA:
		return p >= P_HADA_W1_A && p <= P_HADA_T2;
	case LOKR_ALGO_LORA:
		return p >= P_LORA_UP && p <= P_LORA_MID;
	}
	return 0;
}

static int is_training_key(const char *key)
{
	const char *p = strchr(key, '.');
	p = p ? p + 1 : key;
	return !strncmp(key, TRAINING_PREFIX, strlen(TRAINING_PREFIX)) ||
	       !strncmp(p, TRAINING_PREFIX, strlen(TRAINING_PREFIX));
}

/* The param part of tensor `t` if it belongs to module `m` and is not an
 * ignored training key, else NULL. */
static const char *param_of(const lokr_module *m, const lokr_st_tensor *t)
{
	size_t len = strlen(m->name);
	if (strncmp(t->name, m->name, len) || t->name[len] != '.' || is_training_key(t->name))
		return NULL;
	return t->name + len + 1;
}

/* Pass 1 for one module: keys, algorithm, layer, shapes, alpha. */
static int module_parse(const lokr_base *base, const lokr_st_file *f, lokr_adapter *a,
                        lokr_module *m, struct slots *s, lokr_error *err)
{
	struct ctx c = {base, m, NULL, err};
	const char *unsup = NULL, *unsup_key = NULL, *unknown = NULL;

	for (size_t i = s->first; i < s->last; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		const char *p = param_of(m, t);
		if (!p)
			continue;
		int idx = param_index(p);
		if (idx >= 0) {
			s->p[idx] = t;
		} else if (!unsup && (unsup = unsupported_algo(p))) {
			unsup_key = t->name;
		} else if (!unknown) {
			unknown = t->name;
		}
	}

	/* Detection in LyCORIS's order (get_module): LoCon, LoHa, then LoKr on
	 * any of its keys. */
	int algo;
	if (s->p[P_LORA_UP] || s->p[P_LORA_DOWN] || s->p[P_LORA_MID])
		algo = LOKR_ALGO_LORA;
	else if (s->p[P_HADA_W1_A] || s->p[P_HADA_W1_B] || s->p[P_HADA_W2_A] || s->p[P_HADA_W2_B] ||
	         s->p[P_HADA_T1] || s->p[P_HADA_T2])
		algo = LOKR_ALGO_LOHA;
	else if (s->p[P_LOKR_W1] || s->p[P_LOKR_W1_A] || s->p[P_LOKR_W1_B] || s->p[P_LOKR_W2] ||
	         s->p[P_LOKR_W2_A] || s->p[P_LOKR_W2_B] || s->p[P_LOKR_T2])
		algo = LOKR_ALGO_LOKR;
	else
		algo = GUESS_NONE;

	if (unsup)
		return lokr__adapter_bad(&c, LOKR_EUNSUPPORTED,
		                         "algorithm %s is not supported (key %s)", unsup,
		                         unsup_key);
	if (unknown)
		return lokr__adapter_bad(&c, LOKR_EADAPTER, "unknown key %s", unknown);
	if (algo == GUESS_NONE)
		return lokr__adapter_bad(&c, LOKR_EADAPTER,
		                         "no adapter weights (only alpha/dora_scale)");
	m->algo = (lokr_algo)algo;
	for (int p = 0; p < P_COUNT; p++)
		if (s->p[p] && !allowed(m->algo, p))
			return lokr__adapter_bad(&c, LOKR_EADAPTER,
			                         "key %s does not belong to a %s module",
			                         s->p[p]->name, lokr_algo_name(m->algo));
	if (algo == LOKR_ALGO_LORA && !s->p[P_LORA_UP])
		return lokr__adapter_bad(&c, LOKR_EADAPTER,
		                         "lora_down.weight without lora_up.weight");
	if (algo == LOKR_ALGO_LOHA && !s->p[P_HADA_W1_A])
		return lokr__adapter_bad(&c, LOKR_EADAPTER, "hada_* keys without hada_w1_a");

	int64_t li = lokr_base_map_module(base, m->name);
	if (li == -2)
		return lokr__adapter_bad(
		    &c, LOKR_EMISMATCH,
		    "module name maps to two base layers (their names collide)");
	if (li < 0)
		return lokr__adapter_bad(&c, LOKR_EMISMATCH,
		                         "module name maps to no layer of the base");
	m->layer = (size_t)li;
	c.layer = s->layer = lokr_base_layer_at(base, m->layer);
	m->out = c.layer->out;
	m->in = c.layer->in;
	m->kk = c.layer->kk;

	/* Every stored tensor: decodable dtype, no zero-size factor. */
	for (int p = 0; p < P_COUNT; p++) {
		const lokr_st_tensor *t = s->p[p];
		struct shp b;
		if (!t)
			continue;
		if (!lokr__adapter_is_float_dtype(t->dtype))
			return lokr__adapter_bad(
			    &c, LOKR_EUNSUPPORTED,
			    "%s has dtype %s; only F32, F16, BF16 and F64 are supported",
			    param_names[p], t->dtype_name);
		if (t->nelem == 0)
			return lokr__adapter_bad(&c, LOKR_EADAPTER, "%s %s is empty",
			                         param_names[p], lokr__adapter_shp(&b, t));
	}

	int rc;
	switch (m->algo) {
	case LOKR_ALGO_LOKR:
		rc = lokr__adapter_parse_lokr(&c, m, s);
		break;
	case LOKR_ALGO_LOHA:
		rc = lokr__adapter_parse_loha(&c, m, s);
		break;
	default:
		rc = lokr__adapter_parse_lora(&c, m, s);
		break;
	}
	if (rc)
		return rc;
	if (m->algo != LOKR_ALGO_LOKR && m->rank <= 0)
		return lokr__adapter_bad(&c, LOKR_EADAPTER, "rank 0");
	if (s->p[P_DORA] && (rc = lokr__adapter_dora_axis(&c, m, s->p[P_DORA])))
		return rc;
	return lokr__adapter_module_scale(&c, a, m, s);
}

/* Nonzero if any of n floats is NaN or Inf (exponent bits all ones).  Adding
 * 2^23 to the masked exponent carries into bit 31 exactly for those, so the
 * test is an and/add/or reduction that the compiler vectorizes. */
typedef uint32_t v8u __attribute__((vector_size(32)));

static int any_nonfinite(const float *p, size_t n)
{
	const v8u mask = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u,
	                  0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
	const v8u one = {0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u,
	                 0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u};
	v8u acc = {0};
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		v8u u;
		memcpy(&u, p + i, sizeof u);
		acc |= (u & mask) + one;
	}
	uint32_t r = 0;
	for (int k = 0; k < 8; k++)
		r |= acc[k];
	for (; i < n; i++) {
		uint32_t u;
		memcpy(&u, p + i, sizeof u);
		r |= (u & 0x7f800000u) + 0x00800000u;
	}
	return (r & 0x80000000u) != 0;
}

/* Decode a factor into a new 64-byte aligned buffer, in chunks so that the
 * NaN/Inf check reads the output while it is still in cache. */
static int decode_tensor(const struct ctx *c, const lokr_st_tensor *t, float **out)
{
	enum { CHUNK = 16384 };
	uint64_t bytes;
	if (lokr__mul_u64(t->nelem, sizeof(float), &bytes) || bytes > SIZE_MAX)
		return lokr__adapter_bad(c, LOKR_ERANGE, "%s is too large", t->name);
	float *d = lokr__try_aligned((size_t)bytes);
	if (!d)
		return lokr__adapter_bad(c, LOKR_ENOMEM, "out of memory decoding %s (%llu bytes)",
		                         t->name, (unsigned long long)bytes);
	size_t n = (size_t)t->nelem, esize = lokr_dtype_size(t->dtype);
	for (size_t i = 0; i < n; i += CHUNK) {
		size_t k = n - i < CHUNK ? n - i : CHUNK;
		int rc = lokr_decode_f32(t->dtype, t->data + i * esize, k, d + i);
		if (rc) {
			free(d);
			return lokr__adapter_bad(c, rc, "%s: cannot decode dtype %s", t->name,
			                         t->dtype_name);
		}
		if (any_nonfinite(d + i, k)) {
			struct shp b;
			free(d);
			return lokr__adapter_bad(c, LOKR_EADAPTER, "%s %s contains NaN or Inf",
			                         t->name, lokr__adapter_shp(&b, t));
		}
	}
	*out = d;
	return 0;
}

/* Pass 2 for one module: decode every factor and the DoRA magnitude. */
static int module_decode(lokr_module *m, struct slots *s, uint64_t *bytes, lokr_error *err)
{
	struct ctx c = {NULL, m, s->layer, err};
	for (int i = 0; i < s->ndec; i++) {
		int rc = decode_tensor(&c, s->dec[i].t, &s->dec[i].mat->data);
		if (rc)
			return rc;
		*bytes += s->dec[i].t->nelem * sizeof(float);
	}
	if (s->p[P_DORA]) {
		int rc = decode_tensor(&c, s->p[P_DORA], &m->dora_scale);
		if (rc)
			return rc;
		*bytes += s->p[P_DORA]->nelem * sizeof(float);
	}
	return 0;
}

static int module_stored(const lokr_st_file *f, lokr_module *m, const struct slots *s,
                         uint64_t *params, lokr_error *err)
{
	size_t n = 0;
	for (size_t i = s->first; i < s->last; i++)
		if (param_of(m, lokr_st_at(f, i)))
			n++;
	m->stored = lokr__try_calloc(n, sizeof *m->stored);
	if (!m->stored)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory");
	for (size_t i = s->first; i < s->last; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		const char *p = param_of(m, t);
		if (!p)
			continue;
		lokr_stored *st = &m->stored[m->nstored++];
		st->key = try_strndup(p, strlen(p));
		st->dtype = try_strndup(t->dtype_name, strlen(t->dtype_name));
		if (!st->key || !st->dtype)
			return lokr__fail(err, LOKR_ENOMEM, "out of memory");
		st->ndim = t->ndim;
		memcpy(st->shape, t->shape, sizeof st->shape);
		if (strcmp(p, "alpha"))
			*params += t->nelem;
	}
	return 0;
}

static void module_clear(lokr_module *m)
{
	lokr_mat *mats[] = {&m->w1,        &m->w1_a,      &m->w1_b,      &m->w2,
	                    &m->w2_a,      &m->w2_b,      &m->t2,        &m->hada_w1_a,
	                    &m->hada_w1_b, &m->hada_w2_a, &m->hada_w2_b, &m->hada_t1,
	                    &m->hada_t2,   &m->up,        &m->down,      &m->mid};
	for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
		free(mats[i]->data);
	free(m->dora_scale);
	free(m->dora_g);
	if (m->plan)
		lokr__plan_free(m->plan);
	for (size_t i = 0; i < m->nstored; i++) {
		free(m->stored[i].key);
		free(m->stored[i].dtype);
	}
	free(m->stored);
	free(m->name);
}

void lokr_adapter_free(lokr_adapter *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nmodules; i++)
		module_clear(&a->modules[i]);
	free(a->modules);
	for (size_t i = 0; i < a->nwarnings; i++)
		free(a->warnings[i]);
	free(a->warnings);
	for (size_t i = 0; i < a->nmeta; i++) {
		free(a->meta_keys[i]);
		free(a->meta_values[i]);
	}
	free(a->meta_keys);
	free(a->meta_values);
	free(a);
}

/* Length of the module part of a key (text before the first '.'), or 0 when
 * the key has no module. */
static size_t module_len(const char *key)
{
	const char *dot = strchr(key, '.');
	return dot ? (size_t)(dot - key) : 0;
}

static int cmp_module_layer(const void *x, const void *y)
{
	const lokr_module *a = x, *b = y;
	return a->layer < b->layer ? -1 : a->layer > b->layer;
}

static int copy_metadata(const lokr_st_file *f, lokr_adapter *a, lokr_error *err)
{
	size_t n = lokr_st_metadata_count(f);
	if (!n)
		return 0;
	a->meta_keys = lokr__try_calloc(n, sizeof *a->meta_keys);
	a->meta_values = lokr__try_calloc(n, sizeof *a->meta_values);
	if (!a->meta_keys || !a->meta_values)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory copying metadata");
	for (size_t i = 0; i < n; i++) {
		const char *k, *v;
		if (lokr_st_metadata_at(f, i, &k, &v))
			return lokr__fail(err, LOKR_EFORMAT, "metadata entry %zu unreadable", i);
		a->meta_keys[i] = try_strndup(k, strlen(k));
		a->meta_values[i] = try_strndup(v, strlen(v));
		a->nmeta++;
		if (!a->meta_keys[i] || !a->meta_values[i])
			return lokr__fail(err, LOKR_ENOMEM, "out of memory copying metadata");
	}
	return 0;
}

/* Group the (name-sorted) tensors into modules: fills a->modules (names
 * only) and the slots' index ranges. */
static int group_modules(const lokr_st_file *f, lokr_adapter *a, struct slots **slots_out,
                         size_t *ntraining, lokr_error *err)
{
	size_t n = lokr_st_count(f), count = 0;
	const char *prev = NULL;
	size_t prev_len = 0;
	*ntraining = 0;
	for (size_t i = 0; i < n; i++) {
		const char *key = lokr_st_at(f, i)->name;
		size_t len = module_len(key);
		if (is_training_key(key)) {
			(*ntraining)++;
			continue;
		}
		if (len == 0)
			return lokr__fail(err, LOKR_EADAPTER,
			                  "key '%s' is not of the form <module>.<param>", key);
		if (!prev || len != prev_len || memcmp(key, prev, len)) {
			count++;
			prev = key;
			prev_len = len;
		}
	}
	if (count == 0)
		return lokr__fail(err, LOKR_EADAPTER, "no adapter modules in the file");

	a->modules = lokr__try_calloc(count, sizeof *a->modules);
	struct slots *s = lokr__try_calloc(count, sizeof *s);
	if (!a->modules || !s) {
		free(s);
		return lokr__fail(err, LOKR_ENOMEM, "out of memory (%zu modules)", count);
	}
	*slots_out = s;
	prev = NULL;
	for (size_t i = 0; i < n; i++) {
		const char *key = lokr_st_at(f, i)->name;
		size_t len = module_len(key);
		if (is_training_key(key))
			continue;
		if (!prev || len != prev_len || memcmp(key, prev, len)) {
			if (a->nmodules)
				s[a->nmodules - 1].last = i;
			lokr_module *m = &a->modules[a->nmodules];
			m->name = try_strndup(key, len);
			m->alpha = NAN;
			if (!m->name)
				return lokr__fail(err, LOKR_ENOMEM, "out of memory");
			s[a->nmodules].first = i;
			a->nmodules++;
			prev = key;
			prev_len = len;
		}
	}
	s[a->nmodules - 1].last = n;
	return 0;
}

static int adapter_build(const lokr_base *base, const lokr_st_file *f, lokr_adapter *a,
                         struct slots **slots_out, lokr_error *err)
{
	size_t ntraining;
	int rc = group_modules(f, a, slots_out, &ntraining, err);
	struct slots *s = *slots_out;
	if (rc)
		return rc;

	/* Pass 1: structure, shapes and alpha of every module. */
	for (size_t i = 0; i < a->nmodules; i++)
		if ((rc = module_parse(base, f, a, &a->modules[i], &s[i], err)))
			return rc;

	/* At most one module per layer. */
	for (size_t i = 0; i < a->nmodules; i++)
		for (size_t j = i + 1; j < a->nmodules; j++)
			if (a->modules[i].layer == a->modules[j].layer) {
				return lokr__fail(
				    err, LOKR_EADAPTER, "modules %s and %s both map to layer %s",
				    a->modules[i].name, a->modules[j].name, s[i].layer->name);
			}

	/* Pass 2: decode.  Pass 3: DoRA vectors and plans. */
	uint64_t bytes = 0, params = 0, full = 0;
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if ((rc = module_decode(m, &s[i], &bytes, err)))
			return rc;
		if ((rc = module_stored(f, m, &s[i], &params, err)))
			return rc;
		full += (uint64_t)m->out * (uint64_t)m->in * (uint64_t)m->kk;
	}
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if (m->dora_axis == LOKR_DORA_NONE)
			continue;
		int64_t len = m->dora_axis == LOKR_DORA_OUT ? m->out : m->in;
		m->dora_g = lokr__try_aligned((size_t)len * sizeof(float));
		if (!m->dora_g)
			return lokr__fail(err, LOKR_ENOMEM, "out of memory (DoRA vector of %s)",
			                  m->name);
		if ((rc = lokr__dora_vector(s[i].layer, m, m->dora_g, err)))
			return rc;
		bytes += (uint64_t)len * sizeof(float);
	}
	for (size_t i = 0; i < a->nmodules; i++) {
		lokr_module *m = &a->modules[i];
		if ((rc = lokr__plan_module(s[i].layer, m, err)))
			return rc;
		bytes += lokr__plan_bytes(m->plan);
	}
	if ((rc = copy_metadata(f, a, err)))
		return rc;
	if (ntraining &&
	    (rc = lokr__adapter_warn(a, err, "ignored %zu resume-only " TRAINING_PREFIX "* keys",
	                             ntraining)))
		return rc;

	qsort(a->modules, a->nmodules, sizeof *a->modules, cmp_module_layer);
	a->resident_bytes = bytes + sizeof *a + a->nmodules * sizeof *a->modules;
	a->param_count = params;
	a->full_param_count = full;
	return 0;
}

int lokr_adapter_load(const lokr_base *base, const lokr_st_file *file, lokr_adapter **out,
                      lokr_error *err)
{
	if (out)
		*out = NULL;
	if (!base || !file || !out)
		return lokr__fail(err, LOKR_EINVAL, "lokr_adapter_load: NULL argument");
	lokr_adapter *a = lokr__try_calloc(1, sizeof *a);
	if (!a)
		return lokr__fail(err, LOKR_ENOMEM, "out of memory");
	struct slots *s = NULL;
	int rc = adapter_build(base, file, a, &s, err);
	free(s);
	if (rc) {
		lokr_adapter_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

const lokr_module *lokr_adapter_module_for(const lokr_adapter *a, size_t layer)
{
	if (!a)
		return NULL;
	size_t lo = 0, hi = a->nmodules;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a->modules[mid].layer < layer)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < a->nmodules && a->modules[lo].layer == layer ? &a->modules[lo] : NULL;
}

const char *lokr_algo_name(lokr_algo algo)
{
	switch (algo) {
	case LOKR_ALGO_LOKR:
		return "lokr";
	case LOKR_ALGO_LOHA:
		return "loha";
	case LOKR_ALGO_LORA:
		return "lora";
	}
	return "unknown";
}
