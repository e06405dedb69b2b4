/* Arrays of pointers. */
#include <stdio.h>
#include <stdlib.h>

struct node { int key; struct node *next; };

int main(void) {
    int nb = 16;
    struct node **buckets = calloc(nb, sizeof(struct node *)); /* expect: struct node * */
    const char **names = malloc(3 * sizeof(char *)); /* expect: char * */
    struct node **table = calloc(8, sizeof(void *)); /* expect: void * */
    table[1] = NULL;
    names[0] = "a"; names[1] = "b"; names[2] = "c";
    for (int k = 0; k < 40; k++) {
        struct node *n = malloc(sizeof *n); /* expect: struct node */
        n->key = k; n->next = buckets[k % nb]; buckets[k % nb] = n;
    }
    int len = 0;
    for (struct node *n = buckets[3]; n; n = n->next) len++;
    printf("%d %s%s%s\n", len, names[0], names[1], names[2]);
    return 0;
}
