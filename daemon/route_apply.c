/*
 * route_apply.c - POST /v1/apply: the layer applied with the base weight
 * under an adapter set, to a batch of inputs (DESIGN.md).
 *
 * Loop thread: admit, parse and validate (on the pool for large bodies),
 * resolve the set (cache hit, or a load on the pool shared with concurrent
 * lookups), and queue the job under its layer's batch key.  The worker
 * computes and encodes; the done callback answers.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "log.h"
#include "route_impl.h"

/* Bodies larger than this are parsed on the pool: jansson takes about
 * 0.25 us per number (perf-limits.md 7), and the loop must never stall. */
#define PARSE_INLINE_MAX (256 * 1024)

typedef struct perr {
	unsigned status;
	char code[32];
	char msg[768];
} perr;

static int fail(perr *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(perr *e, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	e->status = status;
	snprintf(e->code, sizeof e->code, "%s", code);
	return -1;
}

static void job_free(lokrd_apply_job *j)
{
	if (j->admitted)
		lokrd_release(j->srv, 1);
	lokrd_set_free(&j->set);
	lokrd_tensor_free(&j->in);
	free(j->body);
	free(j);
}

static void job_done(lokrd_task *t)
{
	lokrd_apply_job *j = (lokrd_apply_job *)t;
	lokrd_server *s = j->srv;
	lokrd_req *r = j->req;
	if (t->batch_head && !t->cancelled)
		lokrd_hist_observe(&s->metrics.batch_size, (double)t->batch_size);
	if (!t->cancelled && j->started_ns >= t->enqueued_ns)
		lokrd_hist_observe(&s->metrics.queue_wait,
		                   (double)(j->started_ns - t->enqueued_ns) / 1e9);
	if (t->cancelled) {
		lokrd_req_error(r, 503, "shutting_down", "lokrd is shutting down");
	} else if (j->status == 200) {
		lokrd_req_json(r, 200, j->body, j->body_len);
		j->body = NULL;
	} else {
		lokrd_req_error(r, j->status, j->code, "%s", j->msg);
	}
	job_free(j);
	lokrd_req_unref(r);
}

static void on_resolved(void *arg, lokrd_set *set)
{
	lokrd_apply_job *j = arg;
	lokrd_req *r = j->req;
	if (set->status != 200) {
		lokrd_req_error(r, set->status, set->code, "%s", set->msg);
	} else if (r->conn) {
		j->task.run = NULL;
		j->task.done = job_done;
		j->task.batch_key = (int64_t)j->layer;
		lokrd_pool_submit(&j->srv->pool, &j->task);
		return;
	}
	job_free(j);
	lokrd_req_unref(r);
}

/* stride/padding/dilation: an int or [h, w]. */
static int conv_param(perr *e, const json_t *o, const char *name, int64_t def, int64_t min,
                      int64_t out[2])
{
	const json_t *v = json_object_get(o, name);
	out[0] = out[1] = def;
	if (!v)
		return 0;
	if (json_is_integer(v)) {
		out[0] = out[1] = json_integer_value(v);
	} else if (json_is_array(v) && json_array_size(v) == 2 &&
	           json_is_integer(json_array_get(v, 0)) && json_is_integer(json_array_get(v, 1))) {
		out[0] = json_integer_value(json_array_get(v, 0));
		out[1] = json_integer_value(json_array_get(v, 1));
	} else {
		return fail(e, 400, "bad_request", "\"%s\" must be an integer or [h, w]", name);
	}
	if (out[0] < min || out[1] < min || out[0] > 65536 || out[1] > 65536)
		return fail(e, 400, "bad_request", "\"%s\" must be between %lld and 65536", name,
		            (long long)min);
	return 0;
}

/* Parse and validate the body into `j` (any thread: reads only the
 * immutable base and options).  0, or -1 with the answer in *e. */
static int parse_apply(lokrd_server *s, const char *body, size_t len, lokrd_apply_job *j, perr *e)
{
	static const char *const fields[] = {"layer",   "adapters", "input", "stride",
	                                     "padding", "dilation", NULL};
	if (len == 0)
		return fail(e, 400, "bad_json",
		            "the request body is empty; a JSON object is expected");
	json_error_t je;
	json_t *o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!o)
		return fail(e, 400, "bad_json", "invalid JSON at line %d column %d: %s", je.line,
		            je.column, je.text);
	int rc = -1;
	char err[600];
	if (!json_is_object(o)) {
		fail(e, 400, "bad_json", "the request body must be a JSON object");
		goto out;
	}
	const char *key;
	json_t *v;
	json_object_foreach(o, key, v)
	{
		int ok = 0;
		for (const char *const *f = fields; *f; f++)
			ok |= !strcmp(*f, key);
		if (!ok) {
			fail(e, 400, "bad_request", "unknown field \"%.64s\"", key);
			goto out;
		}
	}
	const char *layer = json_string_value(json_object_get(o, "layer"));
	if (!layer) {
		fail(e, 400, "bad_request", "\"layer\" (a string) is required");
		goto out;
	}
	int64_t li = lokr_base_layer_find(s->base, layer);
	if (li < 0) {
		fail(e, 404, "layer_not_found", "no layer '%.200s' in the base model", layer);
		goto out;
	}
	const lokr_layer *L = lokr_base_layer_at(s->base, (size_t)li);
	j->layer = (size_t)li;
	j->conv = L->kind != LOKR_LAYER_LINEAR;
	if (j->conv && L->ndim != 4) {
		fail(e, 400, "unsupported_layer",
		     "layer '%.200s' is a %dD convolution; /v1/apply serves linear and conv2d",
		     layer, L->ndim - 2);
		goto out;
	}
	const json_t *input = json_object_get(o, "input");
	if (!input) {
		fail(e, 400, "bad_request", "\"input\" (a tensor) is required");
		goto out;
	}
	if (lokrd_tensor_decode(input, s->opt->max_elements, &j->in, err, sizeof err)) {
		fail(e, 400, "bad_input", "\"input\": %s", err);
		goto out;
	}
	if (!j->conv) {
		if (json_object_get(o, "stride") || json_object_get(o, "padding") ||
		    json_object_get(o, "dilation")) {
			fail(
			    e, 400, "bad_request",
			    "stride, padding and dilation apply to conv2d layers only; '%.200s' is "
			    "linear",
			    layer);
			goto out;
		}
		/* (in) is accepted as one row, answered as (out), like F.linear. */
		if (j->in.ndim == 1 && j->in.shape[0] == L->in) {
			j->unbatched = 1;
			j->in.ndim = 2;
			j->in.shape[1] = L->in;
			j->in.shape[0] = 1;
		}
		if (j->in.ndim != 2 || j->in.shape[1] != L->in) {
			fail(e, 400, "bad_input_shape",
			     "input of linear layer '%.200s' must have shape (batch, %lld)", layer,
			     (long long)L->in);
			goto out;
		}
		j->rows = j->in.shape[0];
	} else {
		/* (in, H, W) is one image, answered as (out, Ho, Wo), like conv2d. */
		if (j->in.ndim == 3 && j->in.shape[0] == L->in) {
			j->unbatched = 1;
			j->in.ndim = 4;
			j->in.shape[3] = j->in.shape[2];
			j->in.shape[2] = j->in.shape[1];
			j->in.shape[1] = j->in.shape[0];
			j->in.shape[0] = 1;
		}
		if (j->in.ndim != 4 || j->in.shape[1] != L->in) {
			fail(e, 400, "bad_input_shape",
			     "input of conv2d layer '%.200s' must have shape (batch, %lld, H, W)",
			     layer, (long long)L->in);
			goto out;
		}
		if (conv_param(e, o, "stride", 1, 1, j->cp.stride) ||
		    conv_param(e, o, "padding", 0, 0, j->cp.padding) ||
		    conv_param(e, o, "dilation", 1, 1, j->cp.dilation))
			goto out;
		j->rows = j->in.shape[0];
		j->h = j->in.shape[2];
		j->w = j->in.shape[3];
		if (lokr_conv2d_out_size(L, &j->cp, j->h, j->w, &j->ho, &j->wo) || j->ho < 1 ||
		    j->wo < 1) {
			fail(e, 400, "bad_input_shape",
			     "input %lldx%lld is too small for the %lldx%lld kernel with this "
			     "padding "
			     "and dilation",
			     (long long)j->h, (long long)j->w, (long long)L->shape[2],
			     (long long)L->shape[3]);
			goto out;
		}
	}
	if (lokrd_set_parse(json_object_get(o, "adapters"), s->opt->max_set, &j->set, err,
	                    sizeof err)) {
		fail(e, 400, "bad_request", "%s", err);
		goto out;
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/* Loop thread, after parsing: answer an error or resolve the set. */
static void parsed(lokrd_apply_job *j, int rc, const perr *e)
{
	lokrd_req *r = j->req;
	if (rc) {
		lokrd_req_error(r, e->status, e->code, "%s", e->msg);
		job_free(j);
		lokrd_req_unref(r);
		return;
	}
	lokrd_set_ids(&j->set, r->log_adapters, sizeof r->log_adapters);
	r->log_rows = j->rows;
	lokrd_set_resolve(&j->set, j->srv->reg, on_resolved, j);
}

typedef struct parse_task {
	lokrd_task task;
	lokrd_apply_job *job;
	int rc;
	perr e;
} parse_task;

static void parse_run(lokrd_task *t)
{
	parse_task *pt = (parse_task *)t;
	lokrd_req *r = pt->job->req;
	pt->rc = parse_apply(pt->job->srv, r->body.data, r->body.len, pt->job, &pt->e);
}

static void parse_done(lokrd_task *t)
{
	parse_task *pt = (parse_task *)t;
	lokrd_apply_job *j = pt->job;
	if (t->cancelled && !pt->rc) {
		pt->rc = -1;
		fail(&pt->e, 503, "shutting_down", "lokrd is shutting down");
	}
	int rc = pt->rc;
	perr e = pt->e;
	free(pt);
	parsed(j, rc, &e);
}

void lokrd_route_apply(lokrd_req *r)
{
	lokrd_server *s = r->srv;
	if (!lokrd_admit(r, 1))
		return;
	lokrd_apply_job *j = calloc(1, sizeof *j);
	parse_task *pt = r->body.len > PARSE_INLINE_MAX ? calloc(1, sizeof *pt) : NULL;
	if (!j || (r->body.len > PARSE_INLINE_MAX && !pt)) {
		free(j);
		free(pt);
		lokrd_release(s, 1);
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	j->srv = s;
	j->admitted = 1;
	j->task.batch_key = -1;
	j->req = r;
	lokrd_req_ref(r);
	if (pt) {
		pt->job = j;
		pt->task.run = parse_run;
		pt->task.done = parse_done;
		pt->task.batch_key = -1;
		lokrd_pool_submit(&s->pool, &pt->task);
		return;
	}
	perr e = {0};
	int rc = parse_apply(s, r->body.data, r->body.len, j, &e);
	parsed(j, rc, &e);
}
