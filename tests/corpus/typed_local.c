/* A typed local receives the allocation; sizeof names the type. */
#include <stdio.h>
#include <stdlib.h>

struct point { int x, y; };
struct rect { struct point a, b; const char *name; };

int main(void) {
    struct point *p = malloc(sizeof(struct point)); /* expect: struct point */
    struct rect *r = malloc(sizeof(struct rect)); /* expect: struct rect */
    p->x = 3; p->y = 4;
    r->a = *p; r->b.x = 10; r->b.y = 20; r->name = "r";
    printf("%s %d\n", r->name, (r->b.x - r->a.x) * (r->b.y - r->a.y));
    free(p);
    free(r);
    return 0;
}
