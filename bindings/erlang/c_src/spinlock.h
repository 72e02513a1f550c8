/*
 * spinlock.h: a test-and-test-and-set lock that lives inside the data it
 * guards (one pid-set shard: lock, table pointer and sizes share a cache
 * line, where an ErlNifMutex would be a pointer to a line elsewhere).
 *
 * Critical sections are short (a table probe and one or two library calls;
 * at worst hc_untrack_all of a process in very many topics), so a waiter
 * spins briefly and then yields its thread to the OS, which also covers a
 * holder that the OS has preempted. Unlock is one release store.
 */
#ifndef HEADCOUNT_SPINLOCK_H
#define HEADCOUNT_SPINLOCK_H

#include <sched.h>
#include <stdint.h>

typedef struct {
    uint32_t held; /* atomic: 0 free, 1 held */
} spinlock;

static inline void spin_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void spin_lock(spinlock *l)
{
    for (unsigned spins = 0;; spins++) {
        if (!__atomic_load_n(&l->held, __ATOMIC_RELAXED) &&
            !__atomic_exchange_n(&l->held, 1, __ATOMIC_ACQUIRE))
            return;
        if (spins < 100)
            spin_pause();
        else
            sched_yield();
    }
}

static inline void spin_unlock(spinlock *l)
{
    __atomic_store_n(&l->held, 0, __ATOMIC_RELEASE);
}

#endif
