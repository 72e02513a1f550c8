/*
 * pid_set.h: a set of local pids, for the NIF's per-node record of which
 * processes it monitors.
 *
 * A local pid is an immediate term: the ERL_NIF_TERM inside an ErlNifPid
 * is one machine word that names the process for as long as it lives
 * (that is why an ErlNifPid is self-contained, valid outside any env). So
 * the set stores just that word, 8 bytes a pid, and two local pids are the
 * same process exactly when their words are equal (what enif_compare_pids
 * would say, without the call). No pid word is 0 (immediates carry a
 * non-zero tag), so 0 marks an empty slot.
 *
 * Open addressing with linear probing and backward-shift deletion: no
 * tombstones, so a set that sees millions of short-lived pids never clogs.
 * `cap` is 0 or a power of two; the table grows at 3/4 load and shrinks
 * below 1/8. Not thread-safe: the caller holds its shard's lock.
 */
#ifndef HEADCOUNT_PID_SET_H
#define HEADCOUNT_PID_SET_H

#include <erl_nif.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    ERL_NIF_TERM *slots; /* 0 = empty */
    uint32_t cap;
    uint32_t len;
} pid_set;

/* A well-mixed 64-bit hash of a pid word (murmur3's 64-bit finalizer). */
static inline uint64_t pid_hash(ERL_NIF_TERM pid)
{
    uint64_t h = (uint64_t)pid;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

bool pid_set_contains(const pid_set *s, ERL_NIF_TERM pid, uint64_t hash);

/* Adds `pid` (which must be absent). false if out of memory (the set is
 * then unchanged). */
bool pid_set_insert(pid_set *s, ERL_NIF_TERM pid, uint64_t hash);

/* Removes `pid`; false if it was absent. */
bool pid_set_remove(pid_set *s, ERL_NIF_TERM pid, uint64_t hash);

/* Bytes of the table (what enif_alloc holds for it). */
static inline size_t pid_set_bytes(const pid_set *s)
{
    return (size_t)s->cap * sizeof(ERL_NIF_TERM);
}

/* Frees the table; the set is empty after. */
void pid_set_clear(pid_set *s);

#endif
