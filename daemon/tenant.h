/*
 * tenant.h - tenants of lokrd (DESIGN.md "Tenancy and limits", issue 6):
 * bearer tokens -> tenants, each with its own adapter namespace
 * DIR/<tenant>/<id>.safetensors, its own registry (cache view) and quotas
 * (adapter count, bytes on disk, bytes resident, requests per second).
 *
 * Tokens are never kept in clear: the config holds "sha256:<64 hex>" of a
 * token, or the token itself (at least 16 characters), which is hashed at
 * load.  A presented token is hashed (SHA-256, nettle) and compared with
 * every stored hash in constant time (nettle's memeql_sec), visiting all of
 * them whatever matches, so timing tells nothing about which byte differed
 * or which tenant matched.
 *
 * With no token configured there is one open tenant over the flat
 * directory DIR/<id>.safetensors, and lokrd refuses to listen on a
 * non-loopback address unless the config says "allow_open": true.
 *
 * Admin tokens ("admin_tokens") may use every route; on the adapter, apply
 * and merge routes they act inside the tenant named by the X-Lokrd-Tenant
 * header.  Tenant tokens may use their own namespace, GET /v1/model, and
 * the health routes; /metrics (which names adapters of every tenant) needs
 * an admin token.
 *
 * Loop thread only, except lokrd_tenant_put_lock/unlock (any thread).
 */
#ifndef LOKRD_TENANT_H
#define LOKRD_TENANT_H

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "limits.h"
#include "registry.h"

#define LOKRD_TENANT_MAX 64 /* name: [A-Za-z0-9][A-Za-z0-9._-]{0,63} */

struct lokrd_options;
struct lokrd_server;

typedef struct lokrd_quota {
	uint64_t max_adapters;       /* files in the namespace; 0 = no limit */
	uint64_t max_disk_bytes;     /* bytes of those files; 0 = no limit */
	uint64_t max_resident_bytes; /* bytes in the cache; 0 = only the global budget */
	double rps;                  /* requests per second; 0 = no limit */
	double burst;                /* bucket size; default max(rps, 1) */
} lokrd_quota;

typedef struct lokrd_tenant {
	char name[LOKRD_TENANT_MAX + 1]; /* "" for the open tenant */
	lokrd_quota quota;
	uint8_t (*hashes)[32]; /* owned: SHA-256 of its tokens */
	size_t nhashes;
	/* runtime (lokrd_tenants_start) */
	char dir[PATH_MAX];  /* its adapter directory */
	lokrd_registry *reg; /* owned */
	lokrd_bucket bucket;
	pthread_mutex_t put_mu; /* a PUT's quota check and rename, one at a time */
	int started;
} lokrd_tenant;

typedef struct lokrd_tenants {
	lokrd_tenant *t; /* owned array */
	size_t n;
	uint8_t (*admin)[32]; /* owned */
	size_t nadmin;
	int open; /* no tokens: t[0] is the open tenant */
} lokrd_tenants;

/* 1 if `key` is a top-level config key of this module ("tenants",
 * "admin_tokens", "allow_open"). */
int lokrd_tenants_config_key(const char *key);
/* Apply config key `key` with value `v` (borrowed) to o (o->tenants,
 * o->allow_open).  Errors on stderr naming the file and key; 0 or -1. */
int lokrd_tenants_config(struct lokrd_options *o, const char *key, const json_t *v,
                         const char *path);
void lokrd_tenants_free(lokrd_tenants *ts);

/* At start-up, before listening: 0 if the listen address is allowed (a
 * loopback address, tokens configured, or allow_open); -1 with a message. */
int lokrd_tenants_check_listen(const struct lokrd_options *o);

/* Serving process start: make the open tenant if there is no token, create
 * each tenant's directory and registry (sharing the server's cache
 * budget), and set s->tenants and s->reg (the first tenant's registry).
 * Returns 0 or -1 (logged). */
int lokrd_tenants_start(struct lokrd_server *s);
/* Give every registry the attached base. */
void lokrd_tenants_set_base(struct lokrd_server *s, const lokr_base *base);
/* Free the registries (after the loop ended). */
void lokrd_tenants_stop(struct lokrd_server *s);

/* SIGHUP (options.c): copy tokens and quotas of `next` (a freshly parsed
 * config, freed by the caller) into the live tenants when the set of tenant
 * names is unchanged.  Returns 0, or 1 when the change needs a restart
 * (tenants added, removed or renamed; tokens added to an open server);
 * then nothing is changed. */
int lokrd_tenants_reload(lokrd_tenants *live, lokrd_tenants *next);

/* Authenticate a request.  `authorization` is the Authorization header or
 * NULL, `as_tenant` the X-Lokrd-Tenant header or NULL.  On success returns
 * 0 with *tenant (NULL for an admin acting on no tenant) and *admin set.
 * Otherwise returns the status to answer: 401 (no or unknown token), 403
 * (X-Lokrd-Tenant from a tenant token naming another tenant), 404 (admin
 * naming an unknown tenant), with a code and message. */
unsigned lokrd_tenants_auth(lokrd_tenants *ts, const char *authorization, const char *as_tenant,
                            lokrd_tenant **tenant, int *admin, const char **code, char *msg,
                            size_t msglen);

/* Usage of a tenant's directory (any thread): adapter files other than
 * `except_id` (NULL: none), and their bytes. */
int lokrd_tenant_disk_usage(const lokrd_tenant *t, const char *except_id, uint64_t *count,
                            uint64_t *bytes);

/* Cache figures summed over the tenants, and the resident/loading ids
 * ("tenant/id" when there are tenants). */
void lokrd_tenants_stats(struct lokrd_server *s, lokrd_registry_stats *st);
void lokrd_tenants_ids(struct lokrd_server *s, char *resident, size_t rlen, char *waiting,
                       size_t wlen);

/* SHA-256 of `n` bytes (nettle). */
void lokrd_sha256(const void *data, size_t n, uint8_t out[32]);

#endif
