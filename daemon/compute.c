/*
 * compute.c - the worker side of apply requests (compute.h).
 *
 * Runs on pool threads: reads the immutable base and adapters, writes
 * only into its own jobs.  Each worker thread keeps one lokr_exec
 * workspace (thread-specific, freed when the thread exits).
 *
 * The one exception is lokrd_compute_run_inline: an apply of at most
 * LOKRD_INLINE_MACS (2^18) multiply-adds, e.g. 1 x 320 x 320, runs on the
 * loop thread when the pool has nothing queued.  Such a job computes in
 * about 10 us, less than the two thread hand-offs it would cost (loop ->
 * worker futex wake, worker -> loop eventfd: 22 % of lokrd's samples under
 * one connection, tens of us each on a small VM when the client shares the
 * cores).  The bound keeps the loop's stall below what one hand-off costs;
 * anything larger, or anything that could batch with queued work, still
 * goes to the pool (DESIGN.md: the loop never waits on heavy compute).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compute.h"
#include "server.h"

static pthread_key_t exec_key;
static pthread_once_t exec_once = PTHREAD_ONCE_INIT;

static void exec_destroy(void *p)
{
	lokr_exec_free(p);
}

static void exec_key_init(void)
{
	pthread_key_create(&exec_key, exec_destroy);
}

static lokr_exec *thread_exec(void)
{
	pthread_once(&exec_once, exec_key_init);
	lokr_exec *e = pthread_getspecific(exec_key);
	if (!e && lokr_exec_new(0, &e, NULL) == 0)
		pthread_setspecific(exec_key, e);
	return e;
}

static void job_fail(lokrd_apply_job *j, int rc, const lokr_error *e)
{
	j->status = rc == LOKR_EINVAL || rc == LOKR_ERANGE ? 400 : 500;
	snprintf(j->code, sizeof j->code, "%s", j->status == 400 ? "bad_input" : "internal");
	snprintf(j->msg, sizeof j->msg, "%s", e && e->msg[0] ? e->msg : lokr_strerror(rc));
}

/* Encode the response of a finished job from y (out elements per row). */
static void job_encode(lokrd_apply_job *j, const lokr_layer *L, const float *y)
{
	int64_t shape[4];
	int ndim;
	if (j->conv) {
		shape[0] = j->rows;
		shape[1] = L->out;
		shape[2] = j->ho;
		shape[3] = j->wo;
		ndim = 4;
	} else {
		shape[0] = j->rows;
		shape[1] = L->out;
		ndim = 2;
	}
	int64_t *sh = shape;
	if (j->unbatched) { /* the request had no batch axis: neither has the answer */
		sh++;
		ndim--;
	}
	lokrd_buf b;
	lokrd_buf_init(&b, (size_t)4 << 30);
	json_t *name = json_string(L->name);
	char *qname = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;
	json_decref(name);
	lokrd_buf_printf(&b, "{\"layer\":%s,\"output\":", qname ? qname : "\"\"");
	free(qname);
	int rc = lokrd_tensor_encode(&b, j->in.form, j->in.dtype, sh, ndim, y);
	lokrd_buf_puts(&b, "}");
	if (rc == -2) {
		j->status = 422;
		snprintf(j->code, sizeof j->code, "non_finite_output");
		snprintf(j->msg, sizeof j->msg,
		         "the output has values that are not finite, which JSON numbers cannot "
		         "hold; ask for the b64 form");
		lokrd_buf_free(&b);
		return;
	}
	if (rc || b.failed) {
		j->status = 500;
		snprintf(j->code, sizeof j->code, "internal");
		snprintf(j->msg, sizeof j->msg, "out of memory encoding the response");
		lokrd_buf_free(&b);
		return;
	}
	j->body = lokrd_buf_steal(&b, &j->body_len);
	j->status = 200;
}

static int same_set(const lokrd_set *a, const lokrd_set *b)
{
	if (a->n != b->n)
		return 0;
	for (size_t i = 0; i < a->n; i++)
		if (a->refs[i].adapter != b->refs[i].adapter ||
		    a->refs[i].multiplier != b->refs[i].multiplier)
			return 0;
	return 1;
}

static void run_linear(lokrd_server *s, lokrd_apply_job **jobs, size_t n)
{
	const lokr_layer *L = lokr_base_layer_at(s->base, jobs[0]->layer);
	lokr_batch_item *items = calloc(n, sizeof *items);
	float **ys = calloc(n, sizeof *ys);
	int rc = LOKR_ENOMEM;
	lokr_error e = {0};
	if (!items || !ys)
		goto out;
	for (size_t i = 0; i < n; i++) {
		lokrd_apply_job *j = jobs[i];
		size_t cnt = (size_t)j->rows * (size_t)L->out;
		ys[i] = malloc((cnt ? cnt : 1) * sizeof(float));
		if (!ys[i])
			goto out;
		items[i].set = j->set.refs;
		items[i].nset = j->set.n;
		items[i].x = j->in.data;
		items[i].rows = j->rows;
		items[i].y = ys[i];
	}
	lokr_exec *ex = thread_exec();
	if (!ex)
		goto out;
	rc = lokr_exec_linear(ex, s->base, jobs[0]->layer, items, n, &e);
	if (rc && n > 1) {
		/* One bad item must not fail the others: retry one by one. */
		for (size_t i = 0; i < n; i++) {
			lokr_error ei = {0};
			int r1 = lokr_exec_linear(ex, s->base, jobs[i]->layer, &items[i], 1, &ei);
			if (r1)
				job_fail(jobs[i], r1, &ei);
			else
				job_encode(jobs[i], L, ys[i]);
		}
		rc = 0;
		goto out_done;
	}
out:
	for (size_t i = 0; i < n; i++) {
		if (rc)
			job_fail(jobs[i], rc, &e);
		else
			job_encode(jobs[i], L, ys[i]);
	}
out_done:
	if (ys)
		for (size_t i = 0; i < n; i++)
			free(ys[i]);
	free(ys);
	free(items);
}

static int same_conv(const lokrd_apply_job *a, const lokrd_apply_job *b)
{
	return a->h == b->h && a->w == b->w && !memcmp(&a->cp, &b->cp, sizeof a->cp) &&
	       same_set(&a->set, &b->set);
}

/* Conv jobs: stack the ones that share set, geometry and parameters. */
static void run_conv(lokrd_server *s, lokrd_apply_job **jobs, size_t n)
{
	const lokr_layer *L = lokr_base_layer_at(s->base, jobs[0]->layer);
	char *done = calloc(n, 1);
	if (!done) {
		for (size_t i = 0; i < n; i++)
			job_fail(jobs[i], LOKR_ENOMEM, NULL);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		lokrd_apply_job *j0 = jobs[i];
		int64_t batch = 0;
		size_t members = 0;
		for (size_t k = i; k < n; k++)
			if (!done[k] && same_conv(j0, jobs[k])) {
				batch += jobs[k]->rows;
				members++;
			}
		size_t in_per = (size_t)L->in * (size_t)j0->h * (size_t)j0->w;
		size_t out_per = (size_t)L->out * (size_t)j0->ho * (size_t)j0->wo;
		float *x =
		    members > 1 ? malloc((size_t)batch * in_per * sizeof(float)) : j0->in.data;
		float *y = malloc(((size_t)batch * out_per + 1) * sizeof(float));
		lokr_error e = {0};
		int rc = x && y ? 0 : LOKR_ENOMEM;
		if (!rc && members > 1) {
			size_t at = 0;
			for (size_t k = i; k < n; k++)
				if (!done[k] && same_conv(j0, jobs[k])) {
					memcpy(x + at, jobs[k]->in.data,
					       (size_t)jobs[k]->rows * in_per * sizeof(float));
					at += (size_t)jobs[k]->rows * in_per;
				}
		}
		if (!rc)
			rc = lokr_apply_conv2d(s->base, j0->layer, j0->set.refs, j0->set.n, &j0->cp,
			                       x, batch, j0->h, j0->w, y, &e);
		size_t at = 0;
		for (size_t k = i; k < n; k++) {
			if (done[k] || !same_conv(j0, jobs[k]))
				continue;
			done[k] = 1;
			if (rc)
				job_fail(jobs[k], rc, &e);
			else
				job_encode(jobs[k], L, y + at);
			at += (size_t)jobs[k]->rows * out_per;
		}
		if (members > 1)
			free(x);
		free(y);
	}
	free(done);
}

int lokrd_compute_inline_ok(lokrd_server *s, const lokrd_apply_job *j)
{
	if (j->conv || j->set.n > 4)
		return 0;
	const lokr_layer *L = lokr_base_layer_at(s->base, j->layer);
	uint64_t macs = (uint64_t)j->rows * (uint64_t)L->in * (uint64_t)L->out;
	if (j->rows <= 0 || macs > LOKRD_INLINE_MACS)
		return 0;
	size_t queued, running;
	lokrd_pool_stats(&s->pool, &queued, &running);
	return queued == 0;
}

void lokrd_compute_run_inline(lokrd_server *s, lokrd_apply_job *j)
{
	lokrd_task *t = &j->task;
	t->cancelled = 0;
	t->batch_size = 1;
	t->batch_head = 1;
	t->group_next = NULL;
	t->enqueued_ns = uv_hrtime();
	lokrd_compute_batch(s, t, 1);
}

void lokrd_compute_batch(void *ctx, lokrd_task *head, size_t n)
{
	lokrd_server *s = ctx;
	lokrd_apply_job **jobs = malloc(n * sizeof *jobs);
	uint64_t t0 = uv_hrtime();
	if (!jobs) {
		for (lokrd_task *t = head; t; t = t->group_next)
			job_fail((lokrd_apply_job *)t, LOKR_ENOMEM, NULL);
		return;
	}
	size_t i = 0;
	for (lokrd_task *t = head; t && i < n; t = t->group_next)
		jobs[i++] = (lokrd_apply_job *)t;
	for (size_t k = 0; k < n; k++)
		jobs[k]->started_ns = t0;
	if (jobs[0]->conv)
		run_conv(s, jobs, n);
	else
		run_linear(s, jobs, n);
	uint64_t t1 = uv_hrtime();
	for (size_t k = 0; k < n; k++)
		jobs[k]->ended_ns = t1;
	free(jobs);
}
