/*
 * route_apply.c - POST /v1/apply: the layer applied with the base weight
 * under an adapter set, to a batch of inputs (DESIGN.md).
 *
 * Loop thread: parse and validate, resolve the set (cache hit, or a load on
 * the pool shared with concurrent lookups), admit, and queue the job under
 * its layer's batch key.  The worker computes and encodes; the done
 * callback answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "log.h"
#include "route_impl.h"

static void job_free(lokrd_apply_job *j)
{
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
	lokrd_release(s, 1);
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
	} else if (!r->conn) {
		/* the client is gone */
	} else if (lokrd_admit(r, 1)) {
		j->task.done = job_done;
		j->task.batch_key = (int64_t)j->layer;
		lokrd_pool_submit(&j->srv->pool, &j->task);
		return;
	}
	job_free(j);
	lokrd_req_unref(r);
}

/* stride/padding/dilation: an int or [h, w]; -1 on error. */
static int conv_param(lokrd_req *r, const json_t *o, const char *name, int64_t def, int64_t min,
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
		lokrd_req_error(r, 400, "bad_request", "\"%s\" must be an integer or [h, w]", name);
		return -1;
	}
	if (out[0] < min || out[1] < min || out[0] > 65536 || out[1] > 65536) {
		lokrd_req_error(r, 400, "bad_request", "\"%s\" must be between %lld and 65536",
		                name, (long long)min);
		return -1;
	}
	return 0;
}

void lokrd_route_apply(lokrd_req *r)
{
	static const char *const fields[] = {"layer",   "adapters", "input", "stride",
	                                     "padding", "dilation", NULL};
	lokrd_server *s = r->srv;
	json_t *o = lokrd_body_json(r, 0);
	if (!o)
		return;
	lokrd_apply_job *j = NULL;
	char err[600];
	if (lokrd_check_fields(r, o, fields))
		goto out;
	const char *layer = json_string_value(json_object_get(o, "layer"));
	if (!layer) {
		lokrd_req_error(r, 400, "bad_request", "\"layer\" (a string) is required");
		goto out;
	}
	int64_t li = lokr_base_layer_find(s->base, layer);
	if (li < 0) {
		lokrd_req_error(r, 404, "layer_not_found", "no layer '%.200s' in the base model",
		                layer);
		goto out;
	}
	const lokr_layer *L = lokr_base_layer_at(s->base, (size_t)li);
	int conv = L->kind != LOKR_LAYER_LINEAR;
	if (conv && L->ndim != 4) {
		lokrd_req_error(
		    r, 400, "unsupported_layer",
		    "layer '%.200s' is a %dD convolution; /v1/apply serves linear and conv2d",
		    layer, L->ndim - 2);
		goto out;
	}
	j = calloc(1, sizeof *j);
	if (!j) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		goto out;
	}
	j->srv = s;
	j->layer = (size_t)li;
	j->conv = conv;
	j->task.batch_key = -1;
	const json_t *input = json_object_get(o, "input");
	if (!input) {
		lokrd_req_error(r, 400, "bad_request", "\"input\" (a tensor) is required");
		goto out;
	}
	if (lokrd_tensor_decode(input, s->opt->max_elements, &j->in, err, sizeof err)) {
		lokrd_req_error(r, 400, "bad_input", "\"input\": %s", err);
		goto out;
	}
	if (!conv) {
		if (json_object_get(o, "stride") || json_object_get(o, "padding") ||
		    json_object_get(o, "dilation")) {
			lokrd_req_error(r, 400, "bad_request",
			                "stride, padding and dilation apply to conv2d layers only; "
			                "'%.200s' is linear",
			                layer);
			goto out;
		}
		if (j->in.ndim != 2 || j->in.shape[1] != L->in) {
			lokrd_req_error(
			    r, 400, "bad_input_shape",
			    "input of linear layer '%.200s' must have shape (batch, %lld)", layer,
			    (long long)L->in);
			goto out;
		}
		j->rows = j->in.shape[0];
	} else {
		if (j->in.ndim != 4 || j->in.shape[1] != L->in) {
			lokrd_req_error(
			    r, 400, "bad_input_shape",
			    "input of conv2d layer '%.200s' must have shape (batch, %lld, H, W)",
			    layer, (long long)L->in);
			goto out;
		}
		if (conv_param(r, o, "stride", 1, 1, j->cp.stride) ||
		    conv_param(r, o, "padding", 0, 0, j->cp.padding) ||
		    conv_param(r, o, "dilation", 1, 1, j->cp.dilation))
			goto out;
		j->rows = j->in.shape[0];
		j->h = j->in.shape[2];
		j->w = j->in.shape[3];
		if (lokr_conv2d_out_size(L, &j->cp, j->h, j->w, &j->ho, &j->wo) || j->ho < 1 ||
		    j->wo < 1) {
			lokrd_req_error(
			    r, 400, "bad_input_shape",
			    "input %lldx%lld is too small for the %lldx%lld kernel with "
			    "this padding and dilation",
			    (long long)j->h, (long long)j->w, (long long)L->shape[2],
			    (long long)L->shape[3]);
			goto out;
		}
	}
	if (lokrd_set_parse(json_object_get(o, "adapters"), s->opt->max_set, &j->set, err,
	                    sizeof err)) {
		lokrd_req_error(r, 400, "bad_request", "%s", err);
		goto out;
	}
	lokrd_set_ids(&j->set, r->log_adapters, sizeof r->log_adapters);
	r->log_rows = j->rows;
	json_decref(o);
	j->req = r;
	lokrd_req_ref(r);
	lokrd_set_resolve(&j->set, s->reg, on_resolved, j);
	return;
out:
	if (j)
		job_free(j);
	json_decref(o);
}
