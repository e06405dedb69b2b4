/* The fresh pointer is handed to an init function. */
#include <stdio.h>
#include <stdlib.h>

struct conn { int fd; int state; char name[16]; };

static struct conn *conn_init(struct conn *c, int fd) {
    c->fd = fd; c->state = 1;
    snprintf(c->name, sizeof c->name, "conn%d", fd);
    return c;
}

static void conn_reset(struct conn *c) { c->state = 0; }

int main(int argc, char **argv) {
    (void)argv;
    struct conn *a = conn_init(malloc(sizeof(struct conn)), 3); /* expect: struct conn */
    size_t n = sizeof(struct conn) * (size_t)argc;
    void *raw = malloc(n); /* expect: struct conn */
    conn_init(raw, 4);
    conn_reset(a);
    printf("%s %d %s\n", a->name, a->state, ((struct conn *)raw)->name);
    return 0;
}
