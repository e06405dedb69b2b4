/* A vector growing with realloc. */
#include <stdio.h>
#include <stdlib.h>

struct entry { int key; int val; };
struct vec { struct entry *items; size_t len, cap; };

static void push(struct vec *v, int k) {
    if (v->len == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 2;
        v->items = realloc(v->items, v->cap * sizeof *v->items); /* expect: struct entry */
    }
    v->items[v->len].key = k;
    v->items[v->len].val = k * 3;
    v->len++;
}

int main(void) {
    struct vec v = {0};
    for (int i = 0; i < 37; i++) push(&v, i);
    struct entry *e = NULL;
    e = realloc(e, 3 * sizeof(struct entry)); /* expect: struct entry */
    e[2].val = 7;
    long s = 0;
    for (size_t i = 0; i < v.len; i++) s += v.items[i].val;
    printf("%zu %zu %ld %d\n", v.len, v.cap, s, e[2].val);
    return 0;
}
