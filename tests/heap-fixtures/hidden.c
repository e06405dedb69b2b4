/* Objects reachable only through pointers the type map does not show as
 * pointers; each target has a type of its own, one object each:
 *   via_union        a global union { long; struct via_union *; }
 *   via_int          a global uintptr_t
 *   via_charbuf      memcpy'd into a global char[32] at offset 8
 *   via_intfield     a uintptr_t field of a typed heap struct (holder)
 *   via_unionfield   a union field of the holder
 *   via_charfield    memcpy'd into a char[24] field of the holder
 *   via_heapbuf      memcpy'd at offset 16 into an untyped heap buffer
 *                    (site RAWBUF) held by a typed global char *
 *   via_interior     only an interior pointer (to its third field) in a
 *                    global long *
 * plus 2 via_int objects whose only copies (in uintptr_t variables) were
 * dropped: leaked.
 * Expected: each via_* 1 reachable, 0 unreachable, except via_int:
 * 1 reachable, 2 unreachable; holder 1 reachable; RAWBUF 1 reachable.
 * (mcr-cc leaves allocations cast to an integer untyped: the tests count
 * via_int and via_intfield objects per site: AS_INT, LEAK_INT1, LEAK_INT2,
 * INTFIELD.) */
#include "hf.h"

struct via_union { long a, b; };
struct via_int { long a, b; };
struct via_charbuf { long a, b; };
struct via_intfield { long a, b; };
struct via_unionfield { long a, b; };
struct via_charfield { long a, b; };
struct via_heapbuf { long a, b; };
struct via_interior { long a, b, c, d; };

union slot {
    long num;
    struct via_union *ptr;
};

struct holder {
    int kind;
    uintptr_t hidden;
    union {
        long num;
        struct via_unionfield *ptr;
    } u;
    char buf[24];
};

union slot uslot;
uintptr_t as_int;
char cbuf[32];
struct holder *holder;
char *hbuf;
long *interior;

static HF_NOINLINE void leak_ints(void) {
    volatile uintptr_t x = (uintptr_t)malloc(sizeof(struct via_int)); /* SITE:LEAK_INT1 */
    x = (uintptr_t)malloc(sizeof(struct via_int)); /* SITE:LEAK_INT2 */
    x = 0;
    (void)x;
}

int main(int argc, char **argv) {
    (void)argv;
    uslot.ptr = malloc(sizeof(struct via_union));
    as_int = (uintptr_t)malloc(sizeof(struct via_int)); /* SITE:AS_INT */
    struct via_charbuf *c = malloc(sizeof(struct via_charbuf));
    memcpy(cbuf + 8, &c, sizeof c);
    c = NULL;

    holder = malloc(sizeof(struct holder));
    memset(holder, 0, sizeof *holder);
    holder->hidden = (uintptr_t)malloc(sizeof(struct via_intfield)); /* SITE:INTFIELD */
    holder->u.ptr = malloc(sizeof(struct via_unionfield));
    struct via_charfield *cf = malloc(sizeof(struct via_charfield));
    memcpy(holder->buf + 8, &cf, sizeof cf);
    cf = NULL;

    size_t n = 48 + (size_t)argc; /* a run-time size: an untyped site */
    hbuf = malloc(n); /* SITE:RAWBUF */
    memset(hbuf, 0, n);
    struct via_heapbuf *h = malloc(sizeof(struct via_heapbuf));
    memcpy(hbuf + 16, &h, sizeof h);
    h = NULL;

    struct via_interior *in = malloc(sizeof(struct via_interior));
    interior = &in->c;
    in = NULL;

    leak_ints();
    hf_ready_and_block();
}
