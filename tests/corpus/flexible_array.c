/* Structs ending in a flexible array member. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msg { int len; char data[]; };
struct ints { size_t n; int items[]; };

static struct ints *make_ints(size_t n) {
    struct ints *v = malloc(sizeof(struct ints) + n * sizeof(int)); /* expect: struct ints */
    v->n = n;
    for (size_t i = 0; i < n; i++) v->items[i] = (int)(i * 2);
    return v;
}

int main(void) {
    const char *text = "flexible";
    struct msg *m = malloc(sizeof(struct msg) + strlen(text) + 1); /* expect: struct msg */
    m->len = (int)strlen(text);
    memcpy(m->data, text, strlen(text) + 1);
    struct msg *fixed = malloc(sizeof *fixed + 32); /* expect: struct msg */
    fixed->len = 0;
    struct ints *v = make_ints(10);
    printf("%s %d %d %zu\n", m->data, m->len, v->items[9], v->n + (size_t)fixed->len);
    return 0;
}
