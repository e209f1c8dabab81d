/*
 * progress.h - a one-line progress bar on stderr for long tool runs.
 *
 * Drawn only when stderr is a terminal (and TERM is not "dumb"), so logs,
 * pipes and tests never see it.  Redraws at most ten times a second.  A tool
 * that prints to stdout while a bar is shown calls progress_clear first, so
 * the bar and the output do not mix on a shared terminal.  No globals: the
 * caller owns the struct.
 */
#ifndef LOKR_TOOLS_PROGRESS_H
#define LOKR_TOOLS_PROGRESS_H

#include <stdint.h>

struct progress {
	int enabled;      /* stderr is a terminal */
	const char *what; /* borrowed label, e.g. "extract" */
	uint64_t total;   /* units of work (any unit, e.g. weight elements) */
	uint64_t done;    /* units finished */
	double t0;        /* start, seconds (monotonic) */
	double drawn_at;  /* last redraw, seconds; < 0 when nothing is shown */
	int shown;        /* a bar is on the screen */
	int stdout_tty;   /* stdout is a terminal too (clear before printing) */
};

void progress_init(struct progress *p, const char *what, uint64_t total);
/* Record `done` units and the item being worked on (borrowed, may be NULL). */
void progress_update(struct progress *p, uint64_t done, const char *item);
/* Erase the bar before printing to stdout, if stdout is a terminal (it is
 * redrawn by the next update). */
void progress_clear(struct progress *p);
/* Erase the bar for good. */
void progress_end(struct progress *p);

#endif
