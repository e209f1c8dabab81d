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

#include "apply_req.h"
#include "compute.h"
#include "log.h"
#include "route_impl.h"

/* Bodies larger than this are parsed on the pool: jansson takes about
 * 0.25 us per number (perf-limits.md 7), and the loop must never stall. */
#define PARSE_INLINE_MAX (256 * 1024)

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
		if (lokrd_compute_inline_ok(j->srv, j)) { /* tiny: cheaper than 2 hand-offs */
			lokrd_compute_run_inline(j->srv, j);
			job_done(&j->task);
		} else {
			lokrd_pool_submit(&j->srv->pool, &j->task);
		}
		return;
	}
	job_free(j);
	lokrd_req_unref(r);
}

/* Decode on any thread, with the server's limits. */
static int parse_apply(lokrd_server *s, const char *body, size_t len, lokrd_apply_job *j,
                       lokrd_perr *e)
{
	lokrd_apply_limits lim = {s->opt->max_elements, s->opt->max_rows, s->opt->max_set,
	                          s->opt->max_json_depth};
	return lokrd_apply_decode(s->base, &lim, body, len, j, e);
}

/* Loop thread, after parsing: answer an error or resolve the set. */
static void parsed(lokrd_apply_job *j, int rc, const lokrd_perr *e)
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
	lokrd_set_resolve(&j->set, r->reg, on_resolved, j);
}

typedef struct parse_task {
	lokrd_task task;
	lokrd_apply_job *job;
	int rc;
	lokrd_perr e;
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
		pt->e.status = 503;
		snprintf(pt->e.code, sizeof pt->e.code, "shutting_down");
		snprintf(pt->e.msg, sizeof pt->e.msg, "lokrd is shutting down");
	}
	int rc = pt->rc;
	lokrd_perr e = pt->e;
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
	lokrd_perr e = {0};
	int rc = parse_apply(s, r->body.data, r->body.len, j, &e);
	parsed(j, rc, &e);
}
