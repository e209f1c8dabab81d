/*
 * shm.c - the sealed-memfd base store of shm.h (reliability.md §6).
 *
 * memfd rather than shm_open: no /dev/shm size limit (Docker's 64 MB), the
 * pages are charged to our cgroup, and only memfds can be sealed.  The
 * writable mapping is unmapped before F_SEAL_WRITE (which fails with EBUSY
 * while one exists), then the fd is mapped again read-only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

#define SEALS_REQUIRED (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

int lokrd_shm_attach(lokrd_shm *s, lokr_base **base, char *err, size_t errlen)
{
	int seals = fcntl(s->fd, F_GET_SEALS);
	if (seals < 0 || (seals & SEALS_REQUIRED) != SEALS_REQUIRED) {
		snprintf(err, errlen, "base segment fd %d is not sealed (seals %#x)", s->fd,
		         seals < 0 ? 0 : seals);
		return -1;
	}
	struct stat st;
	if (fstat(s->fd, &st) || st.st_size <= 0) {
		snprintf(err, errlen, "base segment: fstat: %s", strerror(errno));
		return -1;
	}
	s->len = (uint64_t)st.st_size;
	void *map = mmap(NULL, s->len, PROT_READ, MAP_SHARED, s->fd, 0);
	if (map == MAP_FAILED) {
		snprintf(err, errlen, "base segment: mmap %llu bytes: %s",
		         (unsigned long long)s->len, strerror(errno));
		return -1;
	}
	/* An optimisation only: the host decides whether shmem gets huge pages. */
	madvise(map, s->len, MADV_HUGEPAGE);
	s->map = map;
	lokr_error e = {0};
	int rc = lokr_base_attach(s->map, s->len, base, &e);
	if (rc) {
		snprintf(err, errlen, "base segment failed verification: %s",
		         e.msg[0] ? e.msg : lokr_strerror(rc));
		munmap(map, s->len);
		s->map = NULL;
		return -1;
	}
	if (!s->name[0])
		snprintf(s->name, sizeof s->name, "memfd:lokrd-base");
	return 0;
}

int lokrd_shm_load(const char *const *paths, size_t npaths, lokrd_shm *s, lokr_base **base,
                   char *err, size_t errlen)
{
	lokr_base *priv = NULL;
	lokr_error e = {0};
	int rc = lokr_base_load(paths, npaths, &priv, &e);
	if (rc) {
		snprintf(err, errlen, "%s", e.msg[0] ? e.msg : lokr_strerror(rc));
		return -1;
	}
	uint64_t len = lokr_base_blob_size(priv);
	s->fd = memfd_create("lokrd-base", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (s->fd < 0) {
		snprintf(err, errlen, "memfd_create: %s", strerror(errno));
		goto fail;
	}
	if (ftruncate(s->fd, (off_t)len)) {
		snprintf(err, errlen, "memfd: ftruncate %llu bytes: %s", (unsigned long long)len,
		         strerror(errno));
		goto fail;
	}
	void *w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
	if (w == MAP_FAILED) {
		snprintf(err, errlen, "memfd: mmap %llu bytes: %s", (unsigned long long)len,
		         strerror(errno));
		goto fail;
	}
	rc = lokr_base_blob_write(priv, w, len);
	munmap(w, len);
	lokr_base_free(priv);
	priv = NULL;
	if (rc) {
		snprintf(err, errlen, "writing the base blob: %s", lokr_strerror(rc));
		goto fail;
	}
	if (fcntl(s->fd, F_ADD_SEALS, SEALS_REQUIRED)) {
		snprintf(err, errlen, "memfd: sealing: %s", strerror(errno));
		goto fail;
	}
	snprintf(s->name, sizeof s->name, "memfd:lokrd-base");
	if (lokrd_shm_attach(s, base, err, errlen))
		goto fail;
	return 0;
fail:
	lokr_base_free(priv);
	lokrd_shm_close(s);
	return -1;
}

int lokrd_shm_open_base(const char *const *paths, size_t npaths, int stored_fd, lokrd_shm *s,
                        lokr_base **base, int *reused, char *err, size_t errlen)
{
	*reused = 0;
	if (stored_fd >= 0) {
		char why[1024] = "";
		s->fd = stored_fd;
		if (lokrd_shm_attach(s, base, why, sizeof why) == 0) {
			char now[8192];
			lokr_error e = {0};
			if (lokr_base_source_identity(paths, npaths, now, sizeof now, &e) == 0 &&
			    !strcmp(now, lokr_base_identity(*base))) {
				*reused = 1;
				return 0;
			}
			snprintf(why, sizeof why, "the base files changed since it was made");
			lokr_base_free(*base);
			*base = NULL;
		}
		lokrd_log(LOKRD_LOG_WARN, "stored base segment not used: %s; loading the files",
		          why);
		lokrd_shm_close(s);
	}
	return lokrd_shm_load(paths, npaths, s, base, err, errlen);
}

void lokrd_shm_close(lokrd_shm *s)
{
	if (s->map)
		munmap((void *)s->map, s->len);
	if (s->fd >= 0)
		close(s->fd);
	s->map = NULL;
	s->fd = -1;
	s->len = 0;
}
