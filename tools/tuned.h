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

/* The file's module name: "lycoris_" + name with '.' -> '_' (new string). */
char *tuned_module_name(const char *layer);

#endif
