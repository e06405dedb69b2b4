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

/* ---- User hooks for a live update (docs/hooks.md) ----
 *
 * A type change no automatic rule can convert (a field whose kind changed,
 * a pointer retargeted to another type, a unit change) needs a transform
 * hook in the NEW version:
 *
 *     struct user_v1 { ...the old version's definition, copied... };
 *     static void user_from_v1(struct user *new, const struct user_v1 *old)
 *     { ... }
 *     MCR_TRANSFORM(struct user, struct user_v1, user_from_v1);
 *
 * It runs once for every value of `struct user` the old state holds (heap
 * objects, globals, array elements, nested fields), after the automatic
 * rules filled `new` and rewrote every pointer; `old` is the old value,
 * read-only, its pointers the old version's. The runtime checks that
 * `struct user_v1` is exactly the old version's layout before anything
 * stops. `free()` of old memory inside a hook is deferred until the
 * transfer is over. MCR_AFTER_TRANSFER(fn) runs `void fn(void)` once after
 * the transfer, before the new version resumes. A hook that crashes, or
 * leaves a pointer field of `new` pointing nowhere valid, rolls the update
 * back: the old version keeps serving.
 */

/* The new address of what a pointer found in old state points to (the
 * same address when it did not move, NULL for NULL). Only inside hooks. */
void *mcr_new_address(const void *old_ptr);

/* One record per hook in section `mcr_hooks` (docs/ABI.md). Names are
 * stored inline so tools read them from the file without relocations. */
#define MCR_HOOK_NAME_MAX 128
#define MCR_HOOK_MAGIC 0x314b4f4f4852434dULL /* "MCRHOOK1" */
#define MCR_HOOK_TRANSFORM 1u
#define MCR_HOOK_AFTER_TRANSFER 2u
struct mcr_hook {
    unsigned long long magic;
    unsigned int kind;
    unsigned int line;
    unsigned long long new_size; /* sizeof(NEW), 0 after transfer */
    unsigned long long old_size; /* sizeof(OLD) */
    void (*fn)(void);            /* called through its real type */
    char new_type[MCR_HOOK_NAME_MAX];
    char old_type[MCR_HOOK_NAME_MAX];
    char function[MCR_HOOK_NAME_MAX];
};

#define MCR__CAT2(a, b) a##b
#define MCR__CAT(a, b) MCR__CAT2(a, b)

/* `__mcr_hook_type_FN` checks FN's type at compile time and brings OLD's
 * definition into the type map (mcr-pass names the types of these
 * variables); the record goes to section `mcr_hooks`. */
#define MCR_TRANSFORM(NEW, OLD, FN)                                            \
    _Static_assert(sizeof(#NEW) <= MCR_HOOK_NAME_MAX &&                        \
                       sizeof(#OLD) <= MCR_HOOK_NAME_MAX &&                    \
                       sizeof(#FN) <= MCR_HOOK_NAME_MAX,                       \
                   "MCR_TRANSFORM: a name is longer than 127 characters");     \
    __attribute__((used)) static void (*const MCR__CAT(__mcr_hook_type_, FN))( \
        NEW *, const OLD *) = FN;                                              \
    __attribute__((used, section("mcr_hooks"), aligned(8))) static const      \
        struct mcr_hook MCR__CAT(__mcr_hook_, FN) = {                          \
            MCR_HOOK_MAGIC, MCR_HOOK_TRANSFORM, __LINE__, sizeof(NEW),         \
            sizeof(OLD), (void (*)(void))(FN), #NEW, #OLD, #FN}

#define MCR_AFTER_TRANSFER(FN)                                                 \
    _Static_assert(sizeof(#FN) <= MCR_HOOK_NAME_MAX,                           \
                   "MCR_AFTER_TRANSFER: name longer than 127 characters");     \
    __attribute__((used)) static void (*const MCR__CAT(__mcr_hook_type_,       \
                                                      FN))(void) = FN;         \
    __attribute__((used, section("mcr_hooks"), aligned(8))) static const      \
        struct mcr_hook MCR__CAT(__mcr_hook_, FN) = {                          \
            MCR_HOOK_MAGIC, MCR_HOOK_AFTER_TRANSFER, __LINE__, 0, 0,           \
            (void (*)(void))(FN), "", "", #FN}

#ifdef __cplusplus
}
#endif
#endif
