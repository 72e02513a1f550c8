/* pid_set.c: see pid_set.h. */

#include "pid_set.h"

#include <string.h>

#define MIN_CAP 16u
#define MAX_CAP (1u << 30)

bool pid_set_contains(const pid_set *s, ERL_NIF_TERM pid, uint64_t hash)
{
    if (s->cap == 0)
        return false;
    uint32_t mask = s->cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        ERL_NIF_TERM p = s->slots[i];
        if (p == pid)
            return true;
        if (p == 0)
            return false;
    }
}

/* Moves every pid into a table of `new_cap` slots. false if out of memory
 * (the set is then unchanged). */
static bool resize(pid_set *s, uint32_t new_cap)
{
    ERL_NIF_TERM *slots = enif_alloc(sizeof(ERL_NIF_TERM) * new_cap);
    if (!slots)
        return false;
    memset(slots, 0, sizeof(ERL_NIF_TERM) * new_cap);
    uint32_t mask = new_cap - 1;
    for (uint32_t i = 0; i < s->cap; i++) {
        ERL_NIF_TERM p = s->slots[i];
        if (p == 0)
            continue;
        uint32_t j = (uint32_t)pid_hash(p) & mask;
        while (slots[j] != 0)
            j = (j + 1) & mask;
        slots[j] = p;
    }
    enif_free(s->slots);
    s->slots = slots;
    s->cap = new_cap;
    return true;
}

bool pid_set_insert(pid_set *s, ERL_NIF_TERM pid, uint64_t hash)
{
    if (s->cap == 0 || (uint64_t)(s->len + 1) * 4 > (uint64_t)s->cap * 3) {
        if (s->cap >= MAX_CAP || !resize(s, s->cap ? s->cap * 2 : MIN_CAP))
            return false;
    }
    uint32_t mask = s->cap - 1;
    uint32_t i = (uint32_t)hash & mask;
    while (s->slots[i] != 0)
        i = (i + 1) & mask;
    s->slots[i] = pid;
    s->len++;
    return true;
}

bool pid_set_remove(pid_set *s, ERL_NIF_TERM pid, uint64_t hash)
{
    if (s->cap == 0)
        return false;
    uint32_t mask = s->cap - 1;
    uint32_t hole = (uint32_t)hash & mask;
    for (;; hole = (hole + 1) & mask) {
        if (s->slots[hole] == pid)
            break;
        if (s->slots[hole] == 0)
            return false;
    }
    /* Backward shift: close the hole with later entries of the run that
     * may move back (their home slot does not lie cyclically in
     * (hole, j]). */
    for (uint32_t j = (hole + 1) & mask; s->slots[j] != 0; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)pid_hash(s->slots[j]) & mask;
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        s->slots[hole] = s->slots[j];
        hole = j;
    }
    s->slots[hole] = 0;
    s->len--;
    if (s->cap > MIN_CAP && s->len * 8 < s->cap)
        (void)resize(s, s->cap / 2); /* out of memory: keep the big table */
    return true;
}

void pid_set_clear(pid_set *s)
{
    enif_free(s->slots);
    s->slots = NULL;
    s->cap = s->len = 0;
}
