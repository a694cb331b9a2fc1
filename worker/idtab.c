/* idtab.c: open-addressing id set with linear probing (see idtab.h). */
#include <stdlib.h>
#include <string.h>

#include "shared/util.h"
#include "worker/idtab.h"

/* An empty table (no allocation until the first id). */
void
idtab_init(struct idtab *t)
{
	memset(t, 0, sizeof *t);
}

/* Frees the arrays and leaves the table empty and reusable. */
void
idtab_free(struct idtab *t)
{
	free(t->ids);
	free(t->slots);
	memset(t, 0, sizeof *t);
}

/* The first 8 bytes of a SHA-1 are as good a hash as any. */
static size_t
id_hash(const unsigned char id[20])
{
	uint64_t h;
	memcpy(&h, id, sizeof h);
	return (size_t)h;
}

/* Doubles the slot array and reinserts every number. */
static void
grow_slots(struct idtab *t)
{
	size_t nslots = t->nslots ? t->nslots * 2 : 64;
	uint32_t *slots = xcalloc(nslots, sizeof *slots);

	for (size_t i = 0; i < t->n; i++) {
		size_t s = id_hash(t->ids[i]) & (nslots - 1);
		while (slots[s] != 0)
			s = (s + 1) & (nslots - 1);
		slots[s] = (uint32_t)(i + 1);
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
}

/* Linear probing from the id's hash to its slot or the first empty one. */
long
idtab_find(const struct idtab *t, const unsigned char id[20])
{
	if (t->nslots == 0)
		return -1;
	for (size_t s = id_hash(id) & (t->nslots - 1);; s = (s + 1) & (t->nslots - 1)) {
		uint32_t v = t->slots[s];
		if (v == 0)
			return -1;
		if (memcmp(t->ids[v - 1], id, 20) == 0)
			return (long)(v - 1);
	}
}

/* Appends the id under the next number, keeping the slots at most half full. */
size_t
idtab_put(struct idtab *t, const unsigned char id[20], bool *added)
{
	long found = idtab_find(t, id);
	if (found >= 0) {
		*added = false;
		return (size_t)found;
	}
	if (2 * (t->n + 1) > t->nslots)
		grow_slots(t);
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->ids = xrealloc(t->ids, t->cap * sizeof *t->ids);
	}
	memcpy(t->ids[t->n], id, 20);
	size_t s = id_hash(id) & (t->nslots - 1);
	while (t->slots[s] != 0)
		s = (s + 1) & (t->nslots - 1);
	t->slots[s] = (uint32_t)(t->n + 1);
	*added = true;
	return t->n++;
}
