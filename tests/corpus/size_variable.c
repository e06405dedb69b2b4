/* The size is computed into a variable first. */
#include <stdio.h>
#include <stdlib.h>

struct rec { int id; float score; struct rec *link; };

int main(int argc, char **argv) {
    (void)argv;
    size_t count = (size_t)argc + 4;
    size_t bytes = count * sizeof(struct rec);
    struct rec *recs = malloc(bytes); /* expect: struct rec */
    size_t one = sizeof(struct rec);
    void *single = malloc(one); /* expect: struct rec */
    for (size_t i = 0; i < count; i++) { recs[i].id = (int)i; recs[i].score = (float)i / 2; }
    ((struct rec *)single)->id = 99;
    printf("%d %.1f %d\n", recs[4].id, recs[4].score, ((struct rec *)single)->id);
    return 0;
}
