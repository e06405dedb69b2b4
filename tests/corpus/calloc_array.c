/* calloc arrays of structs, counted and not. */
#include <stdio.h>
#include <stdlib.h>

struct cell { short row, col; int value; };
struct grid { int n; struct cell *cells; };

int main(int argc, char **argv) {
    (void)argv;
    struct grid g;
    g.n = 8 + argc;
    g.cells = calloc(g.n, sizeof(struct cell)); /* expect: struct cell */
    struct cell *fixed = calloc(4, sizeof *fixed); /* expect: struct cell */
    for (int i = 0; i < g.n; i++) g.cells[i].value = i * i;
    for (int i = 0; i < 4; i++) fixed[i].row = (short)i;
    long s = 0;
    for (int i = 0; i < g.n; i++) s += g.cells[i].value;
    printf("%ld %d\n", s, fixed[3].row);
    return 0;
}
