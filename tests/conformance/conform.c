/*
 * conform.c - black-box conformance runner for liblokr and `lokr merge`.
 *
 * Reads the manifest tests/data/gen/cases.json (written by
 * tests/gen/make_cases.py, an independent numpy reference) and checks:
 *
 *  - merge: runs the real CLI, `tools/lokr merge --base B --adapter F:λ...
 *    [--dtype D] -o OUT`, then compares every touched layer of OUT with the
 *    expected tensor (rel = max|a-b| / max|b| <= tol, or exact equality) and
 *    requires every other base tensor to be byte-identical (f32 output) or
 *    equal within the rounding (f16/bf16 output);
 *  - apply: loads base and adapters through the public API and calls
 *    lokr_apply_linear / lokr_apply_conv2d (stride 1, padding k//2) on
 *    <layer>.x, comparing with <layer>.y* (rel <= tol);
 *  - bad adapters: `lokr merge` and `lokr inspect --base` must exit nonzero
 *    (not by a signal) with exactly one line on stderr naming the module,
 *    leave no output file, and lokr_adapter_load must fail naming it too;
 *  - the public LyCORIS fixtures, listed in the same manifest; for DoRA
 *    layers their merged_m0.5 follows LyCORIS f49d30d, so the expectation
 *    is derived as W0 + 0.5 (merged - W0) (lokrd decision 2).
 *
 * Paths come from $top_srcdir / $top_builddir (AM_TESTS_ENVIRONMENT), or
 * the SRCDIR / BUILDDIR macros when run by hand.  Usage:
 *   conform [-v] [FILTER]   FILTER: only cases whose name contains it.
 * Prints one line per failure and "conformance: N passed, M failed";
 * exits 0 when nothing failed, 1 otherwise, 99 on a setup error.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "lokr.h"

#ifndef SRCDIR
#define SRCDIR "."
#endif
#ifndef BUILDDIR
#define BUILDDIR "."
#endif

#define PATH_MAX_LEN 4096
#define STDERR_CAP   65536
#define MAX_ARGS     64

struct loaded {
	char *path;
	lokr_adapter *adapter; /* NULL if loading failed */
	char msg[LOKR_ERROR_MAX];
};

struct runner {
	const char *src, *build;
	char lokr[PATH_MAX_LEN];
	char tmp[PATH_MAX_LEN];
	char base_path[PATH_MAX_LEN];
	lokr_st_file *base_file;
	lokr_base *base;
	struct loaded *cache;
	size_t ncache;
	const char *filter;
	int verbose;
	int passed, failed;
	double worst_merge, worst_apply; /* largest rel among passing f32 comparisons */
};

/* ------------------------------------------------------------ small helpers */

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "conform: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(99);
}

static void *xcalloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void path_join(char *dst, const char *a, const char *b)
{
	int n = snprintf(dst, PATH_MAX_LEN, "%s/%s", a, b);
	if (n < 0 || n >= PATH_MAX_LEN)
		die("path too long: %s/%s", a, b);
}

/* Records one check's verdict; `detail` (may be empty) explains a failure. */
static void verdict(struct runner *r, int ok, const char *what, const char *detail)
{
	if (ok) {
		r->passed++;
		if (r->verbose)
			printf("ok   %s\n", what);
	} else {
		r->failed++;
		printf("FAIL %s%s%s\n", what, detail[0] ? ": " : "", detail);
	}
	fflush(stdout);
}

/* Appends to a bounded detail buffer. */
static void detail_add(char *buf, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(buf);
	if (len + 1 >= cap)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

static float *tensor_floats(const lokr_st_tensor *t)
{
	float *d = xcalloc(t->nelem, sizeof(float));
	lokr_error err = {0};
	if (lokr_st_tensor_f32(t, d, &err) != 0) {
		free(d);
		return NULL;
	}
	return d;
}

/* rel = max|a-b| / max|b| (absolute when b is all zero); NaN counts as +inf. */
static double rel_err(const float *a, const double *b, uint64_t n)
{
	double maxb = 0, maxd = 0;
	for (uint64_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d <= maxd))
			maxd = isnan(d) ? INFINITY : d;
		if (fabs(b[i]) > maxb)
			maxb = fabs(b[i]);
	}
	return maxb > 0 ? maxd / maxb : maxd;
}

static int same_shape(const lokr_st_tensor *a, const lokr_st_tensor *b)
{
	if (a->ndim != b->ndim)
		return 0;
	for (int i = 0; i < a->ndim; i++)
		if (a->shape[i] != b->shape[i])
			return 0;
	return 1;
}

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	if (!s)
		die("manifest: missing string \"%s\"", key);
	return s;
}

/* ------------------------------------------------------------ running the CLI */

struct run_result {
	int exited; /* 1 if the child exited normally */
	int status; /* exit status, or the signal number */
	char err[STDERR_CAP];
};

/* Runs argv (argv[0] = program path) with stdout to /dev/null and stderr
 * captured. */
static void run_cmd(char *const argv[], struct run_result *res)
{
	int fds[2];
	memset(res, 0, sizeof *res);
	if (pipe(fds) != 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		execv(argv[0], argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	size_t len = 0;
	for (;;) {
		char chunk[4096];
		ssize_t n = read(fds[0], chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t take = (size_t)n;
		if (len + take > sizeof res->err - 1)
			take = sizeof res->err - 1 - len;
		memcpy(res->err + len, chunk, take);
		len += take;
	}
	res->err[len] = '\0';
	close(fds[0]);
	int st = 0;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			die("waitpid: %s", strerror(errno));
	if (WIFEXITED(st)) {
		res->exited = 1;
		res->status = WEXITSTATUS(st);
	} else {
		res->status = WIFSIGNALED(st) ? WTERMSIG(st) : -1;
	}
}

/* The first line of a captured stderr, for messages. */
static void first_line(const char *s, char *dst, size_t cap)
{
	size_t n = strcspn(s, "\n");
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* ------------------------------------------------------------ adapters via the API */

static const lokr_adapter *adapter_get(struct runner *r, const char *path, const char **msg)
{
	for (size_t i = 0; i < r->ncache; i++)
		if (!strcmp(r->cache[i].path, path)) {
			*msg = r->cache[i].msg;
			return r->cache[i].adapter;
		}
	struct loaded *n = realloc(r->cache, (r->ncache + 1) * sizeof *n);
	if (!n)
		die("out of memory");
	r->cache = n;
	struct loaded *l = &r->cache[r->ncache++];
	memset(l, 0, sizeof *l);
	l->path = strdup(path);
	if (!l->path)
		die("out of memory");
	lokr_error err = {0};
	lokr_st_file *f = NULL;
	if (lokr_st_open(path, &f, &err) == 0) {
		if (lokr_adapter_load(r->base, f, &l->adapter, &err) != 0)
			l->adapter = NULL;
		lokr_st_close(f);
	}
	if (!l->adapter)
		snprintf(l->msg, sizeof l->msg, "%s", err.msg);
	*msg = l->msg;
	return l->adapter;
}

/* ------------------------------------------------------------ checks */

struct check_ctx {
	const char *case_name;
	lokr_st_file *expected;
	json_t *layers;      /* case layers (strings) */
	json_t *dora_layers; /* layers whose fixture m0.5 needs the interpolation */
};

static int in_list(json_t *arr, const char *s)
{
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && !strcmp(json_string_value(v), s))
			return 1;
	}
	return 0;
}

/* A short text for the adapter list of a check: "a.safetensors:0.5 b...:1". */
static void adapters_text(json_t *ads, char *dst, size_t cap)
{
	dst[0] = '\0';
	size_t i;
	json_t *a;
	json_array_foreach(ads, i, a)
	{
		const char *p = json_string_value(json_array_get(a, 0));
		const char *base = p ? strrchr(p, '/') : NULL;
		detail_add(dst, cap, "%s%s:%g", i ? " " : "", base ? base + 1 : (p ? p : "?"),
		           json_number_value(json_array_get(a, 1)));
	}
}

/* Expected values (double) of `layer`.`tensor` from the expected file,
 * derived by interpolation for fixture DoRA layers when asked.  Returns a
 * new array or NULL (message in detail). */
static double *expected_values(struct runner *r, struct check_ctx *c, json_t *chk,
                               const char *layer, const char *tensor, const lokr_st_tensor **shape,
                               char *detail, size_t cap)
{
	char key[512];
	snprintf(key, sizeof key, "%s.%s", layer, tensor);
	const char *interp = json_string_value(json_object_get(chk, "dora_interp_from"));
	int derive = interp && in_list(c->dora_layers, layer);
	if (derive)
		snprintf(key, sizeof key, "%s.%s", layer, interp);
	const lokr_st_tensor *t = lokr_st_find(c->expected, key);
	if (!t) {
		detail_add(detail, cap, " [expected file lacks %s]", key);
		return NULL;
	}
	*shape = t;
	float *f = tensor_floats(t);
	if (!f) {
		detail_add(detail, cap, " [cannot decode %s]", key);
		return NULL;
	}
	double *d = xcalloc(t->nelem, sizeof(double));
	for (uint64_t i = 0; i < t->nelem; i++)
		d[i] = f[i];
	free(f);
	if (derive) {
		/* lokrd's DoRA rule at λ: W0 + λ (merged - W0), merged at λ = 1. */
		double lam = json_number_value(
		    json_array_get(json_array_get(json_object_get(chk, "adapters"), 0), 1));
		char wkey[512];
		snprintf(wkey, sizeof wkey, "%s.weight", layer);
		const lokr_st_tensor *w = lokr_st_find(r->base_file, wkey);
		float *w0 = w && w->nelem == t->nelem ? tensor_floats(w) : NULL;
		if (!w0) {
			free(d);
			detail_add(detail, cap, " [base lacks %s]", wkey);
			return NULL;
		}
		for (uint64_t i = 0; i < t->nelem; i++)
			d[i] = w0[i] + lam * (d[i] - w0[i]);
		free(w0);
	}
	return d;
}

/* One `lokr merge` run and the comparison of its output file. */
static void check_merge(struct runner *r, struct check_ctx *c, json_t *chk, int idx)
{
	const char *tensor = jstr(chk, "tensor");
	double tol = json_number_value(json_object_get(chk, "tol"));
	int exact = json_is_true(json_object_get(chk, "exact"));
	const char *dtype = json_string_value(json_object_get(chk, "dtype"));
	json_t *ads = json_object_get(chk, "adapters");
	char what[1024], adtxt[600], detail[4096] = "";
	adapters_text(ads, adtxt, sizeof adtxt);
	snprintf(what, sizeof what, "%s merge#%d %s [%s]%s%s", c->case_name, idx, tensor, adtxt,
	         dtype ? " --dtype " : "", dtype ? dtype : "");

	char out[PATH_MAX_LEN], specs[MAX_ARGS][PATH_MAX_LEN + 32];
	path_join(out, r->tmp, "merged.safetensors");
	unlink(out);
	char *argv[MAX_ARGS * 2 + 16];
	int n = 0;
	argv[n++] = r->lokr;
	argv[n++] = "merge";
	argv[n++] = "--base";
	argv[n++] = r->base_path;
	size_t i;
	json_t *a;
	json_array_foreach(ads, i, a)
	{
		if (i >= MAX_ARGS)
			die("too many adapters in a check");
		char p[PATH_MAX_LEN];
		path_join(p, r->src, json_string_value(json_array_get(a, 0)));
		snprintf(specs[i], sizeof specs[i], "%s:%.9g", p,
		         json_number_value(json_array_get(a, 1)));
		argv[n++] = "--adapter";
		argv[n++] = specs[i];
	}
	if (dtype) {
		argv[n++] = "--dtype";
		argv[n++] = (char *)dtype;
	}
	argv[n++] = "-o";
	argv[n++] = out;
	argv[n] = NULL;

	struct run_result *res = xcalloc(1, sizeof *res);
	run_cmd(argv, res);
	if (!res->exited || res->status != 0) {
		char line[512];
		first_line(res->err, line, sizeof line);
		snprintf(detail, sizeof detail, "lokr merge %s %d: %s",
		         res->exited ? "exit" : "killed by signal", res->status, line);
		verdict(r, 0, what, detail);
		free(res);
		return;
	}
	free(res);

	lokr_st_file *got = NULL;
	lokr_error err = {0};
	if (lokr_st_open(out, &got, &err) != 0) {
		snprintf(detail, sizeof detail, "output unreadable: %s", err.msg);
		verdict(r, 0, what, detail);
		return;
	}
	int ok = 1;
	/* Every base tensor must be in the output: touched layers merged, the rest unchanged. */
	for (size_t t = 0; t < lokr_st_count(r->base_file); t++) {
		const lokr_st_tensor *bt = lokr_st_at(r->base_file, t);
		const lokr_st_tensor *gt = lokr_st_find(got, bt->name);
		if (!gt) {
			ok = 0;
			detail_add(detail, sizeof detail, " [%s missing from output]", bt->name);
			continue;
		}
		if (!same_shape(bt, gt)) {
			ok = 0;
			detail_add(detail, sizeof detail, " [%s shape differs from base]",
			           bt->name);
			continue;
		}
		char layer[512];
		size_t nl = strlen(bt->name);
		int is_weight = nl > 7 && !strcmp(bt->name + nl - 7, ".weight");
		snprintf(layer, sizeof layer, "%.*s", (int)(is_weight ? nl - 7 : nl), bt->name);
		float *g = NULL;
		if (is_weight && in_list(c->layers, layer)) {
			const lokr_st_tensor *es = NULL;
			double *e =
			    expected_values(r, c, chk, layer, tensor, &es, detail, sizeof detail);
			g = tensor_floats(gt);
			if (!e || !g || es->nelem != gt->nelem) {
				ok = 0;
				if (e && g)
					detail_add(detail, sizeof detail, " [%s element count]",
					           layer);
			} else if (exact) {
				uint64_t bad = 0;
				for (uint64_t k = 0; k < gt->nelem; k++)
					bad += g[k] != e[k];
				if (bad) {
					ok = 0;
					detail_add(detail, sizeof detail,
					           " [%s: %llu elements differ, exact expected]",
					           layer, (unsigned long long)bad);
				}
			} else {
				double re = rel_err(g, e, gt->nelem);
				if (!dtype && re <= tol && re > r->worst_merge)
					r->worst_merge = re;
				if (!(re <= tol)) {
					ok = 0;
					detail_add(detail, sizeof detail, " [%s rel %.3g > %.3g]",
					           layer, re, tol);
				} else if (r->verbose > 1) {
					printf("     %s rel %.3g\n", layer, re);
				}
			}
			free(e);
		} else if (!dtype || !strcmp(gt->dtype_name, bt->dtype_name)) {
			if (strcmp(gt->dtype_name, bt->dtype_name) || gt->nbytes != bt->nbytes ||
			    memcmp(gt->data, bt->data, bt->nbytes)) {
				ok = 0;
				detail_add(detail, sizeof detail,
				           " [untouched %s not byte-identical]", bt->name);
			}
		} else {
			/* Converted output: the untouched tensor within the rounding. */
			g = tensor_floats(gt);
			float *b = tensor_floats(bt);
			double *bd = xcalloc(bt->nelem, sizeof(double));
			for (uint64_t k = 0; b && k < bt->nelem; k++)
				bd[k] = b[k];
			double re = g && b ? rel_err(g, bd, bt->nelem) : INFINITY;
			if (!(re <= tol)) {
				ok = 0;
				detail_add(detail, sizeof detail, " [untouched %s rel %.3g]",
				           bt->name, re);
			}
			free(b);
			free(bd);
		}
		if (dtype && g) {
			int want = lokr_dtype_parse(dtype);
			if (want >= 0 && gt->dtype != (lokr_dtype)want) {
				ok = 0;
				detail_add(detail, sizeof detail, " [%s stored as %s, not %s]",
				           bt->name, gt->dtype_name, dtype);
			}
		}
		free(g);
	}
	for (size_t t = 0; t < lokr_st_count(got); t++) {
		const lokr_st_tensor *gt = lokr_st_at(got, t);
		if (!lokr_st_find(r->base_file, gt->name)) {
			ok = 0;
			detail_add(detail, sizeof detail, " [extra tensor %s]", gt->name);
		}
	}
	lokr_st_close(got);
	unlink(out);
	verdict(r, ok, what, detail);
}

/* One apply check: every listed layer through lokr_apply_linear/conv2d. */
static void check_apply(struct runner *r, struct check_ctx *c, json_t *chk, int idx)
{
	const char *tensor = jstr(chk, "tensor");
	double tol = json_number_value(json_object_get(chk, "tol"));
	json_t *ads = json_object_get(chk, "adapters");
	json_t *layers = json_object_get(chk, "layers");
	if (!layers)
		layers = c->layers;
	char what[1024], adtxt[600], detail[4096] = "";
	adapters_text(ads, adtxt, sizeof adtxt);
	snprintf(what, sizeof what, "%s apply#%d %s [%s]", c->case_name, idx, tensor, adtxt);

	size_t nset = json_array_size(ads);
	lokr_adapter_ref *set = xcalloc(nset, sizeof *set);
	int ok = 1;
	for (size_t i = 0; i < nset; i++) {
		json_t *a = json_array_get(ads, i);
		char p[PATH_MAX_LEN];
		path_join(p, r->src, json_string_value(json_array_get(a, 0)));
		const char *msg = "";
		set[i].adapter = adapter_get(r, p, &msg);
		set[i].multiplier = (float)json_number_value(json_array_get(a, 1));
		if (!set[i].adapter) {
			ok = 0;
			detail_add(detail, sizeof detail, " [lokr_adapter_load: %s]", msg);
		}
	}
	size_t li;
	json_t *lv;
	json_array_foreach(layers, li, lv)
	{
		if (!ok)
			break;
		const char *layer = json_string_value(lv);
		int64_t idxl = lokr_base_layer_find(r->base, layer);
		char key[512];
		snprintf(key, sizeof key, "%s.x", layer);
		const lokr_st_tensor *xt = lokr_st_find(c->expected, key);
		const lokr_st_tensor *ys = NULL;
		double *ye = expected_values(r, c, chk, layer, tensor, &ys, detail, sizeof detail);
		if (idxl < 0 || !xt || !ye) {
			ok = 0;
			detail_add(detail, sizeof detail, " [%s: no layer or no x]", layer);
			free(ye);
			continue;
		}
		const lokr_layer *L = lokr_base_layer_at(r->base, (size_t)idxl);
		float *x = tensor_floats(xt);
		float *y = xcalloc(ys->nelem, sizeof(float));
		lokr_error err = {0};
		int rc;
		uint64_t want = 0;
		if (L->kind == LOKR_LAYER_LINEAR) {
			int64_t rows = xt->shape[0];
			want = (uint64_t)rows * (uint64_t)L->out;
			rc = want == ys->nelem ? lokr_apply_linear(r->base, (size_t)idxl, set, nset,
			                                           x, rows, y, &err)
			                       : LOKR_EINVAL;
		} else {
			/* Default stride 1, padding k//2; a check may ask for others. */
			json_t *cv = json_object_get(chk, "conv");
			int64_t st = cv ? json_integer_value(json_object_get(cv, "stride")) : 1;
			int64_t dl = cv ? json_integer_value(json_object_get(cv, "dilation")) : 1;
			int64_t ph = cv ? json_integer_value(json_object_get(cv, "padding"))
			                : L->shape[2] / 2;
			int64_t pw = cv ? ph : L->shape[3] / 2;
			lokr_conv2d_params cp = {{st, st}, {ph, pw}, {dl, dl}};
			int64_t ho = 0, wo = 0;
			rc = lokr_conv2d_out_size(L, &cp, xt->shape[2], xt->shape[3], &ho, &wo);
			want =
			    (uint64_t)xt->shape[0] * (uint64_t)L->out * (uint64_t)ho * (uint64_t)wo;
			if (rc == 0 && want == ys->nelem)
				rc = lokr_apply_conv2d(r->base, (size_t)idxl, set, nset, &cp, x,
				                       xt->shape[0], xt->shape[2], xt->shape[3], y,
				                       &err);
			else if (rc == 0)
				rc = LOKR_EINVAL;
		}
		if (rc != 0) {
			ok = 0;
			if (want != ys->nelem)
				detail_add(detail, sizeof detail,
				           " [%s: output has %llu elements, expected %llu]", layer,
				           (unsigned long long)want, (unsigned long long)ys->nelem);
			else
				detail_add(detail, sizeof detail, " [%s: %s: %s]", layer,
				           lokr_strerror(rc), err.msg);
		} else {
			double re = rel_err(y, ye, ys->nelem);
			if (re <= tol && re > r->worst_apply)
				r->worst_apply = re;
			if (!(re <= tol)) {
				ok = 0;
				detail_add(detail, sizeof detail, " [%s rel %.3g > %.3g]", layer,
				           re, tol);
			} else if (r->verbose > 1) {
				printf("     %s rel %.3g\n", layer, re);
			}
		}
		free(x);
		free(y);
		free(ye);
	}
	free(set);
	verdict(r, ok, what, detail);
}

static int one_line(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || s[n - 1] != '\n')
		return 0;
	return memchr(s, '\n', n - 1) == NULL && n > 1;
}

/* A bad adapter: merge, inspect and the library must all refuse it. */
static void check_bad(struct runner *r, json_t *b)
{
	const char *name = jstr(b, "name");
	const char *expect = json_string_value(json_object_get(b, "expect"));
	char file[PATH_MAX_LEN], spec[PATH_MAX_LEN + 8], out[PATH_MAX_LEN], basep[PATH_MAX_LEN];
	path_join(file, r->src, jstr(b, "file"));
	/* A bad case may bring its own base (e.g. colliding layer names). */
	const char *own = json_string_value(json_object_get(b, "base"));
	lokr_base *base = r->base;
	snprintf(basep, sizeof basep, "%s", r->base_path);
	if (own) {
		path_join(basep, r->src, own);
		const char *paths[1] = {basep};
		lokr_error berr = {0};
		if (lokr_base_load(paths, 1, &base, &berr) != 0) {
			verdict(r, 0, name, berr.msg);
			return;
		}
	}
	snprintf(spec, sizeof spec, "%s:1", file);
	path_join(out, r->tmp, "bad-out.safetensors");
	unlink(out);

	char *margv[] = {r->lokr, "merge", "--base", basep, "--adapter", spec, "-o", out, NULL};
	char *iargv[] = {r->lokr, "inspect", file, "--base", basep, NULL};
	char *const *cmds[2] = {margv, iargv};
	const char *names[2] = {"merge", "inspect --base"};
	struct run_result *res = xcalloc(1, sizeof *res);
	for (int k = 0; k < 2; k++) {
		char what[512], detail[1024] = "", line[700];
		snprintf(what, sizeof what, "%s: lokr %s rejects (%s)", name, names[k],
		         json_string_value(json_object_get(b, "why")));
		run_cmd(cmds[k], res);
		first_line(res->err, line, sizeof line);
		int ok = 1;
		if (!res->exited) {
			ok = 0;
			detail_add(detail, sizeof detail, "killed by signal %d", res->status);
		} else if (res->status == 0) {
			ok = 0;
			detail_add(detail, sizeof detail, "exit 0 (accepted)");
		} else if (!one_line(res->err)) {
			ok = 0;
			detail_add(detail, sizeof detail,
			           "stderr is not exactly one line: \"%.300s\"", res->err);
		} else if (expect && !strstr(res->err, expect)) {
			ok = 0;
			detail_add(detail, sizeof detail, "message lacks \"%s\": %s", expect, line);
		}
		if (k == 0 && access(out, F_OK) == 0) {
			ok = 0;
			detail_add(detail, sizeof detail, " [left an output file behind]");
			unlink(out);
		}
		if (ok && r->verbose)
			printf("     %s\n", line);
		verdict(r, ok, what, detail);
	}
	free(res);

	/* The library itself: all or nothing, message naming the module. */
	char what[512], detail[1024] = "";
	snprintf(what, sizeof what, "%s: lokr_adapter_load rejects", name);
	lokr_error err = {0};
	lokr_st_file *f = NULL;
	lokr_adapter *a = NULL;
	int rc = lokr_st_open(file, &f, &err);
	if (rc == 0) {
		rc = lokr_adapter_load(base, f, &a, &err);
		lokr_st_close(f);
	}
	if (base != r->base)
		lokr_base_free(base);
	int ok = rc != 0 && a == NULL && err.msg[0];
	if (rc == 0) {
		detail_add(detail, sizeof detail, "accepted");
		lokr_adapter_free(a);
	} else if (!err.msg[0]) {
		detail_add(detail, sizeof detail, "empty message");
	} else if (expect && !strstr(err.msg, expect)) {
		ok = 0;
		detail_add(detail, sizeof detail, "message lacks \"%s\": %s", expect, err.msg);
	}
	verdict(r, ok, what, detail);
}

static void run_case(struct runner *r, json_t *cs)
{
	const char *name = jstr(cs, "name");
	if (r->filter && !strstr(name, r->filter))
		return;
	char exp[PATH_MAX_LEN];
	path_join(exp, r->src, jstr(cs, "expected"));
	struct check_ctx c = {name, NULL, json_object_get(cs, "layers"),
	                      json_object_get(cs, "dora_layers")};
	lokr_error err = {0};
	if (lokr_st_open(exp, &c.expected, &err) != 0)
		die("%s: %s", name, err.msg);
	size_t i;
	json_t *chk;
	json_array_foreach(json_object_get(cs, "merge"), i, chk) check_merge(r, &c, chk, (int)i);
	json_array_foreach(json_object_get(cs, "apply"), i, chk) check_apply(r, &c, chk, (int)i);
	lokr_st_close(c.expected);
}

int main(int argc, char **argv)
{
	struct runner r;
	memset(&r, 0, sizeof r);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			r.verbose++;
		else if (!strcmp(argv[i], "-vv"))
			r.verbose += 2;
		else
			r.filter = argv[i];
	}
	r.src = getenv("top_srcdir") ? getenv("top_srcdir") : SRCDIR;
	r.build = getenv("top_builddir") ? getenv("top_builddir") : BUILDDIR;
	path_join(r.lokr, r.build, "tools/lokr");
	if (access(r.lokr, X_OK) != 0)
		die("%s is not built", r.lokr);

	char manifest[PATH_MAX_LEN];
	path_join(manifest, r.src, "tests/data/gen/cases.json");
	json_error_t jerr;
	json_t *m = json_load_file(manifest, 0, &jerr);
	if (!m)
		die("%s:%d: %s", manifest, jerr.line, jerr.text);
	path_join(r.base_path, r.src, jstr(m, "base"));

	lokr_error err = {0};
	if (lokr_st_open(r.base_path, &r.base_file, &err) != 0)
		die("%s", err.msg);
	const char *paths[1] = {r.base_path};
	if (lokr_base_load(paths, 1, &r.base, &err) != 0)
		die("%s", err.msg);

	const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char templ[PATH_MAX_LEN];
	path_join(templ, tmpdir, "lokr-conform-XXXXXX");
	if (!mkdtemp(templ))
		die("mkdtemp %s: %s", templ, strerror(errno));
	snprintf(r.tmp, sizeof r.tmp, "%s", templ);

	size_t i;
	json_t *cs;
	json_array_foreach(json_object_get(m, "fixtures"), i, cs) run_case(&r, cs);
	json_array_foreach(json_object_get(m, "cases"), i, cs) run_case(&r, cs);
	json_array_foreach(json_object_get(m, "bad"), i, cs)
	{
		if (!r.filter || strstr(jstr(cs, "name"), r.filter))
			check_bad(&r, cs);
	}

	rmdir(r.tmp);
	for (size_t k = 0; k < r.ncache; k++) {
		free(r.cache[k].path);
		lokr_adapter_free(r.cache[k].adapter);
	}
	free(r.cache);
	lokr_base_free(r.base);
	lokr_st_close(r.base_file);
	json_decref(m);
	printf("worst passing rel: merge %.3g (tol 1e-5), apply %.3g (tol 5e-5)\n", r.worst_merge,
	       r.worst_apply);
	printf("conformance: %d passed, %d failed\n", r.passed, r.failed);
	return r.failed ? 1 : 0;
}
