/*
 * server.h - the one server struct of a lokrd serving process (STYLE.md 7:
 * the daemon's only global state, passed explicitly everywhere).
 */
#ifndef LOKRD_SERVER_H
#define LOKRD_SERVER_H

#include <stdint.h>
#include <uv.h>

#include "lokr.h"
#include "metrics.h"
#include "options.h"
#include "pool.h"
#include "registry.h"
#include "shm.h"

typedef struct lokrd_http lokrd_http;

typedef struct lokrd_server {
	const lokrd_options *opt; /* borrowed */
	uv_loop_t *loop;
	lokrd_pool pool; /* compute workers */
	int threads;     /* their number */
	lokrd_metrics metrics;
	lokrd_registry *reg;            /* the first tenant's (the open tenant's) */
	struct lokrd_tenants *tenants;  /* borrowed from the options (tenant.c) */
	lokrd_cache_group *cache_group; /* cache budget shared by the tenants */
	uv_timer_t limits_timer;        /* request timeouts and compute deadlines (http.c) */
	lokrd_shm shm;                  /* the base segment */
	lokr_base *base;                /* attached to shm; NULL until ready */
	int ready;                      /* 1 once the base is attached */
	lokrd_http *http;
	int listen_fd;      /* owned by main */
	char instance[128]; /* "host:port", sent as X-Lokrd-Instance */
	int inflight;       /* compute jobs admitted, not yet answered */
	int draining;       /* SIGTERM seen: finish what was received, then exit */
	int exit_code;
	uv_signal_t sigterm, sigint, sighup;
	uv_timer_t drain_timer;
	uv_timer_t watchdog; /* WATCHDOG=1 pings when systemd asks */
	uint64_t drain_deadline_ns;
	uint64_t drain_close_ns; /* after the deadline: close what is left */
	/* merged tensors of /v1/merge (merge_cache.c); NULL until the first merge */
	struct lokrd_merge_cache *merge_cache;
} lokrd_server;

#endif
