/* Cycles: a ring of 5 nodes reachable from a global, a ring of 3 nodes and
 * a node pointing to itself that nothing else points to (leaks a
 * reference count would never find).
 * Expected: cnode reachable 5, unreachable 4. */
#include "hf.h"

struct cnode {
    struct cnode *next;
    long tag;
};

struct cnode *ring;

static HF_NOINLINE struct cnode *make_ring(int n) {
    struct cnode *first = malloc(sizeof *first), *p = first; /* SITE:FIRST */
    first->tag = 0;
    for (int i = 1; i < n; i++) {
        p->next = malloc(sizeof *p); /* SITE:NEXT */
        p = p->next;
        p->tag = i;
    }
    p->next = first;
    return first;
}

static HF_NOINLINE void leak(void) {
    struct cnode *a = make_ring(3);
    struct cnode *b = make_ring(1);
    __asm__ volatile("" ::"r"(a), "r"(b) : "memory");
}

int main(void) {
    ring = make_ring(5);
    leak();
    hf_ready_and_block();
}
