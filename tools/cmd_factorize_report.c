/*
 * cmd_factorize_report.c - `lokr factorize-report`: how well would LoKr at
 * each factor choice, balanced or unbalanced, represent a fine-tune?
 *
 * For every changed layer (as in `lokr extract`) and each of the choices
 * factor -1, 4, 8, 16, balanced and unbalanced (lycoris-format.md 3.4-3.5),
 * it fits the nearest Kronecker product (lib/extract.c) at an equal
 * parameter budget per layer: both factors full if that fits, otherwise W2
 * at the largest rank that fits (W1 always full).  The budget is --params N
 * per layer, or the parameter count of the balanced full split at factor -1.
 * It prints parameters, the exact relative error and the multiply-adds per
 * row of the cheaper evaluation order (lycoris-format.md 4.2), per layer and
 * overall, as a table or as JSON (--json).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmds.h"
#include "progress.h"
#include "tuned.h"

#define CMD      "factorize-report"
#define NCHOICES 8

static const struct choice {
	int64_t factor;
	int unbalanced;
} choices[NCHOICES] = {{-1, 0}, {-1, 1}, {4, 0}, {4, 1}, {8, 0}, {8, 1}, {16, 0}, {16, 1}};

static const char usage_text[] =
    "usage: lokr factorize-report --base BASE --tuned TUNED [--params N] [--json]\n"
    "                             [--layers GLOB]... [--min-rel-change X]\n"
    "  --params N          parameter budget per layer (default: the balanced full\n"
    "                      split at factor -1 of that layer)\n"
    "  --json              JSON on stdout instead of tables\n"
    "  --layers GLOB       only layers matching (fnmatch, dotted names; repeatable)\n"
    "  --min-rel-change X  skip layers with |dW|/|W0| <= X (default 1e-6)\n";

static const char budget_rule[] =
    "both factors full if that fits the budget, else W2 at rank r = floor((budget - m1*n1) / "
    "(m2 + n2*kk)), at least 1 (marked over budget when even r = 1 does not fit); W1 always "
    "full";

struct result {
	lokr_kron_split split;
	int64_t rank; /* 0 = full W2 */
	int over;     /* exceeds the budget */
	uint64_t params, macs;
	int order;
	double rel_err, resid;
};

struct layer_report {
	const lokr_layer *layer;
	double rel_change, norm;
	uint64_t budget;
	struct result r[NCHOICES];
};

struct report_args {
	struct tuned_args t;
	int64_t params; /* 0: default budget */
	int json;
};

static int parse(int argc, char **argv, struct report_args *a)
{
	static const char *const valued[] = {"--base", "--tuned", "--params", "--layers",
	                                     "--min-rel-change"};
	memset(a, 0, sizeof *a);
	if (tuned_args_init(&a->t, argc))
		return 1;
	int params_given = 0;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i], *flag = NULL, *v = NULL;
		int rc = 0;
		if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
			fputs(usage_text, stdout);
			return -1;
		} else if (!strcmp(arg, "--json")) {
			a->json = 1;
			continue;
		}
		if ((rc = tuned_args_next(CMD, argc, argv, &i, valued,
		                          sizeof valued / sizeof valued[0], &flag, &v)))
			return rc;
		if (!tuned_args_take(&a->t, CMD, flag, v, &rc)) { /* --params */
			rc = tuned_parse_i64(CMD, flag, v, &a->params);
			params_given = 1;
		}
		if (rc)
			return rc;
	}
	if (!a->t.base || !a->t.tuned) {
		fprintf(stderr, "lokr %s: --base and --tuned are required (see lokr %s --help)\n",
		        CMD, CMD);
		return 2;
	}
	if (params_given && a->params <= 0) {
		fprintf(stderr, "lokr %s: --params must be a positive integer\n", CMD);
		return 2;
	}
	if (a->t.min_rel < 0) {
		fprintf(stderr, "lokr %s: --min-rel-change must be >= 0\n", CMD);
		return 2;
	}
	return 0;
}

/* W2 rank for a split under `budget` (see budget_rule). */
static int64_t rank_for(const lokr_kron_split *s, int64_t kk, uint64_t budget, int *over)
{
	*over = 0;
	uint64_t c = (uint64_t)(s->n2 * kk);
	uint64_t w1 = (uint64_t)(s->m1 * s->n1), full = w1 + (uint64_t)s->m2 * c;
	if (full <= budget)
		return 0;
	uint64_t r = budget > w1 ? (budget - w1) / ((uint64_t)s->m2 + c) : 0;
	if (r < 1) {
		r = 1;
		/* rank 1 may still not pay off against full W2 (tiny W2); then
		 * the fit stores W2 full and counts those parameters */
	}
	int64_t rank = (int64_t)r;
	if (lokr_extract_params(s, kk, rank, 0) > budget)
		*over = 1;
	return rank;
}

static int layer_report_run(struct layer_report *lr, const float *dw, int64_t budget_opt,
                            const char **errmsg, lokr_error *err)
{
	const lokr_layer *l = lr->layer;
	lokr_kron_split ref;
	int rc = lokr_extract_split(l->out, l->in, -1, 0, &ref);
	if (rc) {
		*errmsg = "cannot factorize";
		return rc;
	}
	lr->budget = budget_opt > 0 ? (uint64_t)budget_opt : lokr_extract_params(&ref, l->kk, 0, 0);
	for (int c = 0; c < NCHOICES; c++) {
		struct result *r = &lr->r[c];
		if ((rc = lokr_extract_split(l->out, l->in, choices[c].factor,
		                             choices[c].unbalanced, &r->split))) {
			*errmsg = "cannot factorize";
			return rc;
		}
		r->rank = rank_for(&r->split, l->kk, lr->budget, &r->over);
		/* the same split and rank as an earlier choice: same fit */
		int same = -1;
		for (int p = 0; p < c && same < 0; p++)
			if (!memcmp(&lr->r[p].split, &r->split, sizeof r->split) &&
			    lr->r[p].rank == r->rank)
				same = p;
		if (same >= 0) {
			*r = lr->r[same];
			continue;
		}
		lokr_extract_opts o = {.rank = r->rank, .refine = -1};
		lokr_kron_fit fit;
		if ((rc = lokr_extract_kron(dw, l->out, l->in, l->kk, &r->split, &o, &fit, err)))
			return rc;
		r->rank = fit.rank; /* 0 when the rank did not pay off */
		r->params = fit.params;
		r->rel_err = fit.rel_err;
		r->resid = fit.resid;
		r->macs =
		    lokr_extract_macs(&r->split, l->kk, fit.w2_lowrank ? fit.rank : 0, &r->order);
		lokr_extract_fit_free(&fit);
	}
	return 0;
}

static void choice_name(char *buf, size_t len, int c)
{
	snprintf(buf, len, "%lld%s", (long long)choices[c].factor,
	         choices[c].unbalanced ? " unbal" : "");
}

static void print_layer(const struct layer_report *lr)
{
	char shape[64];
	tuned_fmt_shape(shape, sizeof shape, lr->layer);
	printf("\nlayer %s %s, |dW|/|W0| %.3e, budget %llu parameters\n", lr->layer->name, shape,
	       lr->rel_change, (unsigned long long)lr->budget);
	printf("  %-10s %-10s %-14s %5s %10s %12s %12s  %s\n", "factor", "W1", "W2", "rank",
	       "params", "rel_err", "MACs/row", "order");
	for (int c = 0; c < NCHOICES; c++) {
		const struct result *r = &lr->r[c];
		char name[32], w1[32], w2[48], rk[16];
		choice_name(name, sizeof name, c);
		tuned_fmt_dims(w1, sizeof w1, r->split.m1, r->split.n1, NULL);
		tuned_fmt_dims(w2, sizeof w2, r->split.m2, r->split.n2, lr->layer);
		if (r->rank)
			snprintf(rk, sizeof rk, "%lld", (long long)r->rank);
		else
			snprintf(rk, sizeof rk, "full");
		printf("  %-10s %-10s %-14s %5s %9llu%s %12.4e %12llu  %s\n", name, w1, w2, rk,
		       (unsigned long long)r->params, r->over ? "*" : " ", r->rel_err,
		       (unsigned long long)r->macs, lokr_extract_order_name(r->order));
	}
}

struct totals {
	uint64_t params, macs;
	double res2;
	size_t over;
};

static void sum_totals(const struct layer_report *lr, size_t n, struct totals *t, double *norm2)
{
	memset(t, 0, NCHOICES * sizeof *t);
	*norm2 = 0;
	for (size_t i = 0; i < n; i++) {
		*norm2 += lr[i].norm * lr[i].norm;
		for (int c = 0; c < NCHOICES; c++) {
			t[c].params += lr[i].r[c].params;
			t[c].macs += lr[i].r[c].macs;
			t[c].res2 += lr[i].r[c].resid * lr[i].r[c].resid;
			t[c].over += (size_t)lr[i].r[c].over;
		}
	}
}

static json_t *dims_json(int64_t a, int64_t b, const lokr_layer *l)
{
	json_t *d = json_array();
	json_array_append_new(d, json_integer(a));
	json_array_append_new(d, json_integer(b));
	for (int k = 2; l && k < l->ndim; k++)
		json_array_append_new(d, json_integer(l->shape[k]));
	return d;
}

static int print_json(const struct report_args *a, const struct layer_report *lr, size_t n)
{
	json_t *root = json_object();
	json_object_set_new(root, "base", json_string(a->t.base));
	json_object_set_new(root, "tuned", json_string(a->t.tuned));
	json_object_set_new(root, "budget",
	                    json_string(a->params ? "--params per layer"
	                                          : "balanced full split at factor -1, per layer"));
	json_object_set_new(root, "budget_rule", json_string(budget_rule));
	json_object_set_new(root, "macs",
	                    json_string("multiply-adds per row (token; conv: output pixel) of the "
	                                "cheaper evaluation order"));
	json_t *layers = json_array();
	for (size_t i = 0; i < n; i++) {
		const lokr_layer *l = lr[i].layer;
		json_t *jl = json_object();
		json_object_set_new(jl, "name", json_string(l->name));
		json_t *shape = json_array();
		for (int d = 0; d < l->ndim; d++)
			json_array_append_new(shape, json_integer(l->shape[d]));
		json_object_set_new(jl, "shape", shape);
		json_object_set_new(jl, "rel_change", json_real(lr[i].rel_change));
		json_object_set_new(jl, "budget", json_integer((json_int_t)lr[i].budget));
		json_t *rs = json_array();
		for (int c = 0; c < NCHOICES; c++) {
			const struct result *r = &lr[i].r[c];
			json_t *jr = json_object();
			json_object_set_new(jr, "factor", json_integer(choices[c].factor));
			json_object_set_new(jr, "unbalanced", json_boolean(choices[c].unbalanced));
			json_object_set_new(jr, "w1", dims_json(r->split.m1, r->split.n1, NULL));
			json_object_set_new(jr, "w2", dims_json(r->split.m2, r->split.n2, l));
			json_object_set_new(jr, "w2_rank", json_integer(r->rank));
			json_object_set_new(jr, "params", json_integer((json_int_t)r->params));
			json_object_set_new(jr, "over_budget", json_boolean(r->over));
			json_object_set_new(jr, "rel_err", json_real(r->rel_err));
			json_object_set_new(jr, "macs_per_row", json_integer((json_int_t)r->macs));
			json_object_set_new(jr, "order",
			                    json_string(lokr_extract_order_name(r->order)));
			json_array_append_new(rs, jr);
		}
		json_object_set_new(jl, "choices", rs);
		json_array_append_new(layers, jl);
	}
	json_object_set_new(root, "layers", layers);
	struct totals t[NCHOICES];
	double norm2;
	sum_totals(lr, n, t, &norm2);
	json_t *ov = json_array();
	for (int c = 0; c < NCHOICES; c++) {
		json_t *jo = json_object();
		json_object_set_new(jo, "factor", json_integer(choices[c].factor));
		json_object_set_new(jo, "unbalanced", json_boolean(choices[c].unbalanced));
		json_object_set_new(jo, "params", json_integer((json_int_t)t[c].params));
		json_object_set_new(jo, "rel_err",
		                    json_real(norm2 > 0 ? sqrt(t[c].res2 / norm2) : 0.0));
		json_object_set_new(jo, "macs_per_row", json_integer((json_int_t)t[c].macs));
		json_object_set_new(jo, "layers_over_budget", json_integer((json_int_t)t[c].over));
		json_array_append_new(ov, jo);
	}
	json_object_set_new(root, "overall", ov);
	int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
	fputc('\n', stdout);
	json_decref(root);
	return rc ? 1 : 0;
}

static void print_tables(const struct report_args *a, const struct layer_report *lr, size_t n)
{
	printf("# lokr factorize-report: %s vs %s, %zu changed layer(s)\n", a->t.base, a->t.tuned,
	       n);
	if (a->params)
		printf("# budget: %lld parameters per layer (--params)\n", (long long)a->params);
	else
		printf("# budget: per layer, the parameters of the balanced full split at factor "
		       "-1\n");
	printf("# per choice: %s\n", budget_rule);
	printf(
	    "# rel_err = |dW - W1 (x) W2|_F / |dW|_F (exact); MACs/row = multiply-adds per row\n"
	    "# (token; conv: output pixel) of the cheaper evaluation order; '*' = over budget\n");
	for (size_t i = 0; i < n; i++)
		print_layer(&lr[i]);
	struct totals t[NCHOICES];
	double norm2;
	sum_totals(lr, n, t, &norm2);
	printf("\noverall (%zu layers; rel_err = sqrt(sum |residual|^2 / sum |dW|^2), MACs summed "
	       "over layers)\n",
	       n);
	printf("  %-10s %12s %12s %14s %12s\n", "factor", "params", "rel_err", "MACs/row",
	       "over budget");
	for (int c = 0; c < NCHOICES; c++) {
		char name[32];
		choice_name(name, sizeof name, c);
		printf("  %-10s %12llu %12.4e %14llu %12zu\n", name,
		       (unsigned long long)t[c].params, norm2 > 0 ? sqrt(t[c].res2 / norm2) : 0.0,
		       (unsigned long long)t[c].macs, t[c].over);
	}
}

int lokr_cmd_factorize_report(int argc, char **argv)
{
	struct report_args a;
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
	size_t nl = lokr_base_layer_count(tp.base), n = 0;
	uint64_t work = 0, done = 0;
	struct layer_report *lr = calloc(nl ? nl : 1, sizeof *lr);
	float *dw = NULL;
	if (!lr) {
		fprintf(stderr, "lokr %s: out of memory\n", CMD);
		rc = 1;
		goto out;
	}
	if ((rc = tuned_prepare(&tp, CMD, &a.t, &work, &dw)))
		goto out;
	struct progress pr;
	progress_init(&pr, "factorize-report", work);
	for (size_t i = 0; i < nl; i++) {
		const lokr_layer *l = lokr_base_layer_at(tp.base, i);
		if (!tuned_layer_selected(l->name, a.t.globs, a.t.nglob))
			continue;
		progress_update(&pr, done, l->name);
		struct layer_report *r = &lr[n];
		if (tuned_delta(&tp, CMD, i, dw, &r->rel_change, &r->norm)) {
			progress_end(&pr);
			rc = 1;
			goto out;
		}
		done += (uint64_t)(l->out * l->in * l->kk);
		if (r->rel_change <= a.t.min_rel)
			continue;
		r->layer = l;
		lokr_error err = {0};
		const char *what = NULL;
		int erc = layer_report_run(r, dw, a.params, &what, &err);
		if (erc) {
			progress_end(&pr);
			fprintf(stderr, "lokr %s: layer %s: %s\n", CMD, l->name,
			        err.msg[0] ? err.msg
			        : what     ? what
			                   : lokr_strerror(erc));
			rc = 1;
			goto out;
		}
		n++;
	}
	progress_end(&pr);
	if (n == 0) {
		fprintf(stderr, "lokr %s: no layer changed by more than %g (relative)\n", CMD,
		        a.t.min_rel);
		rc = 1;
		goto out;
	}
	if (a.json)
		rc = print_json(&a, lr, n);
	else
		print_tables(&a, lr, n);
out:
	free(lr);
	free(dw);
	tuned_close(&tp);
	tuned_args_free(&a.t);
	return rc;
}
