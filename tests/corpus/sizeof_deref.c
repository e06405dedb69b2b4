/* `sizeof *p`: the front end types it from the receiver's pointee. */
#include <stdio.h>
#include <stdlib.h>

struct account { long id; double balance; struct account *next; };

static struct account *open_account(long id) {
    struct account *a = malloc(sizeof *a); /* expect: struct account */
    a->id = id; a->balance = id * 1.5; a->next = NULL;
    return a;
}

int main(void) {
    struct account *list = NULL, *a;
    for (long i = 1; i <= 4; i++) { a = open_account(i); a->next = list; list = a; }
    struct account *copy;
    copy = malloc(sizeof *copy); /* expect: struct account */
    *copy = *list;
    double sum = 0;
    for (a = list; a; a = a->next) sum += a->balance;
    printf("%.1f %ld\n", sum, copy->id);
    return 0;
}
