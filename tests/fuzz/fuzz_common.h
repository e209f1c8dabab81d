/*
 * fuzz_common.h - what the fuzz targets share besides the replay driver: a
 * property check that aborts (so libFuzzer and the replay both report it)
 * and the fixture base model the adapter and request targets fuzz against.
 * Define FUZZ_NAME (a string) before including.
 */
#ifndef LOKR_TESTS_FUZZ_COMMON_H
#define LOKR_TESTS_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>

#include "lokr.h"

#ifndef FUZZ_NAME
#error "define FUZZ_NAME before including fuzz_common.h"
#endif
#ifndef SRCDIR
#define SRCDIR "."
#endif

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, FUZZ_NAME ": property failed: %s (line %d)\n", #cond,      \
			        __LINE__);                                                         \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* The fixture base (or $LOKR_FUZZ_BASE) the target fuzzes against, loaded
 * once by load_base(); exits 2 if it cannot be loaded.  The replay main()
 * frees it so LeakSanitizer stays quiet. */
static lokr_base *base;

static void load_base(void)
{
	if (base)
		return;
	const char *env = getenv("LOKR_FUZZ_BASE");
	const char *path = env ? env : SRCDIR "/tests/data/fixtures/base.safetensors";
	lokr_error e = {0};
	if (lokr_base_load(&path, 1, &base, &e)) {
		fprintf(stderr, FUZZ_NAME ": cannot load the base %s: %s\n", path, e.msg);
		exit(2);
	}
}

#endif /* LOKR_TESTS_FUZZ_COMMON_H */
