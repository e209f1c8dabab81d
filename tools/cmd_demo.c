/*
 * cmd_demo.c - `lokr demo -o DIR`: deterministic demo data for lokrd.
 *
 * DIR/base.safetensors   a synthetic Stable-Diffusion-1.5-like base in f16:
 *                        attention (self and cross), feed-forward and conv
 *                        layers at SD1.5 shapes (about 50 MB)
 * DIR/adapters/<id>.safetensors
 *   lokr-balanced        LoKr, balanced split (factor -1), low-rank W2, incl. a 3x3 conv
 *   lokr-unbalanced      LoKr with a 4x4 W1 and a large low-rank W2 (unbalanced split)
 *   lokr-dora            LoKr + DoRA (dora_scale per output channel), incl. a 1x1 conv
 *   loha                 LoHa, rank 8 (kohya "lora_unet_" module names)
 *   lora                 LoRA/LoCon stored in f16, incl. a 3x3 conv (LoCon)
 * DIR/requests/<name>.json request bodies for the curl commands of README
 *
 * The data is random but fixed: every tensor is drawn from a splitmix64
 * stream seeded by its name, so every run writes the same bytes.
 * Everything is written through lokr_st_write_file (atomic, reference
 * layout), and each adapter is validated against the base before the
 * command reports success.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "lokr.h"

#define CMD "demo"

static const char help[] = "usage: lokr demo -o DIR\n"
                           "\n"
                           "Write a deterministic synthetic SD1.5-like base (f16) to\n"
                           "DIR/base.safetensors, five adapters (LoKr balanced and unbalanced,\n"
                           "LoKr+DoRA, LoHa, LoRA/LoCon) to DIR/adapters/, and example request\n"
                           "bodies to DIR/requests/, for `lokrd --base DIR/base.safetensors\n"
                           "--adapters DIR/adapters`.\n";

/* ------------------------------------------------------------ randomness */

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t next_u64(rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double uniform(rng *r)
{
	return ((double)(next_u64(r) >> 11) + 0.5) / 9007199254740992.0;
}

/* A stream per name (FNV-1a of the name and a salt). */
static rng seeded(const char *name, const char *salt)
{
	uint64_t h = 1469598103934665603ull;
	for (const char *p = name; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	for (const char *p = salt; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (rng){h};
}

/* n normal deviates with standard deviation sd (Box-Muller, both halves). */
static void fill_normal(rng *r, float *dst, size_t n, double sd)
{
	for (size_t i = 0; i < n; i += 2) {
		double u1 = uniform(r), u2 = uniform(r);
		double m = sqrt(-2.0 * log(u1));
		dst[i] = (float)(sd * m * cos(6.283185307179586 * u2));
		if (i + 1 < n)
			dst[i + 1] = (float)(sd * m * sin(6.283185307179586 * u2));
	}
}

/* ------------------------------------------------------------ the base */

typedef struct layer_def {
	const char *name;
	int64_t out, in, k; /* k: kernel side, 0 for linear */
	int bias;
} layer_def;

#define A0 "down_blocks.0.attentions.0.transformer_blocks.0."
#define A1 "mid_block.attentions.0.transformer_blocks.0."

static const layer_def layers[] = {
    {A0 "attn1.to_q", 320, 320, 0, 0},
    {A0 "attn1.to_k", 320, 320, 0, 0},
    {A0 "attn1.to_v", 320, 320, 0, 0},
    {A0 "attn1.to_out.0", 320, 320, 0, 1},
    {A0 "attn2.to_q", 320, 320, 0, 0},
    {A0 "attn2.to_k", 320, 768, 0, 0},
    {A0 "attn2.to_v", 320, 768, 0, 0},
    {A0 "ff.net.0.proj", 2560, 320, 0, 1},
    {A0 "ff.net.2", 320, 1280, 0, 1},
    {"down_blocks.0.attentions.0.proj_in", 320, 320, 1, 1},
    {"down_blocks.0.resnets.0.conv1", 320, 320, 3, 1},
    {"down_blocks.0.resnets.0.conv2", 320, 320, 3, 1},
    {A1 "attn1.to_q", 1280, 1280, 0, 0},
    {A1 "attn1.to_k", 1280, 1280, 0, 0},
    {A1 "attn1.to_v", 1280, 1280, 0, 0},
    {A1 "attn1.to_out.0", 1280, 1280, 0, 1},
    {"mid_block.resnets.0.conv1", 1280, 1280, 3, 1},
};
#define NLAYERS (sizeof layers / sizeof layers[0])

static const layer_def *find_layer(const char *name)
{
	for (size_t i = 0; i < NLAYERS; i++)
		if (!strcmp(layers[i].name, name))
			return &layers[i];
	return NULL;
}

static int64_t kk_of(const layer_def *l)
{
	return l->k ? l->k * l->k : 1;
}

/* The base weight as stored (f16-rounded), in f32; new buffer. */
static float *base_weight(const layer_def *l)
{
	size_t n = (size_t)(l->out * l->in * kk_of(l));
	float *w = malloc(n * sizeof *w);
	uint16_t *h = malloc(n * 2);
	if (!w || !h) {
		free(w);
		free(h);
		return NULL;
	}
	rng r = seeded(l->name, "weight");
	fill_normal(&r, w, n, 1.0 / sqrt((double)(l->in * kk_of(l))));
	lokr_encode_f32(LOKR_DTYPE_F16, w, n, h);
	lokr_decode_f32(LOKR_DTYPE_F16, h, n, w);
	free(h);
	return w;
}

/* ------------------------------------------------------------ tensor lists */

#define MAX_T 256

typedef struct tlist {
	lokr_st_spec spec[MAX_T];
	void *owned[MAX_T];
	char *names[MAX_T];
	size_t n;
} tlist;

static void tl_free(tlist *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->owned[i]);
		free(t->names[i]);
	}
	t->n = 0;
}

/* Add a tensor of `n` floats stored as `dt` (F32 or F16); takes `data`. */
static int tl_add(tlist *t, const char *module, const char *param, lokr_dtype dt, float *data,
                  int ndim, const int64_t *shape)
{
	if (t->n == MAX_T || !data) {
		free(data);
		return -1;
	}
	size_t n = 1;
	for (int i = 0; i < ndim; i++)
		n *= (size_t)shape[i];
	size_t len = strlen(module) + strlen(param) + 2;
	char *name = malloc(len);
	void *bytes = dt == LOKR_DTYPE_F32 ? (void *)data : malloc(n * 2 + 1);
	if (!name || !bytes) {
		free(name);
		free(data);
		return -1;
	}
	if (module[0])
		snprintf(name, len, "%s.%s", module, param);
	else
		snprintf(name, len, "%s", param);
	if (dt != LOKR_DTYPE_F32) {
		lokr_encode_f32(dt, data, n, bytes);
		free(data);
	}
	lokr_st_spec *s = &t->spec[t->n];
	s->name = name;
	s->dtype_name = dt == LOKR_DTYPE_F32 ? "F32" : "F16";
	s->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		s->shape[i] = shape[i];
	s->data = bytes;
	t->names[t->n] = name;
	t->owned[t->n] = bytes;
	t->n++;
	return 0;
}

static float *randn(const char *module, const char *param, size_t n, double sd)
{
	float *p = malloc((n ? n : 1) * sizeof *p);
	if (p) {
		rng r = seeded(module, param);
		fill_normal(&r, p, n, sd);
	}
	return p;
}

static float *scalar(double v)
{
	float *p = malloc(sizeof *p);
	if (p)
		*p = (float)v;
	return p;
}

/* Module name of a layer: prefix + "_" + name with '.' -> '_'. */
static void module_name(const char *prefix, const char *layer, char *out, size_t len)
{
	snprintf(out, len, "%s_%s", prefix, layer);
	for (char *p = out + strlen(prefix) + 1; *p; p++)
		if (*p == '.')
			*p = '_';
}

/* ------------------------------------------------------------ adapters */

/* LoKr on `l`: W1 (m1 x n1) full, W2 low-rank r (or full when r is not
 * smaller than half of W2's sides), optionally DoRA per output channel. */
static int add_lokr(tlist *t, const layer_def *l, int64_t m1, int64_t n1, int64_t r, double alpha,
                    int dora, lokr_dtype dt)
{
	char mod[256];
	module_name("lycoris", l->name, mod, sizeof mod);
	int64_t m2 = l->out / m1, n2 = l->in / n1, kk = kk_of(l);
	int rc = 0;
	int64_t s1[2] = {m1, n1};
	rc |= tl_add(t, mod, "lokr_w1", dt, randn(mod, "w1", (size_t)(m1 * n1), 0.5), 2, s1);
	int full = r >= (m2 > n2 ? m2 : n2) / 2;
	if (full) {
		int64_t s2[4] = {m2, n2, l->k, l->k};
		rc |= tl_add(t, mod, "lokr_w2", dt,
		             randn(mod, "w2", (size_t)(m2 * n2 * kk), 0.05 / sqrt((double)n2)),
		             l->k ? 4 : 2, s2);
	} else {
		int64_t sa[2] = {m2, r}, sb[2] = {r, n2 * kk};
		rc |= tl_add(t, mod, "lokr_w2_a", dt, randn(mod, "w2_a", (size_t)(m2 * r), 0.3), 2,
		             sa);
		rc |=
		    tl_add(t, mod, "lokr_w2_b", dt,
		           randn(mod, "w2_b", (size_t)(r * n2 * kk), 0.3 / sqrt((double)(n2 * kk))),
		           2, sb);
		rc |= tl_add(t, mod, "alpha", LOKR_DTYPE_F32, scalar(alpha), 0, NULL);
	}
	if (dora) {
		/* dora_scale near the base's row norms, so DoRA rescales gently. */
		float *w = base_weight(l);
		float *g = malloc((size_t)l->out * sizeof *g);
		if (!w || !g) {
			free(w);
			free(g);
			return -1;
		}
		rng rr = seeded(mod, "dora");
		for (int64_t o = 0; o < l->out; o++) {
			double s = 0;
			for (int64_t i = 0; i < l->in * kk; i++)
				s += (double)w[o * l->in * kk + i] * w[o * l->in * kk + i];
			g[o] = (float)(sqrt(s) * (0.95 + 0.1 * uniform(&rr)));
		}
		free(w);
		int64_t sd[4] = {l->out, 1, 1, 1};
		rc |= tl_add(t, mod, "dora_scale", LOKR_DTYPE_F32, g, l->k ? 4 : 2, sd);
	}
	return rc;
}

static int add_loha(tlist *t, const layer_def *l, int64_t r, double alpha)
{
	char mod[256];
	module_name("lora_unet", l->name, mod, sizeof mod);
	int64_t out = l->out, in = l->in * kk_of(l);
	int64_t sa[2] = {out, r}, sb[2] = {r, in};
	int rc = 0;
	rc |= tl_add(t, mod, "hada_w1_a", LOKR_DTYPE_F32, randn(mod, "1a", (size_t)(out * r), 0.1),
	             2, sa);
	rc |= tl_add(t, mod, "hada_w1_b", LOKR_DTYPE_F32, randn(mod, "1b", (size_t)(r * in), 0.1),
	             2, sb);
	rc |= tl_add(t, mod, "hada_w2_a", LOKR_DTYPE_F32, randn(mod, "2a", (size_t)(out * r), 0.1),
	             2, sa);
	rc |= tl_add(t, mod, "hada_w2_b", LOKR_DTYPE_F32, randn(mod, "2b", (size_t)(r * in), 0.1),
	             2, sb);
	rc |= tl_add(t, mod, "alpha", LOKR_DTYPE_F32, scalar(alpha), 0, NULL);
	return rc;
}

static int add_lora(tlist *t, const layer_def *l, int64_t r, double alpha, lokr_dtype dt)
{
	char mod[256];
	module_name("lora_unet", l->name, mod, sizeof mod);
	int rc = 0;
	int64_t sd[4] = {r, l->in, l->k, l->k}, su[4] = {l->out, r, 1, 1};
	int nd = l->k ? 4 : 2;
	rc |= tl_add(t, mod, "lora_down.weight", dt,
	             randn(mod, "down", (size_t)(r * l->in * kk_of(l)),
	                   1.0 / sqrt((double)(l->in * kk_of(l)))),
	             nd, sd);
	rc |= tl_add(t, mod, "lora_up.weight", dt, randn(mod, "up", (size_t)(l->out * r), 0.02), nd,
	             su);
	rc |= tl_add(t, mod, "alpha", LOKR_DTYPE_F32, scalar(alpha), 0, NULL);
	return rc;
}

static int write_adapter(const char *dir, const char *id, tlist *t, const char *args,
                         const lokr_base *base)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/adapters/%s.safetensors", dir, id);
	const char *keys[] = {"ss_network_module", "ss_network_args", "lokrd_demo"};
	const char *vals[] = {"lycoris.kohya", args, "synthetic, deterministic"};
	lokr_error e = {0};
	int rc = lokr_st_write_file(path, t->spec, t->n, keys, vals, 3, &e);
	tl_free(t);
	if (rc)
		return lokr_tool_fail_file(CMD, 1, path, e.msg);
	/* Prove it loads against the base before saying so. */
	lokr_st_file *f = NULL;
	lokr_adapter *a = NULL;
	rc = lokr_st_open(path, &f, &e);
	if (!rc)
		rc = lokr_adapter_load(base, f, &a, &e);
	if (rc) {
		lokr_st_close(f);
		return lokr_tool_fail_file(CMD, 1, path, e.msg);
	}
	printf("  adapters/%s.safetensors: %zu layers, %llu parameters (full deltas: %llu)\n", id,
	       a->nmodules, (unsigned long long)a->param_count,
	       (unsigned long long)a->full_param_count);
	lokr_adapter_free(a);
	lokr_st_close(f);
	return 0;
}

/* ------------------------------------------------------------ requests */

static int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return lokr_tool_fail(CMD, 1, "%s: %s", path, strerror(errno));
	fputs(text, f);
	if (fclose(f))
		return lokr_tool_fail(CMD, 1, "%s: %s", path, strerror(errno));
	return 0;
}

/* {"layer": L, "adapters": [...], "input": {...data...}} with a fixed input. */
static int write_apply(const char *path, const char *layer, const char *adapters, int64_t batch,
                       int64_t in, int64_t hw, const char *extra)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return lokr_tool_fail(CMD, 1, "%s: %s", path, strerror(errno));
	size_t n = (size_t)(batch * in * (hw ? hw * hw : 1));
	fprintf(f, "{\"layer\": \"%s\",\n \"adapters\": %s,%s\n \"input\": {\"dtype\": \"f32\", ",
	        layer, adapters, extra);
	if (hw)
		fprintf(f, "\"shape\": [%lld, %lld, %lld, %lld], \"data\": [", (long long)batch,
		        (long long)in, (long long)hw, (long long)hw);
	else
		fprintf(f, "\"shape\": [%lld, %lld], \"data\": [", (long long)batch, (long long)in);
	rng r = seeded(path + strlen(path) - 10, "input");
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%.4f", i ? "," : "", 2.0 * uniform(&r) - 1.0);
	fputs("]}}\n", f);
	if (fclose(f))
		return lokr_tool_fail(CMD, 1, "%s: %s", path, strerror(errno));
	return 0;
}

/* ------------------------------------------------------------ main */

static int mkdir_p(const char *p)
{
	if (mkdir(p, 0755) && errno != EEXIST)
		return lokr_tool_fail(CMD, 1, "cannot create %s: %s", p, strerror(errno));
	return 0;
}

int lokr_cmd_demo(int argc, char **argv)
{
	const char *dir = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(help, stdout);
			return 0;
		}
		if (!strcmp(argv[i], "-o") && i + 1 < argc)
			dir = argv[++i];
		else {
			fputs(help, stderr);
			return 2;
		}
	}
	if (!dir) {
		fputs(help, stderr);
		return 2;
	}
	char path[4096];
	if (mkdir_p(dir))
		return 1;
	snprintf(path, sizeof path, "%s/adapters", dir);
	if (mkdir_p(path))
		return 1;
	snprintf(path, sizeof path, "%s/requests", dir);
	if (mkdir_p(path))
		return 1;

	/* The base: weights and biases in f16. */
	tlist *t = calloc(1, sizeof *t);
	if (!t)
		return lokr_tool_fail(CMD, 1, "out of memory");
	int rc = 0;
	uint64_t bytes = 0;
	for (size_t i = 0; i < NLAYERS && !rc; i++) {
		const layer_def *l = &layers[i];
		int64_t shape[4] = {l->out, l->in, l->k, l->k};
		rc |= tl_add(t, "", "", LOKR_DTYPE_F16, base_weight(l), l->k ? 4 : 2, shape);
		char *nm = malloc(strlen(l->name) + 8);
		if (!nm) {
			rc = -1;
			break;
		}
		snprintf(nm, strlen(l->name) + 8, "%s.weight", l->name);
		free(t->names[t->n - 1]);
		t->names[t->n - 1] = nm;
		t->spec[t->n - 1].name = nm;
		bytes += (uint64_t)(l->out * l->in * kk_of(l)) * 2;
		if (l->bias) {
			snprintf(path, sizeof path, "%s.bias", l->name);
			rc |= tl_add(t, "", path, LOKR_DTYPE_F16,
			             randn(l->name, "bias", (size_t)l->out, 0.02), 1, shape);
		}
	}
	if (rc) {
		tl_free(t);
		free(t);
		return lokr_tool_fail(CMD, 1, "out of memory");
	}
	snprintf(path, sizeof path, "%s/base.safetensors", dir);
	const char *bk[] = {"lokrd_demo"};
	const char *bv[] = {"synthetic SD1.5-like base, deterministic"};
	lokr_error e = {0};
	rc = lokr_st_write_file(path, t->spec, t->n, bk, bv, 1, &e);
	tl_free(t);
	if (rc) {
		free(t);
		return lokr_tool_fail_file(CMD, 1, path, e.msg);
	}
	printf("%s/base.safetensors: %zu layers, %.1f MB of f16 weights\n", dir, NLAYERS,
	       (double)bytes / 1e6);
	const char *bp[1] = {path};
	char base_path[4096];
	snprintf(base_path, sizeof base_path, "%s", path);
	bp[0] = base_path;
	lokr_base *base = NULL;
	rc = lokr_base_load(bp, 1, &base, &e);
	if (rc) {
		free(t);
		return lokr_tool_fail_file(CMD, 1, base_path, e.msg);
	}

	/* lokr-balanced: factor -1 on attention layers and a 3x3 conv. */
	static const char *const bal[] = {
	    A0 "attn1.to_q", A0 "attn1.to_k", A0 "attn1.to_v", A0 "attn1.to_out.0",
	    A0 "attn2.to_k", A1 "attn1.to_q", A1 "attn1.to_v", "down_blocks.0.resnets.0.conv1"};
	for (size_t i = 0; i < sizeof bal / sizeof bal[0] && !rc; i++) {
		const layer_def *l = find_layer(bal[i]);
		int64_t m1, m2, n1, n2;
		lokr_factorize(l->out, -1, &m1, &m2);
		lokr_factorize(l->in, -1, &n1, &n2);
		rc |= add_lokr(t, l, m1, n1, 8, 4.0, 0, LOKR_DTYPE_F32);
	}
	rc = rc ? lokr_tool_fail(CMD, 1, "out of memory")
	        : write_adapter(dir, "lokr-balanced", t,
	                        "{\"algo\": \"lokr\", \"factor\": -1, \"linear_dim\": 8, "
	                        "\"linear_alpha\": 4}",
	                        base);

	/* lokr-unbalanced: a 4x4 W1 and a large low-rank W2. */
	static const char *const unb[] = {A0 "attn2.to_k", A0 "attn2.to_v", A0 "ff.net.0.proj",
	                                  A0 "ff.net.2",   A1 "attn1.to_k", A1 "attn1.to_out.0"};
	for (size_t i = 0; i < sizeof unb / sizeof unb[0] && !rc; i++)
		rc |= add_lokr(t, find_layer(unb[i]), 4, 4, 16, 8.0, 0, LOKR_DTYPE_F32);
	if (!rc)
		rc = write_adapter(dir, "lokr-unbalanced", t,
		                   "{\"algo\": \"lokr\", \"factor\": 4, "
		                   "\"unbalanced_factorization\": true, \"linear_dim\": 16}",
		                   base);

	/* lokr-dora: balanced LoKr with DoRA on linear layers and the 1x1 conv. */
	static const char *const dor[] = {A0 "attn1.to_q", A0 "attn1.to_v", A0 "ff.net.2",
	                                  "down_blocks.0.attentions.0.proj_in"};
	for (size_t i = 0; i < sizeof dor / sizeof dor[0] && !rc; i++) {
		const layer_def *l = find_layer(dor[i]);
		int64_t m1, m2, n1, n2;
		lokr_factorize(l->out, -1, &m1, &m2);
		lokr_factorize(l->in, -1, &n1, &n2);
		rc |= add_lokr(t, l, m1, n1, 4, 2.0, 1, LOKR_DTYPE_F32);
	}
	if (!rc)
		rc = write_adapter(dir, "lokr-dora", t,
		                   "{\"algo\": \"lokr\", \"dora_wd\": true, \"linear_dim\": 4}",
		                   base);

	/* loha: rank 8 on the first block's attention. */
	static const char *const lh[] = {A0 "attn1.to_q", A0 "attn1.to_k", A0 "attn1.to_v",
	                                 A0 "attn1.to_out.0", A0 "attn2.to_q"};
	for (size_t i = 0; i < sizeof lh / sizeof lh[0] && !rc; i++)
		rc |= add_loha(t, find_layer(lh[i]), 8, 8.0);
	if (!rc)
		rc = write_adapter(dir, "loha", t, "{\"algo\": \"loha\", \"linear_dim\": 8}", base);

	/* lora: LoRA + LoCon in f16. */
	static const char *const lr[] = {A0 "attn1.to_q",
	                                 A0 "attn1.to_k",
	                                 A0 "attn1.to_v",
	                                 A0 "attn2.to_k",
	                                 A0 "ff.net.0.proj",
	                                 A1 "attn1.to_q",
	                                 "down_blocks.0.resnets.0.conv1",
	                                 "mid_block.resnets.0.conv1"};
	for (size_t i = 0; i < sizeof lr / sizeof lr[0] && !rc; i++)
		rc |= add_lora(t, find_layer(lr[i]), 16, 8.0, LOKR_DTYPE_F16);
	if (!rc)
		rc = write_adapter(dir, "lora", t, "{\"algo\": \"locon\", \"linear_dim\": 16}",
		                   base);
	tl_free(t);
	free(t);
	lokr_base_free(base);
	if (rc)
		return 1;

	/* Request bodies for README's curl commands. */
	char p2[4200];
	snprintf(p2, sizeof p2, "%s/requests/apply-linear.json", dir);
	rc |= write_apply(p2, A0 "attn1.to_q",
	                  "[{\"id\": \"lokr-balanced\", \"multiplier\": 0.8}, "
	                  "{\"id\": \"lora\", \"multiplier\": 0.5}]",
	                  2, 320, 0, "");
	snprintf(p2, sizeof p2, "%s/requests/apply-dora.json", dir);
	rc |= write_apply(p2, A0 "attn1.to_v", "[{\"id\": \"lokr-dora\", \"multiplier\": 1.0}]", 1,
	                  320, 0, "");
	snprintf(p2, sizeof p2, "%s/requests/apply-conv.json", dir);
	rc |= write_apply(p2, "down_blocks.0.resnets.0.conv1",
	                  "[{\"id\": \"lokr-balanced\", \"multiplier\": 1.0}]", 1, 320, 8,
	                  "\n \"stride\": 1, \"padding\": 1,");
	snprintf(p2, sizeof p2, "%s/requests/merge.json", dir);
	rc |= write_text(p2, "{\"adapters\": [{\"id\": \"lokr-unbalanced\", \"multiplier\": 1.0}], "
	                     "\"dtype\": \"f16\"}\n");
	if (!rc)
		printf(
		    "  requests/: apply-linear.json apply-dora.json apply-conv.json merge.json\n");
	return rc ? 1 : 0;
}
