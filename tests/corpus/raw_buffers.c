/* Byte buffers with no type evidence stay untyped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pair { int a, b; };

int main(int argc, char **argv) {
    (void)argv;
    char *buf = malloc(100); /* expect: untyped */
    void *blob = malloc((size_t)argc * 24); /* expect: untyped */
    unsigned char *bytes = calloc(64, 1); /* expect: untyped */
    struct pair *odd = malloc(12); /* expect: untyped */
    strcpy(buf, "raw");
    memset(blob, 0, (size_t)argc * 24);
    bytes[63] = 1;
    odd->a = 1;
    printf("%s %d %d\n", buf, bytes[63], odd->a);
    return 0;
}
