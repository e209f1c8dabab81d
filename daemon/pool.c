/*
 * pool.c - the worker pool of pool.h.
 *
 * One mutex guards the FIFO, the per-key groups and the done list; it is
 * held only to link and unlink tasks, never while a task runs.  Groups are
 * a flat array indexed by batch key (layer index), grown on demand.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

static void fifo_push(lokrd_pool *p, lokrd_task *t)
{
	t->fifo_next = NULL;
	if (p->fifo_tail)
		p->fifo_tail->fifo_next = t;
	else
		p->fifo_head = t;
	p->fifo_tail = t;
}

static lokrd_task *fifo_pop(lokrd_pool *p)
{
	lokrd_task *t = p->fifo_head;
	if (t) {
		p->fifo_head = t->fifo_next;
		if (!p->fifo_head)
			p->fifo_tail = NULL;
	}
	return t;
}

static void done_push_locked(lokrd_pool *p, lokrd_task *head)
{
	for (lokrd_task *t = head; t;) {
		lokrd_task *next = t->group_next;
		t->done_next = NULL;
		if (p->done_tail)
			p->done_tail->done_next = t;
		else
			p->done_head = t;
		p->done_tail = t;
		t = next;
	}
}

static void *worker_main(void *arg)
{
	lokrd_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stopping && !p->fifo_head)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stopping)
			break;
		lokrd_task *t = fifo_pop(p);
		size_t n = 1;
		if (t->batch_key >= 0) {
			/* Take the whole group: t is its head. */
			lokrd_group *g = &p->groups[t->batch_key];
			n = g->n;
			g->head = g->tail = NULL;
			g->n = 0;
		} else {
			t->group_next = NULL;
		}
		p->queued -= n;
		p->running += n;
		pthread_mutex_unlock(&p->mu);

		for (lokrd_task *i = t; i; i = i->group_next) {
			i->batch_size = n;
			i->batch_head = i == t;
		}
		if (t->batch_key >= 0)
			p->batch_fn(p->batch_ctx, t, n);
		else
			t->run(t);

		pthread_mutex_lock(&p->mu);
		p->running -= n;
		done_push_locked(p, t);
		uv_async_send(&p->async);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void deliver(uv_async_t *h)
{
	lokrd_pool *p = h->data;
	pthread_mutex_lock(&p->mu);
	lokrd_task *t = p->done_head;
	p->done_head = p->done_tail = NULL;
	pthread_mutex_unlock(&p->mu);
	while (t) {
		lokrd_task *next = t->done_next;
		t->done(t);
		t = next;
	}
}

int lokrd_pool_start(lokrd_pool *p, uv_loop_t *loop, int nthreads, lokrd_batch_fn fn, void *ctx)
{
	memset(p, 0, sizeof *p);
	if (nthreads < 1)
		nthreads = 1;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->batch_fn = fn;
	p->batch_ctx = ctx;
	int rc = uv_async_init(loop, &p->async, deliver);
	if (rc)
		return rc;
	p->async.data = p;
	p->threads = calloc((size_t)nthreads, sizeof *p->threads);
	if (!p->threads)
		return -ENOMEM;
	for (int i = 0; i < nthreads; i++) {
		rc = pthread_create(&p->threads[i], NULL, worker_main, p);
		if (rc) {
			lokrd_pool_stop(p);
			return -rc;
		}
		p->nthreads++;
	}
	return 0;
}

void lokrd_pool_submit(lokrd_pool *p, lokrd_task *t)
{
	t->cancelled = 0;
	t->batch_size = 1;
	t->batch_head = 1;
	t->enqueued_ns = uv_hrtime();
	t->group_next = t->fifo_next = t->done_next = NULL;
	pthread_mutex_lock(&p->mu);
	if (p->stopping) {
		t->cancelled = 1;
		done_push_locked(p, t);
		uv_async_send(&p->async);
		pthread_mutex_unlock(&p->mu);
		return;
	}
	if (t->batch_key >= 0) {
		size_t k = (size_t)t->batch_key;
		if (k >= p->ngroups) {
			size_t n = p->ngroups ? p->ngroups : 64;
			while (n <= k)
				n *= 2;
			lokrd_group *g = realloc(p->groups, n * sizeof *g);
			if (!g)
				abort(); /* small, internal: out of memory is fatal */
			memset(g + p->ngroups, 0, (n - p->ngroups) * sizeof *g);
			p->groups = g;
			p->ngroups = n;
		}
		lokrd_group *g = &p->groups[k];
		if (g->tail) {
			g->tail->group_next = t;
			g->tail = t;
			g->n++;
		} else {
			g->head = g->tail = t;
			g->n = 1;
			fifo_push(p, t);
		}
	} else {
		fifo_push(p, t);
	}
	p->queued++;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void lokrd_pool_stats(lokrd_pool *p, size_t *queued, size_t *running)
{
	pthread_mutex_lock(&p->mu);
	*queued = p->queued;
	*running = p->running;
	pthread_mutex_unlock(&p->mu);
}

void lokrd_pool_stop(lokrd_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->stopping = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	p->nthreads = 0;
	free(p->threads);
	p->threads = NULL;
	/* Everything still queued is cancelled; deliver it with the finished. */
	pthread_mutex_lock(&p->mu);
	lokrd_task *t;
	while ((t = fifo_pop(p))) {
		lokrd_task *head = t;
		if (t->batch_key >= 0) {
			lokrd_group *g = &p->groups[t->batch_key];
			g->head = g->tail = NULL;
			g->n = 0;
		} else {
			t->group_next = NULL;
		}
		for (lokrd_task *i = head; i; i = i->group_next)
			i->cancelled = 1;
		done_push_locked(p, head);
	}
	p->queued = 0;
	pthread_mutex_unlock(&p->mu);
	deliver(&p->async);
	free(p->groups);
	p->groups = NULL;
	p->ngroups = 0;
}

void lokrd_pool_close(lokrd_pool *p)
{
	if (!uv_is_closing((uv_handle_t *)&p->async))
		uv_close((uv_handle_t *)&p->async, NULL);
}
