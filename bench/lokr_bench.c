/*
 * lokr_bench.c - lokrd's executor against OpenBLAS, the MAC and bandwidth
 * floors, and a merge-per-adapter baseline; one run prints a table and
 * writes JSON for bench/aggregate.py (which adds the PyTorch peer and forms
 * the headline ratios).  Usage:
 *
 *   lokr_bench [--quick] [--samples N] [--threads T] [--json FILE]
 *
 * Sections, all in one process so every ratio shares the machine state:
 *  stream  STREAM-like bandwidth (OpenBLAS sasum = read, saxpy = triad)
 *          on arrays far larger than L3, at the start and the end;
 *  base    lokr_exec with empty adapter sets vs raw sgemv/sgemm;
 *  grid    per shape x factor choice x W2 form x (rows, distinct adapters):
 *          raw OpenBLAS base time, lokrd time, ratio, MAC floor (all
 *          multiply-adds at the base GEMM's measured rate), bytes floor
 *          ((W0 + adapter bytes) / STREAM read bandwidth); for 8 rows x 8
 *          adapters also merge-per-adapter (W' = W0 + s kron, then sgemv);
 *  dora    LoKr+DoRA vs LoKr apply (vector cached), and computing the DoRA
 *          vector (lokr__dora_vector) vs one read of W0 at STREAM speed.
 *
 * Adapters are built directly as lokr_module structs (random factors) and
 * planned with lokr__plan_module, as lokr_adapter_load would.
 */
#include <cblas.h>
#include <stdarg.h>

#include "common.h"

#define LAYER_INDEX 0
#define NADAPT      64

typedef struct shape {
	const char *name;
	int64_t out, in;
} shape;

static const shape SHAPES[] = {
    {"320x320", 320, 320}, {"640x640", 640, 640},     {"1280x1280", 1280, 1280},
    {"320x768", 320, 768}, {"1280x2048", 1280, 2048}, {"10240x1280", 10240, 1280},
};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

typedef struct fchoice {
	const char *name;
	int64_t factor;
	int unbalanced;
} fchoice;

static const fchoice FACTORS[] = {
    {"f-1", -1, 0}, {"f16", 16, 0}, {"f8", 8, 0}, {"f4", 4, 0}, {"unb4", 4, 1},
};
#define NFACTORS (int)(sizeof FACTORS / sizeof FACTORS[0])

static const int W2FORMS[] = {8, 16, 0}; /* rank, 0 = full */
#define NW2 3

static const int BATCHES[][2] = {{1, 1}, {8, 1}, {8, 8}, {64, 1}, {64, 8}, {64, 64}};
#define NBATCH (int)(sizeof BATCHES / sizeof BATCHES[0])

/* options */
static int opt_quick, opt_samples = 5;
static double opt_min_sample = 0.004;
static FILE *json;
static int json_first_in_list;

static void jprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void jprintf(const char *fmt, ...)
{
	if (!json)
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(json, fmt, ap);
	va_end(ap);
}

static void jitem_begin(void)
{
	jprintf("%s\n    {", json_first_in_list ? "" : ",");
	json_first_in_list = 0;
}

/* ---------------------------------------------------------------- STREAM */

typedef struct stream_ctx {
	float *a, *b;
	size_t n;
	float sink;
} stream_ctx;

static void op_read(void *p)
{
	stream_ctx *s = p;
	s->sink += cblas_sasum((int)s->n, s->a, 1);
}

static void op_triad(void *p)
{
	stream_ctx *s = p;
	cblas_saxpy((int)s->n, 1e-7f, s->a, 1, s->b, 1);
}

/* GB/s of read (sasum) and triad-like (saxpy: 2 reads + 1 write). */
static void stream_measure(double *read_gbs, double *triad_gbs)
{
	stream_ctx s;
	s.n = opt_quick ? (size_t)24 << 20 : (size_t)48 << 20; /* 96 / 192 MiB per array */
	brng r = {7};
	s.a = bench_rand(&r, s.n, 1.0f);
	s.b = bench_rand(&r, s.n, 1.0f);
	s.sink = 0;
	double rd[16], tr[16];
	int ns = opt_quick ? 3 : 5;
	for (int i = 0; i < ns; i++) {
		rd[i] = 4.0 * (double)s.n / time_per_call(op_read, &s, 2) / 1e9;
		tr[i] = 12.0 * (double)s.n / time_per_call(op_triad, &s, 2) / 1e9;
	}
	*read_gbs = median(rd, ns);
	*triad_gbs = median(tr, ns);
	free(s.a);
	free(s.b);
	if (s.sink == 12345.0f)
		printf(" ");
}

/* ------------------------------------------------------------- adapters */

typedef struct badapter {
	lokr_adapter a;
	lokr_module m;
} badapter;

static void module_clear(lokr_module *m)
{
	free(m->w1.data);
	free(m->w2.data);
	free(m->w2_a.data);
	free(m->w2_b.data);
	free(m->dora_scale);
	free(m->dora_g);
	lokr__plan_free(m->plan);
	memset(m, 0, sizeof *m);
}

/* W1/W2 split of (out, in) for a factor choice (lycoris-format.md 3.4/3.5). */
static void split(const shape *sh, const fchoice *fc, int64_t *m1, int64_t *n1, int64_t *m2,
                  int64_t *n2)
{
	int64_t os, ol, is, il;
	lokr_factorize(sh->out, fc->factor, &os, &ol);
	lokr_factorize(sh->in, fc->factor, &is, &il);
	if (fc->unbalanced) {
		*m1 = ol, *m2 = os; /* W1 (out/4 x 4), W2 (4 x in/4) */
	} else {
		*m1 = os, *m2 = ol;
	}
	*n1 = is, *n2 = il;
}

/* LyCORIS stores W2 low-rank iff r < max(m2, n2) / 2 (lycoris-format.md 3.3). */
static int w2_lowrank_valid(int64_t m2, int64_t n2, int r)
{
	return r > 0 && 2 * (int64_t)r < (m2 > n2 ? m2 : n2);
}

static void build_adapter(badapter *b, const lokr_layer *l, int64_t m1, int64_t n1, int64_t m2,
                          int64_t n2, int r, brng *g)
{
	memset(b, 0, sizeof *b);
	lokr_module *m = &b->m;
	m->name = "lycoris_bench";
	m->layer = LAYER_INDEX;
	m->algo = LOKR_ALGO_LOKR;
	m->out = l->out, m->in = l->in, m->kk = 1;
	m->m1 = m1, m->n1 = n1, m->m2 = m2, m->n2 = n2;
	m->rank = r;
	m->scale = r ? 2.0f : 1.0f;
	float sc = 1.0f / sqrtf((float)(n1 * n2));
	m->w1.rows = m1, m->w1.cols = n1;
	m->w1.data = bench_rand(g, (size_t)(m1 * n1), 0.5f);
	if (r) {
		m->w2_a.rows = m2, m->w2_a.cols = r;
		m->w2_a.data = bench_rand(g, (size_t)(m2 * r), sc);
		m->w2_b.rows = r, m->w2_b.cols = n2;
		m->w2_b.data = bench_rand(g, (size_t)(r * n2), 0.5f);
	} else {
		m->w2.rows = m2, m->w2.cols = n2;
		m->w2.data = bench_rand(g, (size_t)(m2 * n2), sc);
	}
	lokr_error err = {0};
	if (lokr__plan_module(l, m, &err) != LOKR_OK) {
		fprintf(stderr, "bench: plan failed: %s\n", err.msg);
		exit(2);
	}
	b->a.nmodules = 1;
	b->a.modules = m;
}

static lokr_layer make_layer(const shape *sh, brng *g)
{
	lokr_layer l;
	memset(&l, 0, sizeof l);
	l.name = sh->name;
	l.kind = LOKR_LAYER_LINEAR;
	l.ndim = 2;
	l.out = l.shape[0] = sh->out;
	l.in = l.shape[1] = sh->in;
	l.kk = 1;
	l.weight = bench_rand(g, (size_t)(sh->out * sh->in), 1.0f / sqrtf((float)sh->in));
	l.bias = bench_rand(g, (size_t)sh->out, 0.1f);
	return l;
}

/* ------------------------------------------------------------ operations */

typedef struct op {
	lokr_exec *ctx;
	const lokr_layer *l;
	const lokr_batch_item *items;
	size_t n;
	const float *X; /* R x in, contiguous (what items point into) */
	float *Y;       /* R x out for raw BLAS */
	int64_t R;
	float *wbuf; /* merge baseline: out x in */
	float *w1buf, *w2buf;
} op;

static void op_openblas(void *p)
{
	op *o = p;
	const lokr_layer *l = o->l;
	if (o->R == 1)
		cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)l->out, (int)l->in, 1.0f, l->weight,
		            (int)l->in, o->X, 1, 0.0f, o->Y, 1);
	else
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)o->R, (int)l->out,
		            (int)l->in, 1.0f, o->X, (int)l->in, l->weight, (int)l->in, 0.0f, o->Y,
		            (int)l->out);
}

static void op_exec(void *p)
{
	op *o = p;
	int rc = lokr__exec_layer(o->ctx, o->l, LAYER_INDEX, o->items, o->n, NULL);
	if (rc != LOKR_OK) {
		fprintf(stderr, "bench: exec failed (%d)\n", rc);
		exit(2);
	}
}

/* The per-request merge every image tool does: W' = W0 + l s kron(W1, W2)
 * (dense factors first), then the request's rows through W'. */
static void op_merge(void *p)
{
	op *o = p;
	const lokr_layer *l = o->l;
	const int64_t out = l->out, in = l->in;
	for (size_t it = 0; it < o->n; it++) {
		const lokr_batch_item *item = &o->items[it];
		const lokr_module *m = &item->set[0].adapter->modules[0];
		lokr__lokr_factors(m, o->w1buf, o->w2buf);
		const float c = item->set[0].multiplier * m->scale;
		const int64_t n1 = m->n1, n2 = m->n2, m2 = m->m2;
		for (int64_t i = 0; i < m->m1; i++)
			for (int64_t j = 0; j < m2; j++) {
				const float *w0 = l->weight + (i * m2 + j) * in;
				float *w = o->wbuf + (i * m2 + j) * in;
				const float *b = o->w2buf + j * n2;
				for (int64_t k = 0; k < n1; k++) {
					const float a = c * o->w1buf[i * n1 + k];
					for (int64_t t = 0; t < n2; t++)
						w[k * n2 + t] = w0[k * n2 + t] + a * b[t];
				}
			}
		if (item->rows == 1) {
			memcpy(item->y, l->bias, (size_t)out * sizeof(float));
			cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)out, (int)in, 1.0f, o->wbuf,
			            (int)in, item->x, 1, 1.0f, item->y, 1);
		} else {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)item->rows,
			            (int)out, (int)in, 1.0f, item->x, (int)in, o->wbuf, (int)in,
			            0.0f, item->y, (int)out);
		}
	}
}

/* Interleaved timing of two operations: per-sample times and ratio b/a. */
typedef struct pair_res {
	double a[64], b[64];
	int n;
} pair_res;

static void time_pair(bench_fn fa, void *ca, bench_fn fb, void *cb, pair_res *res)
{
	fa(ca); /* warm */
	fb(cb);
	long ra = calibrate(fa, ca, opt_min_sample);
	long rb = calibrate(fb, cb, opt_min_sample);
	res->n = opt_samples;
	for (int s = 0; s < res->n; s++) {
		if (s & 1) {
			res->b[s] = time_per_call(fb, cb, rb);
			res->a[s] = time_per_call(fa, ca, ra);
		} else {
			res->a[s] = time_per_call(fa, ca, ra);
			res->b[s] = time_per_call(fb, cb, rb);
		}
	}
}

static double med_ratio(const pair_res *r)
{
	double v[64];
	for (int i = 0; i < r->n; i++)
		v[i] = r->b[i] / r->a[i];
	return median(v, r->n);
}

/* ------------------------------------------------------------- sections */

static double g_read_gbs, g_triad_gbs;

static void section_base(const int *shapes, int nsh, lokr_exec *ctx)
{
	printf("\n== base path: lokr_exec with empty sets vs raw OpenBLAS (sgemv for 1 row) ==\n");
	printf("%-12s %5s %12s %12s %8s\n", "shape", "rows", "openblas_us", "lokrd_us", "ratio");
	jprintf(",\n  \"base\": [");
	json_first_in_list = 1;
	for (int si = 0; si < nsh; si++) {
		const shape *sh = &SHAPES[shapes[si]];
		brng g = {1000 + (uint64_t)si};
		lokr_layer l = make_layer(sh, &g);
		const int rows_list[] = {1, 8, 64};
		for (int k = 0; k < 3; k++) {
			int64_t R = rows_list[k];
			float *X = bench_rand(&g, (size_t)(R * sh->in), 1.0f);
			float *Y = bench_alloc((size_t)(R * sh->out));
			float *Yo = bench_alloc((size_t)(R * sh->out));
			lokr_batch_item *items = calloc((size_t)R, sizeof *items);
			for (int64_t i = 0; i < R; i++) { /* one request per row, as the daemon */
				items[i].x = X + i * sh->in;
				items[i].rows = 1;
				items[i].y = Y + i * sh->out;
			}
			op ob = {.l = &l, .X = X, .Y = Yo, .R = R};
			op oe = {.ctx = ctx, .l = &l, .items = items, .n = (size_t)R, .R = R};
			pair_res pr;
			time_pair(op_openblas, &ob, op_exec, &oe, &pr);
			double ta = median(pr.a, pr.n), tb = median(pr.b, pr.n),
			       rt = med_ratio(&pr);
			printf("%-12s %5lld %12.1f %12.1f %8.3f\n", sh->name, (long long)R,
			       ta * 1e6, tb * 1e6, rt);
			jitem_begin();
			jprintf("\"shape\": \"%s\", \"rows\": %lld, \"openblas_us\": %.3f, "
			        "\"lokrd_us\": %.3f, \"ratio\": %.4f}",
			        sh->name, (long long)R, ta * 1e6, tb * 1e6, rt);
			fflush(stdout);
			free(X);
			free(Y);
			free(Yo);
			free(items);
		}
		free((void *)l.weight);
		free((void *)l.bias);
	}
	jprintf("\n  ]");
}

static void section_grid(const int *shapes, int nsh, const int *facs, int nf, const int *batches,
                         int nb, lokr_exec *ctx)
{
	printf("\n== grid: lokrd (one base GEMM + factored deltas) vs raw OpenBLAS base ==\n");
	printf("%-10s %-5s %-4s %-18s %-5s %3s %3s %10s %10s %7s %9s %9s %7s %7s\n", "shape", "fac",
	       "W2", "W1 (x) W2", "plan", "R", "D", "base_us", "lokrd_us", "ratio", "macfl_us",
	       "bytfl_us", "floor", "merge");
	jprintf(",\n  \"grid\": [");
	json_first_in_list = 1;
	for (int si = 0; si < nsh; si++) {
		const shape *sh = &SHAPES[shapes[si]];
		brng g = {2000 + (uint64_t)shapes[si]};
		lokr_layer l = make_layer(sh, &g);
		const int64_t maxR = 64;
		float *X = bench_rand(&g, (size_t)(maxR * sh->in), 1.0f);
		float *Y = bench_alloc((size_t)(maxR * sh->out));
		float *Yo = bench_alloc((size_t)(maxR * sh->out));
		float *wbuf = bench_alloc((size_t)(sh->out * sh->in));
		for (int fi = 0; fi < nf; fi++) {
			const fchoice *fc = &FACTORS[facs[fi]];
			int64_t m1, n1, m2, n2;
			split(sh, fc, &m1, &n1, &m2, &n2);
			float *w1buf = bench_alloc((size_t)(m1 * n1));
			float *w2buf = bench_alloc((size_t)(m2 * n2));
			for (int wi = 0; wi < NW2; wi++) {
				int r = W2FORMS[wi];
				if (r && !w2_lowrank_valid(m2, n2, r))
					continue; /* LyCORIS would store W2 full: same as "full" */
				badapter *ad = calloc(NADAPT, sizeof *ad);
				for (int a = 0; a < NADAPT; a++)
					build_adapter(&ad[a], &l, m1, n1, m2, n2, r, &g);
				lokr_adapter_ref refs[NADAPT];
				for (int a = 0; a < NADAPT; a++) {
					refs[a].adapter = &ad[a].a;
					refs[a].multiplier = 0.5f + (float)a / NADAPT;
				}
				const struct lokr_plan *p0 = ad[0].m.plan;
				char form[8], plan[8];
				snprintf(form, sizeof form, "%s",
				         r ? (r == 8 ? "r8" : "r16") : "full");
				snprintf(plan, sizeof plan, "%c%s", "ABS"[p0->order],
				         p0 -> w2_expanded ? "x" : (p0->w2_lowrank ? "f" : "d"));
				for (int bi = 0; bi < nb; bi++) {
					int64_t R = BATCHES[batches[bi]][0];
					int D = BATCHES[batches[bi]][1];
					lokr_batch_item items[64];
					double delta_macs = 0.0, adapter_bytes = 0.0;
					for (int i = 0; i < D; i++) {
						int64_t rows = R / D;
						items[i].set = &refs[i];
						items[i].nset = 1;
						items[i].x = X + (int64_t)i * rows * sh->in;
						items[i].rows = rows;
						items[i].y = Y + (int64_t)i * rows * sh->out;
						delta_macs += (double)rows * ad[i].m.plan->macs_row;
						adapter_bytes += (double)ad[i].m.plan->read_bytes;
					}
					op ob = {.l = &l, .X = X, .Y = Yo, .R = R};
					op oe = {.ctx = ctx,
					         .l = &l,
					         .items = items,
					         .n = (size_t)D,
					         .R = R};
					pair_res pr;
					time_pair(op_openblas, &ob, op_exec, &oe, &pr);
					double base_macs =
					    (double)R * (double)sh->out * (double)sh->in;
					double bytes_floor =
					    (4.0 * (double)sh->out * (double)sh->in +
					     adapter_bytes) /
					    (g_read_gbs * 1e9);
					double fr[64], mf[64];
					for (int s = 0; s < pr.n; s++) {
						mf[s] =
						    (base_macs + delta_macs) * pr.a[s] / base_macs;
						double fl =
						    mf[s] > bytes_floor ? mf[s] : bytes_floor;
						fr[s] = pr.b[s] / fl;
					}
					double ta = median(pr.a, pr.n), tb = median(pr.b, pr.n);
					double rt = med_ratio(&pr), frm = median(fr, pr.n),
					       mfm = median(mf, pr.n);
					double mratio = NAN;
					if (R == 8 && D == 8) {
						op om = {.l = &l,
						         .items = items,
						         .n = (size_t)D,
						         .R = R,
						         .wbuf = wbuf,
						         .w1buf = w1buf,
						         .w2buf = w2buf};
						pair_res pm;
						time_pair(op_exec, &oe, op_merge, &om, &pm);
						mratio = med_ratio(&pm);
					}
					char fac[24];
					snprintf(fac, sizeof fac, "%lldx%lld(x)%lldx%lld",
					         (long long)m1, (long long)n1, (long long)m2,
					         (long long)n2);
					printf("%-10s %-5s %-4s %-18s %-5s %3lld %3d %10.1f %10.1f "
					       "%7.3f "
					       "%9.1f %9.1f %7.3f %7.2f\n",
					       sh->name, fc->name, form, fac, plan, (long long)R, D,
					       ta * 1e6, tb * 1e6, rt, mfm * 1e6, bytes_floor * 1e6,
					       frm, mratio);
					fflush(stdout);
					jitem_begin();
					jprintf("\"shape\": \"%s\", \"out\": %lld, \"in\": %lld, "
					        "\"factor\": "
					        "\"%s\", \"w2\": \"%s\", \"m1\": %lld, \"n1\": "
					        "%lld, \"m2\": "
					        "%lld, \"n2\": %lld, \"r\": %d, \"scale\": %g, "
					        "\"plan\": "
					        "\"%s\", \"rows\": %lld, \"distinct\": %d, "
					        "\"base_us\": %.3f, "
					        "\"lokrd_us\": %.3f, \"ratio\": %.4f, "
					        "\"mac_floor_us\": %.3f, "
					        "\"bytes_floor_us\": %.3f, \"floor_ratio\": %.4f, "
					        "\"delta_macs_per_row\": %.0f, "
					        "\"base_macs_per_row\": %.0f",
					        sh->name, (long long)sh->out, (long long)sh->in,
					        fc->name, form, (long long)m1, (long long)n1,
					        (long long)m2, (long long)n2, r,
					        (double)ad[0].m.scale, plan, (long long)R, D,
					        ta * 1e6, tb * 1e6, rt, mfm * 1e6,
					        bytes_floor * 1e6, frm, ad[0].m.plan->macs_row,
					        (double)sh->out * (double)sh->in);
					if (!isnan(mratio))
						jprintf(", \"merge_over_lokrd\": %.4f", mratio);
					jprintf("}");
				}
				for (int a = 0; a < NADAPT; a++)
					module_clear(&ad[a].m);
				free(ad);
			}
			free(w1buf);
			free(w2buf);
		}
		free(X);
		free(Y);
		free(Yo);
		free(wbuf);
		free((void *)l.weight);
		free((void *)l.bias);
	}
	jprintf("\n  ]");
}

static void section_dora(const int *shapes, int nsh, lokr_exec *ctx)
{
	printf(
	    "\n== DoRA: LoKr+DoRA vs LoKr (f-1, W2 r8, vector cached); vector vs one W0 read ==\n");
	printf("%-10s %-4s %3s %3s %10s %10s %7s\n", "shape", "axis", "R", "D", "lokr_us",
	       "dora_us", "ratio");
	jprintf(",\n  \"dora\": [");
	json_first_in_list = 1;
	double vec_ratio[NSHAPES], vec_us[NSHAPES], read_us[NSHAPES];
	for (int si = 0; si < nsh; si++) {
		const shape *sh = &SHAPES[shapes[si]];
		brng g = {3000 + (uint64_t)shapes[si]};
		lokr_layer l = make_layer(sh, &g);
		int64_t m1, n1, m2, n2;
		split(sh, &FACTORS[0], &m1, &n1, &m2, &n2);
		int r = w2_lowrank_valid(m2, n2, 8) ? 8 : 0;
		badapter *plain = calloc(NADAPT, sizeof *plain);
		badapter *dora = calloc(NADAPT, sizeof *dora);
		lokr_adapter_ref rp[NADAPT], rd[NADAPT];
		for (int a = 0; a < NADAPT; a++) {
			brng g2 = {g.s + (uint64_t)a * 7919};
			build_adapter(&plain[a], &l, m1, n1, m2, n2, r, &g2);
			brng g3 = {g.s + (uint64_t)a * 7919};
			build_adapter(&dora[a], &l, m1, n1, m2, n2, r, &g3);
			lokr_module *m = &dora[a].m;
			m->dora_axis = LOKR_DORA_OUT;
			m->dora_scale = bench_rand(&g, (size_t)sh->out, 1.0f);
			for (int64_t o = 0; o < sh->out; o++)
				m->dora_scale[o] = 1.0f + 0.2f * m->dora_scale[o];
			m->dora_g = bench_alloc((size_t)sh->out);
			lokr_error err = {0};
			if (lokr__dora_vector(&l, m, m->dora_g, &err) != LOKR_OK) {
				fprintf(stderr, "bench: dora vector: %s\n", err.msg);
				exit(2);
			}
			rp[a].adapter = &plain[a].a;
			rd[a].adapter = &dora[a].a;
			rp[a].multiplier = rd[a].multiplier = 0.5f + (float)a / NADAPT;
		}
		float *X = bench_rand(&g, (size_t)(64 * sh->in), 1.0f);
		float *Y = bench_alloc((size_t)(64 * sh->out));
		const int cases[][2] = {{1, 1}, {64, 1}, {64, 64}};
		for (int axis = LOKR_DORA_OUT; axis <= LOKR_DORA_IN; axis++) {
			if (axis == LOKR_DORA_IN) {
				/* the same adapters on the input axis (correct, slower: one more
				 * base GEMM per segment) */
				for (int a = 0; a < NADAPT; a++) {
					lokr_module *m = &dora[a].m;
					free(m->dora_scale);
					free(m->dora_g);
					m->dora_axis = LOKR_DORA_IN;
					m->dora_scale = bench_rand(&g, (size_t)sh->in, 1.0f);
					for (int64_t c = 0; c < sh->in; c++)
						m->dora_scale[c] = 1.0f + 0.2f * m->dora_scale[c];
					m->dora_g = bench_alloc((size_t)sh->in);
					lokr__dora_vector(&l, m, m->dora_g, NULL);
				}
			}
			for (int c = 0; c < 3; c++) {
				if (axis == LOKR_DORA_IN && c != 2)
					continue;
				int64_t R = cases[c][0];
				int D = cases[c][1];
				lokr_batch_item ip[64], id[64];
				for (int i = 0; i < D; i++) {
					int64_t rows = R / D;
					ip[i].set = &rp[i];
					id[i].set = &rd[i];
					ip[i].nset = id[i].nset = 1;
					ip[i].x = id[i].x = X + (int64_t)i * rows * sh->in;
					ip[i].rows = id[i].rows = rows;
					ip[i].y = id[i].y = Y + (int64_t)i * rows * sh->out;
				}
				op op_p = {
				    .ctx = ctx, .l = &l, .items = ip, .n = (size_t)D, .R = R};
				op op_d = {
				    .ctx = ctx, .l = &l, .items = id, .n = (size_t)D, .R = R};
				pair_res pr;
				time_pair(op_exec, &op_p, op_exec, &op_d, &pr);
				double ta = median(pr.a, pr.n), tb = median(pr.b, pr.n),
				       rt = med_ratio(&pr);
				const char *ax = axis == LOKR_DORA_OUT ? "out" : "in";
				printf("%-10s %-4s %3lld %3d %10.1f %10.1f %7.3f\n", sh->name, ax,
				       (long long)R, D, ta * 1e6, tb * 1e6, rt);
				jitem_begin();
				jprintf(
				    "\"shape\": \"%s\", \"axis\": \"%s\", \"rows\": %lld, "
				    "\"distinct\": "
				    "%d, \"lokr_us\": %.3f, \"dora_us\": %.3f, \"ratio\": %.4f}",
				    sh->name, ax, (long long)R, D, ta * 1e6, tb * 1e6, rt);
			}
		}
		/* the vector itself (output axis) vs one read of W0 at STREAM speed */
		{
			lokr_module *m = &dora[0].m;
			m->dora_axis = LOKR_DORA_OUT;
			float *gv = bench_alloc((size_t)sh->out);
			double v[16];
			int ns = opt_quick ? 3 : 5;
			lokr__dora_vector(&l, m, gv, NULL);
			for (int s = 0; s < ns; s++) {
				double t0 = now_s();
				lokr__dora_vector(&l, m, gv, NULL);
				v[s] = now_s() - t0;
			}
			m->dora_axis = LOKR_DORA_IN;
			free(gv);
			vec_us[si] = median(v, ns) * 1e6;
			read_us[si] =
			    4.0 * (double)sh->out * (double)sh->in / (g_read_gbs * 1e9) * 1e6;
			vec_ratio[si] = vec_us[si] / read_us[si];
		}
		for (int a = 0; a < NADAPT; a++) {
			module_clear(&plain[a].m);
			module_clear(&dora[a].m);
		}
		free(plain);
		free(dora);
		free(X);
		free(Y);
		free((void *)l.weight);
		free((void *)l.bias);
	}
	jprintf("\n  ],\n  \"dora_vector\": [");
	json_first_in_list = 1;
	printf("\n%-10s %12s %12s %7s   (DoRA vector, output axis, f-1 W2 r8)\n", "shape",
	       "vector_us", "W0_read_us", "ratio");
	for (int si = 0; si < nsh; si++) {
		printf("%-10s %12.1f %12.1f %7.3f\n", SHAPES[shapes[si]].name, vec_us[si],
		       read_us[si], vec_ratio[si]);
		jitem_begin();
		jprintf(
		    "\"shape\": \"%s\", \"vector_us\": %.3f, \"read_us\": %.3f, \"ratio\": %.4f}",
		    SHAPES[shapes[si]].name, vec_us[si], read_us[si], vec_ratio[si]);
	}
	jprintf("\n  ]");
}

static void cpu_name(char *buf, size_t len)
{
	snprintf(buf, len, "unknown");
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (!f)
		return;
	char line[512], model[256] = "unknown", fam[32] = "?", mod[32] = "?";
	while (fgets(line, sizeof line, f)) {
		char *c = strchr(line, ':');
		if (!c)
			continue;
		c++;
		while (*c == ' ')
			c++;
		c[strcspn(c, "\n")] = '\0';
		if (strncmp(line, "model name", 10) == 0)
			snprintf(model, sizeof model, "%s", c);
		else if (strncmp(line, "cpu family", 10) == 0)
			snprintf(fam, sizeof fam, "%s", c);
		else if (strncmp(line, "model\t", 6) == 0)
			snprintf(mod, sizeof mod, "%s", c);
		else if (line[0] == '\n' || strncmp(line, "processor", 9) == 0) {
			if (strcmp(model, "unknown") != 0 && strcmp(mod, "?") != 0)
				break;
		}
	}
	fclose(f);
	snprintf(buf, len, "%s (family %s, model %s)", model, fam, mod);
}

static void usage(void)
{
	fprintf(stderr, "usage: lokr_bench [--quick] [--samples N] [--threads T] [--json FILE] "
	                "[--sections base,grid,dora]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *json_path = NULL, *sections = "base,grid,dora";
	int threads = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			opt_quick = 1;
		else if (!strcmp(argv[i], "--samples") && i + 1 < argc)
			opt_samples = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			threads = (int)strtol(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json_path = argv[++i];
		else if (!strcmp(argv[i], "--sections") && i + 1 < argc)
			sections = argv[++i];
		else
			usage();
	}
	if (opt_samples < 1 || opt_samples > 64)
		usage();
	if (opt_quick)
		opt_min_sample = 0.002;
	if (threads > 0)
		openblas_set_num_threads(threads);
	if (json_path) {
		json = fopen(json_path, "w");
		if (!json) {
			perror(json_path);
			return 2;
		}
	}
	char cpu[256], blas[512];
	cpu_name(cpu, sizeof cpu);
	int nthreads = lokr_blas_describe(blas, sizeof blas);
	if (nthreads == 1)
		bench_clock = CLOCK_THREAD_CPUTIME_ID;
	printf("CPU: %s\nBLAS: %s\nmode: %s, %d samples per ratio, clock: %s\n", cpu, blas,
	       opt_quick ? "quick" : "full", opt_samples,
	       nthreads == 1 ? "thread CPU time" : "wall");
	jprintf("{\n  \"cpu\": \"%s\", \"blas_config\": \"%s\", \"corename\": \"%s\", \"threads\": "
	        "%d, \"quick\": %d, \"clock\": \"%s\"",
	        cpu, openblas_get_config(), openblas_get_corename(), nthreads, opt_quick,
	        nthreads == 1 ? "thread_cpu" : "wall");

	stream_measure(&g_read_gbs, &g_triad_gbs);
	printf("STREAM (start): read %.1f GB/s, triad %.1f GB/s\n", g_read_gbs, g_triad_gbs);

	lokr_exec *ctx;
	if (lokr_exec_new(0, &ctx, NULL) != LOKR_OK)
		return 2;

	static const int all_shapes[] = {0, 1, 2, 3, 4, 5};
	static const int quick_shapes[] = {0, 2};
	static const int all_f[] = {0, 1, 2, 3, 4};
	static const int quick_f[] = {0, 3, 4};
	static const int all_b[] = {0, 1, 2, 3, 4, 5};
	static const int quick_b[] = {0, 2, 3, 5};
	const int *shp = opt_quick ? quick_shapes : all_shapes;
	int nsh = opt_quick ? 2 : NSHAPES;

	if (strstr(sections, "base"))
		section_base(shp, nsh, ctx);
	if (strstr(sections, "grid"))
		section_grid(shp, nsh, opt_quick ? quick_f : all_f, opt_quick ? 3 : NFACTORS,
		             opt_quick ? quick_b : all_b, opt_quick ? 4 : NBATCH, ctx);
	if (strstr(sections, "dora"))
		section_dora(shp, nsh, ctx);

	double rd2, tr2;
	stream_measure(&rd2, &tr2);
	printf("\nSTREAM (end): read %.1f GB/s, triad %.1f GB/s\n", rd2, tr2);
	jprintf(
	    ",\n  \"stream\": {\"read_gbs\": %.3f, \"triad_gbs\": %.3f, \"read_gbs_end\": %.3f, "
	    "\"triad_gbs_end\": %.3f}\n}\n",
	    g_read_gbs, g_triad_gbs, rd2, tr2);
	lokr_exec_free(ctx);
	if (json)
		fclose(json);
	return 0;
}
