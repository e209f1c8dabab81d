/*
 * replay_main.h - the replay driver shared by the fuzz targets: without
 * libFuzzer (make check), each target's main() feeds the files given on the
 * command line, or every file of its default corpus directories, to
 * LLVMFuzzerTestOneInput.
 *
 * Each input is passed in an exact-size heap copy so that ASan reports a
 * read past its end.  Included once by each tests/fuzz/fuzz_*.c after its
 * LLVMFuzzerTestOneInput, under #ifndef LOKR_LIBFUZZER.
 */
#ifndef LOKR_TESTS_FUZZ_REPLAY_MAIN_H
#define LOKR_TESTS_FUZZ_REPLAY_MAIN_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void *replay_realloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		fputs("fuzz replay: out of memory\n", stderr);
		abort();
	}
	return q;
}

/* Read `path` whole and run it.  Returns 0, or -1 when it cannot be opened. */
static int replay_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		perror(path);
		return -1;
	}
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			buf = replay_realloc(buf, cap);
		}
		size_t r = fread(buf + len, 1, cap - len, fp);
		if (r == 0)
			break;
		len += r;
	}
	fclose(fp);
	uint8_t *exact = replay_realloc(NULL, len ? len : 1);
	if (len)
		memcpy(exact, buf, len);
	free(buf);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

/* Replay argv[1..] (files or directories; hidden files skipped), or the
 * ndef directories in def when there are no arguments.  Returns the number
 * of inputs run, or -1 after perror when a path cannot be read. */
static int replay_args(int argc, char **argv, const char *const *def, int ndef)
{
	const char *const *args = (const char *const *)argv + 1;
	int nargs = argc - 1;
	if (nargs == 0) {
		args = def;
		nargs = ndef;
	}
	int files = 0;
	for (int i = 0; i < nargs; i++) {
		struct stat st;
		if (stat(args[i], &st)) {
			perror(args[i]);
			return -1;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (replay_file(args[i]))
				return -1;
			files++;
			continue;
		}
		DIR *d = opendir(args[i]);
		if (!d) {
			perror(args[i]);
			return -1;
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof path, "%s/%s", args[i], de->d_name);
			if (replay_file(path)) {
				closedir(d);
				return -1;
			}
			files++;
		}
		closedir(d);
	}
	return files;
}

#endif
