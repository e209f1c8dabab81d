/*
 * shm.h - the base model in shared memory: a sealed memfd holding the blob
 * of lokr_base_blob_write (magic, version, source identity, layer table,
 * checksum, f32 data), mapped read-only by every serving process.
 *
 * The seals (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) make
 * the content immutable for everyone, including us, so a process that
 * inherits or receives the fd can trust the size after checking the seals,
 * and lokr_base_attach verifies the content before any layer is used.
 *
 * The optional named form (--shm-name) is a POSIX shm_open segment shared
 * by independent lokrd processes or containers.  It cannot be sealed, so
 * it is trusted only after lokr_base_attach verified it (magic, version,
 * bounds, checksum) and its source identity matched our --base files;
 * anything else is unlinked and rebuilt.
 */
#ifndef LOKRD_SHM_H
#define LOKRD_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "lokr.h"

typedef struct lokrd_shm {
	int fd;          /* the memfd, -1 when none */
	const void *map; /* read-only MAP_SHARED mapping, NULL when not mapped */
	uint64_t len;    /* bytes */
	int named;       /* 1: a POSIX named segment (not sealed), 0: a sealed memfd */
	char name[256];  /* "memfd:lokrd-base" or the shm name (what /v1/model reports) */
} lokrd_shm;

/* How lokrd_shm_open_base got its base. */
enum {
	LOKRD_SHM_LOADED = 0,    /* read the files into a new segment */
	LOKRD_SHM_FDSTORE = 1,   /* re-attached the memfd from systemd's fd store */
	LOKRD_SHM_NAMED_HIT = 2, /* attached a named segment another process made */
};

#define LOKRD_SHM_INIT                                                                             \
	{                                                                                          \
		.fd = -1                                                                           \
	}

/* Load the base files, write them into a new sealed memfd and attach to it
 * (the private copy is freed again).  *base is new and borrows s->map.
 * Returns 0, or -1 with a message in err. */
int lokrd_shm_load(const char *const *paths, size_t npaths, lokrd_shm *s, lokr_base **base,
                   char *err, size_t errlen);

/* Map s->fd read-only after checking its seals (memfd; skipped when
 * s->named) and size, and attach (which verifies the blob).  Used by
 * processes that inherit or receive the fd. */
int lokrd_shm_attach(lokrd_shm *s, lokr_base **base, char *err, size_t errlen);

/* Like lokrd_shm_load, but first try `stored_fd` (>= 0: a segment kept by
 * systemd's fd store): it is used only if it verifies and its source
 * identity (paths, sizes, mtimes, inodes) matches the files now; otherwise
 * it is closed and the files are loaded.
 * With `shm_name` (non-NULL, validated by options.c, "/"-prefixed) the
 * named segment replaces the memfd: an existing one is opened read-only and
 * used under the same two checks; one that fails them is unlinked and a
 * fresh one created (O_CREAT | O_EXCL, mode 0440, filled under an flock so
 * concurrent starters wait rather than read it half-written).  stored_fd
 * is then closed unused.  *reused gets one of LOKRD_SHM_*. */
int lokrd_shm_open_base(const char *const *paths, size_t npaths, int stored_fd,
                        const char *shm_name, lokrd_shm *s, lokr_base **base, int *reused,
                        char *err, size_t errlen);

/* Unmap and close (after every base attached to it is freed). */
void lokrd_shm_close(lokrd_shm *s);

#endif
