/*
 * adapter_ver.h - one loaded adapter version and the file it came from:
 * adapter ids, file identities, summaries for the listing, and reading a
 * DIR/<id>.safetensors into a validated lokr_adapter.  The registry
 * (registry.h) caches versions; this module holds no state.
 *
 * Loop thread, except where a function says "any thread".
 */
#ifndef LOKRD_ADAPTER_VER_H
#define LOKRD_ADAPTER_VER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "lokr.h"

#define LOKRD_ID_MAX 128

/* True if `id` matches [A-Za-z0-9][A-Za-z0-9._-]{0,127}. */
int lokrd_id_valid(const char *id);

/* Identity of an adapter file: any change means a new version. */
typedef struct lokrd_file_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
} lokrd_file_ident;

/* Summary shown by GET /v1/adapters (known from a load or a header scan). */
typedef struct lokrd_summary {
	char algos[32]; /* "lokr,loha" */
	int dora;
	int64_t layers;
} lokrd_summary;

/* One loaded, validated adapter version.  Immutable except `refs`. */
typedef struct lokrd_ver {
	int refs;              /* loop thread only */
	lokr_adapter *adapter; /* owned */
	char id[LOKRD_ID_MAX + 1];
	lokrd_file_ident ident;
	uint64_t resident_bytes;
	lokrd_summary summary;
} lokrd_ver;

/* A new version for `adapter` (steals it) with refs = 1. */
lokrd_ver *lokrd_ver_new(const char *id, lokr_adapter *adapter, const lokrd_file_ident *ident);
void lokrd_ver_ref(lokrd_ver *v);
void lokrd_ver_unref(lokrd_ver *v);

int lokrd_file_ident_eq(const lokrd_file_ident *a, const lokrd_file_ident *b);
void lokrd_file_ident_of(const struct stat *st, lokrd_file_ident *id);

/* Load and validate the file at `path` against `base` (any thread).  On
 * success *adapter is new and *ident the identity of what was read.
 * Returns 0, or the HTTP status (404, 422, 500) with a message. */
unsigned lokrd_adapter_read(const lokr_base *base, const char *path, lokr_adapter **adapter,
                            lokrd_file_ident *ident, char *msg, size_t msglen);

/* Summary of a loaded adapter. */
void lokrd_summary_of(const lokr_adapter *a, lokrd_summary *s);
/* Summary from a file's header alone (no validation; any thread).  Returns
 * 0, or -1 with a message. */
int lokrd_summary_scan(const char *path, lokrd_summary *s, char *msg, size_t msglen);

#endif
