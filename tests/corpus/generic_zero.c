/* A generic zeroing allocator used for many types (zalloc in mcr.toml). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void *zalloc(size_t n) {
    void *p = malloc(n); /* expect: untyped */
    if (p) memset(p, 0, n);
    return p;
}

struct user { int uid; char name[12]; };
struct group { int gid; struct user *members; int nmembers; };
struct acl { struct group *owner; unsigned mode; };

int main(void) {
    struct group *g = zalloc(sizeof *g); /* expect: struct group */
    g->members = zalloc(3 * sizeof(struct user)); /* expect: struct user */
    struct acl *a = zalloc(sizeof(struct acl)); /* expect: struct acl */
    g->gid = 100; g->nmembers = 3;
    for (int i = 0; i < 3; i++) { g->members[i].uid = 1000 + i; snprintf(g->members[i].name, 12, "u%d", i); }
    a->owner = g; a->mode = 0640;
    printf("%d %s %o %d\n", a->owner->gid, g->members[2].name, a->mode, g->members[1].uid);
    return 0;
}
