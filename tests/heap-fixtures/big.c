/* A heap of N live objects (argv[1], default 1000000) for timing
 * `mcr-ctl trace` (benches/trace-1m.sh): N/2 - 1000 bnode list items
 * (typed, scanned precisely), N/4 of them with a strdup'd name (char,
 * scanned conservatively), N/4 bleaf objects reached only from one large
 * untyped pointer array (scanned conservatively, 8*N/4 bytes), and 1000
 * leaked bnode. Live objects: N + 1 (the array), plus the runtime's few.
 * Expected trace: N - 1000 + 1 reachable program objects, 1000 unreachable. */
#include "hf.h"

struct bnode {
    long id;
    char *name;
    struct bnode *next;
};
struct bleaf { long a, b, c; };

struct bnode *blist;
void **leaves;

static HF_NOINLINE void leak(long n) {
    for (long i = 0; i < n; i++) {
        struct bnode *volatile p = malloc(sizeof(struct bnode));
        p->id = -i;
        p->name = NULL;
        p->next = NULL;
    }
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    long nodes = n / 2 - 1000, names = n / 4, nleaves = n - n / 2 - n / 4;
    char buf[32];
    for (long i = 0; i < nodes; i++) {
        struct bnode *b = malloc(sizeof(struct bnode));
        b->id = i;
        b->name = NULL;
        if (i < names) {
            snprintf(buf, sizeof buf, "node-%ld", i);
            b->name = strdup(buf);
        }
        b->next = blist;
        blist = b;
    }
    leaves = malloc((size_t)nleaves * sizeof(void *) + (size_t)argc);
    for (long i = 0; i < nleaves; i++) leaves[i] = calloc(1, sizeof(struct bleaf));
    leak(1000);
    hf_ready_and_block();
}
