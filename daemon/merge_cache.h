/*
 * merge_cache.h - a byte-budgeted LRU cache of encoded merged tensors, so
 * a repeated POST /v1/merge sends what it computed before instead of
 * merging again.
 *
 * A key names everything the bytes depend on: the layer, the dtype, the
 * output kind (merged or delta) and the adapter set as (id, file identity,
 * multiplier) triples in a canonical order (a merge does not depend on the
 * order of the set, lib/merge.c).  The file identity (device, inode, size,
 * mtime) changes with every new version of an adapter, so a stale entry can
 * never be hit; lokrd_merge_cache_drop_adapter also frees the entries of an
 * id at once when a PUT or DELETE replaces it.
 *
 * Values are reference-counted blobs: a stream holds the blob it is
 * sending, so eviction never frees bytes in use.  The budget counts the
 * bytes of the blobs the cache holds; it is separate from --cache-bytes
 * (the adapter cache), because merged tensors are dense (out x in floats,
 * 6.5 MB for a 1280 x 1280 layer) where adapters are small factors, and
 * one big merge must not evict every adapter.  Budget 0 disables it.
 *
 * Loop thread only (no locks): lookups happen before a merge job is
 * submitted and inserts in its done callback.
 */
#ifndef LOKRD_MERGE_CACHE_H
#define LOKRD_MERGE_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "adapterset.h"
#include "metrics.h"

/* Encoded tensor bytes shared by the cache and streams. */
typedef struct lokrd_blob {
	int refs;
	uint64_t len;   /* bytes */
	uint8_t *bytes; /* owned, malloc'd */
} lokrd_blob;

/* A blob owning `bytes` (steals them), refs = 1; NULL if out of memory
 * (bytes are then freed). */
lokrd_blob *lokrd_blob_new(uint8_t *bytes, uint64_t len);
void lokrd_blob_ref(lokrd_blob *b);
/* Drops a reference; frees at zero.  NULL is allowed. */
void lokrd_blob_unref(lokrd_blob *b);

typedef struct lokrd_merge_cache lokrd_merge_cache;

/* Counters for /metrics, kept up to date by the cache. */
typedef struct lokrd_merge_cache_stats {
	uint64_t hits, misses, bytes, entries, budget;
} lokrd_merge_cache_stats;

/* Returns new.  `budget` in bytes; 0 stores nothing (every get misses).
 * The counters are copied into `m`'s merge_cache_* fields at every change
 * (m borrowed, may be NULL). */
lokrd_merge_cache *lokrd_merge_cache_new(uint64_t budget, lokrd_metrics *m);
void lokrd_merge_cache_free(lokrd_merge_cache *c);
/* A new budget; evicts down to it at once. */
void lokrd_merge_cache_set_budget(lokrd_merge_cache *c, uint64_t budget);
void lokrd_merge_cache_stats_get(const lokrd_merge_cache *c, lokrd_merge_cache_stats *s);

/* The part of a key shared by every tensor of one merge request: the
 * resolved set (s->items[i].ver must be set), the dtype and the output
 * kind.  Returns new (free with free()), length in *len, or NULL when out
 * of memory. */
uint8_t *lokrd_merge_key_prefix(const lokrd_set *s, int dtype, int delta, size_t *len);

/* The blob for (prefix, layer): a new reference, counted as a hit, or NULL
 * (a miss). */
lokrd_blob *lokrd_merge_cache_get(lokrd_merge_cache *c, const uint8_t *prefix, size_t plen,
                                  size_t layer);
/* Remember `b` under (prefix, layer) (the cache takes its own reference),
 * evicting the least recently used entries to stay under the budget.  A
 * blob larger than the budget, or an out-of-memory, stores nothing. */
void lokrd_merge_cache_put(lokrd_merge_cache *c, const uint8_t *prefix, size_t plen, size_t layer,
                           lokrd_blob *b);
/* Drop every entry whose set names adapter `id` (PUT, DELETE).  NULL c is
 * allowed (no merge yet). */
void lokrd_merge_cache_drop_adapter(lokrd_merge_cache *c, const char *id);

#endif
