/* mcr.h: what a C program can tell mcr about itself.
 *
 * Programs built with mcr-cc find this header automatically; guard its use
 * with `#if __has_include(<mcr.h>)` to keep building with other compilers.
 */
#ifndef MCR_H
#define MCR_H

#ifdef __cplusplus
extern "C" {
#endif

/* A quiescent point: the top of a long-running loop where this thread
 * holds no half-done work. An update parks the thread here (and the main
 * thread's first quiescent point ends start-up). Needed only for loops that
 * make no blocking call mcr already knows (epoll_wait, poll, select,
 * accept, read on a socket, pthread_cond_wait, nanosleep, ...): a busy
 * polling loop, a loop that blocks in a library mcr does not wrap. */
void __mcr_quiescent_point(void);
#define MCR_QUIESCENT_POINT() __mcr_quiescent_point()

#ifdef __cplusplus
}
#endif
#endif
