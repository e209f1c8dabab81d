/*
 * registry.h - the adapter registry: a lazy view of DIR/<id>.safetensors
 * with a memory-budgeted LRU cache of loaded (validated) adapters.
 *
 * - Lookups stat the file; a loaded version whose file identity (device,
 *   inode, size, mtime) still matches is a hit.  Otherwise the adapter is
 *   loaded on the worker pool, once for all concurrent lookups
 *   (single-flight).  A file that fails to load answers 422 with the same
 *   reason at every lookup until the file changes.
 * - Versions are reference counted: a request holds the version it started
 *   with, so replacing, deleting or evicting an adapter never disturbs a
 *   request in flight.
 * - Resident bytes (factors, DoRA vectors and plans, as the library counts
 *   them) are kept under the budget by evicting the least recently used
 *   unpinned adapters.
 *
 * Loop thread only, except where a function says otherwise.
 */
#ifndef LOKRD_REGISTRY_H
#define LOKRD_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "adapter_ver.h"
#include "lokr.h"
#include "metrics.h"
#include "pool.h"

typedef struct lokrd_registry lokrd_registry;

/* Outcome of a lookup: on success `ver` is a new reference and status 200;
 * otherwise ver is NULL and status/code/msg describe the error
 * (404 adapter_not_found, 422 adapter_invalid, 500 internal). */
typedef struct lokrd_lookup {
	lokrd_ver *ver;
	unsigned status;
	const char *code;
	const char *msg;
} lokrd_lookup;

typedef void (*lokrd_lookup_cb)(void *arg, const lokrd_lookup *res);

lokrd_registry *lokrd_registry_new(const char *dir, uint64_t budget, lokrd_pool *pool,
                                   lokrd_metrics *metrics);
void lokrd_registry_free(lokrd_registry *r);
/* The base the adapters are validated against (set once it is attached). */
void lokrd_registry_set_base(lokrd_registry *r, const lokr_base *base);

/* Look `id` up (must be valid).  Calls cb exactly once: synchronously for
 * a hit or an immediate error (returns 1), later on the loop thread when a
 * load is needed (returns 0). */
int lokrd_registry_get(lokrd_registry *r, const char *id, lokrd_lookup_cb cb, void *arg);

/* Pin state of `id` (creates the entry if needed). */
void lokrd_registry_pin(lokrd_registry *r, const char *id, int pinned);
/* Residency of `id`: resident (a version in the cache) and pinned. */
void lokrd_registry_state(lokrd_registry *r, const char *id, int *resident, int *pinned);

/* Writers: PUT and DELETE take the id exclusively; a second writer gets 0
 * (409).  lokrd_registry_unlock releases it. */
int lokrd_registry_lock(lokrd_registry *r, const char *id);
void lokrd_registry_unlock(lokrd_registry *r, const char *id);
/* Install a version validated by PUT (steals the caller's reference). */
void lokrd_registry_install(lokrd_registry *r, lokrd_ver *v);
/* Forget `id` after its file was deleted; in-flight versions live on. */
void lokrd_registry_forget(lokrd_registry *r, const char *id);

/* Tenants (tenant.c): registries that share one cache budget (a group) and
 * each may have a hard quota of resident bytes; an adapter larger than the
 * quota answers 429 quota_exceeded.  Loop thread. */
typedef struct lokrd_cache_group lokrd_cache_group;
lokrd_cache_group *lokrd_cache_group_new(uint64_t budget);
/* After every registry of the group was freed. */
void lokrd_cache_group_free(lokrd_cache_group *g);
void lokrd_cache_group_set_budget(lokrd_cache_group *g, uint64_t budget);
/* Put `r` under the group's budget, with `quota` resident bytes (0: none). */
void lokrd_registry_join(lokrd_registry *r, lokrd_cache_group *g, uint64_t quota);
void lokrd_registry_set_quota(lokrd_registry *r, uint64_t quota);
uint64_t lokrd_registry_quota(const lokrd_registry *r);

/* Path of DIR/<id>.safetensors into buf; -1 if too long. */
int lokrd_registry_path(const lokrd_registry *r, const char *id, char *buf, size_t len);
const char *lokrd_registry_dir(const lokrd_registry *r);

/* Cache figures for /metrics and /v1/adapters. */
typedef struct lokrd_registry_stats {
	uint64_t resident_bytes, budget;
	uint64_t resident, pinned, known;
} lokrd_registry_stats;
void lokrd_registry_stats_get(lokrd_registry *r, lokrd_registry_stats *s);
/* Comma-separated ids of resident adapters and of adapters being loaded,
 * into the two buffers (truncated at a bound). */
void lokrd_registry_ids(lokrd_registry *r, char *resident, size_t rlen, char *waiting, size_t wlen);
/* Known failure message for `id` with this identity (for the listing), or NULL. */
const char *lokrd_registry_failure(lokrd_registry *r, const char *id,
                                   const lokrd_file_ident *ident);
/* Cached summary for `id` at this identity; 0 if known. */
int lokrd_registry_summary(lokrd_registry *r, const char *id, const lokrd_file_ident *ident,
                           lokrd_summary *s);

/* SIGHUP: a new cache budget (evicts down to it at once). */
void lokrd_registry_set_budget(lokrd_registry *r, uint64_t budget);
/* SIGHUP: compare every known adapter with its file.  A removed file's
 * adapter is forgotten (memory freed, pin cleared), a changed file's
 * resident version or remembered failure is dropped (the next request loads
 * the new file).  Entries being loaded or written are left alone; requests
 * in flight keep their versions.  Counts go to the out parameters. */
void lokrd_registry_rescan(lokrd_registry *r, unsigned *removed, unsigned *changed);
/* Call cb for every resident adapter (id, resident bytes). */
void lokrd_registry_foreach_resident(lokrd_registry *r,
                                     void (*cb)(void *arg, const char *id, uint64_t bytes),
                                     void *arg);
#endif
