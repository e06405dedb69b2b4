/* A chained hash table of structs: a global table descriptor, its bucket
 * array, 200 entries with strdup'd keys. 10 entries are unlinked from
 * their chains without being freed (leaked, and their keys with them).
 * Expected: htable 1 reachable; bucket array (site BUCKETS) 1 reachable;
 * hentry reachable 190, unreachable 10; keys (site KEYS, untyped)
 * reachable 190, unreachable 10. */
#include "hf.h"

struct hentry {
    char *key;
    int value;
    struct hentry *next;
};

struct htable {
    size_t nbuckets;
    size_t count;
    struct hentry **buckets;
};

struct htable *table;

static unsigned hash(const char *s) {
    unsigned h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h;
}

static HF_NOINLINE void put(struct htable *t, const char *key, int value) {
    struct hentry *e = malloc(sizeof(struct hentry));
    e->key = strdup(key); /* SITE:KEYS */
    e->value = value;
    unsigned b = hash(key) % t->nbuckets;
    e->next = t->buckets[b];
    t->buckets[b] = e;
    t->count++;
}

/* Unlinks the entry without freeing it. */
static HF_NOINLINE void forget(struct htable *t, const char *key) {
    struct hentry **pp = &t->buckets[hash(key) % t->nbuckets];
    for (; *pp; pp = &(*pp)->next)
        if (!strcmp((*pp)->key, key)) {
            *pp = (*pp)->next;
            t->count--;
            return;
        }
}

int main(void) {
    table = malloc(sizeof *table);
    table->nbuckets = 64;
    table->count = 0;
    table->buckets = calloc(table->nbuckets, sizeof(struct hentry *)); /* SITE:BUCKETS */
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        put(table, key, i);
    }
    for (int i = 0; i < 200; i += 20) {
        snprintf(key, sizeof key, "key-%d", i);
        forget(table, key);
    }
    hf_ready_and_block();
}
