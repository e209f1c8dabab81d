/*
 * tuned.h - a base model and a fine-tuned copy of it, layer by layer: the
 * shared front half of `lokr extract` and `lokr factorize-report`.
 *
 * Opens both with lokr_base_load, selects the base layers to look at
 * (--layers globs, fnmatch on the dotted layer name) and computes
 * dW = tuned - base for one layer after checking that the tuned model has
 * the layer with the same shape and that both weights are finite.  Every
 * failure prints one line on stderr naming the file, the layer and the
 * shapes, and returns nonzero.
 */
#ifndef LOKR_TOOLS_TUNED_H
#define LOKR_TOOLS_TUNED_H

#include <stddef.h>
#include <stdint.h>

#include "lokr.h"

struct tuned_pair {
	const char *base_path, *tuned_path; /* borrowed */
	lokr_base *base, *tuned;            /* owned */
};

/* Returns 0, or 1 after printing the error with `cmd` as prefix. */
int tuned_open(struct tuned_pair *p, const char *cmd, const char *base_path,
               const char *tuned_path);
void tuned_close(struct tuned_pair *p);

/* Does layer `name` match any of the nglob patterns (all match when 0)? */
int tuned_layer_selected(const char *name, char *const *globs, size_t nglob);

/* dw (out x in*kk floats) = tuned - base for base layer `i`; *rel_change
 * gets |dW|/|W0| (|dW| when W0 = 0), *dnorm |dW|.  Returns 0, or 1 after
 * printing the error (missing layer, shape mismatch, non-finite value). */
int tuned_delta(const struct tuned_pair *p, const char *cmd, size_t i, float *dw,
                double *rel_change, double *dnorm);

/* Count tuned layers that the base does not have (reported, not fatal). */
size_t tuned_extra_layers(const struct tuned_pair *p);

/* Argument helpers shared by the two commands.  Each prints
 * "lokr CMD: FLAG: ..." and returns 2 (usage error) on a bad value. */
int tuned_parse_i64(const char *cmd, const char *flag, const char *s, int64_t *out);
int tuned_parse_double(const char *cmd, const char *flag, const char *s, double *out);
/* Match argv[*i] against the valued options `flags` ("--x VALUE" or
 * "--x=VALUE"): 1 with *flag and *val set (and *i advanced past a separate
 * value), 0 when it is none of them, -1 when the value is missing. */
int tuned_opt(int argc, char **argv, int *i, const char *const *flags, size_t nflags,
              const char **flag, const char **val);

/* The options both commands take: --base, --tuned, --layers (repeatable)
 * and --min-rel-change.  globs is owned (tuned_args_free), its entries and
 * the paths are borrowed from argv. */
struct tuned_args {
	const char *base, *tuned;
	double min_rel; /* default 1e-6 */
	char **globs;
	size_t nglob;
};

/* Defaults and room for argc globs.  Returns 0, or 1 on out of memory. */
int tuned_args_init(struct tuned_args *t, int argc);
void tuned_args_free(struct tuned_args *t);

/* One valued option at argv[*i] (tuned_opt over `flags`): 0 with *flag and
 * *val set, or 2 after printing "unknown argument" / "needs a value". */
int tuned_args_next(const char *cmd, int argc, char **argv, int *i, const char *const *flags,
                    size_t nflags, const char **flag, const char **val);

/* Take `flag` if it is one of the shared options: 1 when taken (*rc = 0, or
 * 2 after printing a bad value), 0 when the caller must handle it. */
int tuned_args_take(struct tuned_args *t, const char *cmd, const char *flag, const char *val,
                    int *rc);

/* After tuned_open: count the selected layers, allocate *dw for the largest
 * (new, caller frees; NULL when every selected layer is empty) and set
 * *work to the sum of their elements (progress).  Prints a note when the
 * tuned model has layers the base does not.  Returns 0, or 1 after
 * printing the error (out of memory, no layer matches --layers). */
int tuned_prepare(const struct tuned_pair *p, const char *cmd, const struct tuned_args *t,
                  uint64_t *work, float **dw);

/* "AxB" then the layer's kernel dims (l may be NULL): "AxBxKHxKW". */
void tuned_fmt_dims(char *buf, size_t len, int64_t a, int64_t b, const lokr_layer *l);
/* The layer's shape as "(out, in, kh, kw)". */
void tuned_fmt_shape(char *buf, size_t len, const lokr_layer *l);

/* The file's module name: "lycoris_" + name with '.' -> '_' (new string). */
char *tuned_module_name(const char *layer);

#endif
