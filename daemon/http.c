/*
 * http.c - libmicrohttpd inside the libuv loop (see http.h).
 *
 * Hardening (reliability.md §2.2): idle timeout, connection and per-IP
 * limits (the per-IP default stays >= 256: behind a proxy every client
 * shares one address), a per-connection memory pool that bounds the
 * request line and headers (max_header_bytes, 128 KiB by default; MHD
 * answers 431 or 414 past it), SIGPIPE ignored by us, MHD's errors routed
 * to our log, a panic handler that logs before aborting, and our own URL
 * unescaper that refuses to decode %00 so a NUL can never truncate a path.
 *
 * Two limits MHD 0.9.75 lacks are kept by a housekeeping timer (limits.h):
 * - request timeout: a connection that has not delivered a whole request
 *   within request_timeout_s of opening (or of its previous answer) is shut
 *   down, whatever it trickles (the idle timeout alone restarts at every
 *   byte: slow-loris);
 * - compute deadline: a received request still waiting for its answer
 *   after compute_deadline_ms gets 503 deadline_exceeded with Retry-After
 *   (suspended connections never time out in MHD, §2.4); its job finishes
 *   and its late answer is dropped.
 */
#include <errno.h>
#include <jansson.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "routes.h"

/* Bytes of a failed upload read and dropped before giving up on it. */
#define LOKRD_DISCARD_MAX ((uint64_t)64 << 20)

/* One open connection (MHD_OPTION_NOTIFY_CONNECTION). */
typedef struct conn_info {
	int fd;
	uint64_t since_ns; /* receiving a request since; 0 while it is being answered */
	struct conn_info *prev, *next;
} conn_info;

struct lokrd_http {
	struct MHD_Daemon *d;
	conn_info *conns;
	uv_poll_t poll;
	uv_timer_t timer;
	int in_run, again;
	unsigned active;
	lokrd_req *live; /* list of requests MHD still holds */
	int stopped;
	int limits_started;
};

/* ------------------------------------------------------------ pump */

static void on_timer(uv_timer_t *t);

void lokrd_http_pump(lokrd_server *s)
{
	lokrd_http *h = s->http;
	if (!h || !h->d || h->stopped)
		return;
	if (h->in_run) {
		h->again = 1;
		return;
	}
	h->in_run = 1;
	do {
		h->again = 0;
		/* At max_connections MHD takes the listening socket out of its
		 * epoll set and puts it back on a later run; if connections
		 * closed in this run, run again so a waiting client is accepted
		 * now instead of at the next unrelated event (the stall was found
		 * by tests/integration/test_limits.py). */
		unsigned before = lokrd_http_connections(s);
		MHD_run(h->d);
		if (lokrd_http_connections(s) < before)
			MHD_run(h->d);
	} while (h->again);
	h->in_run = 0;
	MHD_UNSIGNED_LONG_LONG ms;
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		uv_timer_start(&h->timer, on_timer, ms, 0);
	else
		uv_timer_stop(&h->timer);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	lokrd_http_pump(p->data);
}

static void on_timer(uv_timer_t *t)
{
	lokrd_http_pump(t->data);
}

static void conn_mark(struct MHD_Connection *c, uint64_t since_ns);

/* ------------------------------------------------------------ requests */

void lokrd_req_ref(lokrd_req *r)
{
	r->refs++;
}

void lokrd_req_unref(lokrd_req *r)
{
	if (--r->refs > 0)
		return;
	if (r->state_free)
		r->state_free(r->state);
	if (r->resp)
		MHD_destroy_response(r->resp);
	lokrd_buf_free(&r->body);
	free(r->path);
	free(r);
}

const char *lokrd_req_header(lokrd_req *r, const char *name)
{
	return r->conn ? MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name) : NULL;
}

static enum MHD_Result queue(lokrd_req *r)
{
	if (r->srv->draining)
		MHD_add_response_header(r->resp, MHD_HTTP_HEADER_CONNECTION, "close");
	/* Which instance answered: behind a load balancer this shows that one
	 * adapter keeps reaching the same lokrd. */
	MHD_add_response_header(r->resp, "X-Lokrd-Instance", r->srv->instance);
	enum MHD_Result ret = MHD_queue_response(r->conn, r->status, r->resp);
	MHD_destroy_response(r->resp);
	r->resp = NULL;
	r->queued = 1;
	if (ret != MHD_YES)
		lokrd_log(LOKRD_LOG_WARN, "MHD refused the %u response to %s %s", r->status,
		          r->method, r->path);
	return ret;
}

void lokrd_req_respond(lokrd_req *r, unsigned status, struct MHD_Response *resp)
{
	if (!r->conn || r->queued || r->resp) {
		/* Gone, or already answered (a second answer is a bug; drop it). */
		if (resp)
			MHD_destroy_response(resp);
		return;
	}
	if (!resp) {
		static const char oom[] =
		    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
		resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
		                                       MHD_RESPMEM_PERSISTENT);
		status = 500;
		if (!resp)
			return;
	}
	r->resp = resp;
	r->status = status;
	if (r->suspended && !r->in_handler) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		lokrd_http_pump(r->srv);
	}
}

void lokrd_req_json(lokrd_req *r, unsigned status, char *body, size_t len)
{
	struct MHD_Response *resp = NULL;
	if (body) {
		resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
		if (!resp)
			free(body);
	}
	if (resp)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	lokrd_req_respond(r, status, resp);
}

void lokrd_req_error(lokrd_req *r, unsigned status, const char *code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	struct MHD_Response *resp = NULL;
	if (body) {
		resp = MHD_create_response_from_buffer_with_free_callback(strlen(body), body, free);
		if (!resp)
			free(body);
	}
	if (resp) {
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
		if (status == 503 || status == 429) {
			char ra[16];
			snprintf(ra, sizeof ra, "%u", r->retry_after ? r->retry_after : 1);
			MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
		}
		if (status == 401)
			MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
			                        "Bearer realm=\"lokrd\"");
		if (status == 405) {
			const char *allow = "GET";
			switch (r->route) {
			case LOKRD_ROUTE_APPLY:
			case LOKRD_ROUTE_MERGE:
			case LOKRD_ROUTE_ADAPTER_LOAD:
				allow = "POST";
				break;
			case LOKRD_ROUTE_ADAPTER:
				allow = "GET, HEAD, PUT, DELETE";
				break;
			default:
				allow = "GET, HEAD";
				break;
			}
			MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
		}
	}
	lokrd_req_respond(r, status, resp);
}

void lokrd_req_suspend_stream(lokrd_req *r)
{
	if (r->conn && !r->suspended) {
		MHD_suspend_connection(r->conn);
		r->suspended = 1;
	}
}

void lokrd_req_resume_stream(lokrd_req *r)
{
	if (r->conn && r->suspended) {
		r->suspended = 0;
		MHD_resume_connection(r->conn);
		lokrd_http_pump(r->srv);
	}
}

static lokrd_req *req_new(lokrd_server *s, struct MHD_Connection *c, const char *url,
                          const char *method)
{
	lokrd_req *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->srv = s;
	r->conn = c;
	r->refs = 1;
	r->t0_ns = uv_hrtime();
	snprintf(r->method, sizeof r->method, "%s", method);
	r->path = strdup(url);
	if (!r->path) {
		free(r);
		return NULL;
	}
	lokrd_http *h = s->http;
	r->next = h->live;
	if (h->live)
		h->live->prev = r;
	h->live = r;
	h->active++;
	return r;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
	lokrd_server *s = cls;
	lokrd_req *r = *con_cls;
	if (!r) {
		r = req_new(s, c, url, method);
		if (!r)
			return MHD_NO;
		*con_cls = r;
		r->in_handler = 1;
		lokrd_routes_begin(r);
		r->in_handler = 0;
		return r->resp ? queue(r) : MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (uv_hrtime() - r->t0_ns > (uint64_t)s->opt->request_timeout_s * 1000000000ull) {
			lokrd_log(LOKRD_LOG_WARN, "%s %s: body not received within %us; closing",
			          r->method, r->path, s->opt->request_timeout_s);
			return MHD_NO;
		}
		if (r->queued)
			return MHD_YES;
		if (!r->resp) {
			r->in_handler = 1;
			lokrd_routes_body(r, upload_data, n);
			r->in_handler = 0;
			return MHD_YES;
		}
		/* An error while uploading (413, 507): MHD 0.9.75 cannot send a
		 * response before the body is read, so the rest is read and
		 * dropped, up to a bound; past it the connection is closed. */
		r->discarded += n;
		return r->discarded > LOKRD_DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (r->resp)
		return queue(r);
	if (r->queued)
		return MHD_YES;
	if (r->dispatched) {
		lokrd_log(LOKRD_LOG_ERROR, "%s %s resumed without an answer", r->method, r->path);
		lokrd_req_error(r, 500, "internal", "request resumed without an answer");
		return queue(r);
	}
	r->dispatched = 1;
	conn_mark(c, 0);
	r->in_handler = 1;
	lokrd_routes_dispatch(r);
	r->in_handler = 0;
	if (r->resp)
		return queue(r);
	MHD_suspend_connection(c);
	r->suspended = 1;
	return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
	lokrd_server *s = cls;
	lokrd_req *r = *con_cls;
	if (!r)
		return;
	*con_cls = NULL;
	lokrd_http *h = s->http;
	if (r->prev)
		r->prev->next = r->next;
	else
		h->live = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
	h->active--;
	double secs = (double)(uv_hrtime() - r->t0_ns) / 1e9;
	unsigned status = r->queued ? r->status : 0;
	if (status)
		lokrd_metrics_request(&s->metrics, r->route, status, secs);
	lokrd_log_request(r->method, r->path, status, r->log_adapters, r->log_rows,
	                  (long long)(secs * 1e6));
	conn_mark(c, uv_hrtime());
	r->conn = NULL;
	r->suspended = 0;
	lokrd_req_unref(r);
}

/* ------------------------------------------------------------ limits */

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	lokrd_server *s = cls;
	lokrd_http *h = s->http;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		conn_info *ci = calloc(1, sizeof *ci);
		if (!ci)
			return;
		const union MHD_ConnectionInfo *i =
		    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		ci->fd = i ? i->connect_fd : -1;
		ci->since_ns = uv_hrtime();
		ci->next = h->conns;
		if (h->conns)
			h->conns->prev = ci;
		h->conns = ci;
		*socket_context = ci;
		return;
	}
	conn_info *ci = *socket_context;
	if (!ci)
		return;
	if (ci->prev)
		ci->prev->next = ci->next;
	else
		h->conns = ci->next;
	if (ci->next)
		ci->next->prev = ci->prev;
	free(ci);
	*socket_context = NULL;
}

static void conn_mark(struct MHD_Connection *c, uint64_t since_ns)
{
	const union MHD_ConnectionInfo *i =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	conn_info *ci = i ? i->socket_context : NULL;
	if (ci)
		ci->since_ns = since_ns;
}

static void on_limits_timer(uv_timer_t *t)
{
	lokrd_server *s = t->data;
	lokrd_http *h = s->http;
	if (!h || h->stopped)
		return;
	uint64_t now = uv_hrtime();
	uint64_t req_ns = (uint64_t)s->opt->request_timeout_s * 1000000000ull;
	int shut = 0;
	for (conn_info *ci = h->conns; ci; ci = ci->next)
		if (ci->since_ns && ci->fd >= 0 && now - ci->since_ns > req_ns) {
			/* MHD sees the end of the stream at its next poll and closes. */
			shutdown(ci->fd, SHUT_RDWR);
			ci->since_ns = 0;
			shut++;
		}
	if (shut)
		lokrd_log(LOKRD_LOG_WARN,
		          "closed %d connections that did not send a whole request within %us",
		          shut, s->opt->request_timeout_s);
	uint64_t dl_ns = s->opt->compute_deadline_ms * 1000000ull;
	for (lokrd_req *r = h->live, *next; r; r = next) {
		next = r->next;
		/* Not a PUT: an upload being validated finishes, whatever the time. */
		if (r->dispatched && r->suspended && !r->resp && !r->queued &&
		    strcmp(r->method, "PUT") && now - r->t0_ns > dl_ns) {
			r->retry_after = 1;
			s->metrics.rejected_overload++;
			lokrd_req_error(r, 503, "deadline_exceeded",
			                "no answer within %llu ms; retry later",
			                (unsigned long long)s->opt->compute_deadline_ms);
		}
	}
	if (shut)
		lokrd_http_pump(s);
}

/* ------------------------------------------------------------ MHD hooks */

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof msg, fmt, ap);
	size_t n = strlen(msg);
	while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		msg[--n] = '\0';
	lokrd_log(LOKRD_LOG_DEBUG, "microhttpd: %s", msg);
}

static void mhd_panic(void *cls, const char *file, unsigned int line, const char *reason)
{
	lokrd_log(LOKRD_LOG_ERROR, "microhttpd panic at %s:%u: %s", file ? file : "?", line,
	          reason ? reason : "");
	abort();
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %HH decoding in place, except %00, which stays as the three characters
 * (an id with '%' is invalid anyway, so it is rejected, not truncated). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
	char *w = s;
	for (const char *p = s; *p; p++) {
		int hi, lo;
		if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0 &&
		    (hi | lo) != 0) {
			*w++ = (char)(hi * 16 + lo);
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
	return (size_t)(w - s);
}

int lokrd_http_start(lokrd_server *s, int listen_fd)
{
	lokrd_http *h = calloc(1, sizeof *h);
	if (!h)
		return -1;
	s->http = h;
	s->loop->data = s;
	MHD_set_panic_func(mhd_panic, NULL);
	const lokrd_options *o = s->opt;
	size_t mem = (size_t)o->max_header_bytes;
	unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	h->d = MHD_start_daemon(
	    flags, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, listen_fd,
	    MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
	    o->max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_connections_per_ip,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
	    MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL, MHD_OPTION_UNESCAPE_CALLBACK, unescape,
	    NULL, MHD_OPTION_END);
	if (!h->d) {
		lokrd_log(LOKRD_LOG_ERROR, "MHD_start_daemon failed");
		return -1;
	}
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		lokrd_log(LOKRD_LOG_ERROR, "MHD has no epoll fd");
		return -1;
	}
	uv_poll_init(s->loop, &h->poll, info->epoll_fd);
	h->poll.data = s;
	uv_poll_start(&h->poll, UV_READABLE, on_poll);
	uv_timer_init(s->loop, &h->timer);
	h->timer.data = s;
	/* Deadlines are checked at a tenth of the shortest one (20 ms..250 ms). */
	uint64_t tick = o->compute_deadline_ms / 10;
	tick = tick < 20 ? 20 : tick > 250 ? 250 : tick;
	uv_timer_init(s->loop, &s->limits_timer);
	s->limits_timer.data = s;
	uv_timer_start(&s->limits_timer, on_limits_timer, tick, tick);
	h->limits_started = 1;
	lokrd_http_pump(s);
	return 0;
}

void lokrd_http_quiesce(lokrd_server *s)
{
	/* MHD hands the listening socket back; closing our copy makes new
	 * connections fail at once instead of waiting in the backlog (with
	 * --workers, the socket closes when the last process lets go). */
	if (s->http && s->http->d) {
		MHD_socket fd = MHD_quiesce_daemon(s->http->d);
		if (fd != MHD_INVALID_SOCKET)
			close(fd);
	}
	lokrd_http_pump(s);
}

unsigned lokrd_http_active(lokrd_server *s)
{
	return s->http ? s->http->active : 0;
}

unsigned lokrd_http_connections(lokrd_server *s)
{
	if (!s->http || !s->http->d)
		return 0;
	const union MHD_DaemonInfo *i =
	    MHD_get_daemon_info(s->http->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return i ? i->num_connections : 0;
}

void lokrd_http_abort_waiting(lokrd_server *s)
{
	for (lokrd_req *r = s->http ? s->http->live : NULL; r; r = r->next)
		if (r->suspended && !r->resp && !r->queued)
			lokrd_req_error(
			    r, 503, "shutting_down",
			    "lokrd is shutting down and the request did not finish in time");
	/* Streams still suspended (a merge waiting for a tensor): resume so
	 * their reader can end them. */
	for (lokrd_req *r = s->http ? s->http->live : NULL; r; r = r->next)
		if (r->suspended)
			lokrd_req_resume_stream(r);
}

void lokrd_http_stop(lokrd_server *s)
{
	lokrd_http *h = s->http;
	if (!h || h->stopped)
		return;
	h->stopped = 1;
	uv_poll_stop(&h->poll);
	uv_close((uv_handle_t *)&h->poll, NULL);
	uv_timer_stop(&h->timer);
	uv_close((uv_handle_t *)&h->timer, NULL);
	if (h->limits_started) {
		uv_timer_stop(&s->limits_timer);
		uv_close((uv_handle_t *)&s->limits_timer, NULL);
	}
	MHD_stop_daemon(h->d);
	h->d = NULL;
}

void lokrd_http_free(lokrd_server *s)
{
	free(s->http);
	s->http = NULL;
}
