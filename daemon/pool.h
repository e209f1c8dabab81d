/*
 * pool.h - the compute worker pool: a fixed set of pthreads that run
 * self-contained tasks and hand them back to the libuv loop.
 *
 * Continuous batching: a task with a batch key >= 0 (the layer index of an
 * apply request) joins the group of queued tasks with the same key, and the
 * group holds one place in the FIFO.  A free worker that reaches that place
 * takes the whole group at once and gives it to the batch function, so
 * requests that arrive while the workers are busy are served together, and
 * a lone request starts as soon as a worker is free (no timer).
 *
 * Threads: lokrd_pool_submit may be called from any thread; the done
 * callbacks always run on the loop thread (drained from a uv_async, whose
 * sends coalesce, so one wake-up may deliver many tasks).
 */
#ifndef LOKRD_POOL_H
#define LOKRD_POOL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct lokrd_task lokrd_task;

struct lokrd_task {
	/* Set by the submitter. */
	void (*run)(lokrd_task *t);  /* worker thread; unused for batched tasks */
	void (*done)(lokrd_task *t); /* loop thread, exactly once per submitted task */
	int64_t batch_key;           /* -1: run alone; >= 0: batch with equal keys */
	/* Set by the pool. */
	int cancelled;        /* 1 when the pool stopped before running it */
	uint64_t enqueued_ns; /* uv_hrtime() at submit */
	size_t batch_size;    /* size of the batch it ran in (1 when alone) */
	int batch_head;       /* 1 for the first task of its batch */
	lokrd_task *fifo_next, *group_next, *done_next;
};

/* Runs a batch of `n` tasks of one key, linked by group_next from `head`. */
typedef void (*lokrd_batch_fn)(void *ctx, lokrd_task *head, size_t n);

typedef struct lokrd_group {
	lokrd_task *head, *tail;
	size_t n;
} lokrd_group;

typedef struct lokrd_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t *threads;
	int nthreads;
	int stopping;
	lokrd_task *fifo_head, *fifo_tail;
	lokrd_group *groups; /* indexed by batch key */
	size_t ngroups;
	lokrd_task *done_head, *done_tail;
	size_t queued, running; /* tasks waiting / being run */
	lokrd_batch_fn batch_fn;
	void *batch_ctx;
	uv_async_t async; /* loop handle; closed by lokrd_pool_close */
} lokrd_pool;

/* Start `nthreads` workers and register the wake-up handle on `loop`.
 * Returns 0 or a negative errno. */
int lokrd_pool_start(lokrd_pool *p, uv_loop_t *loop, int nthreads, lokrd_batch_fn fn, void *ctx);

/* Queue a task (any thread).  The task is borrowed until its done callback. */
void lokrd_pool_submit(lokrd_pool *p, lokrd_task *t);

/* Tasks queued and running right now (any thread; a snapshot). */
void lokrd_pool_stats(lokrd_pool *p, size_t *queued, size_t *running);

/* Stop the workers after the tasks they are running, join them, and call
 * the done callback of every task left in the queue with cancelled = 1 and
 * of every finished task not yet delivered.  Loop thread. */
void lokrd_pool_stop(lokrd_pool *p);

/* Close the loop handle (after lokrd_pool_stop); the pool memory must stay
 * valid until the loop has run the close. */
void lokrd_pool_close(lokrd_pool *p);

#endif
