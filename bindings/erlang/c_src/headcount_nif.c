/*
 * headcount_nif.c: the Erlang NIF over libheadcount's C ABI.
 *
 * One resource type, `hc_erl_node`, wraps an `hc_node *`. Around it this file
 * keeps, per node, which local processes are tracked: a map pid -> {monitor,
 * connection id, number of topics}. Each tracked pid is one headcount
 * *connection*: `hc_track(topic, conn)` / `hc_untrack(topic, conn)` keep the
 * exact membership in the library, and when the process exits the resource's
 * `down` callback calls `hc_untrack_all(conn)`. No process, no ETS table and
 * no dirty scheduler sits on the hot path; every call below is a few short
 * critical sections (it follows OTP's prim_file_nif.c in spirit: a resource
 * with a `down` callback, the caller monitored as soon as it holds state, the
 * explicit release path demonitoring first).
 *
 * Keeping `stop` from freeing the node under a concurrent call: the guard.
 *
 *   Every call that uses `res->node` (the `down` callback too) enters the
 *   node's guard and leaves it when done. Entering is one atomic add on a
 *   counter of the calling thread's own (a slot picked once per OS thread),
 *   then a load of `closed`; leaving is one atomic subtract. `stop` stores
 *   `closed = 1` and then waits until every counter reads 0: after that no
 *   call is inside, and every later one sees `closed` and answers
 *   `{error, closed}` without touching the node.
 *
 *     caller                        stop
 *     ------                        ----
 *     inflight[slot] += 1  (A)      closed = 1            (C)
 *     if closed: undo, fail (B)     wait inflight[*] == 0 (D)
 *
 *   All four are sequentially consistent, so in their single total order
 *   either (A) comes before (D)'s read of that slot (stop sees the caller
 *   and waits for it) or (C) comes before (B) (the caller sees `closed`):
 *   Dekker's argument. An rwlock (ERTS's enif_rwlock is a plain
 *   ethr_rwmutex) would do the same job with every reader writing one
 *   shared cache line on every call; this way a scheduler writes only its
 *   own line, as the library's per-CPU counters do.
 *
 *   State: `closed` 0 -> 1, once, under `stop_lock` (which only `stop`
 *   takes); `node` is written only by `start` before the handle exists and
 *   by `stop` after the wait.
 *
 * Locks, always taken in this order (no path takes them the other way round):
 *
 *   1. one `shard->lock` (ErlNifMutex) of the pid map, chosen by the pid's
 *      hash, taken inside the guard. It orders everything about one pid:
 *      whether it has an entry, its monitor, its topic count, and the
 *      library calls that change its membership (so the topic count always
 *      equals what the library holds for that connection).
 *   2. the library's own short internal locks (inside hc_track etc.).
 *
 * The races, and why each is safe:
 *
 * - `down` vs NIF calls on other schedulers: `down` enters the guard and
 *   takes the pid's shard lock as `untrack` does, so it is just another
 *   caller. It removes the pid's entry
 *   only if the entry's monitor is the one that fired (`enif_compare_
 *   monitors`): an entry created later for the same pid carries a newer
 *   monitor, and that monitor's own `down` will remove it.
 * - `untrack` of a pid's last topic demonitors it. If the monitor has already
 *   fired (demonitor returns > 0), its `down` is on its way; it finds no
 *   entry (or an entry with another monitor) and does nothing.
 * - `down` vs `stop`: `down` enters the guard like any call. Once `stop`
 *   has closed the guard and waited, no call is inside; it takes the pid
 *   tables out, demonitors their entries, and frees them and the node. A
 *   `down` that fires meanwhile sees `closed`: nothing to do.
 * - `down` vs the destructor: the runtime keeps the resource alive for the
 *   whole `down` call (it takes a reference unless the count is already
 *   zero, and then skips `down`), and removes all monitors before the
 *   destructor runs. So the destructor never runs concurrently with
 *   anything else on the resource, and frees the node if `stop` did not.
 * - a garbage-collected node: the destructor frees it; processes it tracked
 *   live on untouched (their monitors are gone with the resource).
 *
 * Errors: a term of the wrong type raises `badarg`; a condition the caller
 * cannot rule out by types returns `{error, Reason}` (see headcount.erl).
 */

#include <erl_nif.h>

#include <stdbool.h>
#include <stdint.h>
#include <sched.h>
#include <string.h>

#include "headcount.h"

/* ------------------------------------------------------------------------ */
/* Atoms                                                                     */

static ERL_NIF_TERM am_ok, am_error, am_undefined, am_closed, am_already_tracked,
    am_not_tracked, am_invalid_topic, am_invalid_argument, am_config, am_io, am_panic,
    am_noproc, am_enomem, am_unknown, am_count, am_local, am_peers_reporting,
    am_peers_known, am_oldest_report_age_ms;

static ERL_NIF_TERM mk_atom(ErlNifEnv *env, const char *name)
{
    ERL_NIF_TERM atom;
    if (enif_make_existing_atom(env, name, &atom, ERL_NIF_LATIN1))
        return atom;
    return enif_make_atom(env, name);
}

static ERL_NIF_TERM error_tuple(ErlNifEnv *env, ERL_NIF_TERM reason)
{
    return enif_make_tuple2(env, am_error, reason);
}

/* The calling thread's last library error message as a binary. */
static ERL_NIF_TERM last_error_binary(ErlNifEnv *env)
{
    const char *msg = hc_last_error();
    ERL_NIF_TERM bin;
    size_t len = msg ? strlen(msg) : 0;
    unsigned char *data = enif_make_new_binary(env, len, &bin);
    if (len)
        memcpy(data, msg, len);
    return bin;
}

/*
 * A failed status as the Erlang error term. The statuses a caller meets in
 * normal operation (a closed node, a bad topic) are plain atoms; the rest
 * carry the library's message: {error, {config | io | invalid_argument |
 * panic | unknown, Message}}.
 */
static ERL_NIF_TERM status_error(ErlNifEnv *env, hc_status status)
{
    ERL_NIF_TERM kind;
    switch (status) {
    case HC_ERR_CLOSED:
        return error_tuple(env, am_closed);
    case HC_ERR_INVALID_TOPIC:
        return error_tuple(env, am_invalid_topic);
    case HC_ERR_NULL_ARG:
    case HC_ERR_INVALID_ARG:
    case HC_ERR_BUFFER_TOO_SMALL:
        kind = am_invalid_argument;
        break;
    case HC_ERR_CONFIG:
        kind = am_config;
        break;
    case HC_ERR_IO:
        kind = am_io;
        break;
    case HC_ERR_PANIC:
        kind = am_panic;
        break;
    default:
        kind = am_unknown;
        break;
    }
    return error_tuple(env, enif_make_tuple2(env, kind, last_error_binary(env)));
}

/* ------------------------------------------------------------------------ */
/* The per-node pid map                                                       */

/*
 * One tracked process. `conn` is the headcount connection id that stands
 * for this (node, pid); `topics` is how many topics the library holds for
 * `conn`. An entry exists exactly while the pid holds a monitor from us.
 */
typedef struct {
    ErlNifPid pid;
    uint64_t hash;
    uint64_t conn;
    uint32_t topics;
    uint32_t used; /* 0 = empty slot */
    ErlNifMonitor mon;
} pid_entry;

/*
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so a map that sees millions of short-lived pids never clogs).
 * `cap` is 0 or a power of two; the table grows at 70% load and shrinks
 * below 1/8.
 */
typedef struct {
    ErlNifMutex *lock;
    pid_entry *slots;
    uint32_t cap;
    uint32_t len;
    char pad_[64 - sizeof(void *) * 2 - sizeof(uint32_t) * 2]; /* one cache line per shard */
} pid_shard;

#define SHARD_BITS 8
#define NSHARDS (1u << SHARD_BITS)
#define MIN_CAP 16u

#define GUARD_SLOTS 64 /* a power of two */

/* One in-flight counter, alone on its cache line. */
typedef struct {
    uint64_t n; /* atomic */
    char pad_[64 - sizeof(uint64_t)];
} guard_slot;

typedef struct {
    guard_slot inflight[GUARD_SLOTS]; /* see "the guard" above */
    uint32_t closed;                  /* atomic; 0 -> 1 once, by stop */
    ErlNifMutex *stop_lock;           /* serializes stop calls */
    hc_node *node;                    /* NULL once stopped */
    uint64_t next_conn;               /* atomic; connection 0 is never used */
    pid_shard shards[NSHARDS];
} hc_erl_node;

static ErlNifResourceType *node_type;

/* This OS thread's guard slot (schedulers are long-lived threads, so in
 * practice each gets a slot of its own). */
static uint32_t next_thread_slot; /* atomic */
static _Thread_local uint32_t thread_slot_plus1;

static uint32_t my_slot(void)
{
    uint32_t s = thread_slot_plus1;
    if (s == 0) {
        s = (__atomic_fetch_add(&next_thread_slot, 1, __ATOMIC_RELAXED) % GUARD_SLOTS) + 1;
        thread_slot_plus1 = s;
    }
    return s - 1;
}

/* Enters the node's guard: its node, or NULL (not entered) once stopped. */
static hc_node *acquire(hc_erl_node *res)
{
    uint64_t *n = &res->inflight[my_slot()].n;
    __atomic_fetch_add(n, 1, __ATOMIC_SEQ_CST);                  /* (A) */
    if (__atomic_load_n(&res->closed, __ATOMIC_SEQ_CST)) {       /* (B) */
        __atomic_fetch_sub(n, 1, __ATOMIC_RELEASE);
        return NULL;
    }
    return res->node;
}

/* Leaves the guard (same thread as acquire: NIF calls and callbacks never
 * move between threads). */
static void release(hc_erl_node *res)
{
    __atomic_fetch_sub(&res->inflight[my_slot()].n, 1, __ATOMIC_RELEASE);
}

/* Closes the guard and waits until no call is inside. stop_lock held. */
static void close_and_drain(hc_erl_node *res)
{
    __atomic_store_n(&res->closed, 1, __ATOMIC_SEQ_CST);         /* (C) */
    for (unsigned k = 0; k < GUARD_SLOTS; k++) {                 /* (D) */
        unsigned spins = 0;
        while (__atomic_load_n(&res->inflight[k].n, __ATOMIC_SEQ_CST) != 0) {
            /* A call inside is a few microseconds from leaving. */
            if (++spins > 64)
                sched_yield();
        }
    }
}

/* A 64-bit hash of a local pid, well mixed (murmur3's finalizer over the
 * runtime's own hash of the term). */
static uint64_t pid_hash(const ErlNifPid *pid)
{
    uint64_t h = enif_hash(ERL_NIF_INTERNAL_HASH, pid->pid, 0x9e3779b97f4a7c15ull);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static pid_shard *shard_of(hc_erl_node *res, uint64_t hash)
{
    return &res->shards[hash >> (64 - SHARD_BITS)];
}

/* The entry of `pid`, or NULL. Shard lock held. */
static pid_entry *shard_find(pid_shard *s, const ErlNifPid *pid, uint64_t hash)
{
    if (s->cap == 0)
        return NULL;
    uint32_t mask = s->cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        pid_entry *e = &s->slots[i];
        if (!e->used)
            return NULL;
        if (e->hash == hash && enif_compare_pids(&e->pid, pid) == 0)
            return e;
    }
}

/* Moves every entry into a table of `new_cap` slots. 0 if out of memory
 * (the table is then unchanged). Shard lock held. */
static int shard_resize(pid_shard *s, uint32_t new_cap)
{
    pid_entry *slots = enif_alloc(sizeof(pid_entry) * new_cap);
    if (!slots)
        return 0;
    memset(slots, 0, sizeof(pid_entry) * new_cap);
    uint32_t mask = new_cap - 1;
    for (uint32_t i = 0; i < s->cap; i++) {
        if (!s->slots[i].used)
            continue;
        uint32_t j = (uint32_t)s->slots[i].hash & mask;
        while (slots[j].used)
            j = (j + 1) & mask;
        slots[j] = s->slots[i];
    }
    enif_free(s->slots);
    s->slots = slots;
    s->cap = new_cap;
    return 1;
}

/* A new zeroed entry for `pid` (which must be absent), or NULL if out of
 * memory. The pointer is valid until the shard changes. Shard lock held. */
static pid_entry *shard_insert(pid_shard *s, const ErlNifPid *pid, uint64_t hash)
{
    if (s->cap == 0 || (uint64_t)(s->len + 1) * 10 > (uint64_t)s->cap * 7) {
        if (s->cap >= (1u << 30) || !shard_resize(s, s->cap ? s->cap * 2 : MIN_CAP))
            return NULL;
    }
    uint32_t mask = s->cap - 1;
    uint32_t i = (uint32_t)hash & mask;
    while (s->slots[i].used)
        i = (i + 1) & mask;
    pid_entry *e = &s->slots[i];
    memset(e, 0, sizeof *e);
    e->pid = *pid;
    e->hash = hash;
    e->used = 1;
    s->len++;
    return e;
}

/* Removes `e` (a pointer into `s->slots`). Shard lock held. */
static void shard_remove(pid_shard *s, pid_entry *e)
{
    uint32_t mask = s->cap - 1;
    uint32_t hole = (uint32_t)(e - s->slots);
    for (uint32_t j = (hole + 1) & mask; s->slots[j].used; j = (j + 1) & mask) {
        uint32_t home = (uint32_t)s->slots[j].hash & mask;
        /* The entry at j may move back into the hole unless its home slot
         * lies cyclically in (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (stays)
            continue;
        s->slots[hole] = s->slots[j];
        hole = j;
    }
    s->slots[hole].used = 0;
    s->len--;
    if (s->cap > MIN_CAP && s->len * 8 < s->cap)
        (void)shard_resize(s, s->cap / 2); /* out of memory: keep the big table */
}

/* The pid map's tables, taken out of a node by `stop`. */
typedef struct {
    pid_entry *slots;
    uint32_t cap;
} taken_table;

/* Moves every shard's table into `out` (NSHARDS entries), leaving the map
 * empty. The guard is closed and drained (so no shard lock is held by
 * anyone and none will be). */
static void take_pids(hc_erl_node *res, taken_table *out)
{
    for (unsigned k = 0; k < NSHARDS; k++) {
        pid_shard *s = &res->shards[k];
        out[k].slots = s->slots;
        out[k].cap = s->cap;
        s->slots = NULL;
        s->cap = s->len = 0;
    }
}

/* Demonitors (when `env` is given) every entry of taken tables and frees
 * them. Needs no lock: the tables belong to the caller alone. A `down` for
 * one of these monitors that is already on its way finds no entry. */
static void drop_pids(ErlNifEnv *env, hc_erl_node *res, taken_table *tables)
{
    for (unsigned k = 0; k < NSHARDS; k++) {
        if (env) {
            for (uint32_t i = 0; i < tables[k].cap; i++)
                if (tables[k].slots[i].used)
                    (void)enif_demonitor_process(env, res, &tables[k].slots[i].mon);
        }
        enif_free(tables[k].slots);
    }
}

/* ------------------------------------------------------------------------ */
/* Resource callbacks                                                         */

static void node_dtor(ErlNifEnv *env, void *obj)
{
    (void)env;
    hc_erl_node *res = obj;
    /* The runtime has removed the monitors already; just free the tables. */
    for (unsigned k = 0; k < NSHARDS; k++)
        enif_free(res->shards[k].slots);
    /* Not stopped: a garbage-collected node. hc_node_free leaves the cluster
     * and joins the node's threads; it runs here, on the scheduler the
     * runtime picked for the destructor, so call stop/1 to choose when. */
    hc_node_free(res->node);
    res->node = NULL;
    for (unsigned k = 0; k < NSHARDS; k++)
        if (res->shards[k].lock)
            enif_mutex_destroy(res->shards[k].lock);
    if (res->stop_lock)
        enif_mutex_destroy(res->stop_lock);
}

/* A tracked process exited: untrack it everywhere, drop its entry. */
static void node_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
    (void)env;
    hc_erl_node *res = obj;
    uint64_t hash = pid_hash(pid);
    pid_shard *s = shard_of(res, hash);

    hc_node *node = acquire(res);
    if (!node)
        return; /* stopped: stop has taken (or is taking) the pid tables */
    enif_mutex_lock(s->lock);
    pid_entry *e = shard_find(s, pid, hash);
    if (e && enif_compare_monitors(&e->mon, mon) == 0) {
        (void)hc_untrack_all(node, e->conn, NULL);
        shard_remove(s, e);
    }
    enif_mutex_unlock(s->lock);
    release(res);
}

/* ------------------------------------------------------------------------ */
/* Argument helpers                                                           */

static int get_node(ErlNifEnv *env, ERL_NIF_TERM term, hc_erl_node **res)
{
    return enif_get_resource(env, term, node_type, (void **)res);
}

/* A topic: any iodata (a binary, or an iolist flattened into a temporary
 * binary of this call's env). */
static int get_iodata(ErlNifEnv *env, ERL_NIF_TERM term, ErlNifBinary *bin)
{
    return enif_inspect_binary(env, term, bin) || enif_inspect_iolist_as_binary(env, term, bin);
}

/* iodata as a NUL-terminated string in `buf` (or enif_alloc'd if too long;
 * the caller frees *out if *out != buf). 0 on a NUL byte inside, or no memory. */
static int iodata_to_cstr(ErlNifBinary *bin, char *buf, size_t cap, char **out)
{
    if (memchr(bin->data, 0, bin->size))
        return 0;
    char *s = bin->size < cap ? buf : enif_alloc(bin->size + 1);
    if (!s)
        return 0;
    memcpy(s, bin->data, bin->size);
    s[bin->size] = 0;
    *out = s;
    return 1;
}

/* ------------------------------------------------------------------------ */
/* start / stop                                                               */

/* start_nif([{Key :: binary(), Value :: binary()}]) -> {ok, Node} | {error, _}
 * Dirty IO: starting a node spawns threads and may bind or resolve. */
static ERL_NIF_TERM start_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    unsigned len;
    if (!enif_get_list_length(env, argv[0], &len))
        return enif_make_badarg(env);

    hc_config *cfg = hc_config_new();
    if (!cfg)
        return error_tuple(env, am_enomem);

    ERL_NIF_TERM list = argv[0], head;
    while (enif_get_list_cell(env, list, &head, &list)) {
        const ERL_NIF_TERM *kv;
        int arity;
        ErlNifBinary kbin, vbin;
        if (!enif_get_tuple(env, head, &arity, &kv) || arity != 2 || !enif_inspect_binary(env, kv[0], &kbin) ||
            !enif_inspect_binary(env, kv[1], &vbin)) {
            hc_config_free(cfg);
            return enif_make_badarg(env);
        }
        char kbuf[64], vbuf[256], *k = NULL, *v = NULL;
        ERL_NIF_TERM err = am_ok;
        bool failed = false;
        if (!iodata_to_cstr(&kbin, kbuf, sizeof kbuf, &k) || !iodata_to_cstr(&vbin, vbuf, sizeof vbuf, &v)) {
            /* a NUL byte inside: not a C string */
            err = error_tuple(env, enif_make_tuple2(env, am_config, kv[0]));
            failed = true;
        } else {
            hc_status st = hc_config_set(cfg, k, v);
            if (st != HC_OK) {
                err = status_error(env, st);
                failed = true;
            }
        }
        if (k && k != kbuf)
            enif_free(k);
        if (v && v != vbuf)
            enif_free(v);
        if (failed) {
            hc_config_free(cfg);
            return err;
        }
    }

    hc_node *node = NULL;
    hc_status st = hc_node_start(cfg, &node);
    hc_config_free(cfg);
    if (st != HC_OK)
        return status_error(env, st);

    hc_erl_node *res = enif_alloc_resource(node_type, sizeof *res);
    if (!res) {
        hc_node_free(node);
        return error_tuple(env, am_enomem);
    }
    memset(res, 0, sizeof *res);
    res->next_conn = 1;
    res->stop_lock = enif_mutex_create("headcount_stop");
    bool ok = res->stop_lock != NULL;
    for (unsigned k = 0; ok && k < NSHARDS; k++) {
        res->shards[k].lock = enif_mutex_create("headcount_pids");
        ok = res->shards[k].lock != NULL;
    }
    res->node = node; /* the destructor frees it and whatever locks exist */
    ERL_NIF_TERM term = enif_make_resource(env, res);
    enif_release_resource(res);
    if (!ok)
        return error_tuple(env, am_enomem); /* the resource is garbage now */
    return enif_make_tuple2(env, am_ok, term);
}

/* stop(Node) -> ok. Idempotent. Dirty IO: a graceful leave joins threads. */
static ERL_NIF_TERM stop_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    if (!get_node(env, argv[0], &res))
        return enif_make_badarg(env);
    taken_table *tables = enif_alloc(sizeof(taken_table) * NSHARDS);
    if (!tables)
        return error_tuple(env, am_enomem);
    enif_mutex_lock(res->stop_lock);
    hc_node *node = NULL;
    if (!__atomic_load_n(&res->closed, __ATOMIC_SEQ_CST)) {
        close_and_drain(res);
        node = res->node;
        res->node = NULL;
    }
    /* A second stop takes empty tables. */
    take_pids(res, tables);
    enif_mutex_unlock(res->stop_lock);
    /* Nothing can reach `node` or the tables any more. */
    drop_pids(env, res, tables);
    enif_free(tables);
    hc_node_free(node);
    return am_ok;
}

/* ------------------------------------------------------------------------ */
/* track / untrack                                                            */

static ERL_NIF_TERM do_track(ErlNifEnv *env, ERL_NIF_TERM node_term, ERL_NIF_TERM topic_term, const ErlNifPid *pid)
{
    hc_erl_node *res;
    ErlNifBinary topic;
    if (!get_node(env, node_term, &res) || !get_iodata(env, topic_term, &topic))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);

    uint64_t hash = pid_hash(pid);
    pid_shard *s = shard_of(res, hash);
    ERL_NIF_TERM result;
    enif_mutex_lock(s->lock);
    pid_entry *e = shard_find(s, pid, hash);
    if (!e) {
        /* First topic of this pid on this node: monitor it first, so that
         * from the moment it is counted its exit is noticed. */
        ErlNifMonitor mon;
        int r = enif_monitor_process(env, res, pid, &mon);
        if (r != 0) {
            result = r > 0 ? error_tuple(env, am_noproc) : enif_make_badarg(env);
            goto out;
        }
        e = shard_insert(s, pid, hash);
        if (!e) {
            (void)enif_demonitor_process(env, res, &mon);
            result = error_tuple(env, am_enomem);
            goto out;
        }
        e->mon = mon;
        e->conn = __atomic_fetch_add(&res->next_conn, 1, __ATOMIC_RELAXED);
    }
    bool added = false;
    hc_status st = hc_track(node, topic.data, topic.size, e->conn, &added);
    if (st != HC_OK)
        result = status_error(env, st);
    else if (added) {
        e->topics++;
        result = am_ok;
    } else
        result = error_tuple(env, am_already_tracked);
    if (e->topics == 0) { /* a new entry whose first track failed */
        (void)enif_demonitor_process(env, res, &e->mon);
        shard_remove(s, e);
    }
out:
    enif_mutex_unlock(s->lock);
    release(res);
    return result;
}

/* track(Node, Topic): tracks the calling process. */
static ERL_NIF_TERM track2(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifPid self;
    if (!enif_self(env, &self))
        return enif_make_badarg(env);
    return do_track(env, argv[0], argv[1], &self);
}

/* track(Node, Topic, Pid): tracks another local process. */
static ERL_NIF_TERM track3(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifPid pid;
    if (!enif_get_local_pid(env, argv[2], &pid))
        return enif_make_badarg(env);
    return do_track(env, argv[0], argv[1], &pid);
}

static ERL_NIF_TERM do_untrack(ErlNifEnv *env, ERL_NIF_TERM node_term, ERL_NIF_TERM topic_term, const ErlNifPid *pid)
{
    hc_erl_node *res;
    ErlNifBinary topic;
    if (!get_node(env, node_term, &res) || !get_iodata(env, topic_term, &topic))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);

    uint64_t hash = pid_hash(pid);
    pid_shard *s = shard_of(res, hash);
    ERL_NIF_TERM result;
    enif_mutex_lock(s->lock);
    pid_entry *e = shard_find(s, pid, hash);
    bool removed = false;
    /* A pid we do not track asks the library about connection 0 (never
     * used), which still checks the topic: a bad topic is invalid_topic
     * whether or not the pid is tracked. */
    hc_status st = hc_untrack(node, topic.data, topic.size, e ? e->conn : 0, &removed);
    if (st != HC_OK)
        result = status_error(env, st);
    else if (!removed || !e) /* !e && removed: impossible, conn 0 is never tracked */
        result = error_tuple(env, am_not_tracked);
    else {
        result = am_ok;
        if (--e->topics == 0) {
            /* Its last topic: stop watching it. If the monitor has already
             * fired, its down finds no entry and does nothing. */
            (void)enif_demonitor_process(env, res, &e->mon);
            shard_remove(s, e);
        }
    }
    enif_mutex_unlock(s->lock);
    release(res);
    return result;
}

static ERL_NIF_TERM untrack2(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifPid self;
    if (!enif_self(env, &self))
        return enif_make_badarg(env);
    return do_untrack(env, argv[0], argv[1], &self);
}

static ERL_NIF_TERM untrack3(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    ErlNifPid pid;
    if (!enif_get_local_pid(env, argv[2], &pid))
        return enif_make_badarg(env);
    return do_untrack(env, argv[0], argv[1], &pid);
}

/* ------------------------------------------------------------------------ */
/* Reads                                                                      */

typedef hc_status (*count_fn)(const hc_node *, const uint8_t *, size_t, uint64_t *);

static ERL_NIF_TERM do_count(ErlNifEnv *env, const ERL_NIF_TERM argv[], count_fn fn)
{
    hc_erl_node *res;
    ErlNifBinary topic;
    if (!get_node(env, argv[0], &res) || !get_iodata(env, argv[1], &topic))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    uint64_t n = 0;
    hc_status st = fn(node, topic.data, topic.size, &n);
    release(res);
    return st == HC_OK ? enif_make_uint64(env, n) : status_error(env, st);
}

static ERL_NIF_TERM count_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    return do_count(env, argv, hc_count);
}

static ERL_NIF_TERM count_local_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    return do_count(env, argv, hc_count_local);
}

static ERL_NIF_TERM count_info_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    ErlNifBinary topic;
    if (!get_node(env, argv[0], &res) || !get_iodata(env, argv[1], &topic))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    hc_topic_count info;
    memset(&info, 0, sizeof info);
    hc_status st = hc_count_info(node, topic.data, topic.size, &info);
    release(res);
    if (st != HC_OK)
        return status_error(env, st);
    ERL_NIF_TERM keys[5] = {am_count, am_local, am_peers_reporting, am_peers_known, am_oldest_report_age_ms};
    ERL_NIF_TERM vals[5] = {
        enif_make_uint64(env, info.count),
        enif_make_uint64(env, info.local),
        enif_make_uint(env, info.peers_reporting),
        enif_make_uint(env, info.peers_known),
        enif_make_uint64(env, info.oldest_report_age_ms),
    };
    ERL_NIF_TERM map;
    if (!enif_make_map_from_arrays(env, keys, vals, 5, &map))
        return enif_make_badarg(env); /* unreachable: the keys are distinct */
    return map;
}

static ERL_NIF_TERM total_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    if (!get_node(env, argv[0], &res))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    uint64_t n = 0;
    hc_status st = hc_total(node, &n);
    release(res);
    return st == HC_OK ? enif_make_uint64(env, n) : status_error(env, st);
}

/*
 * Calls `fn` (a string-returning ABI call) into a stack buffer, retrying
 * with a heap buffer of the size it asks for; returns a binary or an error.
 * Called inside the guard.
 */
typedef hc_status (*string_fn)(const hc_node *, char *, size_t, size_t *);

static ERL_NIF_TERM string_call(ErlNifEnv *env, const hc_node *node, string_fn fn, ERL_NIF_TERM *out)
{
    char stack[2048];
    char *buf = stack;
    size_t cap = sizeof stack;
    for (int attempt = 0; attempt < 4; attempt++) {
        size_t len = 0;
        hc_status st = fn(node, buf, cap, &len);
        if (st == HC_OK) {
            unsigned char *data = enif_make_new_binary(env, len, out);
            memcpy(data, buf, len);
            if (buf != stack)
                enif_free(buf);
            return am_ok;
        }
        if (buf != stack)
            enif_free(buf);
        buf = NULL;
        if (st != HC_ERR_BUFFER_TOO_SMALL)
            return status_error(env, st);
        /* It may grow between calls (stats): ask for some slack. */
        cap = len + 1 + len / 4 + 64;
        buf = enif_alloc(cap);
        if (!buf)
            return error_tuple(env, am_enomem);
    }
    enif_free(buf);
    return error_tuple(env, am_enomem);
}

static hc_status local_addr_fn(const hc_node *node, char *buf, size_t cap, size_t *len)
{
    return hc_node_local_addr(node, buf, cap, len);
}

static hc_status stats_fn(const hc_node *node, char *buf, size_t cap, size_t *len)
{
    return hc_stats_json(node, buf, cap, len);
}

/* Runs a string-returning call on the node in `argv[0]`; `*empty` tells
 * whether the string was empty. Returns a binary, an error tuple or badarg. */
static ERL_NIF_TERM string_nif(ErlNifEnv *env, ERL_NIF_TERM node_term, string_fn fn, bool *empty)
{
    hc_erl_node *res;
    *empty = false;
    if (!get_node(env, node_term, &res))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    ERL_NIF_TERM bin;
    ERL_NIF_TERM r = string_call(env, node, fn, &bin);
    release(res);
    if (r != am_ok)
        return r;
    ErlNifBinary b;
    *empty = enif_inspect_binary(env, bin, &b) && b.size == 0;
    return bin;
}

/* local_addr(Node) -> <<"host:port">> | undefined | {error, _} */
static ERL_NIF_TERM local_addr_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    bool empty;
    ERL_NIF_TERM r = string_nif(env, argv[0], local_addr_fn, &empty);
    return empty ? am_undefined : r; /* empty: a node without a listener */
}

/* stats_json(Node) -> JSON binary | {error, _} */
static ERL_NIF_TERM stats_json_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    bool empty;
    return string_nif(env, argv[0], stats_fn, &empty);
}

/* add_peer(Node, Addr) -> ok | {error, _}. Dirty IO: may resolve a name. */
static ERL_NIF_TERM add_peer_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    ErlNifBinary addr;
    if (!get_node(env, argv[0], &res) || !get_iodata(env, argv[1], &addr))
        return enif_make_badarg(env);
    char buf[256], *s = NULL;
    if (!iodata_to_cstr(&addr, buf, sizeof buf, &s))
        return enif_make_badarg(env);
    ERL_NIF_TERM result;
    hc_node *node = acquire(res);
    if (!node)
        result = error_tuple(env, am_closed);
    else {
        hc_status st = hc_node_add_peer(node, s);
        release(res);
        result = st == HC_OK ? am_ok : status_error(env, st);
    }
    if (s != buf)
        enif_free(s);
    return result;
}

static ERL_NIF_TERM version_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    (void)argv;
    const char *v = hc_version();
    ERL_NIF_TERM bin;
    size_t len = v ? strlen(v) : 0;
    unsigned char *data = enif_make_new_binary(env, len, &bin);
    if (len)
        memcpy(data, v, len);
    return bin;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
    (void)priv;
    (void)info;
    ErlNifResourceTypeInit init;
    memset(&init, 0, sizeof init);
    init.dtor = node_dtor;
    init.down = node_down;
    init.members = 3;
    node_type = enif_init_resource_type(env, "headcount_node", &init, ERL_NIF_RT_CREATE, NULL);
    if (!node_type)
        return 1;

    am_ok = mk_atom(env, "ok");
    am_error = mk_atom(env, "error");
    am_undefined = mk_atom(env, "undefined");
    am_closed = mk_atom(env, "closed");
    am_already_tracked = mk_atom(env, "already_tracked");
    am_not_tracked = mk_atom(env, "not_tracked");
    am_invalid_topic = mk_atom(env, "invalid_topic");
    am_invalid_argument = mk_atom(env, "invalid_argument");
    am_config = mk_atom(env, "config");
    am_io = mk_atom(env, "io");
    am_panic = mk_atom(env, "panic");
    am_noproc = mk_atom(env, "noproc");
    am_enomem = mk_atom(env, "enomem");
    am_unknown = mk_atom(env, "unknown");
    am_count = mk_atom(env, "count");
    am_local = mk_atom(env, "local");
    am_peers_reporting = mk_atom(env, "peers_reporting");
    am_peers_known = mk_atom(env, "peers_known");
    am_oldest_report_age_ms = mk_atom(env, "oldest_report_age_ms");
    return 0;
}

/*
 * No upgrade callback: loading a second copy of this library into a running
 * VM fails cleanly instead of handing live nodes (whose threads run code from
 * the first copy) to another copy of the static library.
 */

static ErlNifFunc funcs[] = {
    {"start_nif", 1, start_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"stop", 1, stop_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"track", 2, track2, 0},
    {"track", 3, track3, 0},
    {"untrack", 2, untrack2, 0},
    {"untrack", 3, untrack3, 0},
    {"count", 2, count_nif, 0},
    {"count_local", 2, count_local_nif, 0},
    {"count_info", 2, count_info_nif, 0},
    {"total", 1, total_nif, 0},
    {"local_addr", 1, local_addr_nif, 0},
    {"add_peer", 2, add_peer_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"stats_json", 1, stats_json_nif, 0},
    {"version", 0, version_nif, 0},
};

ERL_NIF_INIT(headcount, funcs, load, NULL, NULL, NULL)
