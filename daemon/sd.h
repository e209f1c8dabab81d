/*
 * sd.h - systemd integration, all optional (no-ops without libsystemd or
 * outside a systemd service): readiness and status notifications, the
 * watchdog interval, and the base segment kept in the service's file
 * descriptor store across restarts (FDSTORE=1, FDNAME=lokrd-base), so a
 * restart maps the sealed weights instead of reloading the files.
 */
#ifndef LOKRD_SD_H
#define LOKRD_SD_H

#include <stdint.h>

#define LOKRD_SD_BASE_FDNAME "lokrd-base"

/* sd_notify(0, state); ignored when not under systemd. */
void lokrd_sd_notify(const char *state);
/* Watchdog interval in microseconds for this process, or 0 when off. */
uint64_t lokrd_sd_watchdog_usec(void);
/* The base segment handed back by the fd store, or -1.  Other stored fds
 * are closed and removed from the store. */
int lokrd_sd_take_base_fd(void);
/* Hand the base segment to the fd store (a duplicate is sent). */
void lokrd_sd_store_base_fd(int fd);
/* Remove a stale base segment from the store. */
void lokrd_sd_forget_base_fd(void);

#endif
