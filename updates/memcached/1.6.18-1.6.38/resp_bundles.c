/* memcached 1.6.18 -> 1.6.38: response bundles (read buffers of a thread's
 * rbuf_cache, untyped to mcr) gained `thread`, so each response in them
 * moved by 8 bytes. Responses live during the update (a set waiting for
 * its value has its reply allocated) are re-made in new bundles by
 * 1.6.38's own resp_start; then every 1.6.18 bundle goes back to its
 * cache. Compiled with 1.6.38's own headers (./cflags); any surprise
 * aborts, and the update rolls back. */
#include "memcached.h"
#include <mcr.h>
#include <stdlib.h>
#include <string.h>

struct bundle_v1618 { /* 1.6.18 memcached.h, copied */
    uint8_t refcount, next_check;
    struct bundle_v1618 *next, *prev;
};
struct resp_v1618 {
    struct bundle_v1618 *bundle;
    struct resp_v1618 *next;
    int wbytes, tosend;
    void *write_and_free;
    io_pending_t *io_pending;
    item *item;
    struct iovec iov[MC_RESP_IOVCOUNT];
    int chunked_total;
    uint8_t iovcnt, chunked_data_iov;
    bool skip, free;
    uint16_t request_id, udp_sequence, udp_total;
    struct sockaddr_in6 request_addr;
    socklen_t request_addr_size;
    char wbuf[WRITE_BUFFER_SIZE];
};

static struct { void *b; LIBEVENT_THREAD *t; } old[4096];
static int nold;

static void forget(void *b, LIBEVENT_THREAD *t)
{
    for (int i = 0; i < nold; i++)
        if (old[i].b == b)
            return;
    if (nold == 4096)
        abort();
    old[nold].b = b, old[nold++].t = t;
}

static void remake_responses(conn *c)
{
    struct resp_v1618 *o = (struct resp_v1618 *)c->resp_head;
    c->resp_head = c->resp = NULL;
    for (; o; o = o->next) {
        forget(o->bundle, c->thread);
        if (!resp_start(c))
            abort();
        mc_resp *r = c->resp;
        r->wbytes = o->wbytes, r->tosend = o->tosend;
        r->write_and_free = o->write_and_free, r->io_pending = o->io_pending;
        r->item = o->item, r->chunked_total = o->chunked_total;
        r->iovcnt = o->iovcnt, r->chunked_data_iov = o->chunked_data_iov;
        r->skip = o->skip, r->request_id = o->request_id;
        r->udp_sequence = o->udp_sequence, r->udp_total = o->udp_total;
        r->request_addr = o->request_addr, r->request_addr_size = o->request_addr_size;
        memcpy(r->wbuf, o->wbuf, sizeof r->wbuf);
        for (int k = 0; k < MC_RESP_IOVCOUNT; k++) {
            char *base = o->iov[k].iov_base;
            r->iov[k] = o->iov[k];
            if (base >= o->wbuf && base < o->wbuf + sizeof o->wbuf)
                r->iov[k].iov_base = r->wbuf + (base - o->wbuf);
        }
        c->thread->stats.response_obj_count--; /* the old one is gone */
    }
}

static void remake_1618_bundles(void)
{
    for (int i = 0; i < settings.num_threads; i++) {
        LIBEVENT_THREAD *t = get_worker_thread(i);
        for (struct bundle_v1618 *b = (void *)t->open_bundle; b; b = b->next)
            forget(b, t);
        t->open_bundle = NULL;
    }
    for (int i = 0; i < settings.maxconns; i++) /* fds past maxconns: not seen */
        if (conns[i] && conns[i]->resp_head)
            remake_responses(conns[i]);
    for (int i = 0; i < nold; i++) {
        do_cache_free(old[i].t->rbuf_cache, old[i].b);
        old[i].t->stats.response_obj_bytes -= READ_BUFFER_SIZE;
    }
}
MCR_AFTER_TRANSFER(remake_1618_bundles);
