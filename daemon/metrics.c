/*
 * metrics.c - the Prometheus exposition of metrics.h.
 *
 * Names follow Prometheus conventions: lokrd_ prefix, _total for counters,
 * base units (seconds, bytes).  The adapter-residency gauge carries the
 * resident and waiting adapter ids as labels, the shape the Kubernetes
 * inference gateway reads for adapter-affinity routing.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "metrics.h"

static const double latency_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
static const double load_bounds[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30};

static const unsigned status_codes[LOKRD_STATUS_SLOTS] = {
    200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 431, 500, 503, 507, 0};

static const char *const route_labels[LOKRD_ROUTE_COUNT] = {
    "other",     "/healthz",  "/readyz",      "/metrics",          "/v1/model",
    "/v1/apply", "/v1/merge", "/v1/adapters", "/v1/adapters/{id}", "/v1/adapters/{id}/load",
    "/",         "/v1/status"};

const char *lokrd_route_label(lokrd_route r)
{
	return r < LOKRD_ROUTE_COUNT ? route_labels[r] : "other";
}

static void hist_init(lokrd_hist *h, const double *bounds, size_t nb)
{
	memset(h, 0, sizeof *h);
	h->bounds = bounds;
	h->nb = nb;
}

void lokrd_metrics_init(lokrd_metrics *m)
{
	memset(m, 0, sizeof *m);
	for (int r = 0; r < LOKRD_ROUTE_COUNT; r++)
		hist_init(&m->latency[r], latency_bounds,
		          sizeof latency_bounds / sizeof latency_bounds[0]);
	hist_init(&m->batch_size, batch_bounds, sizeof batch_bounds / sizeof batch_bounds[0]);
	hist_init(&m->queue_wait, latency_bounds, sizeof latency_bounds / sizeof latency_bounds[0]);
	hist_init(&m->load_seconds, load_bounds, sizeof load_bounds / sizeof load_bounds[0]);
	m->start_time = (uint64_t)time(NULL);
	m->reload_time = m->start_time;
}

uint64_t lokrd_metrics_max_adapters(const lokrd_gauges *g)
{
	uint64_t mean =
	    g->resident_adapters ? g->resident_bytes / g->resident_adapters : (uint64_t)8 << 20;
	if (mean == 0)
		mean = 1;
	uint64_t room =
	    g->cache_budget > g->resident_bytes ? g->cache_budget - g->resident_bytes : 0;
	return g->resident_adapters + room / mean;
}

/* Append `s` as a Prometheus label value (escapes \, " and newline). */
static void label_value(lokrd_buf *b, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			lokrd_buf_printf(b, "\\%c", *s);
		else if (*s == '\n')
			lokrd_buf_puts(b, "\\n");
		else
			lokrd_buf_append(b, s, 1);
	}
}

void lokrd_hist_observe(lokrd_hist *h, double v)
{
	size_t i = 0;
	while (i < h->nb && v > h->bounds[i])
		i++;
	h->count[i]++;
	h->sum += v;
	h->total++;
}

void lokrd_metrics_request(lokrd_metrics *m, lokrd_route route, unsigned status, double seconds)
{
	if (route >= LOKRD_ROUTE_COUNT)
		route = LOKRD_ROUTE_NONE;
	size_t slot = LOKRD_STATUS_SLOTS - 1;
	for (size_t i = 0; i + 1 < LOKRD_STATUS_SLOTS; i++)
		if (status_codes[i] == status)
			slot = i;
	m->requests[route][slot]++;
	lokrd_hist_observe(&m->latency[route], seconds);
}

static void render_hist(lokrd_buf *b, const char *name, const char *labels, const lokrd_hist *h)
{
	uint64_t cum = 0;
	const char *sep = labels[0] ? "," : "";
	for (size_t i = 0; i < h->nb; i++) {
		cum += h->count[i];
		lokrd_buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
		                 h->bounds[i], (unsigned long long)cum);
	}
	cum += h->count[h->nb];
	lokrd_buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
	                 (unsigned long long)cum);
	lokrd_buf_printf(b, "%s_sum%s%s%s %.9g\n", name, labels[0] ? "{" : "", labels,
	                 labels[0] ? "}" : "", h->sum);
	lokrd_buf_printf(b, "%s_count%s%s%s %llu\n", name, labels[0] ? "{" : "", labels,
	                 labels[0] ? "}" : "", (unsigned long long)h->total);
}

static void counter(lokrd_buf *b, const char *name, const char *help, uint64_t v)
{
	lokrd_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
	                 (unsigned long long)v);
}

static void gauge(lokrd_buf *b, const char *name, const char *help, uint64_t v)
{
	lokrd_buf_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
	                 (unsigned long long)v);
}

void lokrd_metrics_render(const lokrd_metrics *m, const lokrd_gauges *g, lokrd_buf *b)
{
	lokrd_buf_puts(b, "# HELP lokrd_http_requests_total HTTP requests answered, by route "
	                  "and status.\n# TYPE lokrd_http_requests_total counter\n");
	for (int r = 0; r < LOKRD_ROUTE_COUNT; r++) {
		for (int s = 0; s < LOKRD_STATUS_SLOTS; s++) {
			if (!m->requests[r][s])
				continue;
			char st[16] = "other";
			if (status_codes[s])
				snprintf(st, sizeof st, "%u", status_codes[s]);
			lokrd_buf_printf(
			    b, "lokrd_http_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
			    route_labels[r], st, (unsigned long long)m->requests[r][s]);
		}
	}
	lokrd_buf_puts(b, "# HELP lokrd_http_request_duration_seconds Time from the first "
	                  "byte of a request to its response, by route.\n"
	                  "# TYPE lokrd_http_request_duration_seconds histogram\n");
	for (int r = 0; r < LOKRD_ROUTE_COUNT; r++) {
		if (!m->latency[r].total)
			continue;
		char labels[64];
		snprintf(labels, sizeof labels, "route=\"%s\"", route_labels[r]);
		render_hist(b, "lokrd_http_request_duration_seconds", labels, &m->latency[r]);
	}
	lokrd_buf_puts(b, "# HELP lokrd_batch_size Apply requests computed together in one "
	                  "batch.\n# TYPE lokrd_batch_size histogram\n");
	render_hist(b, "lokrd_batch_size", "", &m->batch_size);
	lokrd_buf_puts(b, "# HELP lokrd_queue_wait_seconds Time compute jobs waited for a "
	                  "worker.\n# TYPE lokrd_queue_wait_seconds histogram\n");
	render_hist(b, "lokrd_queue_wait_seconds", "", &m->queue_wait);
	gauge(b, "lokrd_queue_depth", "Compute jobs waiting for a worker.", g->queued);
	gauge(b, "lokrd_jobs_running", "Compute jobs being run.", g->running);
	gauge(b, "lokrd_jobs_inflight", "Compute jobs admitted and not yet answered.", g->inflight);
	counter(b, "lokrd_rejected_overload_total", "Requests refused with 503 (job limit).",
	        m->rejected_overload);
	counter(b, "lokrd_adapter_cache_hits_total", "Adapter lookups served from memory.",
	        m->cache_hits);
	counter(b, "lokrd_adapter_cache_misses_total", "Adapter lookups that needed a load.",
	        m->cache_misses);
	counter(b, "lokrd_adapter_loads_total", "Adapter files loaded and validated.", m->loads);
	counter(b, "lokrd_adapter_load_failures_total", "Adapter loads that failed (422).",
	        m->load_failures);
	counter(b, "lokrd_adapter_evictions_total", "Adapters evicted under the cache budget.",
	        m->evictions);
	counter(b, "lokrd_merge_cache_hits_total", "Merged tensors sent from the merge cache.",
	        m->merge_cache_hits);
	counter(b, "lokrd_merge_cache_misses_total",
	        "Merged tensors computed (merge cache misses).", m->merge_cache_misses);
	gauge(b, "lokrd_merge_cache_bytes", "Bytes of encoded tensors in the merge cache.",
	      m->merge_cache_bytes);
	gauge(b, "lokrd_merge_cache_budget_bytes", "The --merge-cache-bytes budget.",
	      m->merge_cache_budget);
	lokrd_buf_puts(b, "# HELP lokrd_adapter_load_seconds Time to load and validate an "
	                  "adapter.\n# TYPE lokrd_adapter_load_seconds histogram\n");
	render_hist(b, "lokrd_adapter_load_seconds", "", &m->load_seconds);
	gauge(b, "lokrd_adapter_resident_bytes", "Bytes held by resident adapters.",
	      g->resident_bytes);
	gauge(b, "lokrd_adapter_cache_budget_bytes", "The --cache-bytes budget.", g->cache_budget);
	gauge(b, "lokrd_adapters_resident", "Adapters resident in memory.", g->resident_adapters);
	gauge(b, "lokrd_adapters_pinned", "Adapters pinned against eviction.", g->pinned_adapters);
	lokrd_buf_puts(b,
	               "# HELP lokrd_adapter_cache_utilization Resident adapter bytes over "
	               "the cache budget (0..1).\n# TYPE lokrd_adapter_cache_utilization gauge\n");
	lokrd_buf_printf(b, "lokrd_adapter_cache_utilization %.6g\n",
	                 g->cache_budget ? (double)g->resident_bytes / (double)g->cache_budget
	                                 : 0.0);
	lokrd_buf_puts(b, "# HELP lokrd_tenant_adapter_resident_bytes Bytes held by resident "
	                  "adapters, by tenant.\n"
	                  "# TYPE lokrd_tenant_adapter_resident_bytes gauge\n");
	for (size_t i = 0; i < g->ntenants; i++) {
		lokrd_buf_puts(b, "lokrd_tenant_adapter_resident_bytes{tenant=\"");
		label_value(b, g->tenants[i].name);
		lokrd_buf_printf(b, "\"} %llu\n", (unsigned long long)g->tenants[i].bytes);
	}
	lokrd_buf_puts(b, "# HELP lokrd_tenant_adapters_resident Resident adapters, by "
	                  "tenant.\n# TYPE lokrd_tenant_adapters_resident gauge\n");
	for (size_t i = 0; i < g->ntenants; i++) {
		lokrd_buf_puts(b, "lokrd_tenant_adapters_resident{tenant=\"");
		label_value(b, g->tenants[i].name);
		lokrd_buf_printf(b, "\"} %llu\n", (unsigned long long)g->tenants[i].adapters);
	}
	/* The residency gauge, with the ids in labels: what the Gateway API
	 * Inference Extension reads for adapter-affinity routing.  lokrd's own
	 * name carries the resident count; vLLM's name (the one the gateway
	 * looks for) carries the scrape time, as vLLM does. */
	const char *run = g->resident_ids ? g->resident_ids : "";
	const char *wait = g->waiting_ids ? g->waiting_ids : "";
	unsigned long long max = (unsigned long long)lokrd_metrics_max_adapters(g);
	lokrd_buf_puts(b, "# HELP lokrd_adapter_residency Resident and loading adapters (ids in "
	                  "labels) and how many fit, for adapter-affinity routing.\n"
	                  "# TYPE lokrd_adapter_residency gauge\n"
	                  "lokrd_adapter_residency{max_adapters=\"");
	lokrd_buf_printf(b, "%llu\",running_adapters=\"", max);
	label_value(b, run);
	lokrd_buf_puts(b, "\",waiting_adapters=\"");
	label_value(b, wait);
	lokrd_buf_printf(b, "\"} %llu\n", (unsigned long long)g->resident_adapters);
	lokrd_buf_puts(b, "# HELP vllm:lora_requests_info lokrd's adapter residency under vLLM's "
	                  "name (value: scrape time), for the Gateway API Inference Extension.\n"
	                  "# TYPE vllm:lora_requests_info gauge\n"
	                  "vllm:lora_requests_info{max_lora=\"");
	lokrd_buf_printf(b, "%llu\",running_lora_adapters=\"", max);
	label_value(b, run);
	lokrd_buf_puts(b, "\",waiting_lora_adapters=\"");
	label_value(b, wait);
	lokrd_buf_printf(b, "\"} %llu\n", (unsigned long long)time(NULL));
	gauge(b, "vllm:num_requests_waiting",
	      "Compute jobs waiting for a worker (lokrd_queue_depth under vLLM's name).",
	      g->queued);
	gauge(b, "vllm:num_requests_running",
	      "Compute jobs being run (lokrd_jobs_running under vLLM's name).", g->running);
	lokrd_buf_puts(b, "# HELP vllm:gpu_cache_usage_perc lokrd_adapter_cache_utilization under "
	                  "the KV-cache name the inference gateway reads (0..1).\n"
	                  "# TYPE vllm:gpu_cache_usage_perc gauge\n");
	lokrd_buf_printf(b, "vllm:gpu_cache_usage_perc %.6g\n",
	                 g->cache_budget ? (double)g->resident_bytes / (double)g->cache_budget
	                                 : 0.0);
	gauge(b, "lokrd_base_bytes", "Bytes of float32 base weights.", g->base_bytes);
	gauge(b, "lokrd_base_shm_bytes", "Bytes of the shared base segment.", g->shm_bytes);
	gauge(b, "lokrd_ready", "1 once the base is attached.", (uint64_t)g->ready);
	gauge(b, "lokrd_http_connections", "Open HTTP connections.", g->connections);
	gauge(b, "lokrd_draining", "1 after SIGTERM while requests finish.", (uint64_t)g->draining);
	counter(b, "lokrd_config_reloads_total", "SIGHUP reloads applied.", m->reloads);
	counter(b, "lokrd_config_reload_errors_total", "SIGHUP reloads refused (bad config).",
	        m->reload_errors);
	gauge(b, "lokrd_config_last_reload_success_timestamp_seconds",
	      "Time of the last good reload (or of the start).", m->reload_time);
	lokrd_buf_printf(b,
	                 "# HELP lokrd_start_time_seconds Start time of the process.\n"
	                 "# TYPE lokrd_start_time_seconds gauge\nlokrd_start_time_seconds %llu\n",
	                 (unsigned long long)m->start_time);
}
