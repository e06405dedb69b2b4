/* A singly linked list of 1000 nodes from a global head, and a list of 7
 * nodes whose head was dropped (leaked as a whole: each leaked node is
 * still pointed to by another leaked node).
 * Expected: lnode reachable 1000, unreachable 7. */
#include "hf.h"

struct lnode {
    long value;
    struct lnode *next;
};

struct lnode *head;

static HF_NOINLINE struct lnode *build(int n) {
    struct lnode *h = NULL;
    for (int i = 0; i < n; i++) {
        struct lnode *x = malloc(sizeof *x);
        x->value = i;
        x->next = h;
        h = x;
    }
    return h;
}

static HF_NOINLINE void leak(void) {
    struct lnode *h = build(7);
    __asm__ volatile("" ::"r"(h) : "memory");
}

int main(void) {
    head = build(1000);
    leak();
    hf_ready_and_block();
}
