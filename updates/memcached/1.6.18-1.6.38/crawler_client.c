/* memcached 1.6.18 -> 1.6.38: the LRU crawler's client output buffer
 * (crawler.c) went from a bip buffer (`bipbuf_t *buf` + `char *cbuf`) to a
 * growable byte buffer (`char *buf`, `buflen`, `bufused`). Output a crawl
 * has queued but not yet sent is carried over in order. */
#include <mcr.h>
#include <stdlib.h>
#include <string.h>

typedef struct { /* bipbuffer.h, unchanged */
    unsigned long int size;
    unsigned int a_start, a_end;
    unsigned int b_end;
    int b_inuse;
    unsigned char data[];
} bipbuf_t;

typedef struct { /* 1.6.38 crawler.c */
    void *c;
    int sfd;
    int buflen;
    int bufused;
    char *buf;
} crawler_client_t;

typedef struct { /* 1.6.18 crawler.c, copied */
    void *c;
    int sfd;
    bipbuf_t *buf;
    char *cbuf;
} crawler_client_v1618_t;

static void crawler_client_from_1618(crawler_client_t *new, const crawler_client_v1618_t *old)
{
    new->buf = NULL;
    new->buflen = new->bufused = 0;
    if (old->buf == NULL)
        return;
    const bipbuf_t *b = old->buf;
    unsigned int a = b->a_end - b->a_start, bb = b->b_inuse ? b->b_end : 0;
    int len = 8192 * 16; /* 1.6.38 lru_crawler_set_client: MINBUFSPACE * 16 */
    while (len < (int)(a + bb) + 8192)
        len *= 2;
    if ((new->buf = malloc(len)) == NULL)
        abort(); /* the update rolls back */
    memcpy(new->buf, b->data + b->a_start, a); /* region A is read first */
    memcpy(new->buf + a, b->data, bb);
    new->buflen = len;
    new->bufused = a + bb;
    free(old->buf);
}
MCR_TRANSFORM(crawler_client_t, crawler_client_v1618_t, crawler_client_from_1618);
