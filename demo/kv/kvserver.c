/* A small key-value server, the demo of mcr live update.
 * One thread, one epoll loop, a chained hash table on the heap.
 * Protocol, one command per line:
 *   SET <key> <value>   -> OK
 *   GET <key>           -> VALUE <value> | NOTFOUND
 *   DEL <key>           -> DELETED | NOTFOUND
 *   COUNT               -> <number of keys>
 *   STATS               -> version=<v> requests=<n> sets=<n> [hits=<n>]
 *   CONFIG maxkeys <n>  -> OK   (a setting changed at run time)
 * Built twice: KV_VERSION=1 and KV_VERSION=2; version 2 reorders and adds
 * fields of struct entry and struct stats, and counts hits per key.
 */
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef KV_VERSION
#define KV_VERSION 1
#endif
#define NBUCKETS 1024

#if KV_VERSION == 1
struct entry {
    char key[32];
    char *value;
    struct entry *next;
};
struct stats {
    int requests;
    int sets;
};
#else
struct entry {
    struct entry *next;   /* moved first */
    uint64_t hits;        /* added */
    char key[32];
    char *value;
    size_t vlen;          /* added */
};
struct stats {
    long requests;        /* widened from int */
    long sets;
    long hits;            /* added */
};
#endif

struct conn {
    int fd;
    size_t len;
    char buf[1024];
    struct conn *next;
};

struct config {
    int port;
    int maxkeys;
};

static struct entry *table[NBUCKETS];
static struct conn *conns;
static struct stats stats;
static struct config config = { 0, 100000 };
static int nkeys;
static int listen_fd, epfd;

static unsigned hash(const char *s) {
    unsigned h = 5381;
    while (*s) h = h * 33 + (unsigned char)*s++;
    return h % NBUCKETS;
}

static struct entry *lookup(const char *key) {
    for (struct entry *e = table[hash(key)]; e; e = e->next)
        if (strcmp(e->key, key) == 0) return e;
    return NULL;
}

static void reply(struct conn *c, const char *s) {
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(c->fd, s + off, n - off);
        if (w < 0) { if (errno == EINTR) continue; return; }
        off += (size_t)w;
    }
}

static void command(struct conn *c, char *line) {
    char out[1200];
    char *cmd = strtok(line, " "), *a = strtok(NULL, " "), *b = strtok(NULL, "");
    stats.requests++;
    if (!cmd) return;
    if (!strcmp(cmd, "SET") && a && b) {
        struct entry *e = lookup(a);
        if (!e) {
            if (nkeys >= config.maxkeys) { reply(c, "FULL\n"); return; }
            e = calloc(1, sizeof *e);
            snprintf(e->key, sizeof e->key, "%s", a);
            unsigned h = hash(a);
            e->next = table[h];
            table[h] = e;
            nkeys++;
        } else {
            free(e->value);
        }
        e->value = strdup(b);
#if KV_VERSION >= 2
        e->vlen = strlen(b);
#endif
        stats.sets++;
        reply(c, "OK\n");
    } else if (!strcmp(cmd, "GET") && a) {
        struct entry *e = lookup(a);
        if (!e) { reply(c, "NOTFOUND\n"); return; }
#if KV_VERSION >= 2
        e->hits++;
        stats.hits++;
#endif
        snprintf(out, sizeof out, "VALUE %s\n", e->value);
        reply(c, out);
    } else if (!strcmp(cmd, "DEL") && a) {
        struct entry **p = &table[hash(a)];
        while (*p && strcmp((*p)->key, a)) p = &(*p)->next;
        if (!*p) { reply(c, "NOTFOUND\n"); return; }
        struct entry *e = *p;
        *p = e->next;
        free(e->value);
        free(e);
        nkeys--;
        reply(c, "DELETED\n");
    } else if (!strcmp(cmd, "COUNT")) {
        snprintf(out, sizeof out, "%d\n", nkeys);
        reply(c, out);
    } else if (!strcmp(cmd, "STATS")) {
#if KV_VERSION == 1
        snprintf(out, sizeof out, "version=1 requests=%d sets=%d maxkeys=%d\n", stats.requests, stats.sets, config.maxkeys);
#else
        snprintf(out, sizeof out, "version=2 requests=%ld sets=%ld hits=%ld maxkeys=%d\n", stats.requests, stats.sets, stats.hits, config.maxkeys);
#endif
        reply(c, out);
    } else if (!strcmp(cmd, "CONFIG") && a && b && !strcmp(a, "maxkeys")) {
        config.maxkeys = atoi(b);
        reply(c, "OK\n");
    } else {
        reply(c, "ERROR\n");
    }
}

static void drop(struct conn *c) {
    struct conn **p = &conns;
    while (*p != c) p = &(*p)->next;
    *p = c->next;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static void on_readable(struct conn *c) {
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
    if (n <= 0) { drop(c); return; }
    c->len += (size_t)n;
    char *nl;
    while ((nl = memchr(c->buf, '\n', c->len))) {
        *nl = 0;
        if (nl > c->buf && nl[-1] == '\r') nl[-1] = 0;
        command(c, c->buf);
        size_t used = (size_t)(nl - c->buf) + 1;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
    if (c->len == sizeof c->buf - 1) c->len = 0; /* line too long: drop it */
}

int main(int argc, char **argv) {
    config.port = argc > 1 ? atoi(argv[1]) : 7777;
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(config.port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    if (bind(listen_fd, (struct sockaddr *)&sa, sizeof sa) || listen(listen_fd, 128)) {
        perror("kvserver: bind/listen");
        return 1;
    }
    epfd = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = listen_fd };
    epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    fprintf(stderr, "kvserver version %d listening on 127.0.0.1:%d (pid %d)\n", KV_VERSION, config.port, (int)getpid());
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(epfd, evs, 64, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == listen_fd) {
                int cfd = accept(listen_fd, NULL, NULL);
                if (cfd < 0) continue;
                struct conn *c = calloc(1, sizeof *c);
                c->fd = cfd;
                c->next = conns;
                conns = c;
                struct epoll_event cev = { .events = EPOLLIN, .data.fd = cfd };
                epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
            } else {
                struct conn *c = conns;
                while (c && c->fd != fd) c = c->next;
                if (c) on_readable(c);
            }
        }
    }
}
