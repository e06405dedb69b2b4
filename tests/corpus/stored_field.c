/* The allocation goes straight into a struct field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buffer { size_t len; char data[64]; };
struct session { int fd; struct buffer *in; struct buffer *out; struct session *peer; };

static void attach(struct session *s, size_t n) {
    s->in = malloc(n); /* expect: struct buffer */
    s->out = calloc(1, sizeof(struct buffer)); /* expect: struct buffer */
}

int main(void) {
    struct session s = {0};
    attach(&s, sizeof(struct buffer));
    s.peer = malloc(sizeof(struct session)); /* expect: struct session */
    memset(s.in, 0, sizeof *s.in);
    strcpy(s.in->data, "ping");
    s.in->len = strlen(s.in->data);
    s.peer->fd = 9;
    printf("%s %zu %zu %d\n", s.in->data, s.in->len, s.out->len, s.peer->fd);
    return 0;
}
