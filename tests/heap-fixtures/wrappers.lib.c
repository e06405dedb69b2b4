/* The other unit of the wrappers fixture: allocation wrappers of several
 * shapes, none declared in mcr.toml. */
#include <stdio.h>
#include <stdlib.h>

struct wnode {
    long key;
    struct wnode *next;
    char tag[8];
};

/* Not the libc prototype (an out-parameter): a wrapper only through the
 * ones below, which call it with their own size (redis's
 * ztrymalloc_usable). */
static void *try_alloc(size_t n, size_t *usable) {
    void *p = malloc(n > 0 ? n : sizeof(long));
    if (!p) return NULL;
    if (usable) *usable = n;
    return p;
}

void *xalloc(size_t n) {
    void *p = try_alloc(n, NULL);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

void *xcalloc2(size_t n, size_t s) {
    void *p = calloc(n, s);
    if (!p) abort();
    return p;
}

void *xrealloc2(void *q, size_t n) {
    void *p = realloc(q, n);
    if (!p && n) abort();
    return p;
}

/* Not a wrapper: the caller gets a pointer past a header. */
void *with_header(size_t n) {
    char *p = malloc(n + 16);
    return p + 16;
}

/* A static wrapper, called in this unit only. */
static void *node_alloc(size_t n) {
    return xalloc(n);
}

struct wnode *make_nodes(int n) {
    struct wnode *h = NULL;
    for (int i = 0; i < n; i++) {
        struct wnode *x = node_alloc(sizeof *x);
        x->key = i;
        x->next = h;
        h = x;
    }
    return h;
}
