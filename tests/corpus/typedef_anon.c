/* Typedef'd structs, a typedef of an anonymous struct, and an anonymous
 * struct with no name at all. */
#include <stdio.h>
#include <stdlib.h>

typedef struct tree { struct tree *left, *right; int key; } tree_t;
typedef struct { double x, y; } vec2;

int main(void) {
    tree_t *t = malloc(sizeof(tree_t)); /* expect: struct tree */
    vec2 *v = malloc(2 * sizeof(vec2)); /* expect: vec2 */
    struct { int a; long b; } *anon = malloc(sizeof *anon); /* expect: struct <anon@typedef_anon.c:12> */
    t->left = t->right = NULL; t->key = 5;
    v[1].x = 1.5; v[1].y = 2.5;
    anon->a = 1; anon->b = 2;
    printf("%d %.1f %ld\n", t->key, v[1].x + v[1].y, anon->a + anon->b);
    return 0;
}
