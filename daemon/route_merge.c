/*
 * route_merge.c - POST /v1/merge: merged (or delta) layer weights under an
 * adapter set, streamed as a safetensors file.
 *
 * The header comes first from lokr_st_layout_make, so the size is known
 * and the response carries a Content-Length.  Tensors are then computed on
 * the pool in the file's data order, NSLOTS - 1 ahead of the one being
 * sent: while tensor k is sent, k+1 and k+2 are computed, so every worker
 * of a two-thread pool merges.  When MHD wants bytes that are not computed
 * yet, the content reader suspends the connection; the job's done callback
 * resumes it.  At most NSLOTS encoded tensors are held per stream.
 *
 * Before a tensor is computed the merge cache (merge_cache.h) is asked for
 * it; a computed tensor is offered to the cache, so a repeated merge of the
 * same set, layers and dtype only sends.
 *
 * A computation that fails after the header was sent can only end the
 * connection early (the client sees a short body); that needs a library
 * error on a validated adapter, i.e. out of memory.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapterset.h"
#include "log.h"
#include "merge_cache.h"
#include "route_impl.h"
#include "tensor_json.h"

enum { SLOT_EMPTY = 0, SLOT_COMPUTING, SLOT_READY, SLOT_FAILED };

/* Tensors held per stream: the one being sent and NSLOTS - 1 ahead. */
#define NSLOTS 3

typedef struct slot {
	int state;
	size_t k;         /* data-order index of the tensor held */
	lokrd_blob *blob; /* encoded tensor (a reference) when READY */
} slot;

typedef struct merge_stream {
	int refs;
	lokrd_server *srv;
	lokrd_req *req; /* held */
	lokrd_set set;
	lokr_dtype dtype;
	int delta;
	size_t nlayers;
	size_t *layers; /* spec index -> layer index */
	lokr_st_spec *specs;
	char **names;
	lokr_st_layout layout;
	int have_layout;
	size_t cur;         /* data-order index being sent */
	uint64_t cur_start; /* file offset where tensor `cur` starts */
	slot slots[NSLOTS];
	uint8_t *key; /* merge cache key prefix (merge_cache.h), or NULL */
	size_t key_len;
	int waiting, closed, admitted;
	char meta_adapters[4096];
	char meta_output[16];
} merge_stream;

typedef struct merge_job {
	lokrd_task task;
	merge_stream *ms;
	size_t k;
	size_t layer;
	int dtype, delta; /* copies: the worker reads nothing mutable of the stream */
	uint8_t *bytes;
	uint64_t len;
	int rc;
	lokr_error err;
} merge_job;

static void ms_unref(merge_stream *ms)
{
	if (--ms->refs > 0)
		return;
	for (int i = 0; i < NSLOTS; i++)
		lokrd_blob_unref(ms->slots[i].blob);
	free(ms->key);
	if (ms->have_layout)
		lokr_st_layout_free(&ms->layout);
	for (size_t i = 0; i < ms->nlayers; i++)
		free(ms->names ? ms->names[i] : NULL);
	free(ms->names);
	free(ms->specs);
	free(ms->layers);
	lokrd_set_free(&ms->set);
	if (ms->admitted)
		lokrd_release(ms->srv, 1);
	lokrd_req_unref(ms->req);
	free(ms);
}

/* ------------------------------------------------------------ compute */

/* f32 scratch of a worker thread for f16/bf16 output, kept between
 * tensors: a fresh multi-megabyte malloc per tensor costs a page fault per
 * 4 KiB (perf: about 30 % of a merge's samples). */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

typedef struct scratch {
	float *f;
	size_t cap; /* floats */
} scratch;

static void scratch_destroy(void *p)
{
	scratch *sc = p;
	free(sc->f);
	free(sc);
}

static void scratch_key_init(void)
{
	pthread_key_create(&scratch_key, scratch_destroy);
}

static float *thread_scratch(size_t n)
{
	pthread_once(&scratch_once, scratch_key_init);
	scratch *sc = pthread_getspecific(scratch_key);
	if (!sc) {
		sc = calloc(1, sizeof *sc);
		if (!sc)
			return NULL;
		pthread_setspecific(scratch_key, sc);
	}
	if (sc->cap < n) {
		free(sc->f);
		sc->f = malloc(n * sizeof(float));
		sc->cap = sc->f ? n : 0;
	}
	return sc->f;
}

static void job_run(lokrd_task *t)
{
	merge_job *j = (merge_job *)t;
	merge_stream *ms = j->ms;
	const lokr_layer *L = lokr_base_layer_at(ms->srv->base, j->layer);
	uint64_t n = (uint64_t)L->out * (uint64_t)L->in * (uint64_t)L->kk;
	int f32 = j->dtype == LOKR_DTYPE_F32;
	/* f32: merged straight into the bytes that are sent (and cached). */
	j->bytes = malloc((size_t)n * (f32 ? 4 : 2));
	float *f = f32 ? (float *)j->bytes : thread_scratch((size_t)n);
	if (!j->bytes || !f) {
		free(j->bytes);
		j->bytes = NULL;
		j->rc = LOKR_ENOMEM;
		return;
	}
	j->rc = lokr_merge_layer(ms->srv->base, j->layer, ms->set.refs, ms->set.n, j->delta, f,
	                         &j->err);
	if (j->rc) {
		free(j->bytes);
		j->bytes = NULL;
		return;
	}
	if (!f32)
		lokr_encode_f32((lokr_dtype)j->dtype, f, (size_t)n, j->bytes);
	j->len = n * (f32 ? 4 : 2);
}

static void job_done(lokrd_task *t)
{
	merge_job *j = (merge_job *)t;
	merge_stream *ms = j->ms;
	slot *sl = &ms->slots[j->k % NSLOTS];
	if (t->cancelled && !j->rc && !j->bytes)
		j->rc = LOKR_EIO;
	lokrd_blob *blob = NULL;
	if (!j->rc && j->bytes) {
		blob = lokrd_blob_new(j->bytes, j->len);
		j->bytes = NULL;
		if (!blob)
			j->rc = LOKR_ENOMEM;
		else if (ms->key && ms->srv->merge_cache)
			lokrd_merge_cache_put(ms->srv->merge_cache, ms->key, ms->key_len, j->layer,
			                      blob);
	}
	if (!ms->closed && sl->k == j->k && sl->state == SLOT_COMPUTING) {
		if (j->rc) {
			sl->state = SLOT_FAILED;
			lokrd_log(LOKRD_LOG_ERROR, "merge of layer %s failed: %s",
			          lokr_base_layer_at(ms->srv->base, j->layer)->name,
			          j->err.msg[0] ? j->err.msg : lokr_strerror(j->rc));
		} else {
			sl->state = SLOT_READY;
			sl->blob = blob;
			blob = NULL;
		}
		if (ms->waiting) {
			ms->waiting = 0;
			lokrd_req_resume_stream(ms->req);
		}
	}
	lokrd_blob_unref(blob);
	free(j->bytes);
	free(j);
	ms_unref(ms);
}

/* Make sure tensors cur .. cur + NSLOTS - 1 are ready (from the merge
 * cache) or being computed. */
static void ensure_jobs(merge_stream *ms)
{
	for (size_t k = ms->cur; k < ms->cur + NSLOTS && k < ms->nlayers; k++) {
		slot *sl = &ms->slots[k % NSLOTS];
		if (sl->state != SLOT_EMPTY)
			continue;
		size_t layer = ms->layers[ms->layout.order[k]];
		lokrd_blob *hit =
		    ms->key && ms->srv->merge_cache
		        ? lokrd_merge_cache_get(ms->srv->merge_cache, ms->key, ms->key_len, layer)
		        : NULL;
		if (hit) {
			sl->state = SLOT_READY;
			sl->k = k;
			sl->blob = hit;
			continue;
		}
		merge_job *j = calloc(1, sizeof *j);
		if (!j) {
			sl->state = SLOT_FAILED;
			sl->k = k;
			continue;
		}
		j->task.run = job_run;
		j->task.done = job_done;
		j->task.batch_key = -1;
		j->ms = ms;
		j->k = k;
		j->layer = layer;
		j->dtype = (int)ms->dtype;
		j->delta = ms->delta;
		sl->state = SLOT_COMPUTING;
		sl->k = k;
		ms->refs++;
		lokrd_pool_submit(&ms->srv->pool, &j->task);
	}
}

/* ------------------------------------------------------------ streaming */

static ssize_t reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	merge_stream *ms = cls;
	if (pos < ms->layout.header_len) {
		size_t n = (size_t)(ms->layout.header_len - pos);
		if (n > max)
			n = max;
		memcpy(buf, ms->layout.header + pos, n);
		ensure_jobs(ms);
		return (ssize_t)n;
	}
	if (ms->cur >= ms->nlayers)
		return MHD_CONTENT_READER_END_OF_STREAM;
	/* Advance past tensors already sent. */
	while (ms->cur < ms->nlayers &&
	       pos >= ms->cur_start + ms->layout.nbytes[ms->layout.order[ms->cur]]) {
		slot *done = &ms->slots[ms->cur % NSLOTS];
		ms->cur_start += ms->layout.nbytes[ms->layout.order[ms->cur]];
		if (done->k == ms->cur && done->state != SLOT_COMPUTING) {
			lokrd_blob_unref(done->blob);
			memset(done, 0, sizeof *done);
		}
		ms->cur++;
	}
	if (ms->cur >= ms->nlayers)
		return MHD_CONTENT_READER_END_OF_STREAM;
	ensure_jobs(ms);
	slot *sl = &ms->slots[ms->cur % NSLOTS];
	if (sl->k == ms->cur && sl->state == SLOT_READY) {
		uint64_t off = pos - ms->cur_start;
		size_t n = (size_t)(sl->blob->len - off);
		if (n > max)
			n = max;
		memcpy(buf, sl->blob->bytes + off, n);
		return (ssize_t)n;
	}
	if (sl->k == ms->cur && sl->state == SLOT_FAILED)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	ms->waiting = 1;
	lokrd_req_suspend_stream(ms->req);
	return 0;
}

static void reader_free(void *cls)
{
	merge_stream *ms = cls;
	ms->closed = 1;
	ms_unref(ms);
}

/* ------------------------------------------------------------ request */

static void start_stream(merge_stream *ms)
{
	lokrd_req *r = ms->req;
	lokrd_server *s = ms->srv;
	size_t nb = lokr_base_layer_count(s->base);
	if (!ms->layers) {
		/* Default: every layer the set touches, in base order. */
		ms->layers = calloc(nb ? nb : 1, sizeof *ms->layers);
		if (!ms->layers) {
			lokrd_req_error(r, 500, "internal", "out of memory");
			return;
		}
		for (size_t li = 0; li < nb; li++)
			for (size_t a = 0; a < ms->set.n; a++)
				if (lokr_adapter_module_for(ms->set.refs[a].adapter, li)) {
					ms->layers[ms->nlayers++] = li;
					break;
				}
	}
	ms->specs = calloc(ms->nlayers ? ms->nlayers : 1, sizeof *ms->specs);
	ms->names = calloc(ms->nlayers ? ms->nlayers : 1, sizeof *ms->names);
	if (!ms->specs || !ms->names) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	const char *dtname = ms->dtype == LOKR_DTYPE_F32   ? "F32"
	                     : ms->dtype == LOKR_DTYPE_F16 ? "F16"
	                                                   : "BF16";
	for (size_t i = 0; i < ms->nlayers; i++) {
		const lokr_layer *L = lokr_base_layer_at(s->base, ms->layers[i]);
		size_t len = strlen(L->name) + sizeof ".weight";
		ms->names[i] = malloc(len);
		if (!ms->names[i]) {
			lokrd_req_error(r, 500, "internal", "out of memory");
			return;
		}
		snprintf(ms->names[i], len, "%s.weight", L->name);
		ms->specs[i].name = ms->names[i];
		ms->specs[i].dtype_name = dtname;
		ms->specs[i].ndim = L->ndim;
		for (int d = 0; d < L->ndim; d++)
			ms->specs[i].shape[d] = L->shape[d];
	}
	size_t at = 0;
	ms->meta_adapters[0] = '\0';
	for (size_t i = 0; i < ms->set.n && at < sizeof ms->meta_adapters; i++) {
		int k = snprintf(ms->meta_adapters + at, sizeof ms->meta_adapters - at, "%s%s:%g",
		                 i ? "," : "", ms->set.items[i].id,
		                 (double)ms->set.items[i].multiplier);
		if (k < 0)
			break;
		at += (size_t)k;
	}
	snprintf(ms->meta_output, sizeof ms->meta_output, "%s", ms->delta ? "delta" : "merged");
	const char *keys[3] = {"format", "lokrd_adapters", "lokrd_output"};
	const char *vals[3] = {"pt", ms->meta_adapters, ms->meta_output};
	lokr_error e = {0};
	int rc = lokr_st_layout_make(ms->specs, ms->nlayers, keys, vals, 3, &ms->layout, &e);
	if (rc) {
		lokrd_req_error(r, 500, "internal", "laying out the response: %s", e.msg);
		return;
	}
	ms->have_layout = 1;
	ms->cur_start = ms->layout.header_len;
	if (!s->merge_cache && s->opt->merge_cache_bytes)
		s->merge_cache = lokrd_merge_cache_new(s->opt->merge_cache_bytes, &s->metrics);
	if (s->merge_cache) /* no key (out of memory): merge without the cache */
		ms->key = lokrd_merge_key_prefix(&ms->set, (int)ms->dtype, ms->delta, &ms->key_len);
	if (!lokrd_admit(r, 1))
		return;
	ms->admitted = 1;
	struct MHD_Response *resp = MHD_create_response_from_callback(ms->layout.total, 256 * 1024,
	                                                              reader, ms, reader_free);
	if (!resp) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		return;
	}
	ms->refs++; /* the response's */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/octet-stream");
	MHD_add_response_header(resp, "Content-Disposition",
	                        "attachment; filename=\"merged.safetensors\"");
	lokrd_req_respond(r, 200, resp);
}

static void on_resolved(void *arg, lokrd_set *set)
{
	merge_stream *ms = arg;
	if (set->status != 200)
		lokrd_req_error(ms->req, set->status, set->code, "%s", set->msg);
	else if (ms->req->conn)
		start_stream(ms);
	ms_unref(ms);
}

void lokrd_route_merge(lokrd_req *r)
{
	static const char *const fields[] = {"adapters", "layers", "dtype", "output", NULL};
	lokrd_server *s = r->srv;
	json_t *o = lokrd_body_json(r, 0);
	if (!o)
		return;
	merge_stream *ms = NULL;
	char err[600];
	if (lokrd_check_fields(r, o, fields))
		goto out;
	ms = calloc(1, sizeof *ms);
	if (!ms) {
		lokrd_req_error(r, 500, "internal", "out of memory");
		goto out;
	}
	ms->refs = 1;
	ms->srv = s;
	ms->req = r;
	lokrd_req_ref(r);
	ms->dtype = LOKR_DTYPE_F32;
	const json_t *dt = json_object_get(o, "dtype");
	if (dt) {
		const char *v = json_string_value(dt);
		int parsed = v ? lokrd_dtype_parse(v) : -1;
		if (parsed < 0) {
			lokrd_req_error(r, 400, "bad_request",
			                "\"dtype\" must be \"f32\", \"f16\" or \"bf16\"");
			goto out;
		}
		ms->dtype = (lokr_dtype)parsed;
	}
	const json_t *out = json_object_get(o, "output");
	if (out) {
		const char *v = json_string_value(out);
		if (v && !strcmp(v, "merged"))
			ms->delta = 0;
		else if (v && !strcmp(v, "delta"))
			ms->delta = 1;
		else {
			lokrd_req_error(r, 400, "bad_request",
			                "\"output\" must be \"merged\" or \"delta\"");
			goto out;
		}
	}
	const json_t *layers = json_object_get(o, "layers");
	if (layers && !json_is_null(layers)) {
		if (!json_is_array(layers)) {
			lokrd_req_error(r, 400, "bad_request",
			                "\"layers\" must be an array of layer names");
			goto out;
		}
		size_t n = json_array_size(layers);
		ms->layers = calloc(n ? n : 1, sizeof *ms->layers);
		if (!ms->layers) {
			lokrd_req_error(r, 500, "internal", "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			const char *name = json_string_value(json_array_get(layers, i));
			if (!name) {
				lokrd_req_error(r, 400, "bad_request",
				                "\"layers\"[%zu] must be a string", i);
				goto out;
			}
			int64_t li = lokr_base_layer_find(s->base, name);
			size_t len = strlen(name);
			if (li < 0 && len > 7 && !strcmp(name + len - 7, ".weight")) {
				char trimmed[1024];
				if (len - 7 < sizeof trimmed) {
					memcpy(trimmed, name, len - 7);
					trimmed[len - 7] = '\0';
					li = lokr_base_layer_find(s->base, trimmed);
				}
			}
			if (li < 0) {
				lokrd_req_error(r, 404, "layer_not_found",
				                "no layer '%.200s' in the base model", name);
				goto out;
			}
			int dup = 0;
			for (size_t k = 0; k < ms->nlayers; k++)
				dup |= ms->layers[k] == (size_t)li;
			if (!dup)
				ms->layers[ms->nlayers++] = (size_t)li;
		}
	}
	if (lokrd_set_parse(json_object_get(o, "adapters"), s->opt->max_set, &ms->set, err,
	                    sizeof err)) {
		lokrd_req_error(r, 400, "bad_request", "%s", err);
		goto out;
	}
	lokrd_set_ids(&ms->set, r->log_adapters, sizeof r->log_adapters);
	json_decref(o);
	lokrd_set_resolve(&ms->set, r->reg, on_resolved, ms);
	return;
out:
	if (ms)
		ms_unref(ms);
	json_decref(o);
}
