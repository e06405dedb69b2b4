/* Objects carved by a slab allocator and a pool (carved.mcr.toml beside
 * this file). The heap sees one slab page and pool blocks (untyped); the
 * trace sees every carved object, so a leak inside a live page shows.
 *
 * Slab (64-byte chunks in a 64 KiB page): 500 `struct snode` carved; 300
 * in a list from a global (reachable), 150 in a list whose head was
 * dropped (unreachable, though their page is reachable), 50 given back
 * with slab_free (not objects any more).
 * Pool A (a reachable 4 KiB block): 20 `struct pnode`, 12 reachable from a
 * global array, 8 leaked. Pool B: 30 `struct pnode`, then its block was
 * freed: they are gone with it.
 * Expected: snode reachable 300, unreachable 150; pnode 12 / 8; heap:
 * 450 snode and 20 pnode carved objects. */
#include "hf.h"

struct snode {
    struct snode *next;
    long value;
};

struct pnode {
    long value;
    struct pnode *next;
};

#define SLAB_PAGE 65536
#define CHUNK 64
static void *slab_page;
static void *slab_freelist;

static HF_NOINLINE void *slab_alloc(size_t n) {
    if (n > CHUNK) return NULL;
    if (!slab_freelist) {
        if (slab_page) return NULL;
        char *pg = malloc(SLAB_PAGE);
        slab_page = pg;
        for (int i = SLAB_PAGE / CHUNK - 1; i >= 0; i--) {
            *(void **)(pg + i * CHUNK) = slab_freelist;
            slab_freelist = pg + i * CHUNK;
        }
    }
    void *r = slab_freelist;
    slab_freelist = *(void **)r;
    return r;
}

static HF_NOINLINE void slab_free(void *p) {
    *(void **)p = slab_freelist;
    slab_freelist = p;
}

struct pool {
    char *last;
    char *end;
};

static HF_NOINLINE struct pool *pool_create(void) {
    void *mem = malloc(4096);
    struct pool *p = mem;
    p->last = (char *)mem + 16;
    p->end = (char *)mem + 4096;
    return p;
}

static HF_NOINLINE void *pool_alloc(struct pool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (p->last + n > p->end) return NULL;
    void *r = p->last;
    p->last += n;
    return r;
}

struct snode *kept;
struct pool *pool_a;
struct pnode *pkept[12];

static HF_NOINLINE struct snode *slab_list(int n, long base) {
    struct snode *h = NULL;
    for (int i = 0; i < n; i++) {
        struct snode *x = slab_alloc(sizeof *x);
        x->value = base + i;
        x->next = h;
        h = x;
    }
    return h;
}

static HF_NOINLINE void build(void) {
    kept = slab_list(300, 0);
    struct snode *lost = slab_list(150, 1000);
    __asm__ volatile("" ::"r"(lost) : "memory");
    struct snode *gone = slab_list(50, 2000);
    while (gone) {
        struct snode *n = gone->next;
        slab_free(gone);
        gone = n;
    }
    pool_a = pool_create();
    for (int i = 0; i < 20; i++) {
        struct pnode *x = pool_alloc(pool_a, sizeof *x);
        x->value = i;
        x->next = NULL;
        if (i < 12) pkept[i] = x;
    }
    struct pool *b = pool_create();
    for (int i = 0; i < 30; i++) {
        struct pnode *x = pool_alloc(b, sizeof *x);
        x->value = i;
        x->next = NULL;
    }
    free(b);
}

int main(void) {
    build();
    hf_ready_and_block();
}
