/*
 * merge_cache.c - the merged-tensor cache of merge_cache.h.
 *
 * A chained hash table (power-of-two buckets, doubled when the entries
 * outnumber them) over an intrusive doubly linked LRU list.  Keys are
 * opaque byte strings: the prefix of lokrd_merge_key_prefix followed by the
 * layer index.  The prefix is a small header (dtype, output kind, item
 * count) and one record per adapter of the set, sorted bytewise:
 *
 *   u8 id length, id bytes, u64 device, u64 inode, i64 size,
 *   i64 mtime (ns), u32 multiplier bits
 *
 * so drop_adapter can walk the records of each key to find an id.
 */
#include <stdlib.h>
#include <string.h>

#include "merge_cache.h"

typedef struct mc_entry {
	struct mc_entry *hnext;               /* bucket chain */
	struct mc_entry *lru_prev, *lru_next; /* head = most recently used */
	uint64_t hash;
	lokrd_blob *blob; /* the cache's reference */
	size_t klen;
	uint8_t key[]; /* klen bytes */
} mc_entry;

struct lokrd_merge_cache {
	mc_entry **buckets;
	size_t nbuckets;
	mc_entry *lru_head, *lru_tail;
	lokrd_merge_cache_stats st;
	lokrd_metrics *m; /* borrowed, or NULL */
};

static void publish(lokrd_merge_cache *c)
{
	if (!c->m)
		return;
	c->m->merge_cache_hits = c->st.hits;
	c->m->merge_cache_misses = c->st.misses;
	c->m->merge_cache_bytes = c->st.bytes;
	c->m->merge_cache_budget = c->st.budget;
}

#define PREFIX_HEAD 12 /* u32 dtype, u32 delta, u32 items */

/* ------------------------------------------------------------ blobs */

lokrd_blob *lokrd_blob_new(uint8_t *bytes, uint64_t len)
{
	lokrd_blob *b = malloc(sizeof *b);
	if (!b) {
		free(bytes);
		return NULL;
	}
	b->refs = 1;
	b->len = len;
	b->bytes = bytes;
	return b;
}

void lokrd_blob_ref(lokrd_blob *b)
{
	b->refs++;
}

void lokrd_blob_unref(lokrd_blob *b)
{
	if (!b || --b->refs > 0)
		return;
	free(b->bytes);
	free(b);
}

/* ------------------------------------------------------------ keys */

typedef struct rec {
	uint8_t bytes[1 + LOKRD_ID_MAX + 8 * 4 + 4];
	size_t len;
} rec;

static void put_u64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static int rec_cmp(const void *pa, const void *pb)
{
	const rec *a = pa, *b = pb;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->bytes, b->bytes, n);
	if (c)
		return c;
	return a->len < b->len ? -1 : a->len > b->len;
}

uint8_t *lokrd_merge_key_prefix(const lokrd_set *s, int dtype, int delta, size_t *len)
{
	rec *rs = s->n ? calloc(s->n, sizeof *rs) : NULL;
	if (s->n && !rs)
		return NULL;
	size_t total = PREFIX_HEAD;
	for (size_t i = 0; i < s->n; i++) {
		const lokrd_set_item *it = &s->items[i];
		const lokrd_ver *v = it->ver;
		size_t idlen = strnlen(it->id, LOKRD_ID_MAX);
		uint8_t *p = rs[i].bytes;
		*p++ = (uint8_t)idlen;
		memcpy(p, it->id, idlen);
		p += idlen;
		put_u64(p, v ? (uint64_t)v->ident.dev : 0);
		put_u64(p + 8, v ? (uint64_t)v->ident.ino : 0);
		put_u64(p + 16, v ? (uint64_t)v->ident.size : 0);
		put_u64(p + 24, v ? (uint64_t)v->ident.mtime_ns : 0);
		p += 32;
		memcpy(p, &it->multiplier, 4);
		p += 4;
		rs[i].len = (size_t)(p - rs[i].bytes);
		total += rs[i].len;
	}
	if (s->n > 1)
		qsort(rs, s->n, sizeof *rs, rec_cmp);
	uint8_t *k = malloc(total);
	if (k) {
		uint32_t head[3] = {(uint32_t)dtype, (uint32_t)delta, (uint32_t)s->n};
		memcpy(k, head, PREFIX_HEAD);
		size_t at = PREFIX_HEAD;
		for (size_t i = 0; i < s->n; i++) {
			memcpy(k + at, rs[i].bytes, rs[i].len);
			at += rs[i].len;
		}
		*len = total;
	}
	free(rs);
	return k;
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t key_hash(const uint8_t *prefix, size_t plen, uint64_t layer)
{
	uint64_t h = fnv(1469598103934665603ull, prefix, plen);
	return fnv(h, (const uint8_t *)&layer, sizeof layer);
}

static int key_eq(const mc_entry *e, uint64_t h, const uint8_t *prefix, size_t plen, uint64_t layer)
{
	return e->hash == h && e->klen == plen + sizeof layer && !memcmp(e->key, prefix, plen) &&
	       !memcmp(e->key + plen, &layer, sizeof layer);
}

/* ------------------------------------------------------------ table and LRU */

lokrd_merge_cache *lokrd_merge_cache_new(uint64_t budget, lokrd_metrics *m)
{
	lokrd_merge_cache *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->nbuckets = 64;
	c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->st.budget = budget;
	c->m = m;
	publish(c);
	return c;
}

static void lru_unlink(lokrd_merge_cache *c, mc_entry *e)
{
	if (e->lru_prev)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = e->lru_next = NULL;
}

static void lru_push_front(lokrd_merge_cache *c, mc_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head)
		c->lru_head->lru_prev = e;
	else
		c->lru_tail = e;
	c->lru_head = e;
}

static void remove_entry(lokrd_merge_cache *c, mc_entry *e)
{
	mc_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(c, e);
	c->st.bytes -= e->blob->len;
	c->st.entries--;
	lokrd_blob_unref(e->blob);
	free(e);
}

static void evict_to(lokrd_merge_cache *c, uint64_t limit)
{
	while (c->lru_tail && c->st.bytes > limit)
		remove_entry(c, c->lru_tail);
}

void lokrd_merge_cache_free(lokrd_merge_cache *c)
{
	if (!c)
		return;
	evict_to(c, 0);
	free(c->buckets);
	free(c);
}

void lokrd_merge_cache_set_budget(lokrd_merge_cache *c, uint64_t budget)
{
	c->st.budget = budget;
	evict_to(c, budget);
	publish(c);
}

void lokrd_merge_cache_stats_get(const lokrd_merge_cache *c, lokrd_merge_cache_stats *s)
{
	*s = c->st;
}

lokrd_blob *lokrd_merge_cache_get(lokrd_merge_cache *c, const uint8_t *prefix, size_t plen,
                                  size_t layer)
{
	uint64_t l = layer, h = key_hash(prefix, plen, l);
	for (mc_entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (key_eq(e, h, prefix, plen, l)) {
			lru_unlink(c, e);
			lru_push_front(c, e);
			c->st.hits++;
			publish(c);
			lokrd_blob_ref(e->blob);
			return e->blob;
		}
	c->st.misses++;
	publish(c);
	return NULL;
}

static void grow(lokrd_merge_cache *c)
{
	size_t n = c->nbuckets * 2;
	mc_entry **b = calloc(n, sizeof *b);
	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++)
		for (mc_entry *e = c->buckets[i], *next; e; e = next) {
			next = e->hnext;
			e->hnext = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

void lokrd_merge_cache_put(lokrd_merge_cache *c, const uint8_t *prefix, size_t plen, size_t layer,
                           lokrd_blob *b)
{
	if (!b || b->len > c->st.budget)
		return;
	uint64_t l = layer, h = key_hash(prefix, plen, l);
	for (mc_entry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
		if (key_eq(e, h, prefix, plen, l)) {
			/* Two streams computed the same tensor: keep the newer bytes. */
			remove_entry(c, e);
			break;
		}
	evict_to(c, c->st.budget - b->len);
	mc_entry *e = malloc(sizeof *e + plen + sizeof l);
	if (!e)
		return;
	e->hash = h;
	e->klen = plen + sizeof l;
	memcpy(e->key, prefix, plen);
	memcpy(e->key + plen, &l, sizeof l);
	e->blob = b;
	lokrd_blob_ref(b);
	if (c->st.entries >= c->nbuckets)
		grow(c);
	size_t k = h & (c->nbuckets - 1);
	e->hnext = c->buckets[k];
	c->buckets[k] = e;
	lru_push_front(c, e);
	c->st.bytes += b->len;
	c->st.entries++;
	publish(c);
}

/* True if the key's set names `id`. */
static int key_names(const mc_entry *e, const char *id, size_t idlen)
{
	const uint8_t *p = e->key, *end = e->key + e->klen - sizeof(uint64_t);
	uint32_t head[3];
	memcpy(head, p, PREFIX_HEAD);
	p += PREFIX_HEAD;
	for (uint32_t i = 0; i < head[2] && p < end; i++) {
		size_t n = *p++;
		if (n == idlen && !memcmp(p, id, n))
			return 1;
		p += n + 32 + 4;
	}
	return 0;
}

void lokrd_merge_cache_drop_adapter(lokrd_merge_cache *c, const char *id)
{
	if (!c)
		return;
	size_t idlen = strnlen(id, LOKRD_ID_MAX + 1);
	for (mc_entry *e = c->lru_head, *next; e; e = next) {
		next = e->lru_next;
		if (key_names(e, id, idlen))
			remove_entry(c, e);
	}
	publish(c);
}
