/* Allocation wrappers not named in mcr.toml: the pass proves them (each
 * returns what malloc/calloc returned, sized by its own parameters) and
 * types their callers as if they called libc. A function that returns a
 * pointer past a header is no wrapper: its callers stay untyped. */
#include <stdio.h>
#include <stdlib.h>

struct buffer { char *data; size_t len; struct buffer *next; };
struct conn { int fd; struct buffer *out; };

static void *ck_malloc(size_t n) {
    void *p = malloc(n); /* expect: untyped */
    if (!p) { fprintf(stderr, "ck_malloc(%zu) failed\n", n); abort(); }
    return p;
}

static void *ck_calloc(size_t n, size_t s) {
    void *p = calloc(n > 0 ? n : 1, s); /* expect: untyped */
    if (!p) abort();
    return p;
}

static void *past_header(size_t n) {
    char *p = malloc(n + 16); /* expect: untyped */
    return p ? p + 16 : NULL;
}

int main(void) {
    struct conn *c = ck_malloc(sizeof(struct conn)); /* expect: struct conn */
    c->fd = 3;
    c->out = ck_calloc(4, sizeof(struct buffer)); /* expect: struct buffer */
    c->out[3].len = 7;
    struct buffer *b = past_header(sizeof *b); /* not an allocation site */
    b->len = 1;
    printf("%d %zu %zu\n", c->fd, c->out[3].len, b->len);
    return 0;
}
