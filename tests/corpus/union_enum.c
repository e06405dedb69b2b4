/* Unions, enums and scalars allocated. */
#include <stdio.h>
#include <stdlib.h>

enum color { RED, GREEN, BLUE };
union value { long i; double d; void *p; };
struct tagged { enum color c; union value v; };

int main(void) {
    union value *v = malloc(sizeof(union value)); /* expect: union value */
    enum color *cs = malloc(4 * sizeof(enum color)); /* expect: enum color */
    int *ints = malloc(10 * sizeof(int)); /* expect: int */
    struct tagged *t = calloc(2, sizeof *t); /* expect: struct tagged */
    v->i = 42; cs[3] = BLUE; ints[9] = 9; t[1].c = GREEN; t[1].v.d = 0.5;
    printf("%ld %d %d %d %.1f\n", v->i, cs[3], ints[9], t[1].c, t[1].v.d);
    return 0;
}
