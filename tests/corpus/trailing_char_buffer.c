/* The pre-C99 "struct hack": a trailing one-element char buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct str { size_t len; struct str *next; char buf[1]; };

static struct str *str_new(const char *s) {
    size_t n = strlen(s);
    struct str *r = malloc(sizeof(struct str) + n); /* expect: struct str */
    r->len = n; r->next = NULL;
    memcpy(r->buf, s, n + 1);
    return r;
}

int main(void) {
    struct str *a = str_new("trailing");
    struct str *b = str_new("buffer");
    a->next = b;
    printf("%s %s %zu\n", a->buf, a->next->buf, a->len + b->len);
    return 0;
}
