/* C-style inheritance: a derived struct held through a pointer to its
 * first member (the base). */
#include <stdio.h>
#include <stdlib.h>

struct shape { int kind; double (*area)(const struct shape *); };
struct circle { struct shape base; double r; };
struct square { struct shape base; double side; struct square *twin; };

static double circle_area(const struct shape *s) { const struct circle *c = (const void *)s; return 3.0 * c->r * c->r; }
static double square_area(const struct shape *s) { const struct square *q = (const void *)s; return q->side * q->side; }

static struct shape *new_circle(double r) {
    struct shape *s = malloc(sizeof(struct circle)); /* expect: struct circle */
    s->kind = 1; s->area = circle_area;
    ((struct circle *)s)->r = r;
    return s;
}

int main(void) {
    struct shape *shapes[2];
    shapes[0] = new_circle(2.0);
    struct square *q = malloc(sizeof *q); /* expect: struct square */
    q->base.kind = 2; q->base.area = square_area; q->side = 3.0; q->twin = NULL;
    shapes[1] = &q->base;
    printf("%.1f %.1f\n", shapes[0]->area(shapes[0]), shapes[1]->area(shapes[1]));
    return 0;
}
