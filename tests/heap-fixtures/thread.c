/* Objects whose only pointer is a local variable of another thread, blocked
 * in a wrapped call: on_read in read(2) on a pipe nobody writes to,
 * on_cond in pthread_cond_wait on a condition nobody signals, on_foreign in
 * read(2) in a thread created through a function pointer, as a library
 * mcr-cc did not compile would (the runtime does not register it). Before
 * blocking, each thread leaks 3 thread_leak objects (in a function whose
 * frame is gone, then wiped).
 * Expected: on_read, on_cond, on_foreign 1 reachable each, thread_leak 9
 * unreachable. */
#include "hf.h"
#include <pthread.h>

struct on_read { long a, b; };
struct on_cond { long a, b; };
struct on_foreign { long a, b; };
struct thread_leak { long a, b; };

static int block_pipe[2], sync_pipe[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;

static HF_NOINLINE void leak3(void) {
    for (int i = 0; i < 3; i++) {
        struct thread_leak *volatile p = malloc(sizeof(struct thread_leak));
        p->a = i;
    }
}

static void started(void) {
    char c = 1;
    if (write(sync_pipe[1], &c, 1) != 1) _exit(1);
}

static void *reader(void *arg) {
    (void)arg;
    leak3();
    hf_clobber_stack();
    struct on_read *volatile mine = malloc(sizeof(struct on_read));
    mine->a = 1;
    started();
    char c;
    while (read(block_pipe[0], &c, 1) != 0) {}
    return mine;
}

static void *foreign(void *arg) {
    (void)arg;
    leak3();
    hf_clobber_stack();
    struct on_foreign *volatile mine = malloc(sizeof(struct on_foreign));
    mine->a = 3;
    started();
    char c;
    while (read(block_pipe[0], &c, 1) != 0) {}
    return mine;
}

static void *waiter(void *arg) {
    (void)arg;
    leak3();
    hf_clobber_stack();
    struct on_cond *volatile mine = malloc(sizeof(struct on_cond));
    mine->a = 2;
    pthread_mutex_lock(&mu);
    started();
    for (;;) pthread_cond_wait(&never, &mu);
    return mine;
}

int main(void) {
    if (pipe(block_pipe) || pipe(sync_pipe)) return 1;
    pthread_t a, b, f;
    pthread_create(&a, NULL, reader, NULL);
    pthread_create(&b, NULL, waiter, NULL);
    /* Not a direct call: mcr-cc leaves it alone, the thread is unknown to
     * the runtime. */
    int (*volatile create)(pthread_t *, const pthread_attr_t *, void *(*)(void *), void *) = pthread_create;
    create(&f, NULL, foreign, NULL);
    char c;
    for (int i = 0; i < 3; i++)
        if (read(sync_pipe[0], &c, 1) != 1) return 1;
    hf_ready_and_block();
}
