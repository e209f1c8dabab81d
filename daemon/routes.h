/*
 * routes.h - the HTTP API v1 of DESIGN.md, called by http.c at the three
 * points of a request's life.  Each may answer through lokrd_req_respond
 * (or _json/_error); a request left without an answer after dispatch is
 * suspended until a job answers it.
 */
#ifndef LOKRD_ROUTES_H
#define LOKRD_ROUTES_H

#include <stddef.h>

#include "http.h"

/* First call: match the route and method, check headers (content type,
 * declared length), prepare the body sink. */
void lokrd_routes_begin(lokrd_req *r);
/* A chunk of the body. */
void lokrd_routes_body(lokrd_req *r, const char *data, size_t n);
/* The whole request is in. */
void lokrd_routes_dispatch(lokrd_req *r);

#endif
