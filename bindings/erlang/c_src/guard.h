/*
 * guard.h: keeps `stop` from freeing a node under a concurrent call.
 *
 * Every call that uses the node (the `down` callback too) enters the
 * guard and leaves it when done. Entering is one atomic add on a counter of
 * the calling thread's own (a slot picked once per OS thread), then a load
 * of `closed`; leaving is one atomic subtract. `stop` stores `closed = 1`
 * and then waits until every counter reads 0: after that no call is inside,
 * and every later one sees `closed` and answers `{error, closed}` without
 * touching the node.
 *
 *     caller                        stop
 *     ------                        ----
 *     inflight[slot] += 1  (A)      closed = 1            (C)
 *     if closed: undo, fail (B)     wait inflight[*] == 0 (D)
 *
 * All four are sequentially consistent, so in their single total order
 * either (A) comes before (D)'s read of that slot (stop sees the caller and
 * waits for it) or (C) comes before (B) (the caller sees `closed`):
 * Dekker's argument. An rwlock (ERTS's enif_rwlock is a plain ethr_rwmutex)
 * would do the same job with every reader writing one shared cache line on
 * every call; this way a scheduler writes only its own line, as the
 * library's per-CPU counters do.
 *
 * A call leaves on the thread it entered on: NIF calls and resource
 * callbacks never move between threads.
 */
#ifndef HEADCOUNT_GUARD_H
#define HEADCOUNT_GUARD_H

#include <sched.h>
#include <stdint.h>

#define GUARD_SLOTS 64 /* a power of two */

typedef struct {
    _Alignas(64) uint64_t n; /* atomic; alone on its cache line */
} guard_slot;

typedef struct {
    guard_slot inflight[GUARD_SLOTS];
    uint32_t closed; /* atomic; 0 -> 1 once */
} guard;

/* This OS thread's slot (schedulers are long-lived threads, so in practice
 * each gets a slot of its own). */
static inline uint32_t guard_my_slot(void)
{
    static uint32_t next_slot; /* atomic */
    static _Thread_local uint32_t slot_plus1;
    uint32_t s = slot_plus1;
    if (s == 0) {
        s = (__atomic_fetch_add(&next_slot, 1, __ATOMIC_RELAXED) % GUARD_SLOTS) + 1;
        slot_plus1 = s;
    }
    return s - 1;
}

/* Enters the guard: 1, or 0 (not entered) once closed. */
static inline int guard_enter(guard *g)
{
    uint64_t *n = &g->inflight[guard_my_slot()].n;
    __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);            /* (A) */
    if (__atomic_load_n(&g->closed, __ATOMIC_SEQ_CST)) {   /* (B) */
        __atomic_fetch_sub(n, 1, __ATOMIC_RELEASE);
        return 0;
    }
    return 1;
}

static inline void guard_leave(guard *g)
{
    __atomic_fetch_sub(&g->inflight[guard_my_slot()].n, 1, __ATOMIC_RELEASE);
}

static inline int guard_is_closed(guard *g)
{
    return (int)__atomic_load_n(&g->closed, __ATOMIC_SEQ_CST);
}

/* Closes the guard and waits until no call is inside. The caller makes
 * sure only one thread closes (a lock of its own). */
static inline void guard_close(guard *g)
{
    __atomic_store_n(&g->closed, 1, __ATOMIC_SEQ_CST);     /* (C) */
    for (unsigned k = 0; k < GUARD_SLOTS; k++) {           /* (D) */
        unsigned spins = 0;
        while (__atomic_load_n(&g->inflight[k].n, __ATOMIC_SEQ_CST) != 0) {
            /* A call inside is a few microseconds from leaving. */
            if (++spins > 64)
                sched_yield();
        }
    }
}

#endif
