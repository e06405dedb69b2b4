/* Allocations written through macros. */
#include <stdio.h>
#include <stdlib.h>

#define NEW(T) ((T *)malloc(sizeof(T)))
#define NEW_ARRAY(T, n) ((T *)calloc((n), sizeof(T)))

struct item { int id; struct item *next; };
struct bag { struct item *first; int size; };

int main(void) {
    struct bag *b = NEW(struct bag); /* expect: struct bag */
    b->first = NULL; b->size = 0;
    struct item *pool = NEW_ARRAY(struct item, 6); /* expect: struct item */
    for (int i = 0; i < 6; i++) { pool[i].id = i + 1; pool[i].next = b->first; b->first = &pool[i]; b->size++; }
    int s = 0;
    for (struct item *i = b->first; i; i = i->next) s += i->id;
    printf("%d %d\n", b->size, s);
    return 0;
}
