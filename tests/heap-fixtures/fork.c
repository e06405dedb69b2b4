/* A forked child has its own heap view and control socket. The parent
 * builds 50 fnode objects (a list from a global), waits until its own
 * control socket @mcr/<pid> is listening (at most 10 s; not with argument
 * "early", which forks at once, as daemons do), then forks; the child
 * allocates 4 child_only objects (kept in a global array) and leaks 2
 * child_leak objects, says "child <pid>" and blocks; then the parent says
 * "ready" and blocks. Both exit at end of file on stdin.
 * Expected in the parent: fnode 50 reachable, no child_* objects.
 * In the child: fnode 50 reachable, child_only 4 reachable, child_leak 2
 * unreachable. */
#include "hf.h"
#include <sys/wait.h>

struct fnode { long v; struct fnode *next; };
struct child_only { long v; };
struct child_leak { long v; };

struct fnode *list;
struct child_only *child_objs[4];

static HF_NOINLINE void child_leak2(void) {
    for (int i = 0; i < 2; i++) {
        struct child_leak *volatile p = malloc(sizeof(struct child_leak));
        p->v = i;
    }
}

/* Whether @mcr/<pid> shows in /proc/net/unix. */
static int has_control_socket(void) {
    char want[64], line[512];
    snprintf(want, sizeof want, " @mcr/%d\n", (int)getpid());
    FILE *f = fopen("/proc/net/unix", "r");
    if (!f) return 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, want) != NULL;
    fclose(f);
    return found;
}

int main(int argc, char **argv) {
    int early = argc > 1 && !strcmp(argv[1], "early");
    for (int i = 0; !early && i < 1000 && !has_control_socket(); i++) usleep(10000);
    for (int i = 0; i < 50; i++) {
        struct fnode *n = malloc(sizeof(struct fnode));
        n->v = i;
        n->next = list;
        list = n;
    }
    int sync[2];
    if (pipe(sync)) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) {
        close(sync[0]);
        for (int i = 0; i < 4; i++) child_objs[i] = malloc(sizeof(struct child_only));
        child_leak2();
        hf_clobber_stack();
        char line[64];
        snprintf(line, sizeof line, "child %d", (int)getpid());
        hf_say(line);
        close(sync[1]);
        hf_block();
    }
    close(sync[1]);
    char c;
    while (read(sync[0], &c, 1) > 0) {}
    hf_ready_and_block();
}
