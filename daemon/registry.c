/*
 * registry.c - the adapter registry and cache of registry.h.
 *
 * Entries live in a chained hash table keyed by id; resident entries are
 * also on an LRU list (head = most recently used).  An entry moves through
 * IDLE (known, nothing resident) -> LOADING (a load task on the pool, with
 * a list of waiting lookups) -> READY (a version in the cache) or FAILED
 * (the load's error, kept with the file identity it belongs to).  A file
 * identity that no longer matches sends READY/FAILED back to a new load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "registry.h"

typedef struct waiter {
	lokrd_lookup_cb cb;
	void *arg;
	struct waiter *next;
} waiter;

enum { E_IDLE = 0, E_LOADING, E_READY, E_FAILED };

typedef struct load_task load_task;

typedef struct entry {
	char id[LOKRD_ID_MAX + 1];
	int state;
	lokrd_file_ident ident; /* of ver (READY) or of the failed file (FAILED) */
	lokrd_ver *ver;         /* READY: the cache's reference */
	char *fail_msg;         /* FAILED */
	unsigned fail_status;
	int pinned;
	int locked; /* a PUT or DELETE owns the id */
	int has_summary;
	lokrd_summary summary;
	lokrd_file_ident summary_ident;
	waiter *waiters;
	load_task *loading;        /* LOADING: the task whose result counts */
	int detached;              /* forgotten while loading: freed by the load */
	struct entry *prev, *next; /* LRU, READY only */
	struct entry *hnext;
	uint64_t used; /* group tick of the last use (cross-registry LRU) */
} entry;

struct load_task {
	lokrd_task task;
	lokrd_registry *reg;
	entry *e;
	const lokr_base *base;
	char path[PATH_MAX];
	lokr_adapter *adapter;
	lokrd_file_ident ident;
	unsigned status;
	char msg[LOKR_ERROR_MAX + 256];
	uint64_t started_ns, ended_ns;
};

struct lokrd_registry {
	char *dir;
	uint64_t budget, resident_bytes;
	uint64_t nresident, nentries;
	lokrd_pool *pool;
	lokrd_metrics *metrics;
	const lokr_base *base;
	entry **buckets;
	size_t nbuckets;
	entry *lru_head, *lru_tail;
	int loads_pending;
	uint64_t quota;           /* a tenant's resident bytes (hard; 0 = none) */
	lokrd_cache_group *group; /* the budget shared with other registries, or NULL */
	lokrd_registry *gnext;    /* in group->head */
};

/* Several registries (one per tenant) under one cache budget: eviction
 * picks the least recently used unpinned adapter of any of them. */
struct lokrd_cache_group {
	uint64_t budget, resident;
	uint64_t tick;
	lokrd_registry *head;
};

/* ------------------------------------------------------------ the table */

static size_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

static entry *find(lokrd_registry *r, const char *id)
{
	for (entry *e = r->buckets[hash_id(id) & (r->nbuckets - 1)]; e; e = e->hnext)
		if (!strcmp(e->id, id))
			return e;
	return NULL;
}

static void grow(lokrd_registry *r)
{
	size_t n = r->nbuckets * 2;
	entry **b = calloc(n, sizeof *b);
	if (!b)
		abort();
	for (size_t i = 0; i < r->nbuckets; i++) {
		for (entry *e = r->buckets[i], *next; e; e = next) {
			next = e->hnext;
			size_t k = hash_id(e->id) & (n - 1);
			e->hnext = b[k];
			b[k] = e;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
}

static entry *find_or_create(lokrd_registry *r, const char *id)
{
	entry *e = find(r, id);
	if (e)
		return e;
	if (r->nentries >= r->nbuckets)
		grow(r);
	e = calloc(1, sizeof *e);
	if (!e)
		abort();
	snprintf(e->id, sizeof e->id, "%s", id);
	size_t k = hash_id(id) & (r->nbuckets - 1);
	e->hnext = r->buckets[k];
	r->buckets[k] = e;
	r->nentries++;
	return e;
}

static void unlink_entry(lokrd_registry *r, entry *e)
{
	entry **pp = &r->buckets[hash_id(e->id) & (r->nbuckets - 1)];
	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = e->hnext;
		r->nentries--;
	}
}

static void lru_remove(lokrd_registry *r, entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		r->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		r->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(lokrd_registry *r, entry *e)
{
	e->prev = NULL;
	e->next = r->lru_head;
	if (r->lru_head)
		r->lru_head->prev = e;
	r->lru_head = e;
	if (!r->lru_tail)
		r->lru_tail = e;
}

/* Drop the cached version of a READY entry (it becomes IDLE). */
static void drop_version(lokrd_registry *r, entry *e)
{
	if (e->state != E_READY)
		return;
	lru_remove(r, e);
	r->resident_bytes -= e->ver->resident_bytes;
	if (r->group)
		r->group->resident -= e->ver->resident_bytes;
	r->nresident--;
	lokrd_ver_unref(e->ver);
	e->ver = NULL;
	e->state = E_IDLE;
}

static void set_failed(entry *e, unsigned status, const char *msg, const lokrd_file_ident *id)
{
	free(e->fail_msg);
	e->fail_msg = strdup(msg);
	e->fail_status = status;
	e->ident = *id;
	e->state = E_FAILED;
}

static void touch(lokrd_registry *r, entry *e)
{
	if (r->group)
		e->used = ++r->group->tick;
}

static void evict_one(lokrd_registry *r, entry *e)
{
	lokrd_log(LOKRD_LOG_INFO, "evicting adapter %s (%llu bytes) under the cache budget", e->id,
	          (unsigned long long)e->ver->resident_bytes);
	drop_version(r, e);
	r->metrics->evictions++;
}

/* The group's budget: evict the least recently used unpinned adapter of
 * any registry of the group (oldest `used`) until under it. */
static void evict_group(lokrd_cache_group *g, entry *keep)
{
	while (g->resident > g->budget) {
		lokrd_registry *best_r = NULL;
		entry *best = NULL;
		for (lokrd_registry *r = g->head; r; r = r->gnext)
			for (entry *e = r->lru_tail; e; e = e->prev)
				if (e != keep && !e->pinned) {
					if (!best || e->used < best->used) {
						best = e;
						best_r = r;
					}
					break;
				}
		if (!best)
			return;
		evict_one(best_r, best);
	}
}

/* Keep resident bytes under the budget (and the tenant's quota), sparing
 * `keep` and pinned entries; then the group's budget. */
static void evict(lokrd_registry *r, entry *keep)
{
	uint64_t limit = r->quota && r->quota < r->budget ? r->quota : r->budget;
	entry *e = r->lru_tail;
	while (r->resident_bytes > limit && e) {
		entry *prev = e->prev;
		if (e != keep && !e->pinned)
			evict_one(r, e);
		e = prev;
	}
	if (r->group)
		evict_group(r->group, keep);
}

static void install_version(lokrd_registry *r, entry *e, lokrd_ver *v)
{
	drop_version(r, e);
	e->ver = v;
	e->ident = v->ident;
	e->state = E_READY;
	e->summary = v->summary;
	e->summary_ident = v->ident;
	e->has_summary = 1;
	free(e->fail_msg);
	e->fail_msg = NULL;
	r->resident_bytes += v->resident_bytes;
	if (r->group)
		r->group->resident += v->resident_bytes;
	r->nresident++;
	lru_push_front(r, e);
	touch(r, e);
	evict(r, e);
}

/* ------------------------------------------------------------ loading */

static void load_run(lokrd_task *t)
{
	load_task *lt = (load_task *)t;
	lt->started_ns = uv_hrtime();
	lt->status = lokrd_adapter_read(lt->base, lt->path, &lt->adapter, &lt->ident, lt->msg,
	                                sizeof lt->msg);
	lt->ended_ns = uv_hrtime();
}

static void deliver(entry *e, waiter *w, const lokrd_lookup *res)
{
	(void)e;
	while (w) {
		waiter *next = w->next;
		lokrd_lookup one = *res;
		if (res->ver)
			lokrd_ver_ref(res->ver);
		w->cb(w->arg, &one);
		free(w);
		w = next;
	}
}

static void free_entry(entry *e)
{
	free(e->fail_msg);
	free(e);
}

static void load_done(lokrd_task *t)
{
	load_task *lt = (load_task *)t;
	lokrd_registry *r = lt->reg;
	entry *e = lt->e;
	r->loads_pending--;
	if (t->cancelled && !lt->status) {
		lt->status = 503;
		snprintf(lt->msg, sizeof lt->msg, "shutting down");
	}
	lokrd_ver *v = NULL;
	if (!lt->status && lt->adapter) {
		v = lokrd_ver_new(e->id, lt->adapter, &lt->ident);
		lt->adapter = NULL;
		r->metrics->loads++;
		lokrd_hist_observe(&r->metrics->load_seconds,
		                   (double)(lt->ended_ns - lt->started_ns) / 1e9);
		lokrd_log(LOKRD_LOG_INFO,
		          "loaded adapter %s: %lld layers, %llu resident bytes, %.1f ms", e->id,
		          (long long)v->summary.layers, (unsigned long long)v->resident_bytes,
		          (double)(lt->ended_ns - lt->started_ns) / 1e6);
	} else if (lt->status == 422) {
		r->metrics->load_failures++;
		lokrd_log(LOKRD_LOG_WARN, "adapter %s does not load: %s", e->id, lt->msg);
	}
	if (v && r->quota && v->resident_bytes > r->quota) {
		/* Larger than the tenant's whole resident quota: never cached. */
		lt->status = 429;
		snprintf(lt->msg, sizeof lt->msg,
		         "adapter needs %llu resident bytes; the tenant's quota is %llu",
		         (unsigned long long)v->resident_bytes, (unsigned long long)r->quota);
		lokrd_ver_unref(v);
		v = NULL;
	}
	lokrd_lookup res = {.ver = v, .status = v ? 200 : lt->status};
	if (!v) {
		res.code = lt->status == 404   ? "adapter_not_found"
		           : lt->status == 422 ? "adapter_invalid"
		           : lt->status == 429 ? "quota_exceeded"
		           : lt->status == 503 ? "shutting_down"
		                               : "internal";
		res.msg = lt->msg;
	}
	waiter *w = e->waiters;
	e->waiters = NULL;
	if (e->loading == lt && !e->detached) {
		e->loading = NULL;
		if (v) {
			install_version(r, e, v);
			lokrd_ver_ref(v); /* the cache keeps one, `res` carries one */
		} else if (lt->status == 422) {
			set_failed(e, 422, lt->msg, &lt->ident);
		} else {
			e->state = E_IDLE;
		}
	}
	deliver(e, w, &res);
	lokrd_ver_unref(v); /* the waiters and the cache hold their own */
	if (e->detached && e->loading == lt) {
		free_entry(e);
	}
	free(lt);
}

int lokrd_registry_get(lokrd_registry *r, const char *id, lokrd_lookup_cb cb, void *arg)
{
	char path[PATH_MAX];
	lokrd_lookup res = {0};
	char msg[600];
	if (!r->base) {
		res = (lokrd_lookup){NULL, 503, "not_ready", "the base model is still loading"};
		cb(arg, &res);
		return 1;
	}
	if (lokrd_registry_path(r, id, path, sizeof path)) {
		res = (lokrd_lookup){NULL, 400, "bad_adapter_id", "adapter id too long"};
		cb(arg, &res);
		return 1;
	}
	struct stat st;
	entry *e = find(r, id);
	int st_rc = stat(path, &st);
	int st_errno = errno;
	if (st_rc || !S_ISREG(st.st_mode)) {
		int missing = !st_rc || st_errno == ENOENT || st_errno == ENOTDIR;
		if (e && e->state != E_LOADING) {
			drop_version(r, e);
			e->state = E_IDLE;
		}
		if (missing)
			snprintf(msg, sizeof msg, "no adapter '%s'", id);
		else
			snprintf(msg, sizeof msg, "adapter '%s': %s", id, strerror(st_errno));
		res = (lokrd_lookup){NULL, missing ? 404 : 500,
		                     missing ? "adapter_not_found" : "internal", msg};
		cb(arg, &res);
		return 1;
	}
	lokrd_file_ident ident;
	lokrd_file_ident_of(&st, &ident);
	if (!e)
		e = find_or_create(r, id);
	if (e->state == E_READY && lokrd_file_ident_eq(&e->ident, &ident)) {
		r->metrics->cache_hits++;
		lru_remove(r, e);
		lru_push_front(r, e);
		touch(r, e);
		lokrd_ver_ref(e->ver);
		res = (lokrd_lookup){e->ver, 200, NULL, NULL};
		cb(arg, &res);
		return 1;
	}
	if (e->state == E_FAILED && lokrd_file_ident_eq(&e->ident, &ident)) {
		res = (lokrd_lookup){NULL, e->fail_status, "adapter_invalid", e->fail_msg};
		cb(arg, &res);
		return 1;
	}
	waiter *w = malloc(sizeof *w);
	if (!w)
		abort();
	w->cb = cb;
	w->arg = arg;
	w->next = NULL;
	/* Append, so waiters are answered in arrival order. */
	waiter **pp = &e->waiters;
	while (*pp)
		pp = &(*pp)->next;
	*pp = w;
	if (e->state == E_LOADING)
		return 0;
	r->metrics->cache_misses++;
	drop_version(r, e); /* stale: the file changed */
	load_task *lt = calloc(1, sizeof *lt);
	if (!lt)
		abort();
	lt->task.run = load_run;
	lt->task.done = load_done;
	lt->task.batch_key = -1;
	lt->reg = r;
	lt->e = e;
	lt->base = r->base;
	snprintf(lt->path, sizeof lt->path, "%s", path);
	e->state = E_LOADING;
	e->loading = lt;
	r->loads_pending++;
	lokrd_pool_submit(r->pool, &lt->task);
	return 0;
}

/* ------------------------------------------------------------ writers */

int lokrd_registry_lock(lokrd_registry *r, const char *id)
{
	entry *e = find_or_create(r, id);
	if (e->locked)
		return 0;
	e->locked = 1;
	return 1;
}

void lokrd_registry_unlock(lokrd_registry *r, const char *id)
{
	entry *e = find(r, id);
	if (e)
		e->locked = 0;
}

void lokrd_registry_install(lokrd_registry *r, lokrd_ver *v)
{
	entry *e = find_or_create(r, v->id);
	if (e->state == E_LOADING) {
		/* The load in progress read an older file: its result no longer
		 * counts, and its waiters get the new version now. */
		e->loading = NULL;
		e->state = E_IDLE;
		waiter *w = e->waiters;
		e->waiters = NULL;
		install_version(r, e, v);
		lokrd_lookup res = {v, 200, NULL, NULL};
		deliver(e, w, &res);
		return;
	}
	install_version(r, e, v);
}

void lokrd_registry_forget(lokrd_registry *r, const char *id)
{
	entry *e = find(r, id);
	if (!e)
		return;
	drop_version(r, e);
	if (e->state == E_LOADING) {
		/* The load finishes on its own and frees the entry. */
		unlink_entry(r, e);
		e->detached = 1;
		return;
	}
	/* Keep the writer's lock and the pin setting if the id lives on. */
	free(e->fail_msg);
	e->fail_msg = NULL;
	e->state = E_IDLE;
	e->has_summary = 0;
	e->pinned = 0;
	if (!e->locked) {
		unlink_entry(r, e);
		free_entry(e);
	}
}

void lokrd_registry_pin(lokrd_registry *r, const char *id, int pinned)
{
	find_or_create(r, id)->pinned = pinned ? 1 : 0;
	if (!pinned)
		evict(r, NULL);
}

void lokrd_registry_state(lokrd_registry *r, const char *id, int *resident, int *pinned)
{
	entry *e = find(r, id);
	*resident = e && e->state == E_READY;
	*pinned = e && e->pinned;
}

const char *lokrd_registry_failure(lokrd_registry *r, const char *id, const lokrd_file_ident *ident)
{
	entry *e = find(r, id);
	if (e && e->state == E_FAILED && lokrd_file_ident_eq(&e->ident, ident))
		return e->fail_msg;
	return NULL;
}

int lokrd_registry_summary(lokrd_registry *r, const char *id, const lokrd_file_ident *ident,
                           lokrd_summary *s)
{
	entry *e = find(r, id);
	if (e && e->has_summary && lokrd_file_ident_eq(&e->summary_ident, ident)) {
		*s = e->summary;
		return 0;
	}
	return -1;
}

/* ------------------------------------------------------------ misc */

lokrd_registry *lokrd_registry_new(const char *dir, uint64_t budget, lokrd_pool *pool,
                                   lokrd_metrics *metrics)
{
	lokrd_registry *r = calloc(1, sizeof *r);
	if (!r)
		abort();
	r->dir = strdup(dir);
	r->budget = budget;
	r->pool = pool;
	r->metrics = metrics;
	r->nbuckets = 256;
	r->buckets = calloc(r->nbuckets, sizeof *r->buckets);
	if (!r->dir || !r->buckets)
		abort();
	/* Strip trailing slashes so paths read DIR/<id>.safetensors. */
	size_t n = strlen(r->dir);
	while (n > 1 && r->dir[n - 1] == '/')
		r->dir[--n] = '\0';
	return r;
}

void lokrd_registry_set_base(lokrd_registry *r, const lokr_base *base)
{
	r->base = base;
}

void lokrd_registry_free(lokrd_registry *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nbuckets; i++) {
		for (entry *e = r->buckets[i], *next; e; e = next) {
			next = e->hnext;
			if (e->state == E_READY)
				lokrd_ver_unref(e->ver);
			free_entry(e);
		}
	}
	free(r->buckets);
	free(r->dir);
	free(r);
}

lokrd_cache_group *lokrd_cache_group_new(uint64_t budget)
{
	lokrd_cache_group *g = calloc(1, sizeof *g);
	if (!g)
		abort();
	g->budget = budget;
	return g;
}

void lokrd_cache_group_free(lokrd_cache_group *g)
{
	free(g);
}

void lokrd_cache_group_set_budget(lokrd_cache_group *g, uint64_t budget)
{
	g->budget = budget;
	evict_group(g, NULL);
}

void lokrd_registry_join(lokrd_registry *r, lokrd_cache_group *g, uint64_t quota)
{
	r->group = g;
	r->gnext = g->head;
	g->head = r;
	g->resident += r->resident_bytes;
	r->quota = quota;
}

void lokrd_registry_set_quota(lokrd_registry *r, uint64_t quota)
{
	r->quota = quota;
	evict(r, NULL);
}

uint64_t lokrd_registry_quota(const lokrd_registry *r)
{
	return r->quota;
}

int lokrd_registry_path(const lokrd_registry *r, const char *id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s.safetensors", r->dir, id);
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

const char *lokrd_registry_dir(const lokrd_registry *r)
{
	return r->dir;
}

void lokrd_registry_stats_get(lokrd_registry *r, lokrd_registry_stats *s)
{
	memset(s, 0, sizeof *s);
	s->resident_bytes = r->resident_bytes;
	s->budget = r->budget;
	s->resident = r->nresident;
	s->known = r->nentries;
	for (entry *e = r->lru_head; e; e = e->next)
		s->pinned += (uint64_t)e->pinned;
}

static void append_id(char *buf, size_t len, size_t *at, const char *id)
{
	int n = snprintf(buf + *at, len - *at, "%s%s", *at ? "," : "", id);
	if (n > 0 && (size_t)n < len - *at)
		*at += (size_t)n;
}

void lokrd_registry_ids(lokrd_registry *r, char *resident, size_t rlen, char *waiting, size_t wlen)
{
	size_t ra = 0, wa = 0;
	resident[0] = waiting[0] = '\0';
	for (entry *e = r->lru_head; e; e = e->next)
		append_id(resident, rlen, &ra, e->id);
	for (size_t i = 0; i < r->nbuckets; i++)
		for (entry *e = r->buckets[i]; e; e = e->hnext)
			if (e->state == E_LOADING)
				append_id(waiting, wlen, &wa, e->id);
}

/* ------------------------------------------------------------ reload */

void lokrd_registry_set_budget(lokrd_registry *r, uint64_t budget)
{
	r->budget = budget;
	evict(r, NULL);
}

void lokrd_registry_rescan(lokrd_registry *r, unsigned *removed, unsigned *changed)
{
	*removed = *changed = 0;
	for (size_t i = 0; i < r->nbuckets; i++) {
		for (entry *e = r->buckets[i], *next; e; e = next) {
			next = e->hnext;
			if (e->state == E_LOADING || e->locked)
				continue;
			char path[PATH_MAX];
			struct stat st;
			if (lokrd_registry_path(r, e->id, path, sizeof path))
				continue;
			if (stat(path, &st) || !S_ISREG(st.st_mode)) {
				if (e->state == E_READY || e->state == E_FAILED || e->pinned)
					(*removed)++;
				lokrd_registry_forget(r, e->id);
				continue;
			}
			lokrd_file_ident id;
			lokrd_file_ident_of(&st, &id);
			if ((e->state == E_READY || e->state == E_FAILED) &&
			    !lokrd_file_ident_eq(&e->ident, &id)) {
				(*changed)++;
				drop_version(r, e);
				free(e->fail_msg);
				e->fail_msg = NULL;
				e->state = E_IDLE;
			}
		}
	}
}

void lokrd_registry_foreach_resident(lokrd_registry *r,
                                     void (*cb)(void *arg, const char *id, uint64_t bytes),
                                     void *arg)
{
	for (entry *e = r->lru_head; e; e = e->next)
		cb(arg, e->id, e->ver->resident_bytes);
}
