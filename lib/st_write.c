/*
 * st_write.c - the safetensors writer: compute the reference writer's layout
 * (tensors sorted by dtype alignment descending, then by name, back to back;
 * header JSON padded with spaces to a multiple of 8 so the data section
 * starts 8-aligned and every tensor starts at a multiple of its element
 * size), then either let the caller stream it (HTTP responses) or write a
 * whole file atomically: temp file in the same directory, fsync, rename,
 * fsync the directory.
 *
 * The JSON is produced by hand in two passes (measure, then fill) so the
 * header is allocated once at its exact size.  The key order is the
 * reference's: "__metadata__" first, then tensors in data order, each with
 * "dtype", "shape", "data_offsets".
 *
 * The reference (safetensors prepare()) breaks ties between dtypes of the
 * same size by its enum order (BF16 before F16, U64 before I64 before F64);
 * the contract here (lokr.h) sorts equal alignments by name instead.  Both
 * layouts are valid files; only byte-for-byte comparisons could tell.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* A measuring/filling output: with buf == NULL only `len` advances. */
struct out {
	char *buf;
	size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->buf)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_u64(struct out *o, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
	put(o, tmp, (size_t)n);
}

/* JSON string with the escapes serde_json uses: \" \\ \b \f \n \r \t and
 * \u00XX for other control characters; everything else verbatim (UTF-8). */
static void put_json_string(struct out *o, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	put(o, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			put(o, "\\\"", 2);
			break;
		case '\\':
			put(o, "\\\\", 2);
			break;
		case '\b':
			put(o, "\\b", 2);
			break;
		case '\f':
			put(o, "\\f", 2);
			break;
		case '\n':
			put(o, "\\n", 2);
			break;
		case '\r':
			put(o, "\\r", 2);
			break;
		case '\t':
			put(o, "\\t", 2);
			break;
		default:
			if (*p < 0x20) {
				char u[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
				put(o, u, 6);
			} else {
				put(o, (const char *)p, 1);
			}
		}
	}
	put(o, "\"", 1);
}

/* The reader's strict UTF-8 check (lokr__utf8_bad_at), on a NUL-terminated
 * string. */
static int utf8_ok(const char *str)
{
	size_t len = strlen(str);
	return lokr__utf8_bad_at((const uint8_t *)str, len) == len;
}

/* Sort context: qsort has no user pointer, so sort an array of these. */
struct slot {
	size_t idx;
	unsigned align; /* bytes */
	const char *name;
};

static int cmp_slots(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;
	if (x->align != y->align)
		return x->align > y->align ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int cmp_slot_names(const void *a, const void *b)
{
	return strcmp(((const struct slot *)a)->name, ((const struct slot *)b)->name);
}

static void emit_header(struct out *o, const lokr_st_spec *specs, const lokr_st_layout *l,
                        const char *const *canon, const char *const *mk, const char *const *mv,
                        size_t nmeta)
{
	put(o, "{", 1);
	int first = 1;
	if (nmeta) {
		puts_(o, "\"__metadata__\":{");
		for (size_t i = 0; i < nmeta; i++) {
			if (i)
				put(o, ",", 1);
			put_json_string(o, mk[i]);
			put(o, ":", 1);
			put_json_string(o, mv[i]);
		}
		put(o, "}", 1);
		first = 0;
	}
	for (size_t k = 0; k < l->count; k++) {
		size_t i = l->order[k];
		if (!first)
			put(o, ",", 1);
		first = 0;
		put_json_string(o, specs[i].name);
		puts_(o, ":{\"dtype\":");
		put_json_string(o, canon[i]);
		puts_(o, ",\"shape\":[");
		for (int d = 0; d < specs[i].ndim; d++) {
			if (d)
				put(o, ",", 1);
			put_u64(o, (uint64_t)specs[i].shape[d]);
		}
		puts_(o, "],\"data_offsets\":[");
		put_u64(o, l->offset[i]);
		put(o, ",", 1);
		put_u64(o, l->offset[i] + l->nbytes[i]);
		puts_(o, "]}");
	}
	put(o, "}", 1);
}

void lokr_st_layout_free(lokr_st_layout *l)
{
	if (!l)
		return;
	free(l->header);
	free(l->order);
	free(l->offset);
	free(l->nbytes);
	memset(l, 0, sizeof *l);
}

static int check_specs(const lokr_st_spec *specs, size_t n, const char *const *mk,
                       const char *const *mv, size_t nmeta, const char **canon, struct slot *slots,
                       uint64_t *nbytes, lokr_error *err)
{
	char sb[200];
	for (size_t i = 0; i < nmeta; i++) {
		if (!mk[i] || !mv[i])
			return lokr__fail(err, LOKR_EINVAL,
			                  "safetensors writer: metadata %zu is NULL", i);
		if (!utf8_ok(mk[i]) || !utf8_ok(mv[i]))
			return lokr__fail(
			    err, LOKR_EINVAL,
			    "safetensors writer: metadata \"%.100s\" is not valid UTF-8", mk[i]);
		for (size_t j = 0; j < i; j++)
			if (strcmp(mk[i], mk[j]) == 0)
				return lokr__fail(
				    err, LOKR_EINVAL,
				    "safetensors writer: metadata key \"%.100s\" twice", mk[i]);
	}
	for (size_t i = 0; i < n; i++) {
		const lokr_st_spec *s = &specs[i];
		unsigned bits;
		if (!s->name || !s->dtype_name)
			return lokr__fail(err, LOKR_EINVAL,
			                  "safetensors writer: tensor %zu has no %s", i,
			                  s->name ? "dtype" : "name");
		if (strcmp(s->name, "__metadata__") == 0 || !utf8_ok(s->name))
			return lokr__fail(err, LOKR_EINVAL,
			                  "safetensors writer: invalid tensor name \"%.100s\"",
			                  s->name);
		if (lokr__st_dtype_lookup(s->dtype_name, strlen(s->dtype_name), &canon[i], &bits,
		                          NULL) != 0)
			return lokr__fail(
			    err, LOKR_EINVAL,
			    "safetensors writer: tensor '%.128s': unknown dtype \"%.40s\"", s->name,
			    s->dtype_name);
		if (s->ndim < 0 || s->ndim > LOKR_MAX_DIMS)
			return lokr__fail(err, LOKR_EINVAL,
			                  "safetensors writer: tensor '%.128s': %d dimensions",
			                  s->name, s->ndim);
		uint64_t ne = 1, nb;
		for (int d = 0; d < s->ndim; d++) {
			if (s->shape[d] < 0 || lokr__mul_u64(ne, (uint64_t)s->shape[d], &ne) != 0)
				return lokr__fail(
				    err, LOKR_EINVAL,
				    "safetensors writer: tensor '%.128s': bad shape %s", s->name,
				    lokr__shape_str(sb, sizeof sb, s->shape, s->ndim));
		}
		if (lokr__mul_u64(ne, bits, &nb) != 0 || nb % 8 != 0)
			return lokr__fail(
			    err, LOKR_EINVAL,
			    "safetensors writer: tensor '%.128s': shape %s of %s is not "
			    "a whole number of bytes",
			    s->name, lokr__shape_str(sb, sizeof sb, s->shape, s->ndim), canon[i]);
		nbytes[i] = nb / 8;
		slots[i] = (struct slot){i, bits >= 8 ? bits / 8 : 1, s->name};
	}
	return LOKR_OK;
}

int lokr_st_layout_make(const lokr_st_spec *specs, size_t n, const char *const *meta_keys,
                        const char *const *meta_values, size_t nmeta, lokr_st_layout *out,
                        lokr_error *err)
{
	memset(out, 0, sizeof *out);
	if ((n && !specs) || (nmeta && (!meta_keys || !meta_values)))
		return lokr__fail(err, LOKR_EINVAL, "safetensors writer: NULL arguments");
	const char **canon = lokr__try_calloc(n, sizeof *canon);
	struct slot *slots = lokr__try_calloc(n, sizeof *slots);
	out->order = lokr__try_calloc(n, sizeof *out->order);
	out->offset = lokr__try_calloc(n, sizeof *out->offset);
	out->nbytes = lokr__try_calloc(n, sizeof *out->nbytes);
	out->count = n;
	int rc = LOKR_OK;
	if (!canon || !slots || !out->order || !out->offset || !out->nbytes) {
		rc = lokr__fail(err, LOKR_ENOMEM, "safetensors writer: out of memory");
		goto out;
	}
	rc = check_specs(specs, n, meta_keys, meta_values, nmeta, canon, slots, out->nbytes, err);
	if (rc != LOKR_OK)
		goto out;
	/* Duplicate names: sorted by name alone, equal names are adjacent. */
	qsort(slots, n, sizeof *slots, cmp_slot_names);
	for (size_t k = 0; k + 1 < n; k++)
		if (strcmp(slots[k].name, slots[k + 1].name) == 0) {
			rc = lokr__fail(err, LOKR_EINVAL,
			                "safetensors writer: tensor '%.128s' twice", slots[k].name);
			goto out;
		}
	qsort(slots, n, sizeof *slots, cmp_slots);
	uint64_t at = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = slots[k].idx;
		out->order[k] = i;
		out->offset[i] = at;
		if (lokr__add_u64(at, out->nbytes[i], &at) != 0) {
			rc = lokr__fail(err, LOKR_ERANGE,
			                "safetensors writer: total size overflows");
			goto out;
		}
	}
	struct out o = {NULL, 0};
	emit_header(&o, specs, out, canon, meta_keys, meta_values, nmeta);
	size_t json_len = o.len, padded = (json_len + 7) & ~(size_t)7;
	if (padded > LOKR_ST_MAX_HEADER) {
		rc = lokr__fail(err, LOKR_ERANGE,
		                "safetensors writer: header of %zu bytes exceeds the limit of %u",
		                padded, LOKR_ST_MAX_HEADER);
		goto out;
	}
	out->header = lokr__try_malloc(8 + padded);
	if (!out->header) {
		rc = lokr__fail(err, LOKR_ENOMEM, "safetensors writer: out of memory");
		goto out;
	}
	for (int b = 0; b < 8; b++)
		out->header[b] = (uint8_t)((uint64_t)padded >> (8 * b));
	o = (struct out){(char *)out->header + 8, 0};
	emit_header(&o, specs, out, canon, meta_keys, meta_values, nmeta);
	LOKR_ASSERT(o.len == json_len);
	memset(out->header + 8 + json_len, ' ', padded - json_len);
	out->header_len = 8 + padded;
	if (lokr__add_u64(at, out->header_len, &out->total) != 0)
		rc = lokr__fail(err, LOKR_ERANGE, "safetensors writer: total size overflows");
out:
	free(canon);
	free(slots);
	if (rc != LOKR_OK)
		lokr_st_layout_free(out);
	return rc;
}

static int write_all(int fd, const void *buf, uint64_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t w = write(fd, p, chunk);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (uint64_t)w;
	}
	return 0;
}

/* fsync the directory holding `path` so the rename itself is durable. */
static int sync_dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir;
	if (!slash)
		dir = lokr__xstrdup(".");
	else if (slash == path)
		dir = lokr__xstrdup("/");
	else {
		size_t n = (size_t)(slash - path);
		dir = lokr__xmalloc(n + 1);
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

int lokr_st_write_file(const char *path, const lokr_st_spec *specs, size_t n,
                       const char *const *meta_keys, const char *const *meta_values, size_t nmeta,
                       lokr_error *err)
{
	if (n && !specs)
		return lokr__fail(err, LOKR_EINVAL, "%s: NULL tensor list", path);
	for (size_t i = 0; i < n; i++)
		if (!specs[i].data) {
			/* zero-byte tensors need no data; the layout tells which */
			int zero = 0;
			for (int d = 0; d < specs[i].ndim; d++)
				zero |= specs[i].shape[d] == 0;
			if (!zero)
				return lokr__fail(err, LOKR_EINVAL,
				                  "%s: tensor '%.128s' has no data", path,
				                  specs[i].name ? specs[i].name : "(null)");
		}
	lokr_st_layout l;
	int rc = lokr_st_layout_make(specs, n, meta_keys, meta_values, nmeta, &l, err);
	if (rc != LOKR_OK)
		return rc;

	size_t plen = strlen(path);
	char *tmp = lokr__try_malloc(plen + 32);
	if (!tmp) {
		lokr_st_layout_free(&l);
		return lokr__fail(err, LOKR_ENOMEM, "%s: out of memory", path);
	}
	int fd = -1;
	for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
		uint64_t r = 0;
		if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
			r = (uint64_t)getpid() * 2654435761u + (uint64_t)attempt;
		snprintf(tmp, plen + 32, "%s.tmp-%016llx", path, (unsigned long long)r);
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = lokr__fail(err, LOKR_EIO, "%s: cannot create temp file: %s", path,
		                strerror(errno));
		goto out;
	}
	const char *step = "write";
	if (write_all(fd, l.header, l.header_len) != 0)
		goto io_fail;
	for (size_t k = 0; k < l.count; k++) {
		size_t i = l.order[k];
		if (l.nbytes[i] && write_all(fd, specs[i].data, l.nbytes[i]) != 0)
			goto io_fail;
	}
	step = "fsync";
	if (fsync(fd) != 0)
		goto io_fail;
	step = "close";
	int c = close(fd);
	fd = -1;
	if (c != 0)
		goto io_fail;
	step = "rename";
	if (rename(tmp, path) != 0)
		goto io_fail;
	if (sync_dir_of(path) != 0) {
		/* the file is in place; only durability of the rename is unknown */
		rc = lokr__fail(err, LOKR_EIO, "%s: fsync of the directory failed: %s", path,
		                strerror(errno));
		goto out;
	}
	rc = LOKR_OK;
	goto out;
io_fail:
	rc = lokr__fail(err, LOKR_EIO, "%s: %s failed: %s", path, step, strerror(errno));
	if (fd >= 0)
		close(fd);
	fd = -1;
	unlink(tmp);
out:
	if (fd >= 0)
		close(fd);
	free(tmp);
	lokr_st_layout_free(&l);
	return rc;
}
