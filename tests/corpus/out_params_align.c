/* Out-parameters, aligned allocators, reallocarray, nested fields. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>

struct slot { long key; struct slot *next; };
struct inner { struct slot *slots; int n; };
struct outer { int id; struct inner in; };
struct entry { int k; struct slot *s; };

static struct entry table[4];

static int make_slot(struct slot **out, size_t len) {
    *out = malloc(len); /* expect: struct slot */
    return *out != NULL;
}

int main(void) {
    struct slot *s = NULL;
    make_slot(&s, sizeof *s);
    s->key = 1;
    struct slot *al = NULL;
    if (posix_memalign((void **)&al, 64, sizeof *al)) return 1; /* expect: struct slot */
    al->key = 2;
    struct slot *aa = aligned_alloc(64, 64); /* expect: struct slot */
    struct outer *o = malloc(sizeof *o); /* expect: struct outer */
    o->in.n = 3;
    o->in.slots = reallocarray(NULL, o->in.n, sizeof(struct slot)); /* expect: struct slot */
    for (int i = 0; i < 4; i++) table[i].s = calloc(1, sizeof(struct slot)); /* expect: struct slot */
    o->in.slots[2].key = 5;
    table[3].s->key = 7;
    aa->key = 4;
    printf("%ld %ld %ld %ld %ld\n", s->key, al->key, o->in.slots[2].key, table[3].s->key, aa->key);
    return 0;
}
