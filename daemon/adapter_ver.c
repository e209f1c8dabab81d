/*
 * adapter_ver.c - adapter versions and the files behind them (adapter_ver.h):
 * id syntax, file identities, reference-counted versions, summaries and
 * the load-and-validate of one DIR/<id>.safetensors.  No registry state:
 * the registry (registry.c), PUT (route_adapters.c) and the listing use
 * these from the loop thread, the loads from worker threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "adapter_ver.h"

int lokrd_id_valid(const char *id)
{
	size_t n = 0;
	for (const char *p = id; *p; p++, n++) {
		char c = *p;
		int alnum =
		    (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && (n == 0 || (c != '.' && c != '_' && c != '-')))
			return 0;
		if (n >= LOKRD_ID_MAX)
			return 0;
	}
	return n > 0;
}

int lokrd_file_ident_eq(const lokrd_file_ident *a, const lokrd_file_ident *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns;
}

void lokrd_file_ident_of(const struct stat *st, lokrd_file_ident *id)
{
	memset(id, 0, sizeof *id);
	id->dev = st->st_dev;
	id->ino = st->st_ino;
	id->size = st->st_size;
	id->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* ------------------------------------------------------------ versions */

lokrd_ver *lokrd_ver_new(const char *id, lokr_adapter *adapter, const lokrd_file_ident *ident)
{
	lokrd_ver *v = calloc(1, sizeof *v);
	if (!v)
		abort();
	v->refs = 1;
	v->adapter = adapter;
	snprintf(v->id, sizeof v->id, "%s", id);
	v->ident = *ident;
	v->resident_bytes = adapter->resident_bytes + sizeof *v;
	lokrd_summary_of(adapter, &v->summary);
	return v;
}

void lokrd_ver_ref(lokrd_ver *v)
{
	v->refs++;
}

void lokrd_ver_unref(lokrd_ver *v)
{
	if (v && --v->refs == 0) {
		lokr_adapter_free(v->adapter);
		free(v);
	}
}

/* s->algos: the algorithms marked in seen[] (indexed by lokr_algo), in the
 * fixed order lokr, loha, lora. */
static void summary_set_algos(lokrd_summary *s, const int seen[3])
{
	static const lokr_algo order[3] = {LOKR_ALGO_LOKR, LOKR_ALGO_LOHA, LOKR_ALGO_LORA};
	for (int k = 0; k < 3; k++) {
		if (!seen[order[k]])
			continue;
		size_t at = strlen(s->algos);
		snprintf(s->algos + at, sizeof s->algos - at, "%s%s", at ? "," : "",
		         lokr_algo_name(order[k]));
	}
}

void lokrd_summary_of(const lokr_adapter *a, lokrd_summary *s)
{
	memset(s, 0, sizeof *s);
	int seen[3] = {0, 0, 0};
	for (size_t i = 0; i < a->nmodules; i++) {
		const lokr_module *m = &a->modules[i];
		if ((int)m->algo >= 0 && (int)m->algo < 3)
			seen[m->algo] = 1;
		if (m->dora_axis != LOKR_DORA_NONE)
			s->dora = 1;
	}
	summary_set_algos(s, seen);
	s->layers = (int64_t)a->nmodules;
}

/* Algorithm of a stored parameter name (after "<module>."), or -1. */
static int param_algo(const char *p, int *dora)
{
	if (!strncmp(p, "lokr_", 5))
		return LOKR_ALGO_LOKR;
	if (!strncmp(p, "hada_", 5))
		return LOKR_ALGO_LOHA;
	if (!strncmp(p, "lora_up", 7) || !strncmp(p, "lora_down", 9) || !strncmp(p, "lora_mid", 8))
		return LOKR_ALGO_LORA;
	if (!strcmp(p, "dora_scale"))
		*dora = 1;
	return -1;
}

int lokrd_summary_scan(const char *path, lokrd_summary *s, char *msg, size_t msglen)
{
	memset(s, 0, sizeof *s);
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	int rc = lokr_st_open(path, &f, &e);
	if (rc) {
		snprintf(msg, msglen, "%s", e.msg[0] ? e.msg : lokr_strerror(rc));
		return -1;
	}
	int seen[3] = {0, 0, 0};
	size_t n = lokr_st_count(f);
	/* Tensors are sorted by name, so a module's keys are adjacent. */
	const char *prev = NULL;
	size_t prev_len = 0;
	for (size_t i = 0; i < n; i++) {
		const char *name = lokr_st_at(f, i)->name;
		const char *dot = strchr(name, '.');
		if (!dot)
			continue;
		size_t mlen = (size_t)(dot - name);
		int algo = param_algo(dot + 1, &s->dora);
		if (algo >= 0)
			seen[algo] = 1;
		if (algo < 0 && strcmp(dot + 1, "dora_scale") && strcmp(dot + 1, "alpha"))
			continue;
		if (!prev || prev_len != mlen || memcmp(prev, name, mlen)) {
			s->layers++;
			prev = name;
			prev_len = mlen;
		}
	}
	summary_set_algos(s, seen);
	lokr_st_close(f);
	return 0;
}

unsigned lokrd_adapter_read(const lokr_base *base, const char *path, lokr_adapter **adapter,
                            lokrd_file_ident *ident, char *msg, size_t msglen)
{
	*adapter = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(msg, msglen, "%s", strerror(errno));
		return errno == ENOENT || errno == ENOTDIR ? 404 : 500;
	}
	struct stat st;
	if (fstat(fd, &st)) {
		snprintf(msg, msglen, "fstat: %s", strerror(errno));
		close(fd);
		return 500;
	}
	lokrd_file_ident_of(&st, ident);
	if (!S_ISREG(st.st_mode)) {
		snprintf(msg, msglen, "not a regular file");
		close(fd);
		return 422;
	}
	if (st.st_size < 8) {
		const char *bn = strrchr(path, '/');
		snprintf(msg, msglen, "%s: not a safetensors file: %lld bytes", bn ? bn + 1 : path,
		         (long long)st.st_size);
		close(fd);
		return 422;
	}
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		snprintf(msg, msglen, "mmap: %s", strerror(errno));
		return 500;
	}
	const char *base_name = strrchr(path, '/');
	base_name = base_name ? base_name + 1 : path;
	lokr_st_file *f = NULL;
	lokr_error e = {0};
	unsigned status = 0;
	int rc = lokr_st_open_memory(map, (size_t)st.st_size, base_name, &f, &e);
	if (!rc)
		rc = lokr_adapter_load(base, f, adapter, &e);
	if (rc) {
		snprintf(msg, msglen, "%s", e.msg[0] ? e.msg : lokr_strerror(rc));
		status = rc == LOKR_ENOMEM ? 500 : 422;
	} else if ((*adapter)->nmodules == 0) {
		snprintf(msg, msglen, "%s: no adapter modules", base_name);
		lokr_adapter_free(*adapter);
		*adapter = NULL;
		status = 422;
	}
	lokr_st_close(f);
	munmap(map, (size_t)st.st_size);
	return status;
}
