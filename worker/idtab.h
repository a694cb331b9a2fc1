/* idtab.h: a set of 20-byte object ids numbered in insertion order, for the cook's tree
 * walk. Ids are SHA-1 outputs, so their first bytes are already a good hash. The ids sit
 * in one array by number, so a run of ids added together can be passed to a batched
 * query as is. */
#ifndef BV_WORKER_IDTAB_H
#define BV_WORKER_IDTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idtab {
	unsigned char (*ids)[20]; /* by number; moves when the table grows */
	size_t n, cap;
	uint32_t *slots; /* open addressing: number + 1, 0 = empty */
	size_t nslots; /* power of two, at least 2 * n */
};

void idtab_init(struct idtab *t);
void idtab_free(struct idtab *t);
/* The id's number, adding it when absent (*added then true). */
size_t idtab_put(struct idtab *t, const unsigned char id[20], bool *added);
/* The id's number, or -1. */
long idtab_find(const struct idtab *t, const unsigned char id[20]);

#endif
