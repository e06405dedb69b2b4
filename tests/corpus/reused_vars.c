/* One variable holding several allocations of different types, NULL
 * initialisations, early returns, arrays of pointers inside structs. */
#include <stdio.h>
#include <stdlib.h>

struct a { int x; struct a *next; };
struct b { double y; long z[3]; };
struct holder { struct a *slots[4]; int n; };

static void use_a(struct a *p) { p->x = 1; p->next = NULL; }
static void use_b(struct b *p) { p->y = 2.0; p->z[2] = 3; }

static struct a *maybe_new(int ok) {
    struct a *r = NULL;
    if (!ok) return NULL;
    r = malloc(sizeof(struct a)); /* expect: struct a */
    r->x = 5;
    return r;
}

int main(void) {
    void *p = NULL;
    p = malloc(sizeof(struct a)); /* expect: struct a */
    use_a(p);
    struct a *keep = p;
    p = malloc(sizeof(struct b)); /* expect: struct b */
    use_b(p);
    struct holder *h = calloc(1, sizeof *h); /* expect: struct holder */
    for (int i = 0; i < 4; i++) h->slots[i] = malloc(sizeof(struct a)); /* expect: struct a */
    h->slots[3]->x = 8;
    struct a *m = maybe_new(1);
    printf("%d %.1f %ld %d %d\n", keep->x, ((struct b *)p)->y, ((struct b *)p)->z[2], h->slots[3]->x, m->x);
    return 0;
}
