/*
 * safetensors.c - the safetensors reader: open a file through a read-only
 * mmap (or borrow a caller's buffer), validate every rule the reference
 * parser enforces (lycoris-format.md 1.3, reliability.md 5.6) and a few it
 * does not (duplicate keys, leading '{'), and expose the tensors sorted by
 * name with pointers into the bytes.
 *
 * The header JSON is parsed by jansson with JSON_REJECT_DUPLICATES on the
 * exact N bytes (json_loadb, no NUL needed).  jansson rejects invalid UTF-8
 * inside strings and "\u0000" escapes; we check the whole header for UTF-8
 * first anyway so the message says what is wrong.  Every size that comes
 * from the file goes through the checked arithmetic of internal.h.  Data is
 * never dereferenced as a typed pointer: an unpadded header leaves tensors
 * misaligned, so readers decode bytes (lokr_decode_f32).
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* The JSON schema's bound on shape dims and offsets ("48 bits"). */
#define ST_MAX_VALUE ((uint64_t)1 << 48)

struct lokr_st_file {
	const uint8_t *buf; /* whole file; mapped when `map_len` != 0 */
	uint64_t len;
	size_t map_len; /* bytes to munmap, 0 when borrowed */
	size_t n;
	lokr_st_tensor *tensors; /* sorted by name */
	size_t nmeta;
	const char **meta_keys; /* into `strings`, file order */
	const char **meta_values;
	char *strings; /* arena: tensor names, metadata keys and values */
};

/* Strict UTF-8 check (internal.h). */
size_t lokr__utf8_bad_at(const uint8_t *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		uint8_t c = s[i];
		size_t need;
		uint32_t cp, min;
		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			need = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return i;
		}
		if (len - i <= need)
			return i;
		for (size_t k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += need + 1;
	}
	return len;
}

static int is_json_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A JSON integer in [0, 2^48]; reals ("1e3"), negatives and bigger values fail. */
static int get_u48(const json_t *v, uint64_t *out)
{
	if (!json_is_integer(v))
		return -1;
	json_int_t x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > ST_MAX_VALUE)
		return -1;
	*out = (uint64_t)x;
	return 0;
}

static int cmp_offsets(const void *a, const void *b)
{
	const lokr_st_tensor *x = *(lokr_st_tensor *const *)a, *y = *(lokr_st_tensor *const *)b;
	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(((const lokr_st_tensor *)a)->name, ((const lokr_st_tensor *)b)->name);
}

void lokr_st_close(lokr_st_file *f)
{
	if (!f)
		return;
	if (f->map_len)
		munmap((void *)f->buf, f->map_len);
	free(f->tensors);
	free(f->meta_keys);
	free(f->meta_values);
	free(f->strings);
	free(f);
}

/* Parse one tensor entry `v` named `name` into `t` (name set by the caller).
 * `data_len` is the size of the data section. */
static int parse_entry(const char *what, const char *name, const json_t *v, lokr_st_tensor *t,
                       uint64_t data_len, lokr_error *err)
{
	if (!json_is_object(v))
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: tensor '%.128s': entry is not a JSON object", what, name);
	const json_t *dtype = json_object_get(v, "dtype");
	const json_t *shape = json_object_get(v, "shape");
	const json_t *offs = json_object_get(v, "data_offsets");
	if (!json_is_string(dtype))
		return lokr__fail(err, LOKR_EFORMAT, "%s: tensor '%.128s': %s", what, name,
		                  dtype ? "\"dtype\" is not a string" : "no \"dtype\"");
	if (!json_is_array(shape))
		return lokr__fail(err, LOKR_EFORMAT, "%s: tensor '%.128s': %s", what, name,
		                  shape ? "\"shape\" is not an array" : "no \"shape\"");
	if (!json_is_array(offs))
		return lokr__fail(err, LOKR_EFORMAT, "%s: tensor '%.128s': %s", what, name,
		                  offs ? "\"data_offsets\" is not an array"
		                       : "no \"data_offsets\"");

	unsigned bits;
	const char *ds = json_string_value(dtype);
	if (lokr__st_dtype_lookup(ds, json_string_length(dtype), &t->dtype_name, &bits,
	                          &t->dtype) != 0)
		return lokr__fail(err, LOKR_EFORMAT, "%s: tensor '%.128s': unknown dtype \"%.40s\"",
		                  what, name, ds);

	size_t nd = json_array_size(shape);
	if (nd > LOKR_MAX_DIMS)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: tensor '%.128s': %zu dimensions, more than the %d supported",
		                  what, name, nd, LOKR_MAX_DIMS);
	t->ndim = (int)nd;
	uint64_t nelem = 1;
	int overflow = 0;
	for (size_t i = 0; i < nd; i++) {
		uint64_t d;
		if (get_u48(json_array_get(shape, i), &d) != 0)
			return lokr__fail(
			    err, LOKR_EFORMAT,
			    "%s: tensor '%.128s': shape[%zu] is not an integer in [0, 2^48]", what,
			    name, i);
		t->shape[i] = (int64_t)d;
		if (lokr__mul_u64(nelem, d, &nelem) != 0)
			overflow = 1;
	}
	char sb[200];
	if (overflow)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: tensor '%.128s': element count of shape %s overflows", what,
		                  name, lokr__shape_str(sb, sizeof sb, t->shape, t->ndim));
	t->nelem = nelem;
	uint64_t nbits;
	if (lokr__mul_u64(nelem, bits, &nbits) != 0)
		return lokr__fail(
		    err, LOKR_EFORMAT, "%s: tensor '%.128s': size of shape %s in %s overflows",
		    what, name, lokr__shape_str(sb, sizeof sb, t->shape, t->ndim), t->dtype_name);
	if (nbits % 8 != 0)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "%s: tensor '%.128s': shape %s of %s is %llu bits, not whole bytes", what, name,
		    lokr__shape_str(sb, sizeof sb, t->shape, t->ndim), t->dtype_name,
		    (unsigned long long)nbits);

	uint64_t begin, end;
	if (json_array_size(offs) != 2 || get_u48(json_array_get(offs, 0), &begin) != 0 ||
	    get_u48(json_array_get(offs, 1), &end) != 0)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "%s: tensor '%.128s': \"data_offsets\" is not two integers in [0, 2^48]", what,
		    name);
	if (end < begin)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: tensor '%.128s': data_offsets [%llu, %llu] end before begin",
		                  what, name, (unsigned long long)begin, (unsigned long long)end);
	if (end - begin != nbits / 8)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "%s: tensor '%.128s': data_offsets [%llu, %llu] hold %llu bytes but "
		    "shape %s of %s needs %llu",
		    what, name, (unsigned long long)begin, (unsigned long long)end,
		    (unsigned long long)(end - begin),
		    lokr__shape_str(sb, sizeof sb, t->shape, t->ndim), t->dtype_name,
		    (unsigned long long)(nbits / 8));
	if (end > data_len)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "%s: tensor '%.128s': data_offsets [%llu, %llu] past the end of the "
		    "%llu-byte data section",
		    what, name, (unsigned long long)begin, (unsigned long long)end,
		    (unsigned long long)data_len);
	t->offset = begin; /* made absolute once everything is checked */
	t->nbytes = end - begin;
	return LOKR_OK;
}

/* Validate the JSON header `root` and fill `f`.  `hdr_end` = 8 + N. */
static int parse_header(const char *what, const json_t *root, uint64_t hdr_end, lokr_st_file *f,
                        lokr_error *err)
{
	uint64_t data_len = f->len - hdr_end;
	const json_t *meta = NULL;
	size_t nent = json_object_size(root), strbytes = 0;
	const char *key;
	json_t *val;

	/* Pass 1: sizes of the arena and the arrays. */
	json_object_foreach((json_t *)root, key, val)
	{
		size_t klen = strlen(key);
		if (strcmp(key, "__metadata__") == 0) {
			meta = val;
			if (!json_is_object(meta))
				return lokr__fail(err, LOKR_EFORMAT,
				                  "%s: \"__metadata__\" is not a JSON object",
				                  what);
			const char *mk;
			json_t *mv;
			json_object_foreach((json_t *)meta, mk, mv)
			{
				if (!json_is_string(mv))
					return lokr__fail(
					    err, LOKR_EFORMAT,
					    "%s: metadata value of \"%.100s\" is not a "
					    "string",
					    what, mk);
				strbytes += strlen(mk) + 1 + json_string_length(mv) + 1;
			}
		} else {
			strbytes += klen + 1;
		}
	}
	f->n = nent - (meta != NULL);
	f->nmeta = meta ? json_object_size(meta) : 0;
	f->strings = lokr__try_malloc(strbytes);
	f->tensors = lokr__try_calloc(f->n, sizeof *f->tensors);
	f->meta_keys = lokr__try_calloc(f->nmeta, sizeof *f->meta_keys);
	f->meta_values = lokr__try_calloc(f->nmeta, sizeof *f->meta_values);
	lokr_st_tensor **byoff = lokr__try_calloc(f->n, sizeof *byoff);
	if (!f->strings || !f->tensors || !f->meta_keys || !f->meta_values || !byoff) {
		free(byoff);
		return lokr__fail(err, LOKR_ENOMEM, "%s: out of memory for %zu tensors", what,
		                  f->n);
	}

	/* Pass 2: copy strings, parse entries. */
	char *s = f->strings;
	size_t ti = 0, mi = 0;
	int rc = LOKR_OK;
	json_object_foreach((json_t *)root, key, val)
	{
		if (val == meta) {
			const char *mk;
			json_t *mv;
			json_object_foreach((json_t *)meta, mk, mv)
			{
				size_t kl = strlen(mk) + 1, vl = json_string_length(mv);
				f->meta_keys[mi] = memcpy(s, mk, kl);
				s += kl;
				f->meta_values[mi] = memcpy(s, json_string_value(mv), vl);
				s[vl] = '\0';
				s += vl + 1;
				mi++;
			}
			continue;
		}
		size_t kl = strlen(key) + 1;
		lokr_st_tensor *t = &f->tensors[ti];
		t->name = memcpy(s, key, kl);
		s += kl;
		rc = parse_entry(what, t->name, val, t, data_len, err);
		if (rc != LOKR_OK)
			goto out;
		byoff[ti] = t;
		ti++;
	}

	/* Offsets must tile [0, data_len) exactly: sorted by begin, each tensor
	 * starts where the previous one ended (no gap, no overlap). */
	qsort(byoff, f->n, sizeof *byoff, cmp_offsets);
	uint64_t at = 0;
	for (size_t i = 0; i < f->n; i++) {
		lokr_st_tensor *t = byoff[i];
		if (t->offset != at) {
			rc = lokr__fail(
			    err, LOKR_EFORMAT,
			    "%s: tensor '%.128s': data_offsets [%llu, %llu] %s: expected begin "
			    "%llu",
			    what, t->name, (unsigned long long)t->offset,
			    (unsigned long long)(t->offset + t->nbytes),
			    t->offset > at ? "leave a gap" : "overlap the previous tensor",
			    (unsigned long long)at);
			goto out;
		}
		at += t->nbytes;
	}
	if (at != data_len) {
		rc = lokr__fail(err, LOKR_EFORMAT,
		                "%s: tensors end at data offset %llu but the data section has %llu "
		                "bytes (%llu trailing bytes)",
		                what, (unsigned long long)at, (unsigned long long)data_len,
		                (unsigned long long)(data_len - at));
		goto out;
	}
	for (size_t i = 0; i < f->n; i++) {
		lokr_st_tensor *t = &f->tensors[i];
		t->offset += hdr_end;
		t->data = f->buf + t->offset;
	}
	qsort(f->tensors, f->n, sizeof *f->tensors, cmp_names);
out:
	free(byoff);
	return rc;
}

static int open_buffer(const uint8_t *buf, uint64_t len, const char *what, lokr_st_file *f,
                       lokr_error *err)
{
	f->buf = buf;
	f->len = len;
	if (len < 8)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: %llu bytes, too small for the 8-byte header length", what,
		                  (unsigned long long)len);
	uint64_t n = 0;
	for (int i = 7; i >= 0; i--)
		n = n << 8 | buf[i];
	if (n > LOKR_ST_MAX_HEADER)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: header length %llu exceeds the limit of %u bytes", what,
		                  (unsigned long long)n, LOKR_ST_MAX_HEADER);
	if (n > len - 8)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: header length %llu runs past the end of the %llu-byte file",
		                  what, (unsigned long long)n, (unsigned long long)len);
	const uint8_t *hdr = buf + 8;
	size_t bad = lokr__utf8_bad_at(hdr, (size_t)n);
	if (bad != n)
		return lokr__fail(
		    err, LOKR_EFORMAT,
		    "%s: header is not valid UTF-8 (byte 0x%02x at header offset %zu)", what,
		    hdr[bad], bad);
	size_t first = 0;
	while (first < n && is_json_space(hdr[first]))
		first++;
	if (first == n || hdr[first] != '{')
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: header is not a JSON object (it must begin with '{')", what);

	json_error_t jerr;
	json_t *root = json_loadb((const char *)hdr, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return lokr__fail(err, LOKR_EFORMAT,
		                  "%s: header is not valid JSON: %s (line %d, column %d)", what,
		                  jerr.text, jerr.line, jerr.column);
	int rc;
	if (!json_is_object(root))
		rc = lokr__fail(err, LOKR_EFORMAT, "%s: header top level is not a JSON object",
		                what);
	else
		rc = parse_header(what, root, 8 + n, f, err);
	json_decref(root);
	return rc;
}

int lokr_st_open_memory(const void *buf, size_t len, const char *what, lokr_st_file **out,
                        lokr_error *err)
{
	*out = NULL;
	if (!what)
		what = "(memory)";
	if (!buf && len)
		return lokr__fail(err, LOKR_EINVAL, "%s: NULL buffer", what);
	lokr_st_file *f = lokr__try_calloc(1, sizeof *f);
	if (!f)
		return lokr__fail(err, LOKR_ENOMEM, "%s: out of memory", what);
	int rc = open_buffer(buf ? buf : (const uint8_t *)"", len, what, f, err);
	if (rc != LOKR_OK) {
		lokr_st_close(f);
		return rc;
	}
	*out = f;
	return LOKR_OK;
}

int lokr_st_open(const char *path, lokr_st_file **out, lokr_error *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return lokr__fail(err, LOKR_EIO, "%s: cannot open: %s", path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return lokr__fail(err, LOKR_EIO, "%s: cannot stat: %s", path, strerror(e));
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return lokr__fail(err, LOKR_EIO, "%s: not a regular file", path);
	}
	if ((uint64_t)st.st_size > SIZE_MAX) {
		close(fd);
		return lokr__fail(err, LOKR_ERANGE, "%s: too large to map", path);
	}
	size_t len = (size_t)st.st_size;
	lokr_st_file *f = lokr__try_calloc(1, sizeof *f);
	if (!f) {
		close(fd);
		return lokr__fail(err, LOKR_ENOMEM, "%s: out of memory", path);
	}
	const uint8_t *buf = (const uint8_t *)"";
	if (len > 0) {
		void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			int e = errno;
			close(fd);
			free(f);
			return lokr__fail(err, LOKR_EIO, "%s: cannot mmap %zu bytes: %s", path, len,
			                  strerror(e));
		}
		buf = m;
		f->map_len = len;
	}
	close(fd);
	int rc = open_buffer(buf, len, path, f, err);
	if (rc != LOKR_OK) {
		lokr_st_close(f);
		return rc;
	}
	*out = f;
	return LOKR_OK;
}

size_t lokr_st_count(const lokr_st_file *f)
{
	return f->n;
}

const lokr_st_tensor *lokr_st_at(const lokr_st_file *f, size_t i)
{
	return i < f->n ? &f->tensors[i] : NULL;
}

const lokr_st_tensor *lokr_st_find(const lokr_st_file *f, const char *name)
{
	size_t lo = 0, hi = f->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(name, f->tensors[mid].name);
		if (c == 0)
			return &f->tensors[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

size_t lokr_st_metadata_count(const lokr_st_file *f)
{
	return f->nmeta;
}

int lokr_st_metadata_at(const lokr_st_file *f, size_t i, const char **key, const char **value)
{
	if (i >= f->nmeta)
		return LOKR_ENOTFOUND;
	if (key)
		*key = f->meta_keys[i];
	if (value)
		*value = f->meta_values[i];
	return LOKR_OK;
}

const char *lokr_st_metadata_get(const lokr_st_file *f, const char *key)
{
	for (size_t i = 0; i < f->nmeta; i++)
		if (strcmp(f->meta_keys[i], key) == 0)
			return f->meta_values[i];
	return NULL;
}

uint64_t lokr_st_size(const lokr_st_file *f)
{
	return f->len;
}

const uint8_t *lokr_st_bytes(const lokr_st_file *f)
{
	return f->buf;
}

int lokr_st_tensor_f32(const lokr_st_tensor *t, float *dst, lokr_error *err)
{
	if (t->dtype == LOKR_DTYPE_OTHER)
		return lokr__fail(
		    err, LOKR_EUNSUPPORTED,
		    "tensor '%.128s': dtype %s cannot be decoded to float32 (F32, F16, "
		    "BF16 and F64 can)",
		    t->name, t->dtype_name);
	if (t->nelem > SIZE_MAX)
		return lokr__fail(err, LOKR_ERANGE, "tensor '%.128s': too many elements", t->name);
	int rc = lokr_decode_f32(t->dtype, t->data, (size_t)t->nelem, dst);
	if (rc != LOKR_OK)
		return lokr__fail(err, rc, "tensor '%.128s': cannot decode %s", t->name,
		                  t->dtype_name);
	return LOKR_OK;
}
