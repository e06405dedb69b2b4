/* Allocation wrappers named in mcr.toml ([allocators] xmalloc, xcalloc):
 * the wrapper's own malloc is untyped, its callers are typed. */
#include <stdio.h>
#include <stdlib.h>

struct job { int id; struct job *next; char tag[8]; };
struct queue { struct job *head; int count; };

void *xmalloc(size_t n) {
    void *p = malloc(n); /* expect: untyped */
    if (!p) abort();
    return p;
}

void *xcalloc(size_t n, size_t s) {
    void *p = calloc(n, s); /* expect: untyped */
    if (!p) abort();
    return p;
}

static struct job *new_job(int id) {
    struct job *j = xmalloc(sizeof(struct job)); /* expect: struct job */
    j->id = id; j->next = NULL; j->tag[0] = 'j'; j->tag[1] = 0;
    return j;
}

int main(void) {
    struct queue *q = xcalloc(1, sizeof *q); /* expect: struct queue */
    for (int i = 0; i < 3; i++) { struct job *j = new_job(i); j->next = q->head; q->head = j; q->count++; }
    struct job *jobs = xcalloc(5, sizeof(struct job)); /* expect: struct job */
    jobs[4].id = 44;
    printf("%d %d %s %d\n", q->count, q->head->id, q->head->tag, jobs[4].id);
    return 0;
}
