/*
 * cmd_inspect.c - `lokr inspect ADAPTER [--base BASE]... [--json]`: what an
 * adapter file holds, per module: algorithm, stored tensors, the Kronecker
 * split, rank, Tucker, alpha and scale, DoRA axis, parameters against the
 * full delta, and warnings.
 *
 * With --base the adapter is loaded by the library exactly as the daemon
 * would (complete validation) and each module also shows its layer and the
 * planner's choice.  Without a base the layer dims are inferred from the
 * factor shapes alone (lycoris-format.md 3.6; a 2-D conv factor is read as
 * linear since its kernel is unknown) and nothing is validated beyond that.
 * A safetensors file that holds no adapter modules is listed tensor by tensor.
 */
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cmds.h"
#include "lokr.h"

static const char help[] =
    "usage: lokr inspect ADAPTER [--base BASE]... [--json]\n"
    "\n"
    "Describe a LyCORIS adapter (LoKr, LoHa, LoRA/LoCon, DoRA) per module.\n"
    "  --base BASE  validate against this base model (repeatable) and show each\n"
    "               module's layer and the planner's evaluation choice\n"
    "  --json       print one JSON document instead of text\n"
    "Without --base, layer dims are inferred from the factor shapes only.\n"
    "A safetensors file without adapter modules is listed tensor by tensor.\n";

#define CMD "inspect"

/* One module as shown, filled from a loaded lokr_module (--base) or from
 * the stored shapes alone. */
struct view {
	const char *name, *algo;
	const char *layer; /* NULL without a base */
	int layer_ndim;
	int64_t layer_shape[5];
	int64_t out, in, kk; /* kk 0: a conv whose kernel the shapes do not tell */
	int64_t m1, n1, m2, n2, rank;
	int tucker;
	const char *w1_mode, *w2_mode; /* LoKr: "full" / "low-rank" / "tucker" */
	int has_alpha, alpha_ignored;
	double alpha, scale;
	const char *dora; /* "output", "input" or NULL */
	uint64_t params, full;
	size_t nstored;
	lokr_stored *stored; /* borrowed from the module, or owned by the view */
	int owns_stored;
	char plan[400];
};

struct report {
	const char *path;
	size_t n;
	struct view *v;
	size_t nwarn;
	char **warn; /* owned strings */
	int warn_borrowed;
	size_t nmeta;
	const char **mk, **mv;
	uint64_t params, full;
};

static const char *shape_str(char *buf, size_t len, const int64_t *shape, int ndim)
{
	size_t at = 0;
	at += (size_t)snprintf(buf, len, "(");
	for (int i = 0; i < ndim && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%" PRId64, i ? ", " : "", shape[i]);
	if (at < len)
		snprintf(buf + at, len - at, ")");
	return buf;
}

/* ------------------------------------------------- shapes-only analysis */

static const char *const adapter_keys[] = {
    "lokr_w1", "lokr_w1_a", "lokr_w1_b",  "lokr_w2",        "lokr_w2_a",        "lokr_w2_b",
    "lokr_t2", "hada_w1_a", "hada_w1_b",  "hada_w2_a",      "hada_w2_b",        "hada_t1",
    "hada_t2", "alpha",     "dora_scale", "lora_up.weight", "lora_down.weight", "lora_mid.weight",
};

struct group {
	const char *name;
	size_t len;
	size_t first, last;
};

static const lokr_st_tensor *get(const lokr_st_file *f, const struct group *g, const char *param)
{
	for (size_t i = g->first; i < g->last; i++) {
		const char *n = lokr_st_at(f, i)->name;
		if (!strncmp(n, g->name, g->len) && n[g->len] == '.' &&
		    !strcmp(n + g->len + 1, param))
			return lokr_st_at(f, i);
	}
	return NULL;
}

/* Product of t's dims from `from` on; sets *known when t has kernel dims. */
static int64_t kernel_of(const lokr_st_tensor *t, int from, int *known)
{
	int64_t kk = 1;
	if (t->ndim > from)
		*known = 1;
	for (int i = from; i < t->ndim; i++)
		kk *= t->shape[i];
	return kk;
}

static int add_warn(struct report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int add_warn(struct report *r, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	char **w = realloc(r->warn, (r->nwarn + 1) * sizeof *w);
	if (!w)
		return -1;
	r->warn = w;
	r->warn[r->nwarn] = strdup(buf);
	if (!r->warn[r->nwarn])
		return -1;
	r->nwarn++;
	return 0;
}

#define NEED(t, what)                                                                              \
	do {                                                                                       \
		if (!(t)) {                                                                        \
			snprintf(msg, msglen, "module %.*s: %s", (int)g->len, g->name, what);      \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

/* Fill `v` for one module from its shapes.  -1 with msg on a module that
 * cannot be described (a missing factor, an unsupported algorithm). */
static int analyze_module(const lokr_st_file *f, const struct group *g, struct view *v,
                          struct report *r, char *msg, size_t msglen)
{
	const lokr_st_tensor *t;
	int64_t r1 = 0, r2 = 0;
	int known = 0; /* the kernel dims were stored */
	v->kk = 1;
	if (get(f, g, "lora_up.weight") || get(f, g, "lora_down.weight")) {
		const lokr_st_tensor *up = get(f, g, "lora_up.weight"),
		                     *down = get(f, g, "lora_down.weight"),
		                     *mid = get(f, g, "lora_mid.weight");
		NEED(up && down && up->ndim >= 2 && down->ndim >= 2,
		     "needs lora_up.weight and lora_down.weight, both at least 2-D");
		v->algo = "lora";
		v->out = up->shape[0];
		v->in = down->shape[1];
		v->rank = down->shape[0];
		v->tucker = mid != NULL;
		v->kk = mid ? kernel_of(mid, 2, &known) : kernel_of(down, 2, &known);
		if (!mid && down->ndim == 2)
			v->kk = 1;
	} else if (get(f, g, "hada_w1_a")) {
		const lokr_st_tensor *a = get(f, g, "hada_w1_a"), *b = get(f, g, "hada_w1_b"),
		                     *t1 = get(f, g, "hada_t1");
		NEED(b && a->ndim == 2 && b->ndim >= 2, "needs 2-D hada_w1_a and hada_w1_b");
		NEED(get(f, g, "hada_w2_a") && get(f, g, "hada_w2_b"),
		     "needs hada_w2_a and hada_w2_b");
		v->algo = "loha";
		v->tucker = t1 != NULL;
		v->rank = b->shape[0];
		v->out = t1 ? a->shape[1] : a->shape[0];
		v->in = b->shape[1];
		v->kk = t1 ? kernel_of(t1, 2, &known) : kernel_of(b, 2, &known);
	} else {
		const lokr_st_tensor *w1 = get(f, g, "lokr_w1"), *w1a = get(f, g, "lokr_w1_a"),
		                     *w1b = get(f, g, "lokr_w1_b"), *w2 = get(f, g, "lokr_w2"),
		                     *w2a = get(f, g, "lokr_w2_a"), *w2b = get(f, g, "lokr_w2_b"),
		                     *t2 = get(f, g, "lokr_t2");
		NEED(w1 || w1a || w2 || w2a, "no adapter weights");
		v->algo = "lokr";
		if (w1) {
			NEED(w1->ndim == 2, "lokr_w1 is not 2-D");
			v->m1 = w1->shape[0];
			v->n1 = w1->shape[1];
			v->w1_mode = "full";
		} else {
			NEED(w1a && w1b && w1a->ndim == 2 && w1b->ndim == 2,
			     "needs lokr_w1 or 2-D lokr_w1_a and lokr_w1_b");
			v->m1 = w1a->shape[0];
			v->n1 = w1b->shape[1];
			r1 = w1b->shape[0];
			v->w1_mode = "low-rank";
		}
		if (w2) {
			NEED(w2->ndim >= 2, "lokr_w2 is not at least 2-D");
			v->m2 = w2->shape[0];
			v->n2 = w2->shape[1];
			v->kk = kernel_of(w2, 2, &known);
			v->w2_mode = "full";
		} else {
			NEED(w2a && w2b && w2a->ndim == 2 && w2b->ndim >= 2,
			     "needs lokr_w2 or lokr_w2_a and lokr_w2_b");
			r2 = w2b->shape[0];
			if (t2) {
				v->m2 = w2a->shape[1];
				v->n2 = w2b->shape[1];
				v->kk = kernel_of(t2, 2, &known);
				v->w2_mode = "tucker";
				v->tucker = 1;
			} else {
				v->m2 = w2a->shape[0];
				v->n2 = w2b->shape[1];
				v->kk = kernel_of(w2b, 2, &known);
				v->w2_mode = "low-rank";
			}
		}
		v->out = v->m1 * v->m2;
		v->in = v->n1 * v->n2;
		v->rank = r1 ? r1 : r2;
		if (r1 && r2 && r1 != r2 &&
		    add_warn(r,
		             "%s: ranks disagree (W1 %" PRId64 ", W2 %" PRId64
		             "); the library rejects this",
		             v->name, r1, r2))
			return -2;
	}

	v->has_alpha = 0;
	v->alpha = NAN;
	if ((t = get(f, g, "alpha")) && t->nelem == 1 && t->dtype != LOKR_DTYPE_OTHER) {
		float a;
		if (!lokr_st_tensor_f32(t, &a, NULL)) {
			v->alpha = a;
			v->has_alpha = 1;
		}
	}
	if (v->rank == 0) {
		v->scale = 1;
		v->alpha_ignored = v->has_alpha;
		if (v->has_alpha && add_warn(r, "%s: alpha %g ignored (both factors full), scale 1",
		                             v->name, v->alpha))
			return -2;
	} else if (!v->has_alpha || v->alpha == 0) {
		v->scale = 1;
		if (add_warn(r, "%s: %s, scale 1", v->name,
		             v->has_alpha ? "alpha 0 read as alpha = rank" : "no alpha"))
			return -2;
	} else {
		v->scale = v->alpha / (double)v->rank;
		if (!isfinite(v->alpha) &&
		    add_warn(r, "%s: alpha %g is not finite; the library rejects this", v->name,
		             v->alpha))
			return -2;
	}
	if ((t = get(f, g, "dora_scale"))) {
		int input = t->ndim >= 2 && t->shape[0] == 1 && t->shape[1] == v->in && v->out != 1;
		v->dora = input ? "input" : "output";
	}
	v->full = (uint64_t)v->out * (uint64_t)v->in * (uint64_t)v->kk;
	/* 4-D tensors but 2-D factors: a conv stored flat, in counts in*kk */
	for (size_t i = g->first; i < g->last && v->kk == 1 && !known; i++)
		if (lokr_st_at(f, i)->ndim > 2)
			v->kk = 0;
	return 0;
}

static int is_adapter_key(const char *param)
{
	for (size_t i = 0; i < sizeof adapter_keys / sizeof adapter_keys[0]; i++)
		if (!strcmp(param, adapter_keys[i]) && strcmp(param, "alpha") &&
		    strcmp(param, "dora_scale"))
			return 1;
	return 0;
}

/* Whether any key of the file is a LoKr/LoHa/LoRA factor key. */
static int has_adapter_keys(const lokr_st_file *f)
{
	for (size_t i = 0; i < lokr_st_count(f); i++) {
		const char *dot = strchr(lokr_st_at(f, i)->name, '.');
		if (dot && is_adapter_key(dot + 1))
			return 1;
	}
	return 0;
}

/* Build the report from the file alone.  0, 1 (not an adapter), -1 error
 * (msg filled). */
static int analyze_file(const lokr_st_file *f, struct report *r, char *msg, size_t msglen)
{
	size_t n = lokr_st_count(f), ngroups = 0;
	struct group *g = calloc(n ? n : 1, sizeof *g);
	if (!g) {
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	if (!has_adapter_keys(f)) {
		free(g);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = lokr_st_at(f, i)->name, *dot = strchr(name, '.');
		if (!dot || strstr(name, "_lycoris_lokr_training_"))
			continue;
		size_t len = (size_t)(dot - name);
		if (ngroups && g[ngroups - 1].len == len &&
		    !memcmp(g[ngroups - 1].name, name, len)) {
			g[ngroups - 1].last = i + 1;
			continue;
		}
		g[ngroups++] = (struct group){name, len, i, i + 1};
	}
	r->v = calloc(ngroups, sizeof *r->v);
	if (!r->v) {
		free(g);
		snprintf(msg, msglen, "out of memory");
		return -1;
	}
	int rc = 0;
	for (size_t k = 0; k < ngroups && !rc; k++) {
		struct view *v = &r->v[r->n++];
		char *name = strndup(g[k].name, g[k].len);
		v->name = name;
		v->stored = calloc(g[k].last - g[k].first, sizeof *v->stored);
		v->owns_stored = 1;
		if (!name || !v->stored) {
			snprintf(msg, msglen, "out of memory");
			rc = -1;
			break;
		}
		for (size_t i = g[k].first; i < g[k].last; i++) {
			const lokr_st_tensor *t = lokr_st_at(f, i);
			lokr_stored *s = &v->stored[v->nstored++];
			s->key = (char *)t->name + g[k].len + 1;
			s->dtype = (char *)t->dtype_name;
			s->ndim = t->ndim;
			memcpy(s->shape, t->shape, sizeof s->shape);
			if (strcmp(s->key, "alpha"))
				v->params += t->nelem;
		}
		rc = analyze_module(f, &g[k], v, r, msg, msglen);
		if (rc == -2) {
			snprintf(msg, msglen, "out of memory");
			rc = -1;
		}
		r->params += v->params;
		r->full += v->full;
	}
	free(g);
	return rc;
}

/* ---------------------------------------------------- from the library */

static void view_from_module(const lokr_base *base, const lokr_module *m, struct view *v)
{
	const lokr_layer *l = lokr_base_layer_at(base, m->layer);
	v->name = m->name;
	v->algo = lokr_algo_name(m->algo);
	v->layer = l->name;
	v->layer_ndim = l->ndim;
	memcpy(v->layer_shape, l->shape, sizeof v->layer_shape);
	v->out = m->out;
	v->in = m->in;
	v->kk = m->kk;
	v->m1 = m->m1;
	v->n1 = m->n1;
	v->m2 = m->m2;
	v->n2 = m->n2;
	v->rank = m->rank;
	v->tucker = m->tucker;
	if (m->algo == LOKR_ALGO_LOKR) {
		v->w1_mode = m->w1.data ? "full" : "low-rank";
		v->w2_mode = m->tucker ? "tucker" : m->w2.data ? "full" : "low-rank";
	}
	v->has_alpha = m->has_alpha;
	v->alpha_ignored = m->alpha_ignored;
	v->alpha = m->alpha;
	v->scale = m->scale;
	v->dora = m->dora_axis == LOKR_DORA_OUT  ? "output"
	          : m->dora_axis == LOKR_DORA_IN ? "input"
	                                         : NULL;
	v->nstored = m->nstored;
	v->stored = m->stored;
	for (size_t i = 0; i < m->nstored; i++)
		if (strcmp(m->stored[i].key, "alpha")) {
			uint64_t ne = 1;
			for (int d = 0; d < m->stored[i].ndim; d++)
				ne *= (uint64_t)m->stored[i].shape[d];
			v->params += ne;
		}
	v->full = (uint64_t)m->out * (uint64_t)m->in * (uint64_t)m->kk;
	if (lokr_plan_describe(m, v->plan, sizeof v->plan))
		v->plan[0] = '\0';
}

/* ------------------------------------------------------------- output */

static void print_text(const struct report *r)
{
	char sb[128];
	printf("%s: %zu module%s, %" PRIu64 " parameters stored for %" PRIu64
	       " in the full deltas (%.2f%%)\n",
	       r->path, r->n, r->n == 1 ? "" : "s", r->params, r->full,
	       r->full ? 100.0 * (double)r->params / (double)r->full : 0.0);
	for (size_t i = 0; i < r->n; i++) {
		const struct view *v = &r->v[i];
		printf("\n%s  [%s]", v->name, v->algo);
		if (v->layer)
			printf("  layer %s %s", v->layer,
			       shape_str(sb, sizeof sb, v->layer_shape, v->layer_ndim));
		else if (v->kk)
			printf("  (inferred out %" PRId64 ", in %" PRId64 ", kernel size %" PRId64
			       ")",
			       v->out, v->in, v->kk);
		else
			printf("  (inferred out %" PRId64 ", in*kernel %" PRId64
			       "; conv kernel unknown without --base)",
			       v->out, v->in);
		printf("\n  stored:");
		for (size_t k = 0; k < v->nstored; k++)
			printf(" %s %s %s%s", v->stored[k].key, v->stored[k].dtype,
			       shape_str(sb, sizeof sb, v->stored[k].shape, v->stored[k].ndim),
			       k + 1 < v->nstored ? ";" : "");
		printf("\n");
		if (!strcmp(v->algo, "lokr")) {
			char kern[64] = "";
			size_t at = 0;
			if (v->layer)
				for (int d = 2; d < v->layer_ndim && at < sizeof kern; d++)
					at += (size_t)snprintf(kern + at, sizeof kern - at,
					                       "x%" PRId64, v->layer_shape[d]);
			else if (v->kk > 1)
				snprintf(kern, sizeof kern, "x(kernel %" PRId64 ")", v->kk);
			printf("  split: W1 %" PRId64 "x%" PRId64 " (%s) (x) W2 %" PRId64
			       "x%" PRId64 "%s (%s)%s\n",
			       v->m1, v->n1, v->w1_mode, v->m2, v->n2, kern, v->w2_mode,
			       v->kk ? "" : "  [W2 columns are n2*kernel]");
		}
		printf("  rank %" PRId64 "%s, tucker %s\n", v->rank,
		       v->rank ? "" : " (no low-rank factor)", v->tucker ? "yes" : "no");
		if (v->has_alpha)
			printf("  alpha %g%s, scale %g\n", v->alpha,
			       v->alpha_ignored ? " (ignored: both factors full)" : "", v->scale);
		else
			printf("  alpha none, scale %g\n", v->scale);
		printf("  dora: %s\n", v->dora ? v->dora : "none");
		printf("  parameters %" PRIu64 " / full delta %" PRIu64 " (%.2f%%)\n", v->params,
		       v->full, v->full ? 100.0 * (double)v->params / (double)v->full : 0.0);
		if (v->plan[0])
			printf("  plan: %s\n", v->plan);
	}
	if (r->nwarn) {
		printf("\nwarnings:\n");
		for (size_t i = 0; i < r->nwarn; i++)
			printf("  %s\n", r->warn[i]);
	}
	if (r->nmeta) {
		printf("\nmetadata:\n");
		for (size_t i = 0; i < r->nmeta; i++)
			printf("  %s: %s\n", r->mk[i], r->mv[i]);
	}
}

static json_t *json_shape(const int64_t *shape, int ndim)
{
	json_t *a = json_array();
	for (int d = 0; d < ndim; d++)
		json_array_append_new(a, json_integer(shape[d]));
	return a;
}

/* A number, or null / "inf" / "nan" where JSON has no number. */
static json_t *json_num(double x, int present)
{
	if (!present)
		return json_null();
	if (isnan(x))
		return json_string("nan");
	if (isinf(x))
		return json_string(x > 0 ? "inf" : "-inf");
	return json_real(x);
}

static int print_json(const struct report *r)
{
	json_t *doc = json_object(), *mods = json_array(), *w = json_array(), *md = json_object();
	json_object_set_new(doc, "file", json_string(r->path));
	json_object_set_new(doc, "adapter", json_true());
	json_object_set_new(doc, "params", json_integer((json_int_t)r->params));
	json_object_set_new(doc, "full_params", json_integer((json_int_t)r->full));
	for (size_t i = 0; i < r->n; i++) {
		const struct view *v = &r->v[i];
		json_t *m = json_object(), *st = json_array();
		json_object_set_new(m, "name", json_string(v->name));
		json_object_set_new(m, "algo", json_string(v->algo));
		json_object_set_new(m, "layer", v->layer ? json_string(v->layer) : json_null());
		json_object_set_new(m, "layer_shape",
		                    v->layer ? json_shape(v->layer_shape, v->layer_ndim)
		                             : json_null());
		json_object_set_new(m, "out", json_integer(v->out));
		json_object_set_new(m, "in", json_integer(v->in));
		json_object_set_new(m, "kernel", v->kk ? json_integer(v->kk) : json_null());
		for (size_t k = 0; k < v->nstored; k++) {
			json_t *s = json_object();
			json_object_set_new(s, "key", json_string(v->stored[k].key));
			json_object_set_new(s, "dtype", json_string(v->stored[k].dtype));
			json_object_set_new(s, "shape",
			                    json_shape(v->stored[k].shape, v->stored[k].ndim));
			json_array_append_new(st, s);
		}
		json_object_set_new(m, "stored", st);
		if (!strcmp(v->algo, "lokr")) {
			json_t *sp = json_object();
			json_object_set_new(
			    sp, "w1", json_pack("[I,I]", (json_int_t)v->m1, (json_int_t)v->n1));
			json_object_set_new(
			    sp, "w2", json_pack("[I,I]", (json_int_t)v->m2, (json_int_t)v->n2));
			json_object_set_new(sp, "w1_mode", json_string(v->w1_mode));
			json_object_set_new(sp, "w2_mode", json_string(v->w2_mode));
			json_object_set_new(m, "split", sp);
		}
		json_object_set_new(m, "rank", json_integer(v->rank));
		json_object_set_new(m, "tucker", json_boolean(v->tucker));
		json_object_set_new(m, "alpha", json_num(v->alpha, v->has_alpha));
		json_object_set_new(m, "alpha_ignored", json_boolean(v->alpha_ignored));
		json_object_set_new(m, "scale", json_num(v->scale, 1));
		json_object_set_new(m, "dora", v->dora ? json_string(v->dora) : json_null());
		json_object_set_new(m, "params", json_integer((json_int_t)v->params));
		json_object_set_new(m, "full_params", json_integer((json_int_t)v->full));
		json_object_set_new(m, "plan", v->plan[0] ? json_string(v->plan) : json_null());
		json_array_append_new(mods, m);
	}
	json_object_set_new(doc, "modules", mods);
	for (size_t i = 0; i < r->nwarn; i++)
		json_array_append_new(w, json_string(r->warn[i]));
	json_object_set_new(doc, "warnings", w);
	for (size_t i = 0; i < r->nmeta; i++)
		json_object_set_new(md, r->mk[i], json_string(r->mv[i]));
	json_object_set_new(doc, "metadata", md);
	int rc = json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
	putchar('\n');
	json_decref(doc);
	return rc;
}

/* A safetensors file that is not an adapter: list its tensors. */
static int list_tensors(const char *path, const lokr_st_file *f, int as_json)
{
	char sb[160];
	size_t n = lokr_st_count(f);
	if (as_json) {
		json_t *doc = json_object(), *ts = json_array(), *md = json_object();
		json_object_set_new(doc, "file", json_string(path));
		json_object_set_new(doc, "adapter", json_false());
		for (size_t i = 0; i < n; i++) {
			const lokr_st_tensor *t = lokr_st_at(f, i);
			json_array_append_new(ts, json_pack("{s:s,s:s,s:o}", "name", t->name,
			                                    "dtype", t->dtype_name, "shape",
			                                    json_shape(t->shape, t->ndim)));
		}
		json_object_set_new(doc, "tensors", ts);
		for (size_t i = 0; i < lokr_st_metadata_count(f); i++) {
			const char *k, *v;
			if (!lokr_st_metadata_at(f, i, &k, &v))
				json_object_set_new(md, k, json_string(v));
		}
		json_object_set_new(doc, "metadata", md);
		json_dumpf(doc, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
		putchar('\n');
		json_decref(doc);
		return 0;
	}
	printf("%s: not an adapter (no LoKr/LoHa/LoRA keys); %zu tensor%s\n", path, n,
	       n == 1 ? "" : "s");
	for (size_t i = 0; i < n; i++) {
		const lokr_st_tensor *t = lokr_st_at(f, i);
		printf("  %s %s %s\n", t->name, t->dtype_name,
		       shape_str(sb, sizeof sb, t->shape, t->ndim));
	}
	for (size_t i = 0; i < lokr_st_metadata_count(f); i++) {
		const char *k, *v;
		if (!lokr_st_metadata_at(f, i, &k, &v))
			printf("  metadata %s: %s\n", k, v);
	}
	return 0;
}

static void report_free(struct report *r)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->v[i].owns_stored) {
			free(r->v[i].stored);
			free((char *)r->v[i].name);
		}
	free(r->v);
	if (!r->warn_borrowed)
		for (size_t i = 0; i < r->nwarn; i++)
			free(r->warn[i]);
	if (!r->warn_borrowed)
		free(r->warn);
	free(r->mk);
	free(r->mv);
}

int lokr_cmd_inspect(int argc, char **argv)
{
	const char *path = NULL;
	const char **bases = calloc((size_t)argc, sizeof *bases);
	size_t nbases = 0;
	int as_json = 0, status = 1;
	lokr_st_file *f = NULL;
	lokr_base *base = NULL;
	lokr_adapter *a = NULL;
	struct report r = {0};
	lokr_error e = {0};
	char msg[LOKR_ERROR_MAX];

	if (!bases)
		return lokr_tool_fail(CMD, 1, "out of memory");
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i];
		if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
			fputs(help, stdout);
			free(bases);
			return 0;
		} else if (!strcmp(s, "--json")) {
			as_json = 1;
		} else if (!strcmp(s, "--base") && i + 1 < argc) {
			bases[nbases++] = argv[++i];
		} else if (!strncmp(s, "--base=", 7)) {
			bases[nbases++] = s + 7;
		} else if (s[0] == '-' && s[1]) {
			free(bases);
			return lokr_tool_fail(CMD, 2,
			                      "unknown or incomplete option '%s' (see --help)", s);
		} else if (!path) {
			path = s;
		} else {
			free(bases);
			return lokr_tool_fail(CMD, 2, "more than one ADAPTER given ('%s')", s);
		}
	}
	if (!path) {
		free(bases);
		return lokr_tool_fail(CMD, 2, "missing ADAPTER (see --help)");
	}
	r.path = path;

	if (lokr_st_open(path, &f, &e)) {
		lokr_tool_fail_file(CMD, 1, path, e.msg);
		goto out;
	}
	if (nbases) {
		if (lokr_base_load(bases, nbases, &base, &e)) {
			lokr_tool_fail_file(CMD, 1, bases[0], e.msg);
			goto out;
		}
		int rc = lokr_adapter_load(base, f, &a, &e);
		if (rc) {
			/* With --base the question is "does this adapter fit?": a
			 * file without adapter modules is invalid (DESIGN.md). */
			lokr_tool_fail_file(CMD, 1, path, e.msg);
			goto out;
		}
		r.v = calloc(a->nmodules ? a->nmodules : 1, sizeof *r.v);
		if (!r.v) {
			lokr_tool_fail(CMD, 1, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < a->nmodules; i++) {
			view_from_module(base, &a->modules[i], &r.v[r.n++]);
			r.params += r.v[i].params;
			r.full += r.v[i].full;
		}
		r.nwarn = a->nwarnings;
		r.warn = a->warnings;
		r.warn_borrowed = 1;
	} else {
		int rc = analyze_file(f, &r, msg, sizeof msg);
		if (rc == 1) {
			status = list_tensors(path, f, as_json);
			goto out;
		}
		if (rc) {
			lokr_tool_fail(CMD, 1, "%s: %s", path, msg);
			goto out;
		}
	}
	r.nmeta = lokr_st_metadata_count(f);
	r.mk = calloc(r.nmeta ? r.nmeta : 1, sizeof *r.mk);
	r.mv = calloc(r.nmeta ? r.nmeta : 1, sizeof *r.mv);
	if (!r.mk || !r.mv) {
		lokr_tool_fail(CMD, 1, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < r.nmeta; i++)
		lokr_st_metadata_at(f, i, &r.mk[i], &r.mv[i]);
	if (as_json)
		status = print_json(&r) ? 1 : 0;
	else {
		print_text(&r);
		status = 0;
	}
	if (fflush(stdout) || ferror(stdout))
		status = lokr_tool_fail(CMD, 1, "writing the output failed");
out:
	report_free(&r);
	lokr_adapter_free(a);
	lokr_base_free(base);
	lokr_st_close(f);
	free(bases);
	return status;
}
