/*
 * cmd_factorize.c - `lokr factorize`: prints LyCORIS's split of a dimension
 * (lokr_factorize, lycoris-format.md 3.4), or the W1/W2 shapes LyCORIS would
 * choose for an OUT x IN layer (3.4, 3.5).
 */
#include <stdio.h>
#include <string.h>

#include "cmds.h"
#include "lokr.h"

static const char help[] =
    "usage: lokr factorize DIM [--factor F]\n"
    "       lokr factorize OUT IN [--factor F] [--unbalanced]\n"
    "\n"
    "LyCORIS's factorization(dim, factor): the split small * large == DIM that\n"
    "LoKr uses, small <= large.  F is the `factor` network arg: -1 (default) is\n"
    "automatic (the most balanced split), F > 0 caps the small factor at F (if F\n"
    "divides DIM the split is exactly (min(F, DIM/F), max(F, DIM/F))).\n"
    "\n"
    "Output, one DIM:   \"<small> <large>\"        e.g. `lokr factorize 320` -> \"16 20\"\n"
    "Output, OUT IN:    two lines \"W1 <m1>x<n1>\" and \"W2 <m2>x<n2>\", the shapes of\n"
    "                   the Kronecker factors (a conv adds the kernel to W2).\n"
    "                   Balanced: W1 = out_small x in_small, W2 = out_large x in_large.\n"
    "                   --unbalanced (LyCORIS unbalanced_factorization) swaps the\n"
    "                   output pair: W1 = out_large x in_small, W2 = out_small x in_large.\n";

int lokr_cmd_factorize(int argc, char **argv)
{
	int64_t dims[2], factor = -1;
	int ndims = 0, unbalanced = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			fputs(help, stdout);
			return 0;
		} else if (!strcmp(a, "--factor") || !strncmp(a, "--factor=", 9)) {
			const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || lokr_tool_parse_i64(v, &factor))
				return lokr_tool_fail("factorize", 2, "--factor needs an integer");
		} else if (!strcmp(a, "--unbalanced")) {
			unbalanced = 1;
		} else if (ndims < 2 && (a[0] != '-' || (a[1] >= '0' && a[1] <= '9'))) {
			if (lokr_tool_parse_i64(a, &dims[ndims]) || dims[ndims] <= 0)
				return lokr_tool_fail("factorize", 2,
				                      "'%s' is not a positive dimension", a);
			ndims++;
		} else {
			return lokr_tool_fail("factorize", 2,
			                      "unexpected argument '%s' (see --help)", a);
		}
	}
	if (ndims == 0)
		return lokr_tool_fail("factorize", 2, "missing DIM (see --help)");
	if (ndims == 1 && unbalanced)
		return lokr_tool_fail("factorize", 2, "--unbalanced needs OUT and IN");

	int64_t small[2], large[2];
	for (int k = 0; k < ndims; k++)
		if (lokr_factorize(dims[k], factor, &small[k], &large[k]))
			return lokr_tool_fail("factorize", 1, "cannot factorize %lld",
			                      (long long)dims[k]);
	if (ndims == 1) {
		printf("%lld %lld\n", (long long)small[0], (long long)large[0]);
		return 0;
	}
	int64_t m1 = unbalanced ? large[0] : small[0], m2 = unbalanced ? small[0] : large[0];
	printf("W1 %lldx%lld\nW2 %lldx%lld\n", (long long)m1, (long long)small[1], (long long)m2,
	       (long long)large[1]);
	return 0;
}
