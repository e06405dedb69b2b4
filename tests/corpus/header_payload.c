/* A header struct followed by a payload. Without a flexible member the
 * size is not k * sizeof(header): untyped (the runtime scans it). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hdr { uint32_t len; uint32_t kind; struct hdr *next; };
struct packet { struct hdr h; unsigned char payload[]; };

int main(void) {
    const char *body = "payload-bytes";
    size_t n = strlen(body) + 1;
    struct hdr *h = malloc(sizeof(struct hdr) + n); /* expect: untyped */
    h->len = (uint32_t)n; h->kind = 1; h->next = NULL;
    memcpy((char *)(h + 1), body, n);
    struct packet *p = malloc(sizeof(struct packet) + n); /* expect: struct packet */
    p->h = *h;
    memcpy(p->payload, body, n);
    printf("%u %s %s\n", p->h.len, (char *)(h + 1), (char *)p->payload);
    return 0;
}
