/*
 * route_adapters.c - the adapter resource: GET /v1/adapters (list),
 * GET/PUT/DELETE /v1/adapters/{id}, POST /v1/adapters/{id}/load.
 *
 * PUT streams the body into a hidden temp file in the adapter directory
 * (".put-..." never matches the id grammar, so it is never visible), then
 * on the pool: fsync, load and validate completely against the base,
 * rename into place (RENAME_NOREPLACE first, to tell 201 from 200), fsync
 * the directory.  A failure unlinks the temp file: nothing partial is ever
 * left behind.  The validated adapter is installed in the cache directly.
 *
 * The listing reads the directory and each file's header on the pool; the
 * header summaries are remembered by file identity so a second listing
 * reads only changed files.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "merge_cache.h"
#include "route_impl.h"
#include "tenant.h"

/* ------------------------------------------------------------ helpers */

static json_t *algos_json(const char *algos)
{
	json_t *a = json_array();
	char buf[sizeof((lokrd_summary *)0)->algos];
	snprintf(buf, sizeof buf, "%s", algos);
	for (char *p = buf; *p;) {
		char *comma = strchr(p, ',');
		if (comma)
			*comma = '\0';
		json_array_append_new(a, json_string(p));
		if (!comma)
			break;
		p = comma + 1;
	}
	return a;
}

static json_t *summary_json(const char *id, uint64_t bytes, int resident, int pinned,
                            const lokrd_summary *sum)
{
	return json_pack("{s:s,s:I,s:b,s:b,s:o,s:b,s:I}", "id", id, "bytes", (json_int_t)bytes,
	                 "resident", resident, "pinned", pinned, "algos",
	                 algos_json(sum ? sum->algos : ""), "dora", sum ? sum->dora : 0, "layers",
	                 (json_int_t)(sum ? sum->layers : 0));
}

static json_t *ver_json(lokrd_registry *reg, const lokrd_ver *v)
{
	int resident, pinned;
	lokrd_registry_state(reg, v->id, &resident, &pinned);
	json_t *o = summary_json(v->id, (uint64_t)v->ident.size, resident, pinned, &v->summary);
	json_object_set_new(o, "resident_bytes", json_integer((json_int_t)v->resident_bytes));
	return o;
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* ------------------------------------------------------------ listing */

typedef struct list_item {
	char id[LOKRD_ID_MAX + 1];
	lokrd_file_ident ident;
	lokrd_summary sum;
	int has_sum;
	char err[300];
} list_item;

/* Summaries by file identity, shared by list tasks (any thread): a hash
 * table keyed by (directory, id), so a listing of n files costs n probes
 * (it was a list search per file, O(n^2): 220-310 ms for 10,000 files).
 * The directory is part of the key because tenants list different
 * directories that may hold the same id. */
typedef struct sum_entry {
	char id[LOKRD_ID_MAX + 1];
	uint64_t dir_hash;
	lokrd_file_ident ident;
	lokrd_summary sum;
	int ok;
	char err[300];
	struct sum_entry *next;
} sum_entry;

static pthread_mutex_t sum_mu = PTHREAD_MUTEX_INITIALIZER;
/* a cache of file facts, not server state; grows with the files seen */
static sum_entry **sum_buckets;
static size_t sum_nbuckets, sum_count;

static uint64_t fnv1a(uint64_t h, const char *s)
{
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t dir_hash_of(const char *dir)
{
	return fnv1a(1469598103934665603ull, dir);
}

static size_t sum_slot(uint64_t dir_hash, const char *id)
{
	return (size_t)fnv1a(dir_hash, id) & (sum_nbuckets - 1);
}

/* Under sum_mu. */
static sum_entry *sum_find(uint64_t dir_hash, const char *id)
{
	if (!sum_nbuckets)
		return NULL;
	for (sum_entry *e = sum_buckets[sum_slot(dir_hash, id)]; e; e = e->next)
		if (e->dir_hash == dir_hash && !strcmp(e->id, id))
			return e;
	return NULL;
}

/* Under sum_mu: double the table when it is full (0 if out of memory). */
static int sum_grow(void)
{
	size_t n = sum_nbuckets ? sum_nbuckets * 2 : 1024;
	sum_entry **b = calloc(n, sizeof *b);
	if (!b)
		return 0;
	size_t old = sum_nbuckets;
	sum_entry **ob = sum_buckets;
	sum_buckets = b;
	sum_nbuckets = n;
	for (size_t i = 0; i < old; i++)
		for (sum_entry *e = ob[i], *next; e; e = next) {
			next = e->next;
			size_t k = sum_slot(e->dir_hash, e->id);
			e->next = b[k];
			b[k] = e;
		}
	free(ob);
	return 1;
}

static int sum_get(uint64_t dir_hash, const char *id, const lokrd_file_ident *ident, list_item *it)
{
	int found = 0;
	pthread_mutex_lock(&sum_mu);
	sum_entry *e = sum_find(dir_hash, id);
	if (e && lokrd_file_ident_eq(&e->ident, ident)) {
		it->sum = e->sum;
		it->has_sum = e->ok;
		snprintf(it->err, sizeof it->err, "%s", e->err);
		found = 1;
	}
	pthread_mutex_unlock(&sum_mu);
	return found;
}

static void sum_put(uint64_t dir_hash, const list_item *it)
{
	pthread_mutex_lock(&sum_mu);
	sum_entry *e = sum_find(dir_hash, it->id);
	if (!e) {
		if (sum_count >= sum_nbuckets && !sum_grow() && !sum_nbuckets) {
			pthread_mutex_unlock(&sum_mu);
			return;
		}
		e = calloc(1, sizeof *e);
		if (!e) {
			pthread_mutex_unlock(&sum_mu);
			return;
		}
		snprintf(e->id, sizeof e->id, "%s", it->id);
		e->dir_hash = dir_hash;
		size_t k = sum_slot(dir_hash, e->id);
		e->next = sum_buckets[k];
		sum_buckets[k] = e;
		sum_count++;
	}
	e->ident = it->ident;
	e->sum = it->sum;
	e->ok = it->has_sum;
	snprintf(e->err, sizeof e->err, "%s", it->err);
	pthread_mutex_unlock(&sum_mu);
}

typedef struct list_task {
	lokrd_task task;
	lokrd_req *req;
	char dir[PATH_MAX];
	list_item *items;
	size_t n, cap;
	int err;
} list_task;

static int cmp_items(const void *a, const void *b)
{
	return strcmp(((const list_item *)a)->id, ((const list_item *)b)->id);
}

static void list_run(lokrd_task *t)
{
	list_task *lt = (list_task *)t;
	DIR *d = opendir(lt->dir);
	if (!d) {
		lt->err = errno;
		return;
	}
	struct dirent *de;
	static const char ext[] = ".safetensors";
	const uint64_t dh = dir_hash_of(lt->dir);
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		if (len <= sizeof ext - 1 || strcmp(de->d_name + len - (sizeof ext - 1), ext))
			continue;
		size_t idlen = len - (sizeof ext - 1);
		if (idlen > LOKRD_ID_MAX)
			continue;
		list_item it = {0};
		memcpy(it.id, de->d_name, idlen);
		it.id[idlen] = '\0';
		if (!lokrd_id_valid(it.id))
			continue;
		char path[PATH_MAX];
		struct stat st;
		if (snprintf(path, sizeof path, "%s/%s", lt->dir, de->d_name) >= (int)sizeof path ||
		    stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		lokrd_file_ident_of(&st, &it.ident);
		if (!sum_get(dh, it.id, &it.ident, &it)) {
			char msg[300];
			if (lokrd_summary_scan(path, &it.sum, msg, sizeof msg)) {
				snprintf(it.err, sizeof it.err, "%s", msg);
			} else {
				it.has_sum = 1;
			}
			sum_put(dh, &it);
		}
		if (lt->n == lt->cap) {
			size_t cap = lt->cap ? lt->cap * 2 : 64;
			list_item *ni = realloc(lt->items, cap * sizeof *ni);
			if (!ni) {
				lt->err = ENOMEM;
				break;
			}
			lt->items = ni;
			lt->cap = cap;
		}
		lt->items[lt->n++] = it;
	}
	closedir(d);
	if (lt->n)
		qsort(lt->items, lt->n, sizeof *lt->items, cmp_items);
}

static void list_done(lokrd_task *t)
{
	list_task *lt = (list_task *)t;
	lokrd_req *r = lt->req;
	lokrd_registry *reg = r->reg;
	if (t->cancelled) {
		lokrd_req_error(r, 503, "shutting_down", "lokrd is shutting down");
	} else if (lt->err) {
		lokrd_req_error(r, 500, "internal", "reading the adapter directory: %s",
		                strerror(lt->err));
	} else {
		json_t *arr = json_array();
		for (size_t i = 0; i < lt->n; i++) {
			list_item *it = &lt->items[i];
			int resident, pinned;
			lokrd_registry_state(reg, it->id, &resident, &pinned);
			lokrd_summary known;
			const lokrd_summary *sum = it->has_sum ? &it->sum : NULL;
			if (!lokrd_registry_summary(reg, it->id, &it->ident, &known))
				sum = &known;
			json_t *o =
			    summary_json(it->id, (uint64_t)it->ident.size, resident, pinned, sum);
			const char *fail = lokrd_registry_failure(reg, it->id, &it->ident);
			if (fail || !sum)
				json_object_set_new(o, "error", json_string(fail ? fail : it->err));
			json_array_append_new(arr, o);
		}
		lokrd_req_send_json(r, 200, json_pack("{s:o}", "adapters", arr));
	}
	free(lt->items);
	free(lt);
	lokrd_req_unref(r);
}

void lokrd_route_adapters_list(lokrd_req *r)
{
	list_task *lt = calloc(1, sizeof *lt);
	if (!lt) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	lt->task.run = list_run;
	lt->task.done = list_done;
	lt->task.batch_key = -1;
	lt->req = r;
	snprintf(lt->dir, sizeof lt->dir, "%s", lokrd_registry_dir(r->reg));
	lokrd_req_ref(r);
	lokrd_pool_submit(&r->srv->pool, &lt->task);
}

/* ------------------------------------------------------------ detail */

static const char *dora_name(lokr_dora_axis a)
{
	return a == LOKR_DORA_OUT ? "out" : a == LOKR_DORA_IN ? "in" : NULL;
}

static json_t *module_json(const lokr_base *base, const lokr_module *m)
{
	const lokr_layer *L = lokr_base_layer_at(base, m->layer);
	json_t *shape = json_array();
	for (int d = 0; d < L->ndim; d++)
		json_array_append_new(shape, json_integer(L->shape[d]));
	json_t *factors = json_array();
	uint64_t params = 0;
	for (size_t i = 0; i < m->nstored; i++) {
		const lokr_stored *st = &m->stored[i];
		json_t *fs = json_array();
		uint64_t n = 1;
		for (int d = 0; d < st->ndim; d++) {
			json_array_append_new(fs, json_integer(st->shape[d]));
			n *= (uint64_t)st->shape[d];
		}
		params += n;
		json_array_append_new(factors, json_pack("{s:s,s:s,s:o}", "name", st->key, "dtype",
		                                         st->dtype, "shape", fs));
	}
	uint64_t full = (uint64_t)m->out * (uint64_t)m->in * (uint64_t)m->kk;
	const char *dora = dora_name(m->dora_axis);
	json_t *o =
	    json_pack("{s:s,s:s,s:s,s:o,s:o,s:I,s:b,s:o,s:f,s:o,s:I,s:I}", "layer", L->name,
	              "module", m->name, "algo", lokr_algo_name(m->algo), "shape", shape, "factors",
	              factors, "rank", (json_int_t)m->rank, "tucker", m->tucker, "alpha",
	              m->has_alpha && m->alpha == m->alpha ? json_real(m->alpha) : json_null(),
	              "scale", (double)m->scale, "dora", dora ? json_string(dora) : json_null(),
	              "params", (json_int_t)params, "full_params", (json_int_t)full);
	if (m->alpha_ignored)
		json_object_set_new(o, "alpha_ignored", json_true());
	if (m->algo == LOKR_ALGO_LOKR)
		json_object_set_new(o, "kron",
		                    json_pack("{s:[I,I],s:[I,I]}", "w1", (json_int_t)m->m1,
		                              (json_int_t)m->n1, "w2", (json_int_t)m->m2,
		                              (json_int_t)m->n2));
	return o;
}

typedef struct lookup_req {
	lokrd_req *req;
	int pin; /* -1 leave, 0 unpin, 1 pin */
	int detail;
} lookup_req;

static void on_lookup(void *arg, const lokrd_lookup *res)
{
	lookup_req *lq = arg;
	lokrd_req *r = lq->req;
	lokrd_server *s = r->srv;
	if (!res->ver) {
		lokrd_req_error(r, res->status, res->code ? res->code : "internal", "%s",
		                res->msg ? res->msg : "lookup failed");
	} else if (!lq->detail) {
		if (lq->pin >= 0)
			lokrd_registry_pin(r->reg, res->ver->id, lq->pin);
		lokrd_req_send_json(r, 200, ver_json(r->reg, res->ver));
	} else {
		const lokr_adapter *a = res->ver->adapter;
		json_t *o = ver_json(r->reg, res->ver);
		json_t *mods = json_array();
		for (size_t i = 0; i < a->nmodules; i++)
			json_array_append_new(mods, module_json(s->base, &a->modules[i]));
		json_t *meta = json_object();
		for (size_t i = 0; i < a->nmeta; i++)
			json_object_set_new(meta, a->meta_keys[i], json_string(a->meta_values[i]));
		json_t *warn = json_array();
		for (size_t i = 0; i < a->nwarnings; i++)
			json_array_append_new(warn, json_string(a->warnings[i]));
		json_object_set_new(o, "layer_count", json_integer((json_int_t)a->nmodules));
		json_object_set_new(o, "layers", mods);
		json_object_set_new(o, "params", json_integer((json_int_t)a->param_count));
		json_object_set_new(o, "full_params",
		                    json_integer((json_int_t)a->full_param_count));
		json_object_set_new(o, "metadata", meta);
		json_object_set_new(o, "warnings", warn);
		lokrd_req_send_json(r, 200, o);
	}
	lokrd_ver_unref(res->ver);
	free(lq);
	lokrd_req_unref(r);
}

static void lookup(lokrd_req *r, int detail, int pin)
{
	lookup_req *lq = calloc(1, sizeof *lq);
	if (!lq) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	lq->req = r;
	lq->detail = detail;
	lq->pin = pin;
	snprintf(r->log_adapters, sizeof r->log_adapters, "%s", r->id);
	lokrd_req_ref(r);
	lokrd_registry_get(r->reg, r->id, on_lookup, lq);
}

void lokrd_route_adapter_get(lokrd_req *r)
{
	lookup(r, 1, -1);
}

void lokrd_route_adapter_load(lokrd_req *r)
{
	static const char *const fields[] = {"pin", NULL};
	json_t *o = lokrd_body_json(r, 1);
	if (!o)
		return;
	int pin = -1;
	if (lokrd_check_fields(r, o, fields)) {
		json_decref(o);
		return;
	}
	const json_t *p = json_object_get(o, "pin");
	if (p) {
		if (!json_is_boolean(p)) {
			lokrd_req_error(r, 400, "bad_request", "\"pin\" must be true or false");
			json_decref(o);
			return;
		}
		pin = json_is_true(p);
	}
	json_decref(o);
	lookup(r, 0, pin);
}

/* ------------------------------------------------------------ delete */

/* Take r->id for a writer (PUT, DELETE).  Returns 0, or -1 after answering
 * 409 when another writer holds it. */
static int writer_lock(lokrd_req *r)
{
	if (lokrd_registry_lock(r->reg, r->id))
		return 0;
	lokrd_req_error(r, 409, "conflict", "adapter '%s' is being written by another request",
	                r->id);
	return -1;
}

void lokrd_route_adapter_delete(lokrd_req *r)
{
	char path[PATH_MAX];
	snprintf(r->log_adapters, sizeof r->log_adapters, "%s", r->id);
	if (lokrd_registry_path(r->reg, r->id, path, sizeof path)) {
		lokrd_req_error(r, 400, "bad_adapter_id", "adapter id too long for the directory");
		return;
	}
	if (writer_lock(r))
		return;
	if (unlink(path)) {
		int e = errno;
		lokrd_registry_unlock(r->reg, r->id);
		if (e == ENOENT || e == ENOTDIR)
			lokrd_req_error(r, 404, "adapter_not_found", "no adapter '%s'", r->id);
		else
			lokrd_req_error(r, 500, "internal", "deleting adapter '%s': %s", r->id,
			                strerror(e));
		if (e == ENOENT)
			lokrd_registry_forget(r->reg, r->id);
		return;
	}
	if (fsync_dir(lokrd_registry_dir(r->reg)))
		lokrd_log(LOKRD_LOG_WARN, "fsync of the adapter directory: %s", strerror(errno));
	lokrd_registry_unlock(r->reg, r->id);
	lokrd_registry_forget(r->reg, r->id);
	lokrd_merge_cache_drop_adapter(r->srv->merge_cache, r->id);
	lokrd_log(LOKRD_LOG_INFO, "deleted adapter %s", r->id);
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	lokrd_req_respond(r, 204, resp);
}

/* ------------------------------------------------------------ put */

typedef struct put_state {
	lokrd_task task;
	lokrd_req *req;
	int fd;
	char tmp[PATH_MAX];
	char path[PATH_MAX];
	char dir[PATH_MAX];
	int locked;
	int tmp_exists;
	const lokr_base *base;
	lokrd_tenant *tenant; /* its quotas; put_mu held around check + rename */
	/* results */
	unsigned status;
	char code[32];
	char msg[LOKR_ERROR_MAX + 256];
	lokr_adapter *adapter;
	lokrd_file_ident ident;
	int replaced;
	int quota_locked;
} put_state;

static void put_state_free(void *p)
{
	put_state *ps = p;
	if (ps->fd >= 0)
		close(ps->fd);
	if (ps->tmp_exists)
		unlink(ps->tmp);
	if (ps->locked)
		lokrd_registry_unlock(ps->req->reg, ps->req->id);
	lokr_adapter_free(ps->adapter);
	free(ps);
}

static void put_io_error(lokrd_req *r, int e, const char *what)
{
	if (e == ENOSPC || e == EDQUOT)
		lokrd_req_error(r, 507, "insufficient_storage", "%s: %s", what, strerror(e));
	else
		lokrd_req_error(r, 500, "internal", "%s: %s", what, strerror(e));
}

void lokrd_route_adapter_put_begin(lokrd_req *r)
{
	put_state *ps = calloc(1, sizeof *ps);
	if (!ps) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	ps->fd = -1;
	ps->req = r;
	ps->tenant = r->tenant;
	r->state = ps;
	r->state_free = put_state_free;
	snprintf(r->log_adapters, sizeof r->log_adapters, "%s", r->id);
	snprintf(ps->dir, sizeof ps->dir, "%s", lokrd_registry_dir(r->reg));
	static unsigned long counter;
	if (lokrd_registry_path(r->reg, r->id, ps->path, sizeof ps->path) ||
	    snprintf(ps->tmp, sizeof ps->tmp, "%s/.put-%ld-%lu.tmp", ps->dir, (long)getpid(),
	             ++counter) >= (int)sizeof ps->tmp) {
		lokrd_req_error(r, 400, "bad_adapter_id", "adapter id too long for the directory");
		return;
	}
	if (writer_lock(r))
		return;
	ps->locked = 1;
	ps->fd = open(ps->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (ps->fd < 0) {
		put_io_error(r, errno, "creating the upload file");
		return;
	}
	/* Held while the upload lives: a temp file nobody holds was left by a
	 * killed process and is removed at start-up (lokrd_tenants_start). */
	flock(ps->fd, LOCK_EX | LOCK_NB);
	ps->tmp_exists = 1;
}

void lokrd_route_adapter_put_body(lokrd_req *r, const char *data, size_t n)
{
	put_state *ps = r->state;
	while (n > 0) {
		ssize_t w = write(ps->fd, data, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			put_io_error(r, w < 0 ? errno : ENOSPC, "writing the upload");
			/* Free the space now, not when the request ends. */
			close(ps->fd);
			ps->fd = -1;
			unlink(ps->tmp);
			ps->tmp_exists = 0;
			return;
		}
		data += w;
		n -= (size_t)w;
	}
}

void lokrd_route_adapter_put_discard(lokrd_req *r)
{
	put_state *ps = r->state;
	if (!ps)
		return;
	if (ps->fd >= 0) {
		close(ps->fd);
		ps->fd = -1;
	}
	if (ps->tmp_exists) {
		unlink(ps->tmp);
		ps->tmp_exists = 0;
	}
}

static void put_check(put_state *ps);

/* Validate and move into place; on any failure the temp file is removed
 * here, before the answer goes out, so a client that lists the directory
 * after a 4xx/5xx never sees it. */
static void put_run(lokrd_task *t)
{
	put_state *ps = (put_state *)t;
	put_check(ps);
	if (ps->quota_locked) {
		pthread_mutex_unlock(&ps->tenant->put_mu);
		ps->quota_locked = 0;
	}
	if (ps->status != 200 && ps->status != 201 && ps->tmp_exists) {
		unlink(ps->tmp);
		ps->tmp_exists = 0;
	}
}

static void put_check(put_state *ps)
{
	if (fsync(ps->fd)) {
		ps->status = (errno == ENOSPC || errno == EDQUOT) ? 507 : 500;
		snprintf(ps->msg, sizeof ps->msg, "fsync of the upload: %s", strerror(errno));
		return;
	}
	char msg[LOKR_ERROR_MAX + 128];
	unsigned st =
	    lokrd_adapter_read(ps->base, ps->tmp, &ps->adapter, &ps->ident, msg, sizeof msg);
	if (st) {
		ps->status = st == 404 ? 500 : st;
		snprintf(ps->msg, sizeof ps->msg, "%s", msg);
		return;
	}
	lokrd_tenant *t = ps->tenant;
	if (t && (t->quota.max_adapters || t->quota.max_disk_bytes)) {
		/* Held until the rename, so two uploads cannot both fit. */
		pthread_mutex_lock(&t->put_mu);
		ps->quota_locked = 1;
		uint64_t count = 0, bytes = 0;
		if (lokrd_tenant_disk_usage(t, ps->req->id, &count, &bytes)) {
			ps->status = 500;
			snprintf(ps->msg, sizeof ps->msg, "reading the tenant directory: %s",
			         strerror(errno));
			return;
		}
		if (t->quota.max_adapters && count + 1 > t->quota.max_adapters) {
			ps->status = 429;
			snprintf(ps->msg, sizeof ps->msg,
			         "tenant '%s' has %llu adapters; its quota is %llu", t->name,
			         (unsigned long long)count,
			         (unsigned long long)t->quota.max_adapters);
			return;
		}
		if (t->quota.max_disk_bytes &&
		    bytes + (uint64_t)ps->ident.size > t->quota.max_disk_bytes) {
			ps->status = 429;
			snprintf(ps->msg, sizeof ps->msg,
			         "tenant '%s' would use %llu bytes on disk; its quota is %llu",
			         t->name, (unsigned long long)(bytes + (uint64_t)ps->ident.size),
			         (unsigned long long)t->quota.max_disk_bytes);
			return;
		}
	}
	if (t && t->quota.max_resident_bytes &&
	    ps->adapter->resident_bytes > t->quota.max_resident_bytes) {
		ps->status = 429;
		snprintf(ps->msg, sizeof ps->msg,
		         "adapter needs %llu resident bytes; tenant '%s' has a quota of %llu",
		         (unsigned long long)ps->adapter->resident_bytes, t->name,
		         (unsigned long long)t->quota.max_resident_bytes);
		return;
	}
	if (renameat2(AT_FDCWD, ps->tmp, AT_FDCWD, ps->path, RENAME_NOREPLACE) == 0) {
		ps->replaced = 0;
	} else {
		int e = errno;
		if (e == EEXIST)
			ps->replaced = 1;
		else if (e == EINVAL || e == ENOSYS) /* no RENAME_NOREPLACE here */
			ps->replaced = access(ps->path, F_OK) == 0;
		if ((e != EEXIST && e != EINVAL && e != ENOSYS) || rename(ps->tmp, ps->path)) {
			ps->status = (errno == ENOSPC || errno == EDQUOT) ? 507 : 500;
			snprintf(ps->msg, sizeof ps->msg, "rename into place: %s", strerror(errno));
			return;
		}
	}
	ps->tmp_exists = 0;
	if (fsync_dir(ps->dir)) {
		/* The file is in place; only its durability is in doubt. */
		ps->status = (errno == ENOSPC || errno == EDQUOT) ? 507 : 0;
		snprintf(ps->msg, sizeof ps->msg, "fsync of the directory: %s", strerror(errno));
	}
	ps->status = ps->status ? ps->status : (ps->replaced ? 200 : 201);
}

static void put_done(lokrd_task *t)
{
	put_state *ps = (put_state *)t;
	lokrd_req *r = ps->req;
	if (t->cancelled) {
		lokrd_req_error(r, 503, "shutting_down", "lokrd is shutting down");
	} else if (ps->status == 200 || ps->status == 201) {
		lokrd_ver *v = lokrd_ver_new(r->id, ps->adapter, &ps->ident);
		ps->adapter = NULL;
		lokrd_registry_install(r->reg, v); /* steals our reference */
		lokrd_merge_cache_drop_adapter(r->srv->merge_cache, r->id);
		lokrd_log(LOKRD_LOG_INFO, "%s adapter %s (%lld bytes, %lld layers)",
		          ps->status == 201 ? "created" : "replaced", r->id,
		          (long long)ps->ident.size, (long long)v->summary.layers);
		lokrd_req_send_json(r, ps->status, ver_json(r->reg, v));
	} else if (ps->status == 422) {
		lokrd_req_error(r, 422, "adapter_invalid", "%s", ps->msg);
	} else if (ps->status == 429) {
		lokrd_req_error(r, 429, "quota_exceeded", "%s", ps->msg);
	} else {
		lokrd_req_error(r, ps->status,
		                ps->status == 507 ? "insufficient_storage" : "internal", "%s",
		                ps->msg);
	}
	lokrd_req_unref(r);
}

void lokrd_route_adapter_put(lokrd_req *r)
{
	put_state *ps = r->state;
	ps->base = r->srv->base;
	ps->task.run = put_run;
	ps->task.done = put_done;
	ps->task.batch_key = -1;
	lokrd_req_ref(r);
	lokrd_pool_submit(&r->srv->pool, &ps->task);
}
