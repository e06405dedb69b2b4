/* Allocation wrappers nobody declared (no mcr.toml): they are defined in
 * another unit, wrappers.lib.c, which mcr-pass proves to be wrappers; the
 * calls here are typed from their own evidence and retyped at run time
 * because that unit's proof says so. A function of the same prototype that
 * is not a wrapper (it returns past a header) leaves its object untyped.
 * Expected: 100 struct wnode (xalloc), 1 struct wpair of 160 bytes
 * (xcalloc2, then xrealloc2), 1 untyped object of 48 bytes (with_header),
 * 20 struct wnode (same-unit static wrapper in wrappers.lib.c: make_nodes). */
#include "hf.h"

struct wnode {
    long key;
    struct wnode *next;
    char tag[8];
};
struct wpair {
    int a, b;
};

void *xalloc(size_t n);
void *xcalloc2(size_t n, size_t s);
void *xrealloc2(void *q, size_t n);
void *with_header(size_t n);
struct wnode *make_nodes(int n);

struct wnode *head, *more;
struct wpair *pairs;
struct wnode *behind_header;

static HF_NOINLINE void build(void) {
    for (int i = 0; i < 100; i++) {
        struct wnode *n = xalloc(sizeof(struct wnode));
        n->key = i;
        n->next = head;
        head = n;
    }
    pairs = xcalloc2(10, sizeof(struct wpair));
    pairs = xrealloc2(pairs, 20 * sizeof(struct wpair));
    behind_header = with_header(sizeof(struct wnode));
    more = make_nodes(20);
}

int main(void) {
    build();
    hf_ready_and_block();
}
