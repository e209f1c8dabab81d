/*
 * main.c - lokrd's entry point: options, the listening socket, the base in
 * shared memory, and either one serving process or a supervisor that forks
 * --workers N serving processes sharing the base segment and the socket.
 *
 * A serving process is one libuv loop (HTTP, registry, responses) plus a
 * pool of compute threads.  Signals only record intent through libuv's
 * signal watchers; the work happens on the loop thread:
 * - SIGTERM/SIGINT: stop accepting, finish every request already received
 *   within the drain timeout (then 503 for what still waits), exit 0; a
 *   second SIGINT exits at once.
 * - SIGHUP: re-read the config file (the command line still wins), apply
 *   the reloadable settings (cache budget, log format and level, drain
 *   timeout, request limits) and rescan the adapter directory.  Listening
 *   socket and connections are untouched.  With --workers, the supervisor
 *   forwards it to every worker.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "compute.h"
#include "http.h"
#include "log.h"
#include "merge_cache.h"
#include "options.h"
#include "sd.h"
#include "server.h"
#include "tenant.h"

/* ------------------------------------------------------------ socket */

static int open_listener(const lokrd_options *o)
{
	char port[16];
	snprintf(port, sizeof port, "%d", o->listen_port);
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(o->listen_host, port, &hints, &res);
	if (rc) {
		lokrd_log(LOKRD_LOG_ERROR, "cannot resolve listen address %s: %s", o->listen_host,
		          gai_strerror(rc));
		return -1;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 1024))
			break;
		lokrd_log(LOKRD_LOG_ERROR, "cannot listen on %s:%s: %s", o->listen_host, port,
		          strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (!getsockname(fd, (struct sockaddr *)&ss, &len) &&
	    !getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv,
	                 NI_NUMERICHOST | NI_NUMERICSERV)) {
		int v6 = ss.ss_family == AF_INET6;
		lokrd_log(LOKRD_LOG_INFO, "listening on %s%s%s:%s", v6 ? "[" : "", host,
		          v6 ? "]" : "", serv);
	}
	return fd;
}

/* ------------------------------------------------------------ shutdown */

static void close_cb_noop(uv_handle_t *h)
{
	(void)h;
}

static void on_watchdog(uv_timer_t *t)
{
	lokrd_sd_notify("WATCHDOG=1");
}

static void finish(lokrd_server *s)
{
	uv_timer_stop(&s->watchdog);
	if (!uv_is_closing((uv_handle_t *)&s->watchdog))
		uv_close((uv_handle_t *)&s->watchdog, close_cb_noop);
	uv_timer_stop(&s->drain_timer);
	if (!uv_is_closing((uv_handle_t *)&s->drain_timer))
		uv_close((uv_handle_t *)&s->drain_timer, close_cb_noop);
	uv_signal_stop(&s->sigterm);
	uv_signal_stop(&s->sigint);
	uv_signal_stop(&s->sighup);
	uv_close((uv_handle_t *)&s->sigterm, close_cb_noop);
	uv_close((uv_handle_t *)&s->sigint, close_cb_noop);
	uv_close((uv_handle_t *)&s->sighup, close_cb_noop);
	lokrd_http_stop(s);
	lokrd_pool_stop(&s->pool);
	lokrd_pool_close(&s->pool);
}

/* Drain: every 20 ms, exit once no request and no job is left.  At the
 * drain timeout, requests still waiting for a job are answered 503; a
 * second later, connections still open (a client that stalls mid-request)
 * are closed, once no compute job runs: the timeout bounds the exit. */
static void on_drain_tick(uv_timer_t *t)
{
	lokrd_server *s = t->data;
	if (lokrd_http_active(s) == 0 && s->inflight == 0) {
		lokrd_log(LOKRD_LOG_INFO, "drained; exiting");
		finish(s);
		return;
	}
	uint64_t now = uv_hrtime();
	if (s->drain_deadline_ns != UINT64_MAX && now > s->drain_deadline_ns) {
		lokrd_log(LOKRD_LOG_WARN, "drain timeout: answering %u waiting requests with 503",
		          lokrd_http_active(s));
		lokrd_http_abort_waiting(s);
		s->drain_deadline_ns = UINT64_MAX;
		s->drain_close_ns = now + 1000000000ull;
	} else if (s->drain_deadline_ns == UINT64_MAX && now > s->drain_close_ns &&
	           s->inflight == 0) {
		lokrd_log(LOKRD_LOG_WARN, "drain timeout: closing %u unfinished requests",
		          lokrd_http_active(s));
		finish(s);
	}
}

static void begin_shutdown(lokrd_server *s, const char *why)
{
	if (s->draining)
		return;
	s->draining = 1;
	lokrd_sd_notify("STOPPING=1");
	lokrd_log(LOKRD_LOG_INFO, "%s: no new connections; finishing %u requests", why,
	          lokrd_http_active(s));
	lokrd_http_quiesce(s);
	s->drain_deadline_ns = uv_hrtime() + (uint64_t)s->opt->drain_timeout_s * 1000000000ull;
	uv_timer_start(&s->drain_timer, on_drain_tick, 0, 20);
}

/* SIGHUP (loop thread).  The options are owned by main and written only
 * here, on the loop thread, so readers on the loop see a consistent set. */
static void reload(lokrd_server *s)
{
	if (s->ready)
		lokrd_sd_notify("RELOADING=1\nSTATUS=reloading");
	lokrd_options *live = (lokrd_options *)s->opt;
	char restart[256];
	if (lokrd_options_reload(live, restart, sizeof restart)) {
		s->metrics.reload_errors++;
		lokrd_log(LOKRD_LOG_ERROR,
		          "SIGHUP: config %s rejected (see above); keeping the "
		          "running settings",
		          live->config_path ? live->config_path : "(none)");
	} else {
		s->metrics.reloads++;
		s->metrics.reload_time = (uint64_t)time(NULL);
		if (getenv("LOKRD_DEBUG"))
			live->log_level = LOKRD_LOG_DEBUG;
		lokrd_log_setup(live->log_format, live->log_level);
		if (s->cache_group)
			lokrd_cache_group_set_budget(s->cache_group, live->cache_bytes);
		else
			lokrd_registry_set_budget(s->reg, live->cache_bytes);
		if (s->merge_cache)
			lokrd_merge_cache_set_budget(s->merge_cache, live->merge_cache_bytes);
		if (restart[0])
			lokrd_log(LOKRD_LOG_WARN, "SIGHUP: changed settings need a restart: %s",
			          restart);
		lokrd_log(LOKRD_LOG_INFO,
		          "SIGHUP: config reloaded (cache_bytes %llu, log_format %s, "
		          "drain_timeout %us)",
		          (unsigned long long)live->cache_bytes,
		          live->log_format == LOKRD_LOG_JSON ? "json" : "text",
		          live->drain_timeout_s);
	}
	/* Every tenant's directory. */
	unsigned removed = 0, changed = 0;
	for (size_t i = 0; s->tenants && i < s->tenants->n; i++) {
		unsigned r = 0, c = 0;
		if (s->tenants->t[i].reg)
			lokrd_registry_rescan(s->tenants->t[i].reg, &r, &c);
		removed += r;
		changed += c;
	}
	lokrd_registry_stats st;
	lokrd_tenants_stats(s, &st);
	lokrd_log(LOKRD_LOG_INFO,
	          "SIGHUP: adapter directory rescanned: %u removed, %u changed; %llu resident "
	          "(%llu bytes)",
	          removed, changed, (unsigned long long)st.resident,
	          (unsigned long long)st.resident_bytes);
	if (s->ready)
		lokrd_sd_notify("READY=1\nSTATUS=serving");
}

static void on_signal(uv_signal_t *h, int signum)
{
	lokrd_server *s = h->data;
	if (signum == SIGHUP) {
		if (!s->draining)
			reload(s);
		return;
	}
	if (signum == SIGINT && s->draining) {
		lokrd_log(LOKRD_LOG_WARN, "second SIGINT: exiting now");
		_exit(1);
	}
	begin_shutdown(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ------------------------------------------------------------ base */

typedef struct base_task {
	lokrd_task task;
	lokrd_server *srv;
	int stored_fd; /* from systemd's fd store, or -1 */
	int reused;
	int rc;
	char err[1024];
	uint64_t ns;
} base_task;

static const char *reuse_words(int reused, const lokrd_shm *shm)
{
	if (reused == LOKRD_SHM_FDSTORE)
		return "re-attached from systemd's fd store";
	if (reused == LOKRD_SHM_NAMED_HIT)
		return "attached from the existing shm segment (made by another lokrd)";
	return shm->named ? "loaded into a new shm segment" : "loaded";
}

/* A fresh memfd goes to systemd's fd store; a named segment replaces it,
 * so a memfd kept there from an earlier run is dropped. */
static void note_base_source(int reused, int had_stored_fd, const lokrd_shm *shm)
{
	if (shm->named) {
		if (had_stored_fd >= 0)
			lokrd_sd_forget_base_fd();
	} else if (reused != LOKRD_SHM_FDSTORE) {
		lokrd_sd_store_base_fd(shm->fd);
	}
}

static void base_load_run(lokrd_task *t)
{
	base_task *bt = (base_task *)t;
	lokrd_server *s = bt->srv;
	uint64_t t0 = uv_hrtime();
	bt->rc = lokrd_shm_open_base((const char *const *)s->opt->base, s->opt->nbase,
	                             bt->stored_fd, s->opt->shm_name, &s->shm, &s->base,
	                             &bt->reused, bt->err, sizeof bt->err);
	bt->ns = uv_hrtime() - t0;
}

static void base_ready(lokrd_server *s)
{
	lokrd_tenants_set_base(s, s->base);
	s->ready = 1;
	lokrd_sd_notify("READY=1\nSTATUS=serving");
	lokrd_log(LOKRD_LOG_INFO, "base attached: %zu layers, %llu bytes in %s (%s)",
	          lokr_base_layer_count(s->base), (unsigned long long)lokr_base_bytes(s->base),
	          s->shm.name, s->shm.named ? "named segment, verified" : "sealed");
}

static void base_load_done(lokrd_task *t)
{
	base_task *bt = (base_task *)t;
	lokrd_server *s = bt->srv;
	if (t->cancelled) {
		free(bt);
		return;
	}
	if (bt->rc) {
		lokrd_log(LOKRD_LOG_ERROR, "cannot load the base: %s", bt->err);
		s->exit_code = 1;
		free(bt);
		begin_shutdown(s, "base failed");
		return;
	}
	lokrd_log(LOKRD_LOG_INFO, "base %s in %.1f ms", reuse_words(bt->reused, &s->shm),
	          (double)bt->ns / 1e6);
	note_base_source(bt->reused, bt->stored_fd, &s->shm);
	free(bt);
	base_ready(s);
}

/* ------------------------------------------------------------ serving */

/* Compute threads and OpenBLAS threads for --threads and --parallelism:
 * exactly one of them is > 1 (reliability.md §4, lokr_threading). */
static void resolve_threads(const lokrd_options *o, int *workers, int *blas)
{
	int n = o->threads > 0 ? o->threads : (int)uv_available_parallelism();
	if (n > 64)
		n = 64; /* OpenBLAS buffer table (reliability.md §4) */
	if (n < 1)
		n = 1;
	*workers = o->parallelism == LOKRD_PARALLEL_BLAS ? 1 : n;
	*blas = o->parallelism == LOKRD_PARALLEL_BLAS ? n : 1;
}

static int serve(lokrd_options *o, int listen_fd, int shm_fd, int stored_fd)
{
	uv_loop_t loop;
	if (uv_loop_init(&loop)) {
		lokrd_log(LOKRD_LOG_ERROR, "uv_loop_init failed");
		return 1;
	}
	lokrd_server s;
	memset(&s, 0, sizeof s);
	s.opt = o;
	s.loop = &loop;
	s.listen_fd = listen_fd;
	s.shm = (lokrd_shm)LOKRD_SHM_INIT;
	{
		char host[64] = "localhost";
		struct sockaddr_storage ss;
		socklen_t len = sizeof ss;
		int port = 0;
		gethostname(host, sizeof host - 1);
		if (!getsockname(listen_fd, (struct sockaddr *)&ss, &len))
			port =
			    ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			                                   : ((struct sockaddr_in *)&ss)->sin_port);
		snprintf(s.instance, sizeof s.instance, "%s:%d", host, port);
	}
	lokrd_metrics_init(&s.metrics);
	int blas_threads;
	resolve_threads(o, &s.threads, &blas_threads);
	if (lokrd_pool_start(&s.pool, &loop, s.threads, lokrd_compute_batch, &s)) {
		lokrd_log(LOKRD_LOG_ERROR, "cannot start %d compute threads", s.threads);
		return 1;
	}
	if (lokrd_tenants_start(&s)) {
		lokrd_pool_stop(&s.pool);
		lokrd_pool_close(&s.pool);
		uv_run(&loop, UV_RUN_NOWAIT);
		uv_loop_close(&loop);
		return 1;
	}
	uv_timer_init(&loop, &s.drain_timer);
	s.drain_timer.data = &s;
	/* The watchdog ticks on the loop thread: a stuck loop stops it. */
	uv_timer_init(&loop, &s.watchdog);
	uint64_t wd = lokrd_sd_watchdog_usec();
	if (wd)
		uv_timer_start(&s.watchdog, on_watchdog, 0, wd / 2000 ? wd / 2000 : 1);
	uv_signal_t *sigs[3] = {&s.sigterm, &s.sigint, &s.sighup};
	int signums[3] = {SIGTERM, SIGINT, SIGHUP};
	for (int i = 0; i < 3; i++) {
		uv_signal_init(&loop, sigs[i]);
		sigs[i]->data = &s;
		uv_signal_start(sigs[i], on_signal, signums[i]);
	}
	if (lokrd_http_start(&s, listen_fd)) {
		s.exit_code = 1;
		finish(&s);
	} else if (shm_fd >= 0) {
		/* A worker: the supervisor loaded and sealed the base. */
		char err[1024];
		s.shm.fd = shm_fd;
		if (o->shm_name) {
			s.shm.named = 1;
			snprintf(s.shm.name, sizeof s.shm.name, "%s", o->shm_name);
		}
		if (lokrd_shm_attach(&s.shm, &s.base, err, sizeof err)) {
			lokrd_log(LOKRD_LOG_ERROR, "%s", err);
			s.exit_code = 1;
			finish(&s);
		} else {
			base_ready(&s);
		}
	} else {
		base_task *bt = calloc(1, sizeof *bt);
		if (!bt)
			abort();
		bt->task.run = base_load_run;
		bt->task.done = base_load_done;
		bt->task.batch_key = -1;
		bt->srv = &s;
		bt->stored_fd = stored_fd;
		lokrd_pool_submit(&s.pool, &bt->task);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	/* Every handle is closed by now; run once more for close callbacks. */
	uv_run(&loop, UV_RUN_NOWAIT);
	int rc = uv_loop_close(&loop);
	if (rc)
		lokrd_log(LOKRD_LOG_ERROR, "uv_loop_close: %s (a handle leaked)", uv_strerror(rc));
	lokrd_http_free(&s);
	lokrd_tenants_stop(&s);
	lokrd_merge_cache_free(s.merge_cache);
	lokr_base_free(s.base);
	lokrd_shm_close(&s.shm);
	return s.exit_code ? s.exit_code : (rc ? 1 : 0);
}

/* ------------------------------------------------------------ supervisor */

static pid_t spawn(lokrd_options *o, int listen_fd, int shm_fd, const sigset_t *old)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigprocmask(SIG_SETMASK, old, NULL);
	_exit(serve(o, listen_fd, shm_fd, -1));
}

static int supervise(lokrd_options *o, int listen_fd)
{
	lokrd_shm shm = LOKRD_SHM_INIT;
	lokr_base *base = NULL;
	char err[1024];
	uint64_t t0 = uv_hrtime();
	int reused = 0;
	int stored_fd = lokrd_sd_take_base_fd();
	if (lokrd_shm_open_base((const char *const *)o->base, o->nbase, stored_fd, o->shm_name,
	                        &shm, &base, &reused, err, sizeof err)) {
		lokrd_log(LOKRD_LOG_ERROR, "cannot load the base: %s", err);
		return 1;
	}
	note_base_source(reused, stored_fd, &shm);
	lokrd_log(LOKRD_LOG_INFO, "base %s: %s (%llu bytes) in %.1f ms; starting %d workers",
	          reuse_words(reused, &shm), shm.name, (unsigned long long)shm.len,
	          (double)(uv_hrtime() - t0) / 1e6, o->workers);
	/* The supervisor keeps only the fd: workers map and verify it. */
	lokr_base_free(base);
	munmap((void *)shm.map, shm.len);
	shm.map = NULL;

	sigset_t set, old;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, &old);
	int n = o->workers;
	pid_t *pids = calloc((size_t)n, sizeof *pids);
	uint64_t *started = calloc((size_t)n, sizeof *started);
	if (!pids || !started)
		abort();
	for (int i = 0; i < n; i++) {
		pids[i] = spawn(o, listen_fd, shm.fd, &old);
		started[i] = uv_hrtime();
	}
	lokrd_sd_notify("READY=1\nSTATUS=serving");
	uint64_t wd = lokrd_sd_watchdog_usec();
	int stopping = 0, alive = n, rc = 0;
	while (alive > 0) {
		siginfo_t si;
		struct timespec ts = {(time_t)(wd / 2000000), (long)(wd / 2 % 1000000) * 1000};
		if (!wd)
			ts.tv_sec = 3600;
		int sig = sigtimedwait(&set, &si, &ts);
		if (wd)
			lokrd_sd_notify("WATCHDOG=1");
		if (sig < 0)
			continue;
		if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
			if (sig != SIGHUP && !stopping) {
				stopping = 1;
				lokrd_sd_notify("STOPPING=1");
				close(listen_fd); /* the workers hold the last copies */
			}
			for (int i = 0; i < n; i++)
				if (pids[i] > 0)
					kill(pids[i], sig == SIGHUP ? SIGHUP : SIGTERM);
			continue;
		}
		int status;
		pid_t pid;
		while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
			int i = 0;
			while (i < n && pids[i] != pid)
				i++;
			if (i == n)
				continue;
			int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
			if (stopping || clean) {
				if (!clean)
					rc = 1;
				pids[i] = 0;
				alive--;
				continue;
			}
			lokrd_log(LOKRD_LOG_WARN, "worker %ld died (%s %d); starting a new one",
			          (long)pid, WIFSIGNALED(status) ? "signal" : "exit",
			          WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
			if (uv_hrtime() - started[i] < 1000000000ull)
				sleep(1); /* a worker that dies at once must not spin */
			pids[i] = spawn(o, listen_fd, shm.fd, &old);
			started[i] = uv_hrtime();
		}
	}
	free(pids);
	free(started);
	if (!stopping)
		close(listen_fd);
	lokrd_shm_close(&shm);
	lokrd_log(LOKRD_LOG_INFO, "all workers stopped");
	return rc;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);

	lokrd_options o;
	int pr = lokrd_options_parse(&o, argc, argv);
	if (pr == LOKRD_OPTIONS_EXIT_OK)
		return 0;
	/* OpenBLAS creates its threads when the library loads, so the BLAS
	 * thread count of --parallelism (1 with workers, --threads with blas)
	 * must be in the environment before exec (reliability.md §4):
	 * re-exec once if it is not.  The options are parsed again after. */
	int nworkers = 1, nblas = 1;
	if (pr == LOKRD_OPTIONS_RUN)
		resolve_threads(&o, &nworkers, &nblas);
	char want[16];
	snprintf(want, sizeof want, "%d", nblas);
	const char *have = getenv("OPENBLAS_NUM_THREADS");
	if (pr == LOKRD_OPTIONS_RUN && (!have || strcmp(have, want)) && !getenv("LOKRD_REEXEC")) {
		setenv("OPENBLAS_NUM_THREADS", want, 1);
		setenv("LOKRD_REEXEC", "1", 1);
		/* Exec the resolved path, not /proc/self/exe, so the process keeps
		 * its name (ps, top, journal show "lokrd", not "exe"). */
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
		if (n > 0) {
			self[n] = '\0';
			lokrd_options_free(&o);
			execv(self, argv);
			/* exec failed: parse again and carry on with the guard below */
			pr = lokrd_options_parse(&o, argc, argv);
		}
	}
	unsetenv("LOKRD_REEXEC");
	/* The guard: sets OpenBLAS's count even if the exec failed. */
	lokr_threading_setup(o.parallelism == LOKRD_PARALLEL_BLAS ? LOKR_THREADING_BLAS
	                                                          : LOKR_THREADING_WORKERS,
	                     nworkers > nblas ? nworkers : nblas, NULL, NULL);
	if (pr == LOKRD_OPTIONS_CHECK) {
		/* --check-config: what start-up would refuse, without starting. */
		int bad = lokrd_tenants_check_listen(&o);
		if (!bad)
			printf("lokrd: configuration OK%s%s%s\n", o.config_path ? " (" : "",
			       o.config_path ? o.config_path : "", o.config_path ? ")" : "");
		lokrd_options_free(&o);
		return bad ? 2 : 0;
	}
	if (pr != LOKRD_OPTIONS_RUN)
		return 2;
	if (getenv("LOKRD_DEBUG"))
		o.log_level = LOKRD_LOG_DEBUG;
	lokrd_log_setup(o.log_format, o.log_level);
	{
		char blas[512];
		lokr_blas_describe(blas, sizeof blas);
		lokrd_log(LOKRD_LOG_INFO,
		          "parallelism %s: %d compute thread%s x %d OpenBLAS thread%s per process "
		          "(%s)",
		          lokrd_parallelism_name(o.parallelism), nworkers, nworkers == 1 ? "" : "s",
		          nblas, nblas == 1 ? "" : "s", blas);
	}

	/* Idle keep-alive connections are cheap; let the fd limit allow them. */
	struct rlimit rl;
	if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* The adapter directory must be usable before we listen: create it if
	 * missing (a fresh state directory), refuse anything else. */
	struct stat st;
	int sr = stat(o.adapters_dir, &st);
	if (sr && errno == ENOENT && mkdir(o.adapters_dir, 0750) == 0) {
		lokrd_log(LOKRD_LOG_INFO, "created the adapter directory %s", o.adapters_dir);
		sr = stat(o.adapters_dir, &st);
	}
	if (sr || !S_ISDIR(st.st_mode)) {
		lokrd_log(LOKRD_LOG_ERROR, "--adapters %s: %s", o.adapters_dir,
		          sr ? strerror(errno) : "not a directory");
		lokrd_options_free(&o);
		return 1;
	}
	if (lokrd_tenants_check_listen(&o)) {
		lokrd_options_free(&o);
		return 2;
	}
	int fd = open_listener(&o);
	if (fd < 0) {
		lokrd_options_free(&o);
		return 1;
	}
	/* The socket is closed by MHD at stop, or after quiesce (SIGTERM). */
	int rc = o.workers > 1 ? supervise(&o, fd) : serve(&o, fd, -1, lokrd_sd_take_base_fd());
	lokrd_options_free(&o);
	return rc;
}
