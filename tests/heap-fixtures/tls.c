/* Objects whose only pointer is a thread-local variable (`__thread`):
 * tls_plain behind a worker thread's `struct tls_plain *`, tls_packed
 * behind a pointer at offset 4 of a worker's packed, 8-aligned struct (so
 * at an address no conservative word scan looks at: only a typed root
 * finds it), tls_main behind the main thread's `struct tls_main *`. The
 * worker blocks in read(2). Each thread leaks 2 tls_leak objects first
 * (their pointer overwritten in the same thread-local).
 * Expected: tls_plain, tls_packed, tls_main 1 reachable each, tls_leak 4
 * unreachable; 3 thread-locals in each of the 2 program threads. */
#include "hf.h"
#include <pthread.h>

struct tls_plain { long a, b; };
struct tls_packed { long a, b; };
struct tls_main { long a, b; };
struct tls_leak { long a, b; };

struct __attribute__((packed, aligned(8))) tls_holder {
    int tag;
    struct tls_packed *p;
};

static __thread struct tls_plain *tl_plain;
static __thread struct tls_holder tl_holder;
static __thread struct tls_main *tl_main;

static int block_pipe[2], sync_pipe[2];

/* Leaks 2 objects through the thread-local that then gets its keeper. */
static HF_NOINLINE void leak2(int in_main) {
    for (int i = 0; i < 2; i++) {
        struct tls_leak *p = malloc(sizeof(struct tls_leak));
        p->a = i;
        if (in_main) tl_main = (struct tls_main *)p;
        else tl_plain = (struct tls_plain *)p;
    }
}

static HF_NOINLINE void keep_in_worker(void) {
    tl_plain = malloc(sizeof(struct tls_plain));
    tl_plain->a = 1;
    tl_holder.tag = 7;
    tl_holder.p = malloc(sizeof(struct tls_packed));
    tl_holder.p->a = 2;
}

static HF_NOINLINE void keep_in_main(void) {
    tl_main = malloc(sizeof(struct tls_main));
    tl_main->a = 3;
}

static void *worker(void *arg) {
    (void)arg;
    leak2(0);
    keep_in_worker();
    hf_clobber_stack();
    char c = 1;
    if (write(sync_pipe[1], &c, 1) != 1) _exit(1);
    while (read(block_pipe[0], &c, 1) != 0) {}
    return NULL;
}

int main(void) {
    if (pipe(block_pipe) || pipe(sync_pipe)) return 1;
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    char c;
    if (read(sync_pipe[0], &c, 1) != 1) return 1;
    leak2(1);
    keep_in_main();
    hf_ready_and_block();
}
