/*
 * metrics.h - counters and histograms of one lokrd process, rendered in
 * the Prometheus text format (version 0.0.4) for GET /metrics.
 *
 * Loop thread only: workers report through their done callbacks, which run
 * on the loop, so nothing here needs atomics.
 */
#ifndef LOKRD_METRICS_H
#define LOKRD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Routes as labelled in metrics and logs. */
typedef enum lokrd_route {
	LOKRD_ROUTE_NONE = 0, /* unknown path */
	LOKRD_ROUTE_HEALTHZ,
	LOKRD_ROUTE_READYZ,
	LOKRD_ROUTE_METRICS,
	LOKRD_ROUTE_MODEL,
	LOKRD_ROUTE_APPLY,
	LOKRD_ROUTE_MERGE,
	LOKRD_ROUTE_ADAPTERS,     /* GET /v1/adapters */
	LOKRD_ROUTE_ADAPTER,      /* GET/PUT/DELETE /v1/adapters/{id} */
	LOKRD_ROUTE_ADAPTER_LOAD, /* POST /v1/adapters/{id}/load */
	LOKRD_ROUTE_STATUS_PAGE,  /* GET / (HTML) */
	LOKRD_ROUTE_STATUS,       /* GET /v1/status */
	LOKRD_ROUTE_COUNT
} lokrd_route;

const char *lokrd_route_label(lokrd_route r);

#define LOKRD_HIST_MAX 16

typedef struct lokrd_hist {
	size_t nb;
	const double *bounds; /* upper bounds, ascending (le) */
	uint64_t count[LOKRD_HIST_MAX + 1];
	double sum;
	uint64_t total;
} lokrd_hist;

#define LOKRD_STATUS_SLOTS 18

typedef struct lokrd_metrics {
	uint64_t requests[LOKRD_ROUTE_COUNT][LOKRD_STATUS_SLOTS];
	lokrd_hist latency[LOKRD_ROUTE_COUNT]; /* seconds */
	lokrd_hist batch_size;                 /* apply requests per compute batch */
	lokrd_hist queue_wait;                 /* seconds from submit to start */
	uint64_t cache_hits, cache_misses, loads, load_failures, evictions;
	/* merged-tensor cache (merge_cache.h), copied in by route_merge.c */
	uint64_t merge_cache_hits, merge_cache_misses, merge_cache_bytes, merge_cache_budget;
	lokrd_hist load_seconds;
	uint64_t rejected_overload;
	uint64_t start_time;             /* unix seconds */
	uint64_t reloads, reload_errors; /* SIGHUP config reloads */
	uint64_t reload_time;            /* unix seconds of the last good reload (or start) */
} lokrd_metrics;

void lokrd_metrics_init(lokrd_metrics *m);
void lokrd_metrics_request(lokrd_metrics *m, lokrd_route route, unsigned status, double seconds);
void lokrd_hist_observe(lokrd_hist *h, double v);

/* Resident adapters of one tenant. */
typedef struct lokrd_tenant_usage {
	char name[136];
	uint64_t bytes, adapters;
} lokrd_tenant_usage;

/* Gauges read at scrape time by the caller. */
typedef struct lokrd_gauges {
	uint64_t base_bytes, shm_bytes;
	uint64_t resident_bytes, cache_budget;
	uint64_t resident_adapters, pinned_adapters, known_adapters;
	uint64_t queued, running, inflight;
	uint64_t connections;
	int ready;
	const char *resident_ids; /* comma-separated, for the residency gauge */
	const char *waiting_ids;
	const lokrd_tenant_usage *tenants; /* resident bytes per tenant */
	size_t ntenants;
	int draining;
} lokrd_gauges;

/* The residency gauge's max_adapters (vLLM's max_lora): resident adapters
 * plus how many more of their mean size fit in the free cache budget (8 MiB
 * assumed while none is resident). */
uint64_t lokrd_metrics_max_adapters(const lokrd_gauges *g);

/* Append the whole exposition to `b`. */
void lokrd_metrics_render(const lokrd_metrics *m, const lokrd_gauges *g, lokrd_buf *b);

#endif
