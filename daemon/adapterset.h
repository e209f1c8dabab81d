/*
 * adapterset.h - the "adapters" member of apply and merge requests:
 * [{"id": "ink", "multiplier": 1.0}, ...], parsed, then resolved through
 * the registry into versions the request holds until it ends.
 */
#ifndef LOKRD_ADAPTERSET_H
#define LOKRD_ADAPTERSET_H

#include <jansson.h>
#include <stddef.h>

#include "lokr.h"
#include "registry.h"

typedef struct lokrd_set_item {
	char id[LOKRD_ID_MAX + 1];
	float multiplier;
	lokrd_ver *ver; /* held reference once resolved */
} lokrd_set_item;

typedef struct lokrd_set lokrd_set;
typedef void (*lokrd_set_cb)(void *arg, lokrd_set *s);

struct lokrd_set {
	size_t n;
	lokrd_set_item *items;  /* owned */
	lokr_adapter_ref *refs; /* owned; filled when resolution succeeds */
	/* resolution */
	size_t pending;
	unsigned status; /* 200, or the first failure's status */
	char code[32];
	char msg[768];
	lokrd_set_cb cb;
	void *arg;
};

/* Parse `arr` (NULL = empty set).  Returns 0, or -1 with a 400 message. */
int lokrd_set_parse(const json_t *arr, int max, lokrd_set *s, char *err, size_t errlen);
/* Resolve every id; calls cb exactly once when all lookups ended
 * (possibly before returning).  s->status tells the outcome. */
void lokrd_set_resolve(lokrd_set *s, lokrd_registry *reg, lokrd_set_cb cb, void *arg);
/* Release the versions and memory (loop thread). */
void lokrd_set_free(lokrd_set *s);
/* "a,b,c" of the ids, for the request log. */
void lokrd_set_ids(const lokrd_set *s, char *buf, size_t len);

#endif
