/* Carve-heavy microbenchmark: the cost of declaring a pool or slab
 * allocator in mcr.toml (benches/carve-overhead.sh builds it three ways).
 *
 *   slab: LIVE objects of 48 bytes live in 64-byte chunks of 1 MiB pages;
 *         each op frees a random one (slab_free) and carves a new one
 *         (slab_alloc), as a cache under churn does.
 *   pool: each op creates a 16 KiB pool block, carves 64 objects of 32..256
 *         bytes from it and frees the block (a request's pool).
 *
 * Usage: carve_bench slab|pool OPS [LIVE]; prints ns per op (per carve for
 * the pool) and a checksum so nothing is optimised away. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct obj {
    struct obj *next;
    long key;
    long value;
    char tag[24];
};

#define CHUNK 64
#define PAGE (1 << 20)
static void *freelist;

__attribute__((noinline)) void *slab_alloc(size_t n) {
    if (n > CHUNK) return NULL;
    if (!freelist) {
        char *pg = malloc(PAGE);
        if (!pg) abort();
        for (long i = PAGE / CHUNK - 1; i >= 0; i--) {
            *(void **)(pg + i * CHUNK) = freelist;
            freelist = pg + i * CHUNK;
        }
    }
    void *r = freelist;
    freelist = *(void **)r;
    return r;
}

__attribute__((noinline)) void slab_free(void *p) {
    *(void **)p = freelist;
    freelist = p;
}

struct pool {
    char *last, *end;
};

__attribute__((noinline)) void *pool_alloc(struct pool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (p->last + n > p->end) return NULL;
    void *r = p->last;
    p->last += n;
    return r;
}

static uint64_t rng = 88172645463325252ull;
static inline uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s slab|pool OPS [LIVE]\n", argv[0]);
        return 2;
    }
    long ops = atol(argv[2]);
    long sum = 0;
    if (!strcmp(argv[1], "slab")) {
        long live = argc > 3 ? atol(argv[3]) : 100000;
        struct obj **objs = calloc((size_t)live, sizeof *objs);
        for (long i = 0; i < live; i++) {
            struct obj *o = slab_alloc(sizeof *o);
            o->key = i;
            objs[i] = o;
        }
        double t0 = now();
        for (long i = 0; i < ops; i++) {
            long k = (long)(next_rand() % (uint64_t)live);
            slab_free(objs[k]);
            struct obj *o = slab_alloc(sizeof *o);
            o->key = i;
            o->value = k;
            objs[k] = o;
            sum += (long)((uintptr_t)o >> 6);
        }
        double t1 = now();
        printf("slab %ld ops, %ld live: %.1f ns/op (sum %ld)\n", ops, live, (t1 - t0) * 1e9 / ops, sum);
    } else {
        double t0 = now();
        for (long i = 0; i < ops; i++) {
            struct pool *p = malloc(16384);
            p->last = (char *)p + 16;
            p->end = (char *)p + 16384;
            for (int j = 0; j < 64; j++) {
                struct obj *o = pool_alloc(p, sizeof *o);
                if (!o) break;
                o->key = j;
                char *s = pool_alloc(p, 32 + (next_rand() % 224));
                if (s) s[0] = (char)j;
                sum += o->key;
            }
            free(p);
        }
        double t1 = now();
        printf("pool %ld pools x 64 (128 carves each): %.1f ns/carve (sum %ld)\n", ops, (t1 - t0) * 1e9 / (ops * 128.0), sum);
    }
    return 0;
}
