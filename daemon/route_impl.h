/*
 * route_impl.h - the handlers behind routes.c (one file per resource:
 * route_apply.c, route_merge.c, route_adapters.c) and what they share.
 * Internal to the daemon's route modules.
 */
#ifndef LOKRD_ROUTE_IMPL_H
#define LOKRD_ROUTE_IMPL_H

#include <jansson.h>

#include "http.h"

/* The body as a JSON object (new reference), or NULL after answering 400.
 * An empty body is {} when allow_empty. */
json_t *lokrd_body_json(lokrd_req *r, int allow_empty);
/* Reject members of `o` not in the NULL-terminated `allowed` (400). */
int lokrd_check_fields(lokrd_req *r, const json_t *o, const char *const *allowed);
/* Admission control for compute jobs: 1 if admitted (inflight counted), or
 * 0 after answering 503 overloaded. */
int lokrd_admit(lokrd_req *r, int jobs);
void lokrd_release(lokrd_server *s, int jobs);
/* Respond with a jansson value (steals it). */
void lokrd_req_send_json(lokrd_req *r, unsigned status, json_t *v);

void lokrd_route_apply(lokrd_req *r);
void lokrd_route_merge(lokrd_req *r);
void lokrd_route_adapters_list(lokrd_req *r);
void lokrd_route_adapter_get(lokrd_req *r);
void lokrd_route_adapter_delete(lokrd_req *r);
void lokrd_route_adapter_load(lokrd_req *r);
/* PUT: begin opens the temp file, body appends to it, put validates. */
void lokrd_route_adapter_put_begin(lokrd_req *r);
void lokrd_route_adapter_put_body(lokrd_req *r, const char *data, size_t n);
void lokrd_route_adapter_put(lokrd_req *r);
/* An upload refused midway (413, 429): drop the temp file now. */
void lokrd_route_adapter_put_discard(lokrd_req *r);

#endif
