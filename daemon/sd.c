/*
 * sd.c - the systemd glue of sd.h, on libsystemd's sd-daemon API.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "sd.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

void lokrd_sd_notify(const char *state)
{
	sd_notify(0, state);
}

uint64_t lokrd_sd_watchdog_usec(void)
{
	uint64_t usec = 0;
	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

int lokrd_sd_take_base_fd(void)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names);
	int found = -1;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;
		const char *name = names && names[i] ? names[i] : "";
		if (found < 0 && !strcmp(name, LOKRD_SD_BASE_FDNAME)) {
			found = fd;
		} else {
			lokrd_log(LOKRD_LOG_WARN, "closing unexpected fd %d (%s) from systemd", fd,
			          name);
			close(fd);
		}
	}
	if (names) {
		for (int i = 0; i < n; i++)
			free(names[i]);
		free(names);
	}
	return found;
}

void lokrd_sd_store_base_fd(int fd)
{
	if (!getenv("NOTIFY_SOCKET"))
		return;
	int rc = sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME=" LOKRD_SD_BASE_FDNAME, &fd, 1);
	if (rc > 0)
		lokrd_log(LOKRD_LOG_INFO, "base segment handed to systemd's fd store");
}

void lokrd_sd_forget_base_fd(void)
{
	sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" LOKRD_SD_BASE_FDNAME);
}

#else

void lokrd_sd_notify(const char *state)
{
	(void)state;
}

uint64_t lokrd_sd_watchdog_usec(void)
{
	return 0;
}

int lokrd_sd_take_base_fd(void)
{
	return -1;
}

void lokrd_sd_store_base_fd(int fd)
{
	(void)fd;
}

void lokrd_sd_forget_base_fd(void) {}

#endif
