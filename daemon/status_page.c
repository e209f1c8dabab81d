/*
 * status_page.c - /metrics, /v1/status and the HTML status page at / (see
 * status_page.h).
 *
 * Both /metrics and /v1/status read the same gauges (collect()): the
 * worker pool, the registry, the base segment and the HTTP layer, at the
 * time of the request.  The page itself is a constant: a static HTML
 * document with inline CSS and script; everything it shows comes from
 * /v1/status, so the page never embeds adapter ids or paths in HTML and
 * needs no escaping.  Request rates are computed by the script from two
 * successive totals.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "route_impl.h"
#include "status_page.h"
#include "tenant.h"

/* ------------------------------------------------------------ gauges */

typedef struct tenant_table {
	lokrd_tenant_usage *t;
	size_t n;
} tenant_table;

static void tenant_add(void *arg, const char *id, uint64_t bytes)
{
	lokrd_tenant_usage *u = arg;
	(void)id;
	u->bytes += bytes;
	u->adapters++;
}

typedef struct collected {
	lokrd_gauges g;
	tenant_table ts;
	char res_ids[4096], wait_ids[4096];
} collected;

static void collect(lokrd_server *s, collected *c)
{
	memset(c, 0, sizeof *c);
	lokrd_gauges *g = &c->g;
	size_t queued = 0, running = 0;
	lokrd_pool_stats(&s->pool, &queued, &running);
	g->queued = queued;
	g->running = running;
	g->inflight = (uint64_t)s->inflight;
	g->ready = s->ready;
	g->draining = s->draining;
	g->connections = lokrd_http_connections(s);
	if (s->base) {
		g->base_bytes = lokr_base_bytes(s->base);
		g->shm_bytes = s->shm.len;
	}
	lokrd_registry_stats st;
	lokrd_tenants_stats(s, &st);
	g->resident_bytes = st.resident_bytes;
	g->cache_budget = st.budget;
	g->resident_adapters = st.resident;
	g->pinned_adapters = st.pinned;
	g->known_adapters = st.known;
	lokrd_tenants_ids(s, c->res_ids, sizeof c->res_ids, c->wait_ids, sizeof c->wait_ids);
	g->resident_ids = c->res_ids;
	g->waiting_ids = c->wait_ids;
	/* One row per tenant, resident or not, so every series exists from
	 * the start; the open tenant (no tokens configured) is "default". */
	size_t n = s->tenants ? s->tenants->n : 0;
	c->ts.t = n ? calloc(n, sizeof *c->ts.t) : NULL;
	for (size_t i = 0; c->ts.t && i < n; i++) {
		const lokrd_tenant *t = &s->tenants->t[i];
		lokrd_tenant_usage *u = &c->ts.t[c->ts.n++];
		snprintf(u->name, sizeof u->name, "%s", t->name[0] ? t->name : "default");
		if (t->reg)
			lokrd_registry_foreach_resident(t->reg, tenant_add, u);
	}
	g->tenants = c->ts.t;
	g->ntenants = c->ts.n;
}

void lokrd_route_metrics(lokrd_req *r)
{
	collected *c = malloc(sizeof *c);
	if (!c) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	collect(r->srv, c);
	lokrd_buf b;
	lokrd_buf_init(&b, (size_t)16 << 20);
	lokrd_metrics_render(&r->srv->metrics, &c->g, &b);
	free(c->ts.t);
	free(c);
	size_t len;
	char *text = lokrd_buf_steal(&b, &len);
	struct MHD_Response *resp =
	    text ? MHD_create_response_from_buffer_with_free_callback(len, text, free) : NULL;
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
		                        "text/plain; version=0.0.4; charset=utf-8");
	else
		free(text);
	lokrd_req_respond(r, 200, resp);
}

/* ------------------------------------------------------------ /v1/status */

typedef struct id_list {
	json_t *arr;
	const char *tenant; /* "" for the open tenant */
} id_list;

static void add_id(void *arg, const char *id, uint64_t bytes)
{
	id_list *l = arg;
	if (json_array_size(l->arr) >= 1000)
		return;
	char full[LOKRD_TENANT_MAX + LOKRD_ID_MAX + 2];
	snprintf(full, sizeof full, "%s%s%s", l->tenant, l->tenant[0] ? "/" : "", id);
	json_array_append_new(l->arr,
	                      json_pack("{s:s,s:I}", "id", full, "bytes", (json_int_t)bytes));
}

static json_t *ids_array(const char *csv)
{
	json_t *a = json_array();
	for (const char *p = csv; *p;) {
		size_t n = strcspn(p, ",");
		json_array_append_new(a, json_stringn(p, n));
		p += n;
		if (*p == ',')
			p++;
	}
	return a;
}

void lokrd_route_status(lokrd_req *r)
{
	lokrd_server *s = r->srv;
	collected *c = malloc(sizeof *c);
	if (!c) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	collect(s, c);
	const lokrd_gauges *g = &c->g;
	const lokrd_metrics *m = &s->metrics;

	json_t *base = json_null();
	if (s->base) {
		json_t *sources = json_array();
		for (size_t i = 0; i < s->opt->nbase; i++)
			json_array_append_new(sources, json_string(s->opt->base[i]));
		base = json_pack("{s:I,s:I,s:o,s:s}", "layers",
		                 (json_int_t)lokr_base_layer_count(s->base), "bytes",
		                 (json_int_t)lokr_base_bytes(s->base), "sources", sources, "shm",
		                 s->shm.name);
	}
	json_t *resident = json_array();
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++) {
		id_list l = {resident, s->tenants->t[i].name};
		if (s->tenants->t[i].reg)
			lokrd_registry_foreach_resident(s->tenants->t[i].reg, add_id, &l);
	}
	json_t *tenants = json_array();
	for (size_t i = 0; i < g->ntenants; i++)
		json_array_append_new(
		    tenants, json_pack("{s:s,s:I,s:I}", "name", g->tenants[i].name,
		                       "resident_bytes", (json_int_t)g->tenants[i].bytes,
		                       "resident_adapters", (json_int_t)g->tenants[i].adapters));
	json_t *routes = json_object();
	json_int_t total = 0;
	for (int rt = 0; rt < LOKRD_ROUTE_COUNT; rt++) {
		json_int_t n = (json_int_t)m->latency[rt].total;
		total += n;
		if (n)
			json_object_set_new(routes, lokrd_route_label((lokrd_route)rt),
			                    json_integer(n));
	}
	json_t *o = json_pack(
	    "{s:s,s:s,s:b,s:b,s:I,s:I,s:s,s:I,s:o,"
	    "s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I},"
	    "s:{s:o,s:o},s:o,"
	    "s:{s:I,s:o},"
	    "s:{s:I,s:I,s:I},s:I}",
	    "version", PACKAGE_VERSION, "instance", s->instance, "ready", s->ready, "draining",
	    s->draining, "uptime_seconds", (json_int_t)((uint64_t)time(NULL) - m->start_time),
	    "threads", (json_int_t)s->threads, "parallelism",
	    lokrd_parallelism_name(s->opt->parallelism), "blas_threads",
	    (json_int_t)lokr_blas_describe(NULL, 0), "base", base,
	    /* cache */
	    "cache", "budget_bytes", (json_int_t)g->cache_budget, "resident_bytes",
	    (json_int_t)g->resident_bytes, "resident_adapters", (json_int_t)g->resident_adapters,
	    "pinned_adapters", (json_int_t)g->pinned_adapters, "hits", (json_int_t)m->cache_hits,
	    "misses", (json_int_t)m->cache_misses, "evictions", (json_int_t)m->evictions,
	    /* adapters */
	    "adapters", "resident", resident, "loading", ids_array(c->wait_ids), "tenants", tenants,
	    /* requests */
	    "requests", "total", total, "by_route", routes,
	    /* jobs */
	    "jobs", "queued", (json_int_t)g->queued, "running", (json_int_t)g->running, "inflight",
	    (json_int_t)g->inflight, "connections", (json_int_t)g->connections);
	free(c->ts.t);
	free(c);
	lokrd_req_send_json(r, 200, o);
}

/* ------------------------------------------------------------ the page */

static const char page[] =
    "<!DOCTYPE html>\n"
    "<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>lokrd status</title>\n"
    "<style>\n"
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\n"
    "h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.2em 0 .4em}\n"
    ".sub{color:#666}.grid{display:flex;flex-wrap:wrap;gap:1em}\n"
    ".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em 1em;"
    "min-width:11em}\n"
    ".card b{display:block;font-size:1.5em}.bar{height:.6em;background:#eee;border-radius:3px;"
    "overflow:hidden}\n"
    ".bar i{display:block;height:100%;background:#3a7;width:0}\n"
    "table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;"
    "padding:.2em .6em;text-align:left}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}.err{color:#b00}\n"
    "</style></head>\n"
    "<body>\n"
    "<h1>lokrd <span id=\"version\"></span></h1>\n"
    "<div class=\"sub\">instance <span id=\"instance\">?</span> &middot; "
    "<span id=\"state\">loading&hellip;</span> &middot; up <span id=\"uptime\">?</span> s"
    " &middot; <span id=\"threads\">?</span> compute threads</div>\n"
    "<div id=\"error\" class=\"err\"></div>\n"
    "<h2>Base model</h2>\n"
    "<div class=\"grid\">\n"
    "<div class=\"card\">layers<b id=\"base-layers\">&ndash;</b></div>\n"
    "<div class=\"card\">f32 bytes<b id=\"base-bytes\">&ndash;</b></div>\n"
    "<div class=\"card\">segment<b id=\"base-shm\" style=\"font-size:1em\">&ndash;</b></div>\n"
    "</div>\n"
    "<div class=\"sub\" id=\"base-sources\"></div>\n"
    "<h2>Adapter cache</h2>\n"
    "<div class=\"grid\">\n"
    "<div class=\"card\">resident<b id=\"cache-resident\">&ndash;</b></div>\n"
    "<div class=\"card\">bytes used / budget<b id=\"cache-use\">&ndash;</b>"
    "<div class=\"bar\"><i id=\"cache-bar\"></i></div></div>\n"
    "<div class=\"card\">hits / misses<b id=\"cache-hits\">&ndash;</b></div>\n"
    "<div class=\"card\">evictions<b id=\"cache-evictions\">&ndash;</b></div>\n"
    "</div>\n"
    "<h2>Resident adapters</h2>\n"
    "<table><thead><tr><th>id</th><th>bytes</th></tr></thead>"
    "<tbody id=\"adapters\"></tbody></table>\n"
    "<div class=\"sub\">loading: <span id=\"loading\">none</span></div>\n"
    "<h2>Requests</h2>\n"
    "<div class=\"grid\">\n"
    "<div class=\"card\">total<b id=\"req-total\">&ndash;</b></div>\n"
    "<div class=\"card\">per second<b id=\"req-rate\">&ndash;</b></div>\n"
    "<div class=\"card\">jobs queued / running<b id=\"jobs\">&ndash;</b></div>\n"
    "<div class=\"card\">connections<b id=\"conns\">&ndash;</b></div>\n"
    "</div>\n"
    "<table><thead><tr><th>route</th><th>total</th><th>per second</th></tr></thead>"
    "<tbody id=\"routes\"></tbody></table>\n"
    "<p class=\"sub\">Raw figures: <a href=\"/v1/status\">/v1/status</a>, "
    "<a href=\"/metrics\">/metrics</a>. Refreshes every 2 s.</p>\n"
    "<script>\n"
    "'use strict';\n"
    "var prev=null;\n"
    "function $(id){return document.getElementById(id);}\n"
    "function set(id,v){$(id).textContent=String(v);}\n"
    "function human(n){var u=['B','KiB','MiB','GiB','TiB'],i=0;"
    "while(n>=1024&&i<u.length-1){n/=1024;i++;}return (i?n.toFixed(1):n)+' '+u[i];}\n"
    "function row(tb,cells){var tr=document.createElement('tr');cells.forEach(function(c,i){"
    "var td=document.createElement('td');td.textContent=String(c);if(i)td.className='n';"
    "tr.appendChild(td);});tb.appendChild(tr);}\n"
    "function show(s){\n"
    " var now=Date.now();\n"
    " set('version',s.version);set('instance',s.instance);set('uptime',s.uptime_seconds);\n"
    " set('threads',s.threads);\n"
    " set('state',s.draining?'draining':(s.ready?'ready':'loading the base'));\n"
    " if(s.base){set('base-layers',s.base.layers);set('base-bytes',human(s.base.bytes));\n"
    "  set('base-shm',s.base.shm);set('base-sources',s.base.sources.join(', '));}\n"
    " var c=s.cache;set('cache-resident',c.resident_adapters+' ('+c.pinned_adapters+' pinned)');\n"
    " set('cache-use',human(c.resident_bytes)+' / '+human(c.budget_bytes));\n"
    " $('cache-bar').style.width=(c.budget_bytes?Math.min(100,100*c.resident_bytes/"
    "c.budget_bytes):0)+'%';\n"
    " set('cache-hits',c.hits+' / '+c.misses);set('cache-evictions',c.evictions);\n"
    " var tb=$('adapters');tb.textContent='';\n"
    " s.adapters.resident.forEach(function(a){row(tb,[a.id,human(a.bytes)]);});\n"
    " set('loading',s.adapters.loading.length?s.adapters.loading.join(', '):'none');\n"
    " set('req-total',s.requests.total);\n"
    " set('jobs',s.jobs.queued+' / '+s.jobs.running);set('conns',s.connections);\n"
    " var dt=prev?(now-prev.t)/1000:0;\n"
    " set('req-rate',dt>0?((s.requests.total-prev.s.requests.total)/dt).toFixed(1):'\\u2013');\n"
    " var rt=$('routes');rt.textContent='';\n"
    " Object.keys(s.requests.by_route).sort().forEach(function(k){\n"
    "  var n=s.requests.by_route[k],p=prev&&prev.s.requests.by_route[k]||0;\n"
    "  row(rt,[k,n,dt>0?((n-p)/dt).toFixed(1):'\\u2013']);});\n"
    " prev={t:now,s:s};\n"
    " document.body.setAttribute('data-updated',String(now));\n"
    "}\n"
    "function poll(){fetch('/v1/status',{cache:'no-store'}).then(function(r){"
    "if(!r.ok)throw new Error('HTTP '+r.status);return r.json();})"
    ".then(function(s){set('error','');show(s);})"
    ".catch(function(e){set('error','cannot read /v1/status: '+e.message);})"
    ".then(function(){setTimeout(poll,2000);});}\n"
    "poll();\n"
    "</script>\n"
    "</body></html>\n";

void lokrd_route_status_page(lokrd_req *r)
{
	struct MHD_Response *resp =
	    MHD_create_response_from_buffer(sizeof page - 1, (void *)page, MHD_RESPMEM_PERSISTENT);
	if (resp) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
		                        "text/html; charset=utf-8");
		/* Inline script and style only; nothing from elsewhere. */
		MHD_add_response_header(resp, "Content-Security-Policy",
		                        "default-src 'none'; script-src 'unsafe-inline'; "
		                        "style-src 'unsafe-inline'; connect-src 'self'; "
		                        "img-src 'none'; base-uri 'none'; form-action 'none'");
		MHD_add_response_header(resp, "Cache-Control", "no-store");
	}
	lokrd_req_respond(r, 200, resp);
}
