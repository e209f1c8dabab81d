/*
 * progress.c - the stderr progress bar of progress.h: "\r", a bar, counts,
 * elapsed time and the current item, cut to the terminal width.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 24

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int term_width(void)
{
	struct winsize ws;
	if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
		return ws.ws_col;
	return 80;
}

void progress_init(struct progress *p, const char *what, uint64_t total)
{
	memset(p, 0, sizeof *p);
	const char *term = getenv("TERM");
	p->enabled = isatty(STDERR_FILENO) && !(term && !strcmp(term, "dumb"));
	p->stdout_tty = isatty(STDOUT_FILENO);
	p->what = what;
	p->total = total;
	p->t0 = now();
	p->drawn_at = -1;
}

void progress_update(struct progress *p, uint64_t done, const char *item)
{
	p->done = done;
	if (!p->enabled)
		return;
	double t = now();
	if (p->shown && t - p->drawn_at < 0.1 && done < p->total)
		return;
	double frac = p->total ? (double)done / (double)p->total : 1.0;
	if (frac > 1)
		frac = 1;
	char bar[BAR_WIDTH + 1];
	int fill = (int)(frac * BAR_WIDTH + 0.5);
	for (int i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '#' : '.';
	bar[BAR_WIDTH] = 0;
	char line[512];
	int n = snprintf(line, sizeof line, "%s [%s] %3.0f%% %6.1fs  %s", p->what ? p->what : "",
	                 bar, frac * 100, t - p->t0, item ? item : "");
	if (n < 0)
		return;
	int w = term_width() - 1;
	if (n > w)
		line[w] = 0;
	fprintf(stderr, "\r\033[K%s", line);
	fflush(stderr);
	p->shown = 1;
	p->drawn_at = t;
}

void progress_clear(struct progress *p)
{
	/* only a terminal shared with stdout needs the bar out of the way */
	if (!p->enabled || !p->shown || !p->stdout_tty)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	p->shown = 0;
}

void progress_end(struct progress *p)
{
	if (p->enabled && p->shown) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
		p->shown = 0;
	}
	p->enabled = 0;
}
