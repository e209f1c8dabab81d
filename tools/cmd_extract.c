/*
 * cmd_extract.c - `lokr extract`: a LoKr adapter from a fine-tuned model.
 *
 * For every base layer whose weight changed (|dW|/|W0| above
 * --min-rel-change), dW = tuned - base is replaced by its nearest Kronecker
 * product for LyCORIS's split at --factor (lib/extract.c), optionally with a
 * rank-R W2 (and W1), and written as a LyCORIS LoKr file that LyCORIS,
 * ComfyUI, `lokr merge` and lokrd read:
 *   lycoris_<layer, '.' -> '_'>.lokr_w1        (m1, n1)
 *                             .lokr_w2        (m2, n2[, kernel...])  full W2
 *                             .lokr_w2_a/_b   (m2, r), (r, n2*kk)    low-rank W2 (2-D, also conv)
 *                             .lokr_w1_a/_b   (m1, r), (r, n1)       --decompose-both
 *                             .alpha          0-d F32
 * Scale: with a rank, alpha = rank, so s = alpha/rank = 1 and the factors
 * carry the magnitude; with both factors full, s = 1 whatever alpha says
 * (lycoris-format.md 3.7) and alpha = the network dim, as LyCORIS writes.
 * Metadata is kohya-style (ss_network_module, _dim, _alpha, _args).
 * Per layer it prints the exact relative error |dW - W1 (x) W2| / |dW|.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "progress.h"
#include "tuned.h"

#define CMD "extract"

static const char usage_text[] =
    "usage: lokr extract --base BASE --tuned TUNED -o OUT [--factor F] [--unbalanced]\n"
    "                    [--rank R [--decompose-both] | --full] [--layers GLOB]...\n"
    "                    [--min-rel-change X]\n"
    "  --factor F          LyCORIS factor (-1 = auto, default; or >= 1)\n"
    "  --unbalanced        swap the output pair (W1 large x small, W2 small x large)\n"
    "  --rank R            store W2 as (m2 x R)(R x n2*kk) where that is smaller\n"
    "  --decompose-both    with --rank, W1 too\n"
    "  --full              both factors full (the default)\n"
    "  --layers GLOB       only layers matching (fnmatch, dotted names; repeatable)\n"
    "  --min-rel-change X  skip layers with |dW|/|W0| <= X (default 1e-6)\n";

struct extracted {
	const lokr_layer *layer; /* borrowed from the base */
	char *module;            /* "lycoris_..." */
	lokr_kron_fit fit;
};

struct extract_args {
	struct tuned_args t;
	const char *out;
	int64_t factor, rank;
	int unbalanced, full, both;
};

static int parse(int argc, char **argv, struct extract_args *a)
{
	static const char *const valued[] = {"--base",   "--tuned", "-o",       "--output",
	                                     "--factor", "--rank",  "--layers", "--min-rel-change"};
	memset(a, 0, sizeof *a);
	a->factor = -1;
	if (tuned_args_init(&a->t, argc))
		return 1;
	int rank_given = 0;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *flag = NULL, *v = NULL;
		int rc = 0;
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			fputs(usage_text, stdout);
			return -1;
		} else if (!strcmp(arg, "--unbalanced")) {
			a->unbalanced = 1;
			continue;
		} else if (!strcmp(arg, "--full")) {
			a->full = 1;
			continue;
		} else if (!strcmp(arg, "--decompose-both")) {
			a->both = 1;
			continue;
		}
		if ((rc = tuned_args_next(CMD, argc, argv, &i, valued,
		                          sizeof valued / sizeof valued[0], &flag, &v)))
			return rc;
		if (tuned_args_take(&a->t, CMD, flag, v, &rc)) {
			/* --base, --tuned, --layers, --min-rel-change */
		} else if (!strcmp(flag, "-o") || !strcmp(flag, "--output")) {
			a->out = v;
		} else if (!strcmp(flag, "--factor")) {
			rc = tuned_parse_i64(CMD, flag, v, &a->factor);
		} else {
			rc = tuned_parse_i64(CMD, flag, v, &a->rank);
			rank_given = 1;
		}
		if (rc)
			return rc;
	}
	if (!a->t.base || !a->t.tuned || !a->out) {
		fprintf(stderr,
		        "lokr %s: --base, --tuned and -o are required (see lokr %s --help)\n", CMD,
		        CMD);
		return 2;
	}
	if (a->factor == 0 || a->factor < -1) {
		fprintf(stderr, "lokr %s: --factor must be -1 or a positive integer, not %lld\n",
		        CMD, (long long)a->factor);
		return 2;
	}
	if (rank_given && a->rank <= 0) {
		fprintf(stderr, "lokr %s: --rank must be a positive integer\n", CMD);
		return 2;
	}
	if (a->full && a->rank) {
		fprintf(stderr, "lokr %s: --rank and --full exclude each other\n", CMD);
		return 2;
	}
	if (a->both && !a->rank) {
		fprintf(stderr, "lokr %s: --decompose-both needs --rank\n", CMD);
		return 2;
	}
	if (a->t.min_rel < 0) {
		fprintf(stderr, "lokr %s: --min-rel-change must be >= 0\n", CMD);
		return 2;
	}
	return 0;
}

/* Append one tensor spec (F32, data already float). */
static void add_spec(lokr_st_spec *specs, size_t *n, char **names, const char *module,
                     const char *param, int ndim, const int64_t *shape, const void *data)
{
	size_t len = strlen(module) + strlen(param) + 2;
	char *name = malloc(len);
	if (!name) {
		fputs("lokr extract: out of memory\n", stderr);
		exit(1);
	}
	snprintf(name, len, "%s.%s", module, param);
	names[*n] = name;
	lokr_st_spec *s = &specs[*n];
	memset(s, 0, sizeof *s);
	s->name = name;
	s->dtype_name = "F32";
	s->ndim = ndim;
	for (int d = 0; d < ndim; d++)
		s->shape[d] = shape[d];
	s->data = data;
	(*n)++;
}

static int write_file(const struct extract_args *a, struct extracted *ex, size_t nex, int64_t dim)
{
	size_t cap = nex * 5, n = 0;
	lokr_st_spec *specs = calloc(cap ? cap : 1, sizeof *specs);
	char **names = calloc(cap ? cap : 1, sizeof *names);
	float *alphas = calloc(nex ? nex : 1, sizeof *alphas);
	if (!specs || !names || !alphas) {
		fputs("lokr extract: out of memory\n", stderr);
		exit(1);
	}
	for (size_t i = 0; i < nex; i++) {
		const lokr_kron_fit *f = &ex[i].fit;
		const lokr_layer *l = ex[i].layer;
		const char *m = ex[i].module;
		if (f->w1.data) {
			int64_t sh[2] = {f->w1.rows, f->w1.cols};
			add_spec(specs, &n, names, m, "lokr_w1", 2, sh, f->w1.data);
		} else {
			int64_t sa[2] = {f->w1_a.rows, f->w1_a.cols},
			        sb[2] = {f->w1_b.rows, f->w1_b.cols};
			add_spec(specs, &n, names, m, "lokr_w1_a", 2, sa, f->w1_a.data);
			add_spec(specs, &n, names, m, "lokr_w1_b", 2, sb, f->w1_b.data);
		}
		if (f->w2.data) {
			/* (m2, n2) linear; (m2, n2, kernel...) conv */
			int64_t sh[LOKR_MAX_DIMS] = {f->split.m2, f->split.n2};
			for (int d = 2; d < l->ndim; d++)
				sh[d] = l->shape[d];
			add_spec(specs, &n, names, m, "lokr_w2", l->ndim, sh, f->w2.data);
		} else {
			int64_t sa[2] = {f->w2_a.rows, f->w2_a.cols},
			        sb[2] = {f->w2_b.rows, f->w2_b.cols};
			add_spec(specs, &n, names, m, "lokr_w2_a", 2, sa, f->w2_a.data);
			add_spec(specs, &n, names, m, "lokr_w2_b", 2, sb, f->w2_b.data);
		}
		alphas[i] = (float)dim;
		add_spec(specs, &n, names, m, "alpha", 0, NULL, &alphas[i]);
	}

	char dimstr[32], factorstr[32];
	snprintf(dimstr, sizeof dimstr, "%lld", (long long)dim);
	snprintf(factorstr, sizeof factorstr, "%lld", (long long)a->factor);
	json_t *args = json_object();
	json_object_set_new(args, "algo", json_string("lokr"));
	json_object_set_new(args, "factor", json_string(factorstr));
	json_object_set_new(args, "unbalanced_factorization",
	                    json_string(a->unbalanced ? "True" : "False"));
	json_object_set_new(args, "decompose_both", json_string(a->both ? "True" : "False"));
	json_object_set_new(args, "full_matrix", json_string(a->rank ? "False" : "True"));
	json_object_set_new(args, "conv_dim", json_string(dimstr));
	json_object_set_new(args, "conv_alpha", json_string(dimstr));
	char *argstr = json_dumps(args, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(args);
	if (!argstr) {
		fputs("lokr extract: out of memory\n", stderr);
		exit(1);
	}
	char comment[1024];
	snprintf(comment, sizeof comment,
	         "lokr extract: nearest Kronecker product of (tuned - base), %s",
	         a->rank ? "low-rank W2" : "full factors");
	const char *keys[] = {"ss_network_module", "ss_network_dim", "ss_network_alpha",
	                      "ss_network_args", "ss_training_comment"};
	const char *vals[] = {"lycoris.kohya", dimstr, dimstr, argstr, comment};
	lokr_error err = {0};
	int rc =
	    lokr_st_write_file(a->out, specs, n, keys, vals, sizeof keys / sizeof keys[0], &err);
	if (rc)
		fprintf(stderr, "lokr %s: writing %s: %s\n", CMD, a->out, err.msg);
	free(argstr);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(specs);
	free(alphas);
	return rc ? 1 : 0;
}

int lokr_cmd_extract(int argc, char **argv)
{
	struct extract_args a;
	int rc = parse(argc, argv, &a);
	if (rc) {
		tuned_args_free(&a.t);
		return rc < 0 ? 0 : rc;
	}
	struct tuned_pair tp;
	if (tuned_open(&tp, CMD, a.t.base, a.t.tuned)) {
		tuned_args_free(&a.t);
		return 1;
	}
	size_t nl = lokr_base_layer_count(tp.base);
	struct extracted *ex = calloc(nl, sizeof *ex);
	size_t nex = 0, nunchanged = 0;
	uint64_t work = 0, done = 0, full_params = 0, params = 0;
	float *dw = NULL;
	if (!ex) {
		fprintf(stderr, "lokr %s: out of memory\n", CMD);
		rc = 1;
		goto out;
	}
	if ((rc = tuned_prepare(&tp, CMD, &a.t, &work, &dw)))
		goto out;

	printf("# lokr extract: factor %lld%s, %s\n", (long long)a.factor,
	       a.unbalanced ? " unbalanced" : "",
	       a.rank ? (a.both ? "W1 and W2 low-rank where smaller" : "W2 low-rank where smaller")
	              : "full factors");
	printf("%-40s %-18s %-10s %-14s %5s %10s %12s\n", "layer", "shape", "W1", "W2", "rank",
	       "params", "rel_err");
	struct progress pr;
	progress_init(&pr, "extract", work);
	double res2 = 0, norm2 = 0;
	for (size_t i = 0; i < nl; i++) {
		const lokr_layer *l = lokr_base_layer_at(tp.base, i);
		if (!tuned_layer_selected(l->name, a.t.globs, a.t.nglob))
			continue;
		progress_update(&pr, done, l->name);
		double relc, dn;
		if (tuned_delta(&tp, CMD, i, dw, &relc, &dn)) {
			progress_end(&pr);
			rc = 1;
			goto out;
		}
		done += (uint64_t)(l->out * l->in * l->kk);
		if (relc <= a.t.min_rel) {
			nunchanged++;
			continue;
		}
		struct extracted *e = &ex[nex];
		e->layer = l;
		e->module = tuned_module_name(l->name);
		if (lokr_base_map_module(tp.base, e->module) != (int64_t)i) {
			progress_end(&pr);
			fprintf(stderr,
			        "lokr %s: layer %s: module name %s is ambiguous in the base\n", CMD,
			        l->name, e->module);
			free(e->module);
			rc = 1;
			goto out;
		}
		lokr_kron_split s;
		lokr_extract_opts o = {.rank = a.rank, .decompose_both = a.both, .refine = -1};
		lokr_error err = {0};
		int erc = lokr_extract_split(l->out, l->in, a.factor, a.unbalanced, &s);
		if (!erc)
			erc = lokr_extract_kron(dw, l->out, l->in, l->kk, &s, &o, &e->fit, &err);
		if (erc) {
			progress_end(&pr);
			fprintf(stderr, "lokr %s: layer %s: %s\n", CMD, l->name,
			        err.msg[0] ? err.msg : lokr_strerror(erc));
			free(e->module);
			rc = 1;
			goto out;
		}
		nex++;
		res2 += e->fit.resid * e->fit.resid;
		norm2 += e->fit.norm * e->fit.norm;
		params += e->fit.params;
		full_params += (uint64_t)(l->out * l->in * l->kk);
		char shape[64], w1[32], w2[48], rk[16];
		tuned_fmt_shape(shape, sizeof shape, l);
		tuned_fmt_dims(w1, sizeof w1, s.m1, s.n1, NULL);
		tuned_fmt_dims(w2, sizeof w2, s.m2, s.n2, l);
		if (e->fit.rank)
			snprintf(rk, sizeof rk, "%lld", (long long)e->fit.rank);
		else
			snprintf(rk, sizeof rk, "full");
		progress_clear(&pr);
		printf("%-40s %-18s %-10s %-14s %5s %10llu %12.6e\n", l->name, shape, w1, w2, rk,
		       (unsigned long long)e->fit.params, e->fit.rel_err);
		fflush(stdout);
	}
	progress_end(&pr);
	if (nex == 0) {
		fprintf(
		    stderr,
		    "lokr %s: no layer changed by more than %g (relative); nothing to extract\n",
		    CMD, a.t.min_rel);
		rc = 1;
		goto out;
	}
	/* The network dim written as alpha: the rank, or (both factors full) one
	 * large enough that LyCORIS itself would keep every factor full. */
	int64_t dim = a.rank;
	if (!dim)
		for (size_t i = 0; i < nex; i++) {
			const lokr_kron_split *s = &ex[i].fit.split;
			int64_t m = s->m1;
			m = s->n1 > m ? s->n1 : m;
			m = s->m2 > m ? s->m2 : m;
			m = s->n2 > m ? s->n2 : m;
			dim = m > dim ? m : dim;
		}
	rc = write_file(&a, ex, nex, dim);
	if (!rc)
		printf("# %zu layer(s) extracted, %zu unchanged skipped; %llu parameters "
		       "(%.3g%% of the dense deltas); overall rel_err %.6e; wrote %s\n",
		       nex, nunchanged, (unsigned long long)params,
		       full_params ? 100.0 * (double)params / (double)full_params : 0.0,
		       norm2 > 0 ? sqrt(res2 / norm2) : 0.0, a.out);
out:
	for (size_t i = 0; i < nex; i++) {
		free(ex[i].module);
		lokr_extract_fit_free(&ex[i].fit);
	}
	free(ex);
	free(dw);
	tuned_close(&tp);
	tuned_args_free(&a.t);
	return rc;
}
