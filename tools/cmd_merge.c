/*
 * cmd_merge.c - `lokr merge`: bake adapters into a base model.
 *
 * Every tensor of every BASE file is written to OUT: layers that an adapter
 * touches are replaced by the merged weight (lokr_merge_layer: lokrd's
 * combination rule, lycoris-format.md "lokrd's decisions" 1-3) in --dtype or
 * the base tensor's own dtype; everything else (untouched layers, biases,
 * non-layer tensors) is copied byte for byte from the mapping, dtype and all.
 * The base files' metadata is kept.  OUT is written atomically.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cmds.h"
#include "lokr.h"

#define CMD "merge"

static const char help[] =
    "usage: lokr merge --base BASE [--base BASE]... --adapter FILE[:MULT]\n"
    "                  [--adapter FILE[:MULT]]... [--dtype f32|f16|bf16] -o OUT\n"
    "\n"
    "Write BASE with the adapters merged into the layers they touch.\n"
    "  --adapter FILE[:MULT]  adapter and its strength (default 1.0); only a\n"
    "                         trailing ':<number>' is a multiplier, so paths\n"
    "                         containing ':' work\n"
    "  --dtype D              dtype of the merged tensors (default: each base\n"
    "                         tensor's dtype); other tensors are copied as is\n"
    "  -o OUT                 output safetensors file (written atomically)\n"
    "Several adapters on one layer add their deltas, each taken against the\n"
    "base (DoRA: W0 + MULT * (DoRA(W0) - W0)).\n";

struct adapter_arg {
	char *path;
	float mult;
};

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

/* FILE[:MULT]: a trailing ":<number>" is the multiplier unless the whole
 * argument names an existing file and the part before the colon does not. */
static int parse_adapter(const char *arg, struct adapter_arg *out)
{
	const char *colon = strrchr(arg, ':');
	double m;
	out->mult = 1.0f;
	if (colon && colon > arg && !lokr_tool_parse_double(colon + 1, &m)) {
		char *prefix = strndup(arg, (size_t)(colon - arg));
		if (!prefix)
			return -1;
		if (file_exists(prefix) || !file_exists(arg)) {
			out->path = prefix;
			out->mult = (float)m;
			return 0;
		}
		free(prefix);
	}
	out->path = strdup(arg);
	return out->path ? 0 : -1;
}

/* Name of the layer a base tensor is the weight of, into buf; 0 if it is
 * not "<layer>.weight". */
static int weight_layer(const char *name, char *buf, size_t len)
{
	size_t n = strlen(name);
	if (n <= 7 || strcmp(name + n - 7, ".weight") || n - 7 >= len)
		return 0;
	memcpy(buf, name, n - 7);
	buf[n - 7] = '\0';
	return 1;
}

int lokr_cmd_merge(int argc, char **argv)
{
	const char **bases = calloc((size_t)argc, sizeof *bases);
	struct adapter_arg *ads = calloc((size_t)argc, sizeof *ads);
	size_t nbases = 0, nads = 0;
	const char *out_path = NULL;
	int dtype = -1, status = 1;
	lokr_base *base = NULL;
	lokr_adapter_ref *set = NULL;
	lokr_st_file **files = NULL;
	lokr_st_spec *specs = NULL;
	void **owned = NULL;
	char *layer_name = NULL;
	const char **mk = NULL, **mv = NULL;
	size_t nspecs = 0, nmeta = 0, nfiles = 0;
	lokr_error e = {0};

	if (!bases || !ads) {
		free(bases);
		free(ads);
		return lokr_tool_fail(CMD, 1, "out of memory");
	}
	for (int i = 1; i < argc; i++) {
		const char *s = argv[i], *val = NULL;
		if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
			fputs(help, stdout);
			status = 0;
			goto out;
		}
		if (!strcmp(s, "--base") || !strcmp(s, "--adapter") || !strcmp(s, "--dtype") ||
		    !strcmp(s, "-o") || !strcmp(s, "--output")) {
			if (i + 1 >= argc) {
				status = lokr_tool_fail(CMD, 2, "%s needs a value", s);
				goto out;
			}
			val = argv[++i];
		} else if (!strncmp(s, "--base=", 7) || !strncmp(s, "--adapter=", 10) ||
		           !strncmp(s, "--dtype=", 8) || !strncmp(s, "--output=", 9)) {
			val = strchr(s, '=') + 1;
		} else {
			status = lokr_tool_fail(CMD, 2, "unexpected argument '%s' (see --help)", s);
			goto out;
		}
		if (!strncmp(s, "--base", 6)) {
			bases[nbases++] = val;
		} else if (!strncmp(s, "--adapter", 9)) {
			if (parse_adapter(val, &ads[nads])) {
				status = lokr_tool_fail(CMD, 1, "out of memory");
				goto out;
			}
			nads++;
		} else if (!strncmp(s, "--dtype", 7)) {
			dtype = lokr_dtype_parse(val);
			if (dtype != LOKR_DTYPE_F32 && dtype != LOKR_DTYPE_F16 &&
			    dtype != LOKR_DTYPE_BF16) {
				status = lokr_tool_fail(CMD, 2, "--dtype must be f32, f16 or bf16");
				goto out;
			}
		} else {
			out_path = val;
		}
	}
	if (!nbases || !nads || !out_path) {
		status = lokr_tool_fail(CMD, 2, "needs --base, --adapter and -o (see --help)");
		goto out;
	}

	if (lokr_base_load(bases, nbases, &base, &e)) {
		lokr_tool_fail_file(CMD, 1, bases[0], e.msg);
		goto out;
	}
	set = calloc(nads, sizeof *set);
	if (!set) {
		lokr_tool_fail(CMD, 1, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < nads; i++) {
		lokr_st_file *f;
		lokr_adapter *a;
		if (lokr_st_open(ads[i].path, &f, &e)) {
			lokr_tool_fail_file(CMD, 1, ads[i].path, e.msg);
			goto out;
		}
		int rc = lokr_adapter_load(base, f, &a, &e);
		lokr_st_close(f);
		if (rc) {
			lokr_tool_fail_file(CMD, 1, ads[i].path, e.msg);
			goto out;
		}
		set[i].adapter = a;
		set[i].multiplier = ads[i].mult;
	}

	/* Every tensor of every base file, in file order. */
	files = calloc(nbases, sizeof *files);
	size_t total = 0, total_meta = 0;
	if (!files) {
		lokr_tool_fail(CMD, 1, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < nbases; k++, nfiles++) {
		if (lokr_st_open(bases[k], &files[k], &e)) {
			lokr_tool_fail_file(CMD, 1, bases[k], e.msg);
			goto out;
		}
		total += lokr_st_count(files[k]);
		total_meta += lokr_st_metadata_count(files[k]);
	}
	specs = calloc(total ? total : 1, sizeof *specs);
	owned = calloc(total ? total : 1, sizeof *owned);
	mk = calloc(total_meta ? total_meta : 1, sizeof *mk);
	mv = calloc(total_meta ? total_meta : 1, sizeof *mv);
	layer_name = malloc(4096);
	if (!specs || !owned || !mk || !mv || !layer_name) {
		lokr_tool_fail(CMD, 1, "out of memory");
		goto out;
	}
	for (size_t k = 0; k < nbases; k++) {
		/* metadata: the first file that sets a key wins */
		for (size_t i = 0; i < lokr_st_metadata_count(files[k]); i++) {
			const char *key, *val;
			int dup = 0;
			if (lokr_st_metadata_at(files[k], i, &key, &val))
				continue;
			for (size_t j = 0; j < nmeta && !dup; j++)
				dup = !strcmp(mk[j], key);
			if (!dup) {
				mk[nmeta] = key;
				mv[nmeta++] = val;
			}
		}
		for (size_t i = 0; i < lokr_st_count(files[k]); i++) {
			const lokr_st_tensor *t = lokr_st_at(files[k], i);
			lokr_st_spec *sp = &specs[nspecs];
			sp->name = t->name;
			sp->dtype_name = t->dtype_name;
			sp->ndim = t->ndim;
			memcpy(sp->shape, t->shape, sizeof sp->shape);
			sp->data = t->data;
			nspecs++;

			int64_t li;
			int touched = 0;
			if (!weight_layer(t->name, layer_name, 4096) ||
			    (li = lokr_base_layer_find(base, layer_name)) < 0)
				continue;
			for (size_t a = 0; a < nads && !touched; a++)
				touched =
				    lokr_adapter_module_for(set[a].adapter, (size_t)li) != NULL;
			if (!touched)
				continue;

			lokr_dtype dt = dtype >= 0 ? (lokr_dtype)dtype : t->dtype;
			if (dt == LOKR_DTYPE_OTHER) {
				lokr_tool_fail(CMD, 1, "%s: layer weight %s has dtype %s", bases[k],
				               t->name, t->dtype_name);
				goto out;
			}
			size_t n = (size_t)t->nelem;
			float *w = malloc(n * sizeof *w);
			void *enc =
			    dt == LOKR_DTYPE_F32 ? (void *)w : malloc(n * lokr_dtype_size(dt));
			if (!w || !enc) {
				free(w);
				lokr_tool_fail(CMD, 1, "out of memory merging %s", t->name);
				goto out;
			}
			owned[nspecs - 1] = enc;
			if (lokr_merge_layer(base, (size_t)li, set, nads, 0, w, &e)) {
				if (enc != w)
					free(w);
				lokr_tool_fail_file(CMD, 1, layer_name, e.msg);
				goto out;
			}
			if (enc != w) {
				lokr_encode_f32(dt, w, n, enc);
				free(w);
			}
			sp->dtype_name = lokr_dtype_name(dt);
			sp->data = enc;
		}
	}
	if (lokr_st_write_file(out_path, specs, nspecs, mk, mv, nmeta, &e)) {
		lokr_tool_fail_file(CMD, 1, out_path, e.msg);
		goto out;
	}
	status = 0;
out:
	if (owned)
		for (size_t i = 0; i < nspecs; i++)
			free(owned[i]);
	free(owned);
	free(specs);
	free(mk);
	free(mv);
	free(layer_name);
	for (size_t k = 0; k < nfiles; k++)
		lokr_st_close(files[k]);
	free(files);
	if (set)
		for (size_t i = 0; i < nads; i++)
			lokr_adapter_free((lokr_adapter *)set[i].adapter);
	free(set);
	lokr_base_free(base);
	for (size_t i = 0; i < nads; i++)
		free(ads[i].path);
	free(ads);
	free(bases);
	return status;
}
