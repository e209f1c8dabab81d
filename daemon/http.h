/*
 * http.h - libmicrohttpd driven by the libuv loop (reliability.md §2.3):
 * MHD in external-epoll mode, its epoll fd watched by a uv_poll, its
 * timeout by a uv_timer, and one pump() that runs MHD and re-arms the
 * timer.  Requests that wait for work are suspended and resumed on the
 * loop thread, followed at once by a pump (the §2.4 pitfall: resume does
 * not wake an external loop).
 *
 * A request (lokrd_req) is reference counted: MHD holds one reference
 * until the request completes, and any job may hold more.  Responses are
 * built on the loop thread through lokrd_req_respond and friends, which
 * work both inside the route handlers and from later callbacks.
 */
#ifndef LOKRD_HTTP_H
#define LOKRD_HTTP_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "metrics.h"
#include "registry.h"
#include "server.h"

typedef struct lokrd_req lokrd_req;

struct lokrd_req {
	lokrd_server *srv;
	struct MHD_Connection *conn; /* NULL once MHD completed the request */
	int refs;
	char method[16];
	char *path; /* owned copy of the decoded path */
	lokrd_route route;
	char id[LOKRD_ID_MAX + 1];   /* {id} of adapter routes (validated by the route) */
	struct lokrd_tenant *tenant; /* whose namespace (NULL: admin on no tenant) */
	lokrd_registry *reg;         /* the tenant's registry, borrowed */
	int admin;                   /* authenticated with an admin token */
	unsigned retry_after;        /* seconds for Retry-After on 429/503; 0 = 1 */
	int id_ok;
	lokrd_buf body;      /* JSON bodies */
	uint64_t body_bytes; /* bytes received (JSON or upload) */
	uint64_t discarded;  /* bytes dropped after an upload error */
	/* route state */
	void *state;
	void (*state_free)(void *state);
	/* response */
	struct MHD_Response *resp;
	unsigned status; /* of resp, then of what was queued */
	int queued, suspended, dispatched, in_handler;
	uint64_t t0_ns;
	char log_adapters[256];
	long long log_rows;
	lokrd_req *prev, *next; /* live requests */
};

/* Start MHD on `listen_fd` inside s->loop.  Returns 0 or -1 (logged). */
int lokrd_http_start(lokrd_server *s, int listen_fd);
/* Stop accepting new connections (SIGTERM). */
void lokrd_http_quiesce(lokrd_server *s);
/* Requests received and not finished. */
unsigned lokrd_http_active(lokrd_server *s);
/* Open connections (MHD's count). */
unsigned lokrd_http_connections(lokrd_server *s);
/* Answer every suspended request with 503 (drain deadline). */
void lokrd_http_abort_waiting(lokrd_server *s);
/* Stop MHD and close the loop handles (no request may be suspended). */
void lokrd_http_stop(lokrd_server *s);
/* Free the HTTP state after the loop closed its handles. */
void lokrd_http_free(lokrd_server *s);
/* Run MHD now and re-arm its timer (loop thread, any time). */
void lokrd_http_pump(lokrd_server *s);

void lokrd_req_ref(lokrd_req *r);
void lokrd_req_unref(lokrd_req *r);

/* Set the response (steals resp).  From a handler it is queued when the
 * handler returns; later it resumes the suspended connection.  A request
 * whose connection is gone just drops it. */
void lokrd_req_respond(lokrd_req *r, unsigned status, struct MHD_Response *resp);
/* JSON body (steals `body`, a malloc'd buffer of `len` bytes). */
void lokrd_req_json(lokrd_req *r, unsigned status, char *body, size_t len);
/* {"error": {"code", "message"}}; 503 adds Retry-After: 1. */
void lokrd_req_error(lokrd_req *r, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A request header value or NULL. */
const char *lokrd_req_header(lokrd_req *r, const char *name);
/* Suspend the connection of a request whose stream waits for data (from a
 * content reader callback only). */
void lokrd_req_suspend_stream(lokrd_req *r);
/* Resume it (loop thread) and pump. */
void lokrd_req_resume_stream(lokrd_req *r);

#endif
