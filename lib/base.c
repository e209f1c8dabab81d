/*
 * base.c - the base model: layers read from safetensors files, converted
 * once to float32 in 64-byte aligned memory, found by name or by adapter
 * module name, and serialized to / attached from a self-describing blob for
 * shared memory.
 *
 * Layers.  Every tensor NAME.weight of rank 2..5 is the layer NAME (rank 2
 * linear, 3..5 conv with 1..3 kernel dims); NAME.bias, if some file has it,
 * must be 1-D of length out.  Other tensors (norms, embeddings' 1-D
 * parameters, buffers) are ignored.  All weights and biases live in one
 * aligned block; each array starts on a 64-byte boundary.
 *
 * Module map (lycoris-format.md 7.1).  Adapter module names cannot be parsed
 * back into layer names (paths contain "_"), so a forward map is built at
 * load: per layer the unmodified name, the mangled name (every "." -> "_"),
 * each accepted prefix + "_" + mangled name, and "lora_unet_" + the mangled
 * name without a "diffusion_model." / "model.diffusion_model." root.  The
 * entries are sorted (bsearch lookups); a key two layers produce is kept
 * once with index -2, so a colliding module is reported, never guessed.
 *
 * Blob (reliability.md 6).  Layout, all offsets from the blob start, host
 * byte order (the blob is shared between processes of one machine; an
 * endianness marker rejects anything else):
 *   header (128 bytes: magic "LOKRBASE", version, marker, checksum, sizes)
 *   layer table (nlayers fixed-size records)
 *   strings (source identity, then layer names, NUL-terminated)
 *   data (64-byte aligned weight and bias arrays), total padded to 64.
 * The checksum is a 4-lane multiply-rotate hash over 8-byte words of the
 * whole blob with the checksum word taken as zero: each step is a bijection
 * of the lane state, so any single corrupted word changes the result, and it
 * runs at memory speed (tests/unit/base.c measures it).  It is an integrity
 * check against corruption and truncation, not a defence against an
 * attacker who can write the segment.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"

#define BLOB_MAGIC   "LOKRBASE"
#define BLOB_VERSION 1u
#define BLOB_ENDIAN  0x01020304u
#define ALIGN        64u

struct blob_hdr {
	char magic[8];
	uint32_t version;
	uint32_t endian;
	uint64_t checksum; /* word 2 of the blob; hashed as zero */
	uint64_t total;    /* blob length in bytes, a multiple of 64 */
	uint64_t nlayers;
	uint64_t table_off;
	uint64_t strings_off, strings_len;
	uint64_t identity_off, identity_len; /* length without the NUL */
	uint64_t data_off, data_len;
	uint64_t reserved[4];
};
_Static_assert(sizeof(struct blob_hdr) == 128, "blob header is 128 bytes");

struct blob_layer {
	uint64_t name_off, name_len; /* absolute; NUL at name_off + name_len */
	int64_t shape[5];
	uint32_t ndim, kind;
	uint32_t src_dtype, has_bias;
	uint64_t weight_off, weight_count; /* absolute byte offset; floats */
	uint64_t bias_off, bias_count;
};
_Static_assert(sizeof(struct blob_layer) == 104, "blob layer record is 104 bytes");

struct map_entry {
	const char *key;
	int64_t idx; /* layer index, or -2 when two layers produce this key */
};

struct lokr_base {
	size_t n;
	lokr_layer *layers; /* sorted by name */
	char *names;        /* owned arena of layer names (NULL when attached) */
	float *data;        /* owned aligned block (NULL when attached) */
	uint64_t bytes;     /* float32 bytes of weights and biases */
	size_t nmap;
	struct map_entry *map;
	char *map_keys;       /* owned arena of map keys */
	const char *identity; /* source identity (owned copy or in the blob) */
	char *identity_owned;
};

static const char *const module_prefixes[] = {"lycoris",  "lora_unet", "lora_te",
                                              "lora_te1", "lora_te2",  "lora_te3"};
static const char *const root_prefixes[] = {"model.diffusion_model.", "diffusion_model."};

static uint64_t round_up(uint64_t x)
{
	return (x + (ALIGN - 1)) & ~(uint64_t)(ALIGN - 1);
}

void lokr_base_free(lokr_base *b)
{
	if (!b)
		return;
	free(b->layers);
	free(b->names);
	free(b->data);
	free(b->map);
	free(b->map_keys);
	free(b->identity_owned);
	free(b);
}

size_t lokr_base_layer_count(const lokr_base *b)
{
	return b->n;
}

const lokr_layer *lokr_base_layer_at(const lokr_base *b, size_t i)
{
	return i < b->n ? &b->layers[i] : NULL;
}

int64_t lokr_base_layer_find(const lokr_base *b, const char *name)
{
	size_t lo = 0, hi = b->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, b->layers[mid].name);
		if (c == 0)
			return (int64_t)mid;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

uint64_t lokr_base_bytes(const lokr_base *b)
{
	return b->bytes;
}

const char *lokr_base_identity(const lokr_base *b)
{
	return b->identity ? b->identity : "";
}

/* ------------------------------------------------------------- module map */

static int cmp_map(const void *a, const void *b)
{
	const struct map_entry *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	if (c)
		return c;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Append `prefix` ("" for none, else followed by "_") and `name` with "."
 * mangled to "_" when `mangle`; returns the key and advances *at. */
static const char *put_key(char **at, const char *prefix, const char *name, int mangle)
{
	char *k = *at, *p = k;
	size_t pl = strlen(prefix);
	if (pl) {
		memcpy(p, prefix, pl);
		p += pl;
		*p++ = '_';
	}
	for (const char *s = name; *s; s++)
		*p++ = (mangle && *s == '.') ? '_' : *s;
	*p++ = '\0';
	*at = p;
	return k;
}

static const char *strip_root(const char *name)
{
	for (size_t r = 0; r < sizeof root_prefixes / sizeof root_prefixes[0]; r++) {
		size_t l = strlen(root_prefixes[r]);
		if (strncmp(name, root_prefixes[r], l) == 0 && name[l])
			return name + l;
	}
	return NULL;
}

static int build_map(lokr_base *b, lokr_error *err)
{
	const size_t np = sizeof module_prefixes / sizeof module_prefixes[0];
	uint64_t bytes = 0, count = 0;
	for (size_t i = 0; i < b->n; i++) {
		uint64_t l = strlen(b->layers[i].name) + 1;
		bytes += 2 * l;
		count += 2;
		for (size_t p = 0; p < np; p++)
			bytes += strlen(module_prefixes[p]) + 1 + l;
		count += np;
		const char *s = strip_root(b->layers[i].name);
		if (s) {
			bytes += strlen("lora_unet_") + strlen(s) + 1;
			count++;
		}
	}
	if (bytes > SIZE_MAX / 2 || count > SIZE_MAX / sizeof *b->map)
		return lokr__fail(err, LOKR_ERANGE, "base: module map too large");
	b->map_keys = lokr__try_malloc((size_t)bytes);
	b->map = lokr__try_calloc((size_t)count, sizeof *b->map);
	if (!b->map_keys || !b->map)
		return lokr__fail(err, LOKR_ENOMEM, "base: out of memory for the module map");
	char *at = b->map_keys;
	size_t m = 0;
	for (size_t i = 0; i < b->n; i++) {
		const char *name = b->layers[i].name;
		b->map[m++] = (struct map_entry){put_key(&at, "", name, 0), (int64_t)i};
		b->map[m++] = (struct map_entry){put_key(&at, "", name, 1), (int64_t)i};
		for (size_t p = 0; p < np; p++)
			b->map[m++] = (struct map_entry){put_key(&at, module_prefixes[p], name, 1),
			                                 (int64_t)i};
		const char *s = strip_root(name);
		if (s)
			b->map[m++] =
			    (struct map_entry){put_key(&at, "lora_unet", s, 1), (int64_t)i};
	}
	LOKR_ASSERT(m == count && (uint64_t)(at - b->map_keys) == bytes);
	qsort(b->map, m, sizeof *b->map, cmp_map);
	/* collapse runs of one key: same layer -> once; different layers -> -2 */
	size_t out = 0;
	for (size_t i = 0; i < m;) {
		size_t j = i + 1;
		int64_t idx = b->map[i].idx;
		while (j < m && strcmp(b->map[j].key, b->map[i].key) == 0) {
			if (b->map[j].idx != idx)
				idx = -2;
			j++;
		}
		b->map[out++] = (struct map_entry){b->map[i].key, idx};
		i = j;
	}
	b->nmap = out;
	return LOKR_OK;
}

int64_t lokr_base_map_module(const lokr_base *b, const char *module)
{
	size_t lo = 0, hi = b->nmap;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(module, b->map[mid].key);
		if (c == 0)
			return b->map[mid].idx;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* ---------------------------------------------------------------- loading */

/* Set out/in/kk/kind from ndim and shape; fails on an empty or too large
 * shape.  `weight_count` receives out * in * kk. */
static int layer_dims(lokr_layer *l, uint64_t *weight_count)
{
	uint64_t n = 1;
	for (int d = 0; d < l->ndim; d++) {
		if (l->shape[d] <= 0 || lokr__mul_u64(n, (uint64_t)l->shape[d], &n) != 0)
			return -1;
	}
	if (n > (uint64_t)INT64_MAX / 4)
		return -1;
	l->kind = l->ndim == 2 ? LOKR_LAYER_LINEAR : LOKR_LAYER_CONV;
	l->out = l->shape[0];
	l->in = l->shape[1];
	l->kk = 1;
	for (int d = 2; d < l->ndim; d++)
		l->kk *= l->shape[d];
	*weight_count = n;
	return 0;
}

/* One candidate layer during loading. */
struct cand {
	const char *name; /* in the names arena */
	size_t file;
	const lokr_st_tensor *w, *bias;
	size_t bias_file;
};

static int cmp_cand(const void *a, const void *b)
{
	return strcmp(((const struct cand *)a)->name, ((const struct cand *)b)->name);
}

static int is_layer_weight(const lokr_st_tensor *t)
{
	size_t l = strlen(t->name);
	return l > 7 && strcmp(t->name + l - 7, ".weight") == 0 && t->ndim >= 2 && t->ndim <= 5;
}

int lokr_base_source_identity(const char *const *paths, size_t npaths, char *buf, size_t len,
                              lokr_error *err)
{
	size_t at = 0;
	if (len == 0)
		return lokr__fail(err, LOKR_ERANGE, "base: identity buffer is empty");
	buf[0] = '\0';
	for (size_t i = 0; i < npaths; i++) {
		struct stat st;
		if (stat(paths[i], &st) != 0)
			return lokr__fail(err, LOKR_EIO, "%s: cannot stat: %s", paths[i],
			                  strerror(errno));
		int n = snprintf(buf + at, len - at, "%s\t%llu\t%lld.%09ld\t%llu:%llu\n", paths[i],
		                 (unsigned long long)st.st_size, (long long)st.st_mtim.tv_sec,
		                 (long)st.st_mtim.tv_nsec, (unsigned long long)st.st_dev,
		                 (unsigned long long)st.st_ino);
		if (n < 0 || (size_t)n >= len - at)
			return lokr__fail(err, LOKR_ERANGE, "base: identity longer than %zu bytes",
			                  len);
		at += (size_t)n;
	}
	return LOKR_OK;
}

static int set_identity(lokr_base *b, const char *const *paths, size_t npaths, lokr_error *err)
{
	size_t len = 64;
	for (size_t i = 0; i < npaths; i++)
		len += strlen(paths[i]) + 96;
	b->identity_owned = lokr__try_malloc(len);
	if (!b->identity_owned)
		return lokr__fail(err, LOKR_ENOMEM, "base: out of memory");
	b->identity = b->identity_owned;
	return lokr_base_source_identity(paths, npaths, b->identity_owned, len, err);
}

/* Look for NAME.bias in every file; a bias in two files is an error. */
static int find_bias(struct cand *c, lokr_st_file *const *files, size_t nfiles,
                     const char *const *paths, char *tmp, lokr_error *err)
{
	size_t l = strlen(c->name);
	memcpy(tmp, c->name, l);
	memcpy(tmp + l, ".bias", 6);
	for (size_t f = 0; f < nfiles; f++) {
		const lokr_st_tensor *t = lokr_st_find(files[f], tmp);
		if (!t)
			continue;
		if (c->bias)
			return lokr__fail(err, LOKR_EINVAL,
			                  "base: tensor '%.128s' in both %s and %s", tmp,
			                  paths[c->bias_file], paths[f]);
		c->bias = t;
		c->bias_file = f;
	}
	if (c->bias) {
		const lokr_st_tensor *t = c->bias;
		char sb[200];
		if (t->ndim != 1 || t->shape[0] != c->w->shape[0])
			return lokr__fail(
			    err, LOKR_EINVAL,
			    "%s: bias '%.128s' has shape %s, expected (%lld) for weight "
			    "shape %s",
			    paths[c->bias_file], tmp,
			    lokr__shape_str(sb, sizeof sb, t->shape, t->ndim),
			    (long long)c->w->shape[0],
			    lokr__shape_str(sb + 100, 100, c->w->shape, c->w->ndim));
		if (t->dtype == LOKR_DTYPE_OTHER)
			return lokr__fail(err, LOKR_EUNSUPPORTED,
			                  "%s: bias '%.128s' has dtype %s (F32, F16, BF16 or F64 "
			                  "needed)",
			                  paths[c->bias_file], tmp, t->dtype_name);
	}
	return LOKR_OK;
}

static int load_layers(lokr_base *b, lokr_st_file *const *files, const char *const *paths,
                       size_t nfiles, lokr_error *err)
{
	size_t ncand = 0, namebytes = 0, maxname = 0;
	for (size_t f = 0; f < nfiles; f++)
		for (size_t i = 0; i < lokr_st_count(files[f]); i++) {
			const lokr_st_tensor *t = lokr_st_at(files[f], i);
			if (is_layer_weight(t)) {
				size_t l = strlen(t->name) - 7;
				ncand++;
				namebytes += l + 1;
				maxname = l > maxname ? l : maxname;
			}
		}
	struct cand *c = lokr__try_calloc(ncand, sizeof *c);
	b->names = lokr__try_malloc(namebytes);
	char *tmp = lokr__try_malloc(maxname + 8);
	b->layers = lokr__try_calloc(ncand, sizeof *b->layers);
	int rc = LOKR_OK;
	if (!c || !b->names || !tmp || !b->layers) {
		rc = lokr__fail(err, LOKR_ENOMEM, "base: out of memory for %zu layers", ncand);
		goto out;
	}
	char *at = b->names;
	size_t k = 0;
	for (size_t f = 0; f < nfiles; f++)
		for (size_t i = 0; i < lokr_st_count(files[f]); i++) {
			const lokr_st_tensor *t = lokr_st_at(files[f], i);
			if (!is_layer_weight(t))
				continue;
			size_t l = strlen(t->name) - 7;
			memcpy(at, t->name, l);
			at[l] = '\0';
			c[k++] = (struct cand){.name = at, .file = f, .w = t};
			at += l + 1;
		}
	qsort(c, ncand, sizeof *c, cmp_cand);
	for (size_t i = 0; i + 1 < ncand; i++)
		if (strcmp(c[i].name, c[i + 1].name) == 0) {
			rc = lokr__fail(err, LOKR_EINVAL,
			                "base: layer '%.128s' is in both %s and %s", c[i].name,
			                paths[c[i].file], paths[c[i + 1].file]);
			goto out;
		}

	/* shapes, biases and the size of the data block */
	uint64_t total = 0;
	for (size_t i = 0; i < ncand; i++) {
		lokr_layer *l = &b->layers[i];
		const lokr_st_tensor *w = c[i].w;
		char sb[200];
		l->name = c[i].name;
		l->ndim = w->ndim;
		memcpy(l->shape, w->shape, (size_t)w->ndim * sizeof l->shape[0]);
		l->src_dtype = w->dtype;
		uint64_t nw;
		if (w->dtype == LOKR_DTYPE_OTHER) {
			rc = lokr__fail(
			    err, LOKR_EUNSUPPORTED,
			    "%s: layer weight '%.128s' has dtype %s (F32, F16, BF16 or F64 "
			    "needed)",
			    paths[c[i].file], w->name, w->dtype_name);
			goto out;
		}
		if (layer_dims(l, &nw) != 0) {
			rc = lokr__fail(err, LOKR_EINVAL,
			                "%s: layer weight '%.128s' has unusable shape %s",
			                paths[c[i].file], w->name,
			                lokr__shape_str(sb, sizeof sb, w->shape, w->ndim));
			goto out;
		}
		rc = find_bias(&c[i], files, nfiles, paths, tmp, err);
		if (rc != LOKR_OK)
			goto out;
		uint64_t wb = round_up(nw * 4), bb = c[i].bias ? round_up((uint64_t)l->out * 4) : 0;
		if (lokr__add_u64(total, wb, &total) != 0 ||
		    lokr__add_u64(total, bb, &total) != 0) {
			rc = lokr__fail(err, LOKR_ERANGE, "base: total size overflows");
			goto out;
		}
		b->bytes += nw * 4 + (c[i].bias ? (uint64_t)l->out * 4 : 0);
	}
	if (total > SIZE_MAX) {
		rc = lokr__fail(err, LOKR_ERANGE, "base: %llu bytes do not fit in memory",
		                (unsigned long long)total);
		goto out;
	}
	b->data = lokr__try_aligned((size_t)(total ? total : ALIGN));
	if (!b->data) {
		rc = lokr__fail(err, LOKR_ENOMEM, "base: out of memory for %llu bytes of weights",
		                (unsigned long long)total);
		goto out;
	}
	uint8_t *d = (uint8_t *)b->data;
	for (size_t i = 0; i < ncand; i++) {
		lokr_layer *l = &b->layers[i];
		float *w = (float *)(void *)d;
		rc = lokr_st_tensor_f32(c[i].w, w, err);
		if (rc != LOKR_OK)
			goto out;
		l->weight = w;
		d += round_up(c[i].w->nelem * 4);
		if (c[i].bias) {
			float *bias = (float *)(void *)d;
			rc = lokr_st_tensor_f32(c[i].bias, bias, err);
			if (rc != LOKR_OK)
				goto out;
			l->bias = bias;
			d += round_up((uint64_t)l->out * 4);
		}
	}
	b->n = ncand;
out:
	free(c);
	free(tmp);
	return rc;
}

int lokr_base_load(const char *const *paths, size_t npaths, lokr_base **out, lokr_error *err)
{
	*out = NULL;
	if (npaths == 0 || !paths)
		return lokr__fail(err, LOKR_EINVAL, "base: no files given");
	lokr_base *b = lokr__try_calloc(1, sizeof *b);
	lokr_st_file **files = lokr__try_calloc(npaths, sizeof *files);
	int rc = LOKR_OK;
	if (!b || !files) {
		rc = lokr__fail(err, LOKR_ENOMEM, "base: out of memory");
		goto out;
	}
	for (size_t f = 0; f < npaths; f++) {
		rc = lokr_st_open(paths[f], &files[f], err);
		if (rc != LOKR_OK)
			goto out;
	}
	rc = set_identity(b, paths, npaths, err);
	if (rc == LOKR_OK)
		rc = load_layers(b, files, paths, npaths, err);
	if (rc == LOKR_OK)
		rc = build_map(b, err);
out:
	for (size_t f = 0; files && f < npaths; f++)
		lokr_st_close(files[f]);
	free(files);
	if (rc != LOKR_OK) {
		lokr_base_free(b);
		return rc;
	}
	*out = b;
	return LOKR_OK;
}

/* ------------------------------------------------------------------- blob */

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t word_at(const uint8_t *p)
{
	uint64_t w;
	memcpy(&w, p, 8);
	return w;
}

/* 4-lane multiply-rotate hash of `len` bytes (len % 32 == 0), with the
 * checksum word (bytes 16..23) read as zero. */
static uint64_t blob_checksum(const uint8_t *p, uint64_t len)
{
	const uint64_t k = 0x9e3779b97f4a7c15ull;
	uint64_t h[4] = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull, 0x100000001b3ull,
	                 0x2545f4914f6cdd1dull};
	for (uint64_t i = 0; i < len; i += 32) {
		uint64_t w0 = word_at(p + i), w1 = word_at(p + i + 8), w2 = word_at(p + i + 16),
		         w3 = word_at(p + i + 24);
		if (i == 0)
			w2 = 0;
		h[0] = rotl64((h[0] ^ w0) * k, 31);
		h[1] = rotl64((h[1] ^ w1) * k, 31);
		h[2] = rotl64((h[2] ^ w2) * k, 31);
		h[3] = rotl64((h[3] ^ w3) * k, 31);
	}
	uint64_t r = len;
	for (int j = 0; j < 4; j++) {
		r = (r ^ h[j]) * k;
		r ^= r >> 29;
	}
	return r;
}

uint64_t lokr__blob_checksum(const void *blob, uint64_t len)
{
	return blob_checksum(blob, len);
}

/* Sizes of the blob's parts for base b. */
struct blob_plan {
	uint64_t table_off, strings_off, strings_len, data_off, total;
};

static void plan_blob(const lokr_base *b, struct blob_plan *p)
{
	uint64_t s = strlen(lokr_base_identity(b)) + 1;
	for (size_t i = 0; i < b->n; i++)
		s += strlen(b->layers[i].name) + 1;
	p->table_off = sizeof(struct blob_hdr);
	p->strings_off = p->table_off + (uint64_t)b->n * sizeof(struct blob_layer);
	p->strings_len = s;
	p->data_off = round_up(p->strings_off + s);
	uint64_t d = 0;
	for (size_t i = 0; i < b->n; i++) {
		const lokr_layer *l = &b->layers[i];
		d += round_up((uint64_t)l->out * (uint64_t)l->in * (uint64_t)l->kk * 4);
		if (l->bias)
			d += round_up((uint64_t)l->out * 4);
	}
	p->total = p->data_off + d;
}

uint64_t lokr_base_blob_size(const lokr_base *b)
{
	struct blob_plan p;
	plan_blob(b, &p);
	return p.total;
}

int lokr_base_blob_write(const lokr_base *b, void *dst, uint64_t len)
{
	struct blob_plan p;
	plan_blob(b, &p);
	if (!dst || len != p.total)
		return LOKR_EINVAL;
	uint8_t *out = dst;
	struct blob_hdr h;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, BLOB_MAGIC, 8);
	h.version = BLOB_VERSION;
	h.endian = BLOB_ENDIAN;
	h.total = p.total;
	h.nlayers = b->n;
	h.table_off = p.table_off;
	h.strings_off = p.strings_off;
	h.strings_len = p.strings_len;
	h.data_off = p.data_off;
	h.data_len = p.total - p.data_off;

	const char *id = lokr_base_identity(b);
	uint64_t s = p.strings_off, d = p.data_off;
	h.identity_off = s;
	h.identity_len = strlen(id);
	memcpy(out + s, id, h.identity_len + 1);
	s += h.identity_len + 1;
	for (size_t i = 0; i < b->n; i++) {
		const lokr_layer *l = &b->layers[i];
		struct blob_layer r;
		memset(&r, 0, sizeof r);
		r.name_off = s;
		r.name_len = strlen(l->name);
		memcpy(out + s, l->name, r.name_len + 1);
		s += r.name_len + 1;
		memcpy(r.shape, l->shape, (size_t)l->ndim * sizeof r.shape[0]);
		r.ndim = (uint32_t)l->ndim;
		r.kind = (uint32_t)l->kind;
		r.src_dtype = (uint32_t)l->src_dtype;
		r.weight_off = d;
		r.weight_count = (uint64_t)l->out * (uint64_t)l->in * (uint64_t)l->kk;
		memcpy(out + d, l->weight, r.weight_count * 4);
		d += round_up(r.weight_count * 4);
		if (l->bias) {
			r.has_bias = 1;
			r.bias_off = d;
			r.bias_count = (uint64_t)l->out;
			memcpy(out + d, l->bias, r.bias_count * 4);
			d += round_up(r.bias_count * 4);
		}
		memcpy(out + p.table_off + i * sizeof r, &r, sizeof r);
	}
	LOKR_ASSERT(s == p.strings_off + p.strings_len && d == p.total);
	memset(out + s, 0, p.data_off - s); /* padding: the caller zeroed it, be sure */
	memcpy(out, &h, sizeof h);
	h.checksum = blob_checksum(out, p.total);
	memcpy(out + offsetof(struct blob_hdr, checksum), &h.checksum, 8);
	return LOKR_OK;
}

/* `off + len` inside [lo, hi), checked. */
static int in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi)
{
	uint64_t end;
	return off >= lo && lokr__add_u64(off, len, &end) == 0 && end <= hi;
}

/* A NUL-terminated string of `len` bytes at `off` inside [lo, hi). */
static int string_ok(const uint8_t *blob, uint64_t off, uint64_t len, uint64_t lo, uint64_t hi)
{
	return len < UINT64_MAX && in_range(off, len + 1, lo, hi) && blob[off + len] == '\0' &&
	       memchr(blob + off, '\0', (size_t)len) == NULL;
}

int lokr_base_attach(const void *blob, uint64_t len, lokr_base **out, lokr_error *err)
{
	*out = NULL;
	const uint8_t *p = blob;
	struct blob_hdr h;
	if (!blob || ((uintptr_t)blob % ALIGN) != 0)
		return lokr__fail(err, LOKR_EINVAL, "base blob: not 64-byte aligned");
	if (len < sizeof h)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "base blob: %llu bytes, shorter than its header",
		                  (unsigned long long)len);
	memcpy(&h, p, sizeof h);
	if (memcmp(h.magic, BLOB_MAGIC, 8) != 0)
		return lokr__fail(err, LOKR_EFORMAT, "base blob: bad magic");
	if (h.version != BLOB_VERSION || h.endian != BLOB_ENDIAN)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "base blob: version %u / byte order 0x%08x, expected %u / 0x%08x",
		                  h.version, h.endian, BLOB_VERSION, BLOB_ENDIAN);
	if (h.total != len || len % ALIGN != 0)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "base blob: header says %llu bytes, the segment has %llu (truncated?)",
		    (unsigned long long)h.total, (unsigned long long)len);
	uint64_t sum = blob_checksum(p, len);
	if (sum != h.checksum)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "base blob: checksum mismatch (stored %016llx, computed %016llx)",
		                  (unsigned long long)h.checksum, (unsigned long long)sum);
	uint64_t table_len;
	if (lokr__mul_u64(h.nlayers, sizeof(struct blob_layer), &table_len) != 0 ||
	    h.table_off % 8 != 0 || !in_range(h.table_off, table_len, sizeof h, len) ||
	    !in_range(h.strings_off, h.strings_len, sizeof h, len) || h.data_off % ALIGN != 0 ||
	    !in_range(h.data_off, h.data_len, sizeof h, len) || h.nlayers > SIZE_MAX / 2)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "base blob: table, strings or data out of bounds");
	uint64_t s_lo = h.strings_off, s_hi = h.strings_off + h.strings_len;
	uint64_t d_lo = h.data_off, d_hi = h.data_off + h.data_len;
	if (!string_ok(p, h.identity_off, h.identity_len, s_lo, s_hi))
		return lokr__fail(err, LOKR_EFORMAT, "base blob: bad source identity string");

	lokr_base *b = lokr__try_calloc(1, sizeof *b);
	if (!b)
		return lokr__fail(err, LOKR_ENOMEM, "base blob: out of memory");
	b->identity = (const char *)p + h.identity_off;
	b->layers = lokr__try_calloc((size_t)h.nlayers, sizeof *b->layers);
	int rc = LOKR_OK;
	if (!b->layers) {
		rc = lokr__fail(err, LOKR_ENOMEM, "base blob: out of memory");
		goto fail;
	}
	for (size_t i = 0; i < h.nlayers; i++) {
		struct blob_layer r;
		memcpy(&r, p + h.table_off + i * sizeof r, sizeof r);
		lokr_layer *l = &b->layers[i];
		uint64_t nw;
		if (!string_ok(p, r.name_off, r.name_len, s_lo, s_hi) || r.ndim < 2 || r.ndim > 5) {
			rc = lokr__fail(err, LOKR_EFORMAT, "base blob: layer %zu: bad name or rank",
			                i);
			goto fail;
		}
		l->name = (const char *)p + r.name_off;
		l->ndim = (int)r.ndim;
		memcpy(l->shape, r.shape, sizeof l->shape);
		if (layer_dims(l, &nw) != 0 || r.kind != (uint32_t)l->kind ||
		    r.src_dtype > LOKR_DTYPE_F64 || r.has_bias > 1 || r.weight_count != nw ||
		    r.weight_off % ALIGN != 0 || !in_range(r.weight_off, nw * 4, d_lo, d_hi) ||
		    (r.has_bias && (r.bias_count != (uint64_t)l->out || r.bias_off % ALIGN != 0 ||
		                    !in_range(r.bias_off, r.bias_count * 4, d_lo, d_hi)))) {
			rc = lokr__fail(err, LOKR_EFORMAT,
			                "base blob: layer '%.128s': inconsistent shape, kind or "
			                "offsets",
			                l->name);
			goto fail;
		}
		if (i > 0 && strcmp(b->layers[i - 1].name, l->name) >= 0) {
			rc = lokr__fail(err, LOKR_EFORMAT,
			                "base blob: layers not sorted at '%.128s'", l->name);
			goto fail;
		}
		l->src_dtype = (lokr_dtype)r.src_dtype;
		l->weight = (const float *)(const void *)(p + r.weight_off);
		l->bias = r.has_bias ? (const float *)(const void *)(p + r.bias_off) : NULL;
		b->bytes += nw * 4 + (r.has_bias ? r.bias_count * 4 : 0);
	}
	b->n = (size_t)h.nlayers;
	rc = build_map(b, err);
	if (rc != LOKR_OK)
		goto fail;
	*out = b;
	return LOKR_OK;
fail:
	lokr_base_free(b);
	return rc;
}
