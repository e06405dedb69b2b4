/* Plumbing shared by the heap-shape fixtures of `mcr-ctl heap`/`trace`
 * (crates/mcr-ctl/tests/). Each fixture builds a heap of a known shape,
 * prints "ready" on stdout and blocks reading stdin; it exits when stdin
 * reaches end of file (the test closes it) or on a signal.
 *
 * Exact counts need a stack free of stale pointers: conservative stack
 * scanning sees every word of the live part of a stack (and of the whole
 * stack for a thread that is not blocked in a system call), so fixtures
 * build and drop objects in functions that are not inlined and then call
 * hf_clobber_stack() before they block.
 */
#ifndef MCR_HEAP_FIXTURE_H
#define MCR_HEAP_FIXTURE_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HF_NOINLINE __attribute__((noinline))
#define HF_UNUSED __attribute__((unused))

/* Zeroes 64 KiB of stack below the caller, wiping dead frames. */
HF_UNUSED HF_NOINLINE static void hf_clobber_stack(void) {
    volatile char pad[64 * 1024];
    memset((char *)pad, 0, sizeof pad);
    __asm__ volatile("" ::"r"(pad) : "memory");
}

/* Says "ready" (plus an optional word) on stdout, unbuffered. */
HF_UNUSED static void hf_say(const char *what) {
    char line[128];
    int n = snprintf(line, sizeof line, "%s\n", what);
    if (write(1, line, (size_t)n) != n) _exit(1);
}

/* Blocks in read(2) on stdin until end of file, then exits 0. */
HF_UNUSED HF_NOINLINE static void hf_block(void) {
    char c;
    for (;;) {
        ssize_t n = read(0, &c, 1);
        if (n == 0) exit(0);
        if (n < 0) _exit(1);
    }
}

HF_UNUSED static void hf_ready_and_block(void) {
    hf_clobber_stack();
    hf_say("ready");
    hf_block();
}

#endif
