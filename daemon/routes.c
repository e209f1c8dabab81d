/*
 * routes.c - request routing for HTTP API v1 (DESIGN.md) and the small
 * routes answered on the loop thread: /healthz, /readyz, /metrics,
 * /v1/model.
 *
 * Routing is exact: fixed paths, and /v1/adapters/{id}[/load] where {id}
 * is everything between the slashes (MHD has already decoded %HH, except
 * %00), validated against the id grammar before any file is touched.
 * Unknown path: 404 not_found; known path, other method: 405 with Allow.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "limits.h"
#include "log.h"
#include "route_impl.h"
#include "routes.h"
#include "tenant.h"
#include "status_page.h"

/* ------------------------------------------------------------ helpers */

void lokrd_req_send_json(lokrd_req *r, unsigned status, json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
	json_decref(v);
	if (!s) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	lokrd_req_json(r, status, s, strlen(s));
}

json_t *lokrd_body_json(lokrd_req *r, int allow_empty)
{
	if (r->body.len == 0) {
		if (allow_empty)
			return json_object();
		lokrd_req_error(r, 400, "bad_json",
		                "the request body is empty; a JSON object is expected");
		return NULL;
	}
	int max_depth = r->srv->opt->max_json_depth;
	if (lokrd_json_depth(r->body.data, r->body.len, max_depth + 1) > max_depth) {
		lokrd_req_error(r, 400, "too_deep", "the JSON body nests deeper than %d levels",
		                max_depth);
		return NULL;
	}
	json_error_t e;
	json_t *v = json_loadb(r->body.data, r->body.len, JSON_REJECT_DUPLICATES, &e);
	if (!v) {
		lokrd_req_error(r, 400, "bad_json", "invalid JSON at line %d column %d: %s", e.line,
		                e.column, e.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		lokrd_req_error(r, 400, "bad_json", "the request body must be a JSON object");
		return NULL;
	}
	return v;
}

int lokrd_check_fields(lokrd_req *r, const json_t *o, const char *const *allowed)
{
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)o, key, v)
	{
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			ok |= !strcmp(*a, key);
		if (!ok) {
			lokrd_req_error(r, 400, "bad_request", "unknown field \"%.64s\"", key);
			return -1;
		}
	}
	return 0;
}

int lokrd_admit(lokrd_req *r, int jobs)
{
	lokrd_server *s = r->srv;
	if (s->inflight + jobs > s->opt->max_inflight && s->inflight > 0) {
		s->metrics.rejected_overload++;
		lokrd_req_error(r, 503, "overloaded", "too many requests in progress (%d); retry",
		                s->inflight);
		return 0;
	}
	s->inflight += jobs;
	return 1;
}

void lokrd_release(lokrd_server *s, int jobs)
{
	s->inflight -= jobs;
}

/* Media type of a Content-Type value equals `want` (case-insensitive,
 * parameters ignored). */
static int media_is(const char *ct, const char *want)
{
	size_t n = strlen(want);
	if (strncasecmp(ct, want, n))
		return 0;
	const char *p = ct + n;
	while (*p == ' ' || *p == '\t')
		p++;
	return *p == '\0' || *p == ';';
}

/* ------------------------------------------------------------ small routes */

static void route_healthz(lokrd_req *r)
{
	static const char ok[] = "{\"status\":\"ok\"}";
	char *b = strdup(ok);
	lokrd_req_json(r, 200, b, b ? strlen(b) : 0);
}

static void route_readyz(lokrd_req *r)
{
	if (!r->srv->ready) {
		lokrd_req_error(r, 503, "not_ready", "the base model is still loading");
		return;
	}
	if (r->srv->draining) {
		lokrd_req_error(r, 503, "shutting_down", "lokrd is shutting down");
		return;
	}
	char *b = strdup("{\"status\":\"ready\"}");
	lokrd_req_json(r, 200, b, b ? strlen(b) : 0);
}

static const char *kind_name(const lokr_layer *l)
{
	if (l->kind == LOKR_LAYER_LINEAR)
		return "linear";
	switch (l->ndim) {
	case 3:
		return "conv1d";
	case 4:
		return "conv2d";
	case 5:
		return "conv3d";
	default:
		return "conv";
	}
}

static void route_model(lokrd_req *r)
{
	lokrd_server *s = r->srv;
	json_t *layers = json_array();
	size_t n = lokr_base_layer_count(s->base);
	for (size_t i = 0; i < n; i++) {
		const lokr_layer *l = lokr_base_layer_at(s->base, i);
		json_t *shape = json_array();
		for (int d = 0; d < l->ndim; d++)
			json_array_append_new(shape, json_integer(l->shape[d]));
		uint64_t bytes = (uint64_t)l->out * (uint64_t)l->in * (uint64_t)l->kk * 4;
		if (l->bias)
			bytes += (uint64_t)l->out * 4;
		json_array_append_new(layers,
		                      json_pack("{s:s,s:s,s:o,s:s,s:I,s:b}", "name", l->name,
		                                "kind", kind_name(l), "shape", shape, "dtype",
		                                lokr_dtype_name(l->src_dtype), "bytes",
		                                (json_int_t)bytes, "bias", l->bias != NULL));
	}
	json_t *sources = json_array();
	for (size_t i = 0; i < s->opt->nbase; i++)
		json_array_append_new(sources, json_string(s->opt->base[i]));
	json_t *o = json_pack("{s:o,s:I,s:I,s:o,s:{s:s,s:s,s:I,s:b},s:s}", "layers", layers,
	                      "count", (json_int_t)n, "bytes", (json_int_t)lokr_base_bytes(s->base),
	                      "sources", sources, "shm", "kind", s->shm.named ? "posix" : "memfd",
	                      "name", s->shm.name, "bytes", (json_int_t)s->shm.len, "sealed",
	                      !s->shm.named, "compute_dtype", "f32");
	lokrd_req_send_json(r, 200, o);
}

/* ------------------------------------------------------------ routing */

typedef struct route_def {
	const char *path;
	lokrd_route route;
	const char *method; /* the one method allowed (GET also allows HEAD) */
} route_def;

static const route_def fixed[] = {
    {"/healthz", LOKRD_ROUTE_HEALTHZ, "GET"},      {"/readyz", LOKRD_ROUTE_READYZ, "GET"},
    {"/metrics", LOKRD_ROUTE_METRICS, "GET"},      {"/v1/model", LOKRD_ROUTE_MODEL, "GET"},
    {"/v1/apply", LOKRD_ROUTE_APPLY, "POST"},      {"/v1/merge", LOKRD_ROUTE_MERGE, "POST"},
    {"/v1/adapters", LOKRD_ROUTE_ADAPTERS, "GET"}, {"/", LOKRD_ROUTE_STATUS_PAGE, "GET"},
    {"/v1/status", LOKRD_ROUTE_STATUS, "GET"},
};

static int method_is(const lokrd_req *r, const char *m)
{
	if (!strcmp(m, "GET") && !strcmp(r->method, "HEAD"))
		return 1;
	return !strcmp(r->method, m);
}

/* Match r->path; 0, or -1 after answering 404/405. */
static int match(lokrd_req *r)
{
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		if (strcmp(r->path, fixed[i].path))
			continue;
		r->route = fixed[i].route;
		if (!method_is(r, fixed[i].method)) {
			lokrd_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s",
			                r->method, fixed[i].path);
			return -1;
		}
		return 0;
	}
	static const char prefix[] = "/v1/adapters/";
	if (!strncmp(r->path, prefix, sizeof prefix - 1)) {
		const char *rest = r->path + sizeof prefix - 1;
		const char *slash = strchr(rest, '/');
		size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
		if (slash && strcmp(slash, "/load")) {
			lokrd_req_error(r, 404, "not_found", "no route %s", r->path);
			return -1;
		}
		r->route = slash ? LOKRD_ROUTE_ADAPTER_LOAD : LOKRD_ROUTE_ADAPTER;
		if (idlen <= LOKRD_ID_MAX) {
			memcpy(r->id, rest, idlen);
			r->id[idlen] = '\0';
			r->id_ok = lokrd_id_valid(r->id);
		}
		int allowed =
		    slash ? method_is(r, "POST")
		          : (method_is(r, "GET") || method_is(r, "PUT") || method_is(r, "DELETE"));
		if (!allowed) {
			lokrd_req_error(r, 405, "method_not_allowed", "%s is not allowed on %s",
			                r->method,
			                slash ? "/v1/adapters/{id}/load" : "/v1/adapters/{id}");
			return -1;
		}
		if (!r->id_ok) {
			lokrd_req_error(
			    r, 400, "bad_adapter_id",
			    "invalid adapter id: an id matches [A-Za-z0-9][A-Za-z0-9._-]{0,127}");
			return -1;
		}
		return 0;
	}
	r->route = LOKRD_ROUTE_NONE;
	lokrd_req_error(r, 404, "not_found", "no route %s", r->path);
	return -1;
}

/* Tenancy (tenant.h): who may use which route, in whose namespace, and the
 * tenant's request rate.  0, or -1 after answering 400/401/403/404/429. */
static int authorize(lokrd_req *r)
{
	lokrd_server *s = r->srv;
	if (r->route == LOKRD_ROUTE_HEALTHZ || r->route == LOKRD_ROUTE_READYZ)
		return 0;
	lokrd_tenant *t = NULL;
	int admin = 0;
	const char *code = "unauthorized";
	char msg[256];
	unsigned st = lokrd_tenants_auth(s->tenants, lokrd_req_header(r, "Authorization"),
	                                 lokrd_req_header(r, "X-Lokrd-Tenant"), &t, &admin, &code,
	                                 msg, sizeof msg);
	if (st) {
		lokrd_req_error(r, st, code, "%s", msg);
		return -1;
	}
	r->tenant = t;
	r->admin = admin;
	r->reg = t ? t->reg : NULL;
	switch (r->route) {
	case LOKRD_ROUTE_MODEL:
		break;
	case LOKRD_ROUTE_APPLY:
	case LOKRD_ROUTE_MERGE:
	case LOKRD_ROUTE_ADAPTERS:
	case LOKRD_ROUTE_ADAPTER:
	case LOKRD_ROUTE_ADAPTER_LOAD:
		if (!t) {
			lokrd_req_error(r, 400, "tenant_required",
			                "an admin token acts inside the tenant named by the "
			                "X-Lokrd-Tenant header");
			return -1;
		}
		break;
	default:
		/* /metrics and the status routes show every tenant's adapters. */
		if (!s->tenants->open && !admin) {
			lokrd_req_error(r, 403, "forbidden", "%s needs an admin token", r->path);
			return -1;
		}
		return 0;
	}
	unsigned retry = 1;
	if (t && !admin && !lokrd_bucket_take(&t->bucket, uv_hrtime(), &retry)) {
		r->retry_after = retry;
		lokrd_req_error(r, 429, "rate_limited",
		                "tenant '%s' is over its rate of %g requests per second", t->name,
		                t->quota.rps);
		return -1;
	}
	return 0;
}

/* A bounded work queue: requests of routes that put tasks on the compute
 * pool are refused while it holds max_queue tasks.  0, or -1 after
 * answering 503. */
static int queue_full(lokrd_req *r)
{
	int uses_pool = r->route == LOKRD_ROUTE_APPLY || r->route == LOKRD_ROUTE_MERGE ||
	                r->route == LOKRD_ROUTE_ADAPTERS || r->route == LOKRD_ROUTE_ADAPTER ||
	                r->route == LOKRD_ROUTE_ADAPTER_LOAD;
	if (!uses_pool)
		return 0;
	size_t queued = 0, running = 0;
	lokrd_pool_stats(&r->srv->pool, &queued, &running);
	if (queued < (size_t)r->srv->opt->max_queue)
		return 0;
	r->srv->metrics.rejected_overload++;
	lokrd_req_error(r, 503, "overloaded", "the work queue is full (%zu tasks); retry", queued);
	return -1;
}

void lokrd_routes_begin(lokrd_req *r)
{
	if (match(r) || authorize(r))
		return;
	const lokrd_options *o = r->srv->opt;
	int is_put = r->route == LOKRD_ROUTE_ADAPTER && !strcmp(r->method, "PUT");
	int is_json = r->route == LOKRD_ROUTE_APPLY || r->route == LOKRD_ROUTE_MERGE ||
	              r->route == LOKRD_ROUTE_ADAPTER_LOAD;
	if (!is_put && !is_json)
		return;
	const char *ct = lokrd_req_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (ct && is_json && !media_is(ct, "application/json")) {
		lokrd_req_error(r, 415, "unsupported_media_type",
		                "Content-Type must be application/json, not %.64s", ct);
		return;
	}
	if (ct && is_put && !media_is(ct, "application/octet-stream") &&
	    !media_is(ct, "application/x-safetensors") &&
	    !media_is(ct, "application/safetensors")) {
		lokrd_req_error(r, 415, "unsupported_media_type",
		                "an adapter upload is a safetensors file sent as "
		                "application/octet-stream, not %.64s",
		                ct);
		return;
	}
	uint64_t limit = is_put ? o->max_upload : o->max_json_body;
	const char *cl = lokrd_req_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		char *end;
		unsigned long long v = strtoull(cl, &end, 10);
		if (end != cl && !*end && v > limit) {
			lokrd_req_error(r, 413, "body_too_large",
			                "request body of %llu bytes exceeds the limit of %llu", v,
			                (unsigned long long)limit);
			return;
		}
	}
	if (!r->srv->ready) {
		lokrd_req_error(r, 503, "not_ready", "the base model is still loading");
		return;
	}
	if (is_put) {
		lokrd_route_adapter_put_begin(r);
		return;
	}
	lokrd_buf_init(&r->body, (size_t)limit);
}

void lokrd_routes_body(lokrd_req *r, const char *data, size_t n)
{
	r->body_bytes += n;
	if (r->route == LOKRD_ROUTE_ADAPTER && !strcmp(r->method, "PUT")) {
		if (r->body_bytes > r->srv->opt->max_upload) {
			lokrd_req_error(r, 413, "body_too_large",
			                "request body exceeds the limit of %llu bytes",
			                (unsigned long long)r->srv->opt->max_upload);
			lokrd_route_adapter_put_discard(r);
			return;
		}
		if (r->tenant && r->tenant->quota.max_disk_bytes &&
		    r->body_bytes > r->tenant->quota.max_disk_bytes) {
			lokrd_req_error(r, 429, "quota_exceeded",
			                "the upload exceeds tenant '%s''s disk quota of %llu bytes",
			                r->tenant->name,
			                (unsigned long long)r->tenant->quota.max_disk_bytes);
			lokrd_route_adapter_put_discard(r);
			return;
		}
		lokrd_route_adapter_put_body(r, data, n);
		return;
	}
	if (r->route != LOKRD_ROUTE_APPLY && r->route != LOKRD_ROUTE_MERGE &&
	    r->route != LOKRD_ROUTE_ADAPTER_LOAD)
		return; /* bodies of GET/DELETE are ignored */
	if (lokrd_buf_append(&r->body, data, n))
		lokrd_req_error(r, 413, "body_too_large",
		                "request body exceeds the limit of %llu bytes",
		                (unsigned long long)r->body.limit);
}

void lokrd_routes_dispatch(lokrd_req *r)
{
	lokrd_server *s = r->srv;
	if (r->route != LOKRD_ROUTE_HEALTHZ && r->route != LOKRD_ROUTE_READYZ &&
	    r->route != LOKRD_ROUTE_METRICS && r->route != LOKRD_ROUTE_STATUS &&
	    r->route != LOKRD_ROUTE_STATUS_PAGE && !s->ready) {
		lokrd_req_error(r, 503, "not_ready", "the base model is still loading");
		return;
	}
	/* After the body, so every client reads the 503 (an answer queued
	 * before the body makes MHD close while the client still sends). */
	if (queue_full(r))
		return;
	switch (r->route) {
	case LOKRD_ROUTE_HEALTHZ:
		route_healthz(r);
		break;
	case LOKRD_ROUTE_READYZ:
		route_readyz(r);
		break;
	case LOKRD_ROUTE_METRICS:
		lokrd_route_metrics(r);
		break;
	case LOKRD_ROUTE_STATUS:
		lokrd_route_status(r);
		break;
	case LOKRD_ROUTE_STATUS_PAGE:
		lokrd_route_status_page(r);
		break;
	case LOKRD_ROUTE_MODEL:
		route_model(r);
		break;
	case LOKRD_ROUTE_APPLY:
		lokrd_route_apply(r);
		break;
	case LOKRD_ROUTE_MERGE:
		lokrd_route_merge(r);
		break;
	case LOKRD_ROUTE_ADAPTERS:
		lokrd_route_adapters_list(r);
		break;
	case LOKRD_ROUTE_ADAPTER:
		if (!strcmp(r->method, "PUT"))
			lokrd_route_adapter_put(r);
		else if (!strcmp(r->method, "DELETE"))
			lokrd_route_adapter_delete(r);
		else
			lokrd_route_adapter_get(r);
		break;
	case LOKRD_ROUTE_ADAPTER_LOAD:
		lokrd_route_adapter_load(r);
		break;
	default:
		lokrd_req_error(r, 404, "not_found", "no route %s", r->path);
		break;
	}
}
