/*
 * shm.c - the sealed-memfd base store of shm.h (reliability.md §6).
 *
 * memfd rather than shm_open: no /dev/shm size limit (Docker's 64 MB), the
 * pages are charged to our cgroup, and only memfds can be sealed.  The
 * writable mapping is unmapped before F_SEAL_WRITE (which fails with EBUSY
 * while one exists), then the fd is mapped again read-only.
 *
 * The named form (--shm-name, lokrd_shm_open_base) lets independent
 * processes or containers share one copy.  It has no seals, so two things
 * stand in for them: a reader holds flock(LOCK_SH) while it verifies, and
 * the creator holds LOCK_EX from creation until the blob (whose checksum is
 * written last) is complete, so nobody verifies a half-written segment; a
 * creator that died mid-write leaves a segment that fails the checksum,
 * which the next starter unlinks and rebuilds.  Space is reserved with
 * posix_fallocate so a full /dev/shm is an error, not a SIGBUS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "shm.h"

#define SEALS_REQUIRED (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

int lokrd_shm_attach(lokrd_shm *s, lokr_base **base, char *err, size_t errlen)
{
	int seals = s->named ? SEALS_REQUIRED : fcntl(s->fd, F_GET_SEALS);
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

/* ------------------------------------------------------------ named */

static int identity_matches(const char *const *paths, size_t npaths, const lokr_base *b)
{
	char now[8192];
	lokr_error e = {0};
	return lokr_base_source_identity(paths, npaths, now, sizeof now, &e) == 0 &&
	       !strcmp(now, lokr_base_identity(b));
}

/* Try the existing segment `name`: 1 when there is none, 0 when it was
 * attached (s filled, *base new), -1 when it must not be used (why set). */
static int named_try_existing(const char *name, const char *const *paths, size_t npaths,
                              lokrd_shm *s, lokr_base **base, char *why, size_t whylen)
{
	/* A creator opens with O_EXCL, then takes LOCK_EX: a reader that slips
	 * in between sees size 0 and waits (at most ~5 s) for it to grow. */
	for (int tries = 0;; tries++) {
		int fd = shm_open(name, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0) {
			if (errno == ENOENT)
				return 1;
			snprintf(why, whylen, "shm_open: %s", strerror(errno));
			return -1;
		}
		int rc;
		while ((rc = flock(fd, LOCK_SH)) && errno == EINTR)
			;
		struct stat st;
		if (rc || fstat(fd, &st)) {
			snprintf(why, whylen, "flock/fstat: %s", strerror(errno));
			close(fd);
			return -1;
		}
		if (st.st_size == 0 && tries < 100) {
			close(fd);
			struct timespec ts = {0, 50 * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		s->fd = fd;
		s->named = 1;
		snprintf(s->name, sizeof s->name, "%s", name);
		if (lokrd_shm_attach(s, base, why, whylen)) {
			lokrd_shm_close(s);
			return -1;
		}
		if (!identity_matches(paths, npaths, *base)) {
			snprintf(why, whylen,
			         "it was made from other base files (or they changed since)");
			lokr_base_free(*base);
			*base = NULL;
			lokrd_shm_close(s);
			return -1;
		}
		flock(fd, LOCK_UN);
		return 0;
	}
}

/* Create `name` (O_EXCL) and fill it with the blob of `priv`.  Returns 0
 * (s->fd read-only, not yet mapped), 1 when the name exists (someone was
 * faster), -1 with err set. */
static int named_create(const char *name, const lokr_base *priv, lokrd_shm *s, char *err,
                        size_t errlen)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0440);
	if (fd < 0) {
		if (errno == EEXIST)
			return 1;
		snprintf(err, errlen, "shm_open %s: %s", name, strerror(errno));
		return -1;
	}
	flock(fd, LOCK_EX);
	uint64_t len = lokr_base_blob_size(priv);
	void *w = MAP_FAILED;
	int rc = posix_fallocate(fd, 0, (off_t)len);
	if (rc) {
		snprintf(err, errlen,
		         "shm segment %s: reserving %llu bytes: %s (is /dev/shm large enough? "
		         "docker: --shm-size)",
		         name, (unsigned long long)len, strerror(rc));
		goto fail;
	}
	w = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (w == MAP_FAILED) {
		snprintf(err, errlen, "shm segment %s: mmap %llu bytes: %s", name,
		         (unsigned long long)len, strerror(errno));
		goto fail;
	}
	rc = lokr_base_blob_write(priv, w, len);
	munmap(w, len);
	if (rc) {
		snprintf(err, errlen, "writing the base blob: %s", lokr_strerror(rc));
		goto fail;
	}
	/* Keep only a read-only descriptor (inherited by --workers); closing
	 * the writable one releases LOCK_EX for the waiting readers. */
	char self[64];
	snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
	int ro = open(self, O_RDONLY | O_CLOEXEC);
	if (ro >= 0) {
		close(fd);
		fd = ro;
	} else {
		flock(fd, LOCK_UN);
	}
	s->fd = fd;
	s->named = 1;
	snprintf(s->name, sizeof s->name, "%s", name);
	return 0;
fail:
	shm_unlink(name);
	close(fd);
	return -1;
}

static int named_open(const char *name, const char *const *paths, size_t npaths, lokrd_shm *s,
                      lokr_base **base, int *reused, char *err, size_t errlen)
{
	lokr_base *priv = NULL;
	int rc = -1;
	for (int round = 0; round < 4; round++) {
		char why[1024] = "";
		int r = named_try_existing(name, paths, npaths, s, base, why, sizeof why);
		if (r == 0) {
			*reused = LOKRD_SHM_NAMED_HIT;
			rc = 0;
			goto out;
		}
		if (r < 0) {
			lokrd_log(
			    LOKRD_LOG_WARN,
			    "shm segment %s rejected: %s; unlinking it and building a new one",
			    name, why);
			if (shm_unlink(name) && errno != ENOENT) {
				snprintf(err, errlen, "shm segment %s: cannot unlink it: %s", name,
				         strerror(errno));
				goto out;
			}
		}
		if (!priv) {
			lokr_error e = {0};
			int lr = lokr_base_load(paths, npaths, &priv, &e);
			if (lr) {
				snprintf(err, errlen, "%s", e.msg[0] ? e.msg : lokr_strerror(lr));
				goto out;
			}
		}
		r = named_create(name, priv, s, err, errlen);
		if (r < 0)
			goto out;
		if (r == 0) {
			lokr_base_free(priv);
			priv = NULL;
			if (lokrd_shm_attach(s, base, err, errlen)) {
				lokrd_shm_close(s);
				goto out;
			}
			lokrd_log(LOKRD_LOG_INFO, "shm segment %s created (%llu bytes, mode 0440)",
			          name, (unsigned long long)s->len);
			*reused = LOKRD_SHM_LOADED;
			rc = 0;
			goto out;
		}
		/* r == 1: another starter created it meanwhile; attach to theirs. */
	}
	snprintf(err, errlen, "shm segment %s: kept being replaced while starting", name);
out:
	lokr_base_free(priv);
	return rc;
}

/* ------------------------------------------------------------ either */

int lokrd_shm_open_base(const char *const *paths, size_t npaths, int stored_fd,
                        const char *shm_name, lokrd_shm *s, lokr_base **base, int *reused,
                        char *err, size_t errlen)
{
	*reused = LOKRD_SHM_LOADED;
	if (shm_name) {
		if (stored_fd >= 0)
			close(stored_fd);
		return named_open(shm_name, paths, npaths, s, base, reused, err, errlen);
	}
	if (stored_fd >= 0) {
		char why[1024] = "";
		s->fd = stored_fd;
		if (lokrd_shm_attach(s, base, why, sizeof why) == 0) {
			if (identity_matches(paths, npaths, *base)) {
				*reused = LOKRD_SHM_FDSTORE;
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
	s->named = 0;
}
