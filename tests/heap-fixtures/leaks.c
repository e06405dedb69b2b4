/* Deliberately leaked objects, known count per type and site:
 *   leak_a  10 from site LEAK_A_MANY, 5 from site LEAK_A_FEW, 2 kept
 *           (site KEEP_A) in a global array
 *   leak_b  3 from site LEAK_B
 *   untyped 4 leaked, 1 kept (all from site RAW, a run-time size)
 * Expected: leak_a reachable 2, unreachable 15 (sites LEAK_A_MANY and
 * LEAK_A_FEW); leak_b 0 / 3; RAW 1 / 4. */
#include "hf.h"

struct leak_a { long a; char name[40]; };
struct leak_b { int x, y, z; };

struct leak_a *keep[2];
void *keep_raw;

static HF_NOINLINE void leak_a_many(void) {
    for (int i = 0; i < 10; i++) {
        struct leak_a *volatile p = malloc(sizeof(struct leak_a)); /* SITE:LEAK_A_MANY */
        p->a = i;
    }
}

static HF_NOINLINE void leak_a_few(void) {
    for (int i = 0; i < 5; i++) {
        struct leak_a *volatile p = calloc(1, sizeof(struct leak_a)); /* SITE:LEAK_A_FEW */
        p->a = i;
    }
}

static HF_NOINLINE void leak_b(void) {
    for (int i = 0; i < 3; i++) {
        struct leak_b *volatile p = malloc(sizeof(struct leak_b)); /* SITE:LEAK_B */
        p->x = i;
    }
}

static HF_NOINLINE void *raw(size_t n) {
    return malloc(n); /* SITE:RAW */
}

static HF_NOINLINE void leak_raw(size_t n) {
    for (int i = 0; i < 4; i++) {
        void *volatile p = raw(n);
        (void)p;
    }
}

int main(int argc, char **argv) {
    (void)argv;
    for (int i = 0; i < 2; i++) keep[i] = malloc(sizeof(struct leak_a)); /* SITE:KEEP_A */
    leak_a_many();
    leak_a_few();
    leak_b();
    leak_raw(100 + (size_t)argc);
    keep_raw = raw(100 + (size_t)argc);
    hf_ready_and_block();
}
