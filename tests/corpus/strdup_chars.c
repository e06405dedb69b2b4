/* String duplication: character data. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kv { char *key; char *value; };

int main(void) {
    struct kv *e = malloc(sizeof *e); /* expect: struct kv */
    e->key = strdup("name"); /* expect: char */
    e->value = strndup("value-truncated", 5); /* expect: char */
    char *copy = strdup(e->key); /* expect: char */
    printf("%s=%s %s\n", e->key, e->value, copy);
    return 0;
}
