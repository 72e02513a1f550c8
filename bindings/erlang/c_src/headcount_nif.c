/*
 * headcount_nif.c: the Erlang NIF over libheadcount's C ABI.
 *
 * Per headcount node the NIF keeps which local processes it monitors. Each
 * tracked pid is one headcount *connection*, whose id is the pid's own term
 * word (unique among live local processes; see pid_set.h):
 * `hc_track(topic, conn)` / `hc_untrack(topic, conn)` keep the exact
 * membership in the library, and when the process exits the `down`
 * callback calls `hc_untrack_all(conn)`. No process, no ETS table and no
 * dirty scheduler sits on the hot path; every call below is a few short
 * critical sections (it follows OTP's prim_file_nif.c in spirit: a resource
 * with a `down` callback, the caller monitored as soon as it holds state).
 *
 * Objects:
 *
 *   handle (resource `headcount_node`)  what Erlang holds; points at the core.
 *   core (enif_alloc)                   the hc_node, the guard (guard.h),
 *                                       NSHARDS shards of the pid set (each
 *                                       a spinlock and a pid_set in one
 *                                       cache line), and NOWNERS monitor
 *                                       owners.
 *   monitor owner (resource             owns monitors; its `down` callback
 *     `headcount_monitors`, with down)  untracks the process.
 *   watcher (watch.c)                   the node's watches and the thread
 *                                       that delivers them as messages;
 *                                       stopped with the node.
 *
 * Why one monitor owner per scheduler thread (picked by the thread's guard
 * slot): ERTS keeps a resource's monitors in one red-black tree under one
 * mutex (erl_nif.c, `ErtsResourceMonitors`), taken by every
 * enif_monitor_process and every down, and keyed by the monitor's
 * reference. With one owner for the whole node, every first track on every
 * scheduler queued on that mutex and walked a tree of every tracked process,
 * a cache miss per level. A thread's own owner is locked by that thread
 * almost only, and its new references come from that scheduler's counter,
 * so each insert lands on the same, cache-hot edge of the tree, as
 * erlang:monitor/2 does in the caller's own tree. (Spreading the owners by
 * pid hash instead divides the lock traffic but keeps the inserts cold.)
 *
 * A pid stays monitored from its first track until it exits (or the node
 * stops), even when it untracks its last topic: keeping the monitor costs
 * nothing per call, and not keeping an ErlNifMonitor per pid (32 bytes)
 * keeps a tracked process's BEAM memory near a plain monitor's. So the set
 * holds exactly the pids that have a live monitor from this node, and a
 * pid's down removes it: at most one monitor per pid exists at a time
 * (track creates one only when the pid is absent), so there is no stale
 * down to tell apart.
 *
 * Any owner's down finds the pid's shard by the pid's hash, so which owner
 * monitors a pid matters only to the cost of making the monitor.
 *
 * Lifetimes: the core is counted (1 for the handle + 1 per monitor owner)
 * and freed by the last. ERTS never runs a resource's destructor while its
 * `down` is running, and runs no `down` after it; so a down callback always
 * finds its core. The handle's destructor, or `stop`, closes the guard,
 * frees the hc_node and releases the monitor owners (ERTS then removes
 * their monitors).
 *
 * Locks, always taken in this order (no path takes them the other way round):
 *
 *   1. one shard lock, chosen by the pid's hash, taken inside the guard. It
 *      orders everything about one pid: whether it is in the set, its
 *      monitor, and the library calls that change its membership (so a
 *      down's hc_untrack_all cannot slip between a track's check and its
 *      hc_track, which would leave a dead pid counted).
 *   2. ERTS's monitor-owner mutex (inside enif_monitor_process and down).
 *   3. the library's own short internal locks (inside hc_track etc.).
 *
 * The races, and why each is safe:
 *
 * - `down` vs NIF calls on other schedulers: `down` enters the guard and
 *   takes the pid's shard lock as `track` does, so it is just another
 *   caller.
 * - a failed first track (bad topic, no memory) demonitors the monitor it
 *   just made. If that monitor has already fired (the process died
 *   meanwhile), its down finds the pid absent, or present through a later
 *   track: the process is dead, so removing it then is right too.
 * - `down` vs `stop`: once `stop` has closed the guard and waited, no call
 *   is inside; it takes the pid tables out and frees them and the node. A
 *   `down` that fires meanwhile sees `closed`: nothing to do.
 * - a garbage-collected handle: its destructor does what `stop` does;
 *   processes it tracked live on untouched (their monitors are gone with
 *   the owners).
 *
 * Errors: a term of the wrong type raises `badarg`; a condition the caller
 * cannot rule out by types returns `{error, Reason}` (see headcount.erl).
 */

#include <erl_nif.h>

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "guard.h"
#include "headcount.h"
#include "pid_set.h"
#include "spinlock.h"
#include "watch.h"

/* ------------------------------------------------------------------------ */
/* Atoms                                                                     */

static ERL_NIF_TERM am_ok, am_error, am_undefined, am_closed, am_already_tracked,
    am_not_tracked, am_invalid_topic, am_invalid_argument, am_config, am_io, am_panic,
    am_noproc, am_enomem, am_unknown, am_count, am_local, am_peers_reporting,
    am_peers_known, am_oldest_report_age_ms, am_headcount_log, am_headcount_logger,
    am_log_levels[5];

/* The env of the NIF call on this thread while it is inside a library call
 * that logs (see "Log lines" below), else NULL. */
static _Thread_local ErlNifEnv *log_env;

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
/* The per-node state                                                         */

#define SHARD_BITS 8
#define NSHARDS (1u << SHARD_BITS)
#define NOWNERS GUARD_SLOTS

typedef struct hc_erl_node hc_erl_node;

/* Owns monitors (resource `headcount_monitors`). */
typedef struct {
    hc_erl_node *core;
} monitor_owner;

typedef struct {
    _Alignas(64) spinlock lock; /* one cache line per shard */
    pid_set pids;
} pid_shard;

struct hc_erl_node {
    guard guard;            /* see guard.h; first, so 64-byte aligned */
    ErlNifMutex *stop_lock; /* serializes stop and the handle's destructor */
    ErlNifMutex *watch_lock; /* guards `watcher`; never held while entering the guard */
    watcher *watcher;       /* delivers the watches (watch.h); NULL until the first */
    hc_node *node;          /* NULL once stopped */
    uint32_t refs;          /* atomic: the handle + each live monitor owner */
    void *alloc;            /* what enif_alloc returned (the core is aligned in it) */
    monitor_owner *owners[NOWNERS]; /* one per guard slot; NULL once stop released them */
    pid_shard shards[NSHARDS];
};

/* What Erlang holds (resource `headcount_node`). */
typedef struct {
    hc_erl_node *core;
} node_handle;

static ErlNifResourceType *node_type, *owner_type;

static pid_shard *shard_of(hc_erl_node *res, uint64_t hash)
{
    return &res->shards[hash >> (64 - SHARD_BITS)];
}

/* The owner for monitors made on this thread. */
static monitor_owner *my_owner(hc_erl_node *res)
{
    return res->owners[guard_my_slot() % NOWNERS];
}

/* Enters the node's guard: its node, or NULL (not entered) once stopped. */
static hc_node *acquire(hc_erl_node *res)
{
    return guard_enter(&res->guard) ? res->node : NULL;
}

static void release(hc_erl_node *res)
{
    guard_leave(&res->guard);
}

/* A new core with its monitor owners, or NULL if out of memory. `node` is
 * adopted only on success. */
static hc_erl_node *core_new(hc_node *node)
{
    void *alloc = enif_alloc(sizeof(hc_erl_node) + 63);
    if (!alloc)
        return NULL;
    hc_erl_node *res = (hc_erl_node *)(((uintptr_t)alloc + 63) & ~(uintptr_t)63);
    memset(res, 0, sizeof *res);
    res->alloc = alloc;
    res->stop_lock = enif_mutex_create("headcount_stop");
    res->watch_lock = enif_mutex_create("headcount_watch");
    if (!res->stop_lock || !res->watch_lock) {
        if (res->stop_lock)
            enif_mutex_destroy(res->stop_lock);
        if (res->watch_lock)
            enif_mutex_destroy(res->watch_lock);
        enif_free(alloc);
        return NULL;
    }
    res->refs = 1 + NOWNERS;
    for (unsigned k = 0; k < NOWNERS; k++) {
        monitor_owner *o = enif_alloc_resource(owner_type, sizeof *o);
        o->core = res; /* kept (not released) until stop or the destructor */
        res->owners[k] = o;
    }
    res->node = node;
    return res;
}

/* Drops one reference to the core; the last frees it (its node is gone
 * by then: stop or the handle's destructor freed it). */
static void core_unref(hc_erl_node *res)
{
    if (__atomic_sub_fetch(&res->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (unsigned k = 0; k < NSHARDS; k++)
        pid_set_clear(&res->shards[k].pids);
    enif_mutex_destroy(res->stop_lock);
    enif_mutex_destroy(res->watch_lock);
    enif_free(res->alloc);
}

/*
 * stop's work, for stop/1 and the handle's destructor: closes the guard,
 * frees the node and the pid sets, ends the watches and joins their thread,
 * and releases the monitor owners (ERTS removes their monitors).
 * Idempotent.
 */
static void shutdown_core(hc_erl_node *res)
{
    monitor_owner *owners[NOWNERS];
    hc_node *node = NULL;
    watcher *wr = NULL;
    unsigned n = 0;
    enif_mutex_lock(res->stop_lock);
    if (!guard_is_closed(&res->guard)) {
        guard_close(&res->guard);
        /* No call is inside, and none will touch the shards again. */
        node = res->node;
        res->node = NULL;
        enif_mutex_lock(res->watch_lock);
        wr = res->watcher;
        res->watcher = NULL;
        enif_mutex_unlock(res->watch_lock);
        for (unsigned k = 0; k < NSHARDS; k++)
            pid_set_clear(&res->shards[k].pids);
        for (unsigned k = 0; k < NOWNERS; k++) {
            owners[n++] = res->owners[k];
            res->owners[k] = NULL;
        }
    }
    enif_mutex_unlock(res->stop_lock);
    hc_node_free(node);
    if (wr)
        watcher_stop(wr);
    for (unsigned k = 0; k < n; k++)
        enif_release_resource(owners[k]); /* its destructor drops its core reference */
}

/* ------------------------------------------------------------------------ */
/* Resource callbacks                                                         */

static void handle_dtor(ErlNifEnv *env, void *obj)
{
    (void)env;
    node_handle *h = obj;
    if (!h->core)
        return; /* start failed before the core existed */
    /* Not stopped: a garbage-collected node. hc_node_free leaves the cluster
     * and joins the node's threads; it runs here, on the thread the runtime
     * picked for the destructor, so call stop/1 to choose when. */
    shutdown_core(h->core);
    core_unref(h->core);
}

static void owner_dtor(ErlNifEnv *env, void *obj)
{
    (void)env;
    core_unref(((monitor_owner *)obj)->core);
}

/* A tracked process exited: untrack it everywhere, forget it. */
static void owner_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
    (void)env;
    (void)mon;
    hc_erl_node *res = ((monitor_owner *)obj)->core;
    hc_node *node = acquire(res);
    if (!node)
        return; /* stopped: stop has taken (or is taking) the pid sets */
    uint64_t hash = pid_hash(pid->pid);
    pid_shard *s = shard_of(res, hash);
    spin_lock(&s->lock);
    if (pid_set_remove(&s->pids, pid->pid, hash))
        (void)hc_untrack_all(node, (uint64_t)pid->pid, NULL);
    spin_unlock(&s->lock);
    release(res);
}

/* ------------------------------------------------------------------------ */
/* Argument helpers                                                           */

/* The core behind a node handle. */
static int get_node(ErlNifEnv *env, ERL_NIF_TERM term, hc_erl_node **res)
{
    node_handle *h;
    if (!enif_get_resource(env, term, node_type, (void **)&h))
        return 0;
    *res = h->core;
    return 1;
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
    log_env = env;
    hc_status st = hc_node_start(cfg, &node);
    log_env = NULL;
    hc_config_free(cfg);
    if (st != HC_OK)
        return status_error(env, st);

    node_handle *h = enif_alloc_resource(node_type, sizeof *h);
    h->core = core_new(node);
    if (!h->core) {
        enif_release_resource(h); /* its destructor sees no core */
        hc_node_free(node);
        return error_tuple(env, am_enomem);
    }
    ERL_NIF_TERM term = enif_make_resource(env, h);
    enif_release_resource(h);
    return enif_make_tuple2(env, am_ok, term);
}

/* stop(Node) -> ok. Idempotent. Dirty IO: a graceful leave joins threads. */
static ERL_NIF_TERM stop_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    if (!get_node(env, argv[0], &res))
        return enif_make_badarg(env);
    shutdown_core(res);
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

    uint64_t hash = pid_hash(pid->pid);
    pid_shard *s = shard_of(res, hash);
    ERL_NIF_TERM result;
    monitor_owner *owner = NULL; /* set when this call made the pid's monitor */
    ErlNifMonitor mon;
    spin_lock(&s->lock);
    if (!pid_set_contains(&s->pids, pid->pid, hash)) {
        /* First topic of this pid on this node: monitor it first, so that
         * from the moment it is counted its exit is noticed. */
        owner = my_owner(res);
        int r = enif_monitor_process(env, owner, pid, &mon);
        if (r != 0) {
            result = r > 0 ? error_tuple(env, am_noproc) : enif_make_badarg(env);
            goto out;
        }
        if (!pid_set_insert(&s->pids, pid->pid, hash)) {
            (void)enif_demonitor_process(env, owner, &mon);
            result = error_tuple(env, am_enomem);
            goto out;
        }
    }
    bool added = false;
    hc_status st = hc_track(node, topic.data, topic.size, (uint64_t)pid->pid, &added);
    if (st != HC_OK) {
        result = status_error(env, st);
        if (owner) { /* leave no monitor behind a failed first track */
            (void)enif_demonitor_process(env, owner, &mon);
            (void)pid_set_remove(&s->pids, pid->pid, hash);
        }
    } else
        result = added ? am_ok : error_tuple(env, am_already_tracked);
out:
    spin_unlock(&s->lock);
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

/*
 * Untracking needs no shard lock: it only takes the pid's connection out
 * of a topic, which the library does atomically, and a pid that was never
 * tracked has a connection in no topic. The monitor stays until the
 * process exits (see the top of this file).
 */
static ERL_NIF_TERM do_untrack(ErlNifEnv *env, ERL_NIF_TERM node_term, ERL_NIF_TERM topic_term, const ErlNifPid *pid)
{
    hc_erl_node *res;
    ErlNifBinary topic;
    if (!get_node(env, node_term, &res) || !get_iodata(env, topic_term, &topic))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    bool removed = false;
    hc_status st = hc_untrack(node, topic.data, topic.size, (uint64_t)pid->pid, &removed);
    release(res);
    if (st != HC_OK)
        return status_error(env, st);
    return removed ? am_ok : error_tuple(env, am_not_tracked);
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

/* untrack_all(Node, Pid) -> number of topics it left | {error, _} */
static ERL_NIF_TERM untrack_all_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    ErlNifPid pid;
    if (!get_node(env, argv[0], &res) || !enif_get_local_pid(env, argv[1], &pid))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    size_t removed = 0;
    hc_status st = hc_untrack_all(node, (uint64_t)pid.pid, &removed);
    release(res);
    return st == HC_OK ? enif_make_uint64(env, removed) : status_error(env, st);
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
        log_env = env;
        hc_status st = hc_node_add_peer(node, s);
        log_env = NULL;
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

/* beam_memory(Node) -> {Processes, PidTableBytes, CoreBytes} | {error, _}:
 * the monitored processes and what the NIF holds in enif_alloc memory. */
static ERL_NIF_TERM beam_memory_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    if (!get_node(env, argv[0], &res))
        return enif_make_badarg(env);
    if (!acquire(res))
        return error_tuple(env, am_closed);
    uint64_t pids = 0, bytes = 0;
    for (unsigned k = 0; k < NSHARDS; k++) {
        pid_shard *s = &res->shards[k];
        spin_lock(&s->lock);
        pids += s->pids.len;
        bytes += pid_set_bytes(&s->pids);
        spin_unlock(&s->lock);
    }
    release(res);
    return enif_make_tuple3(env, enif_make_uint64(env, pids), enif_make_uint64(env, bytes),
                            enif_make_uint64(env, sizeof(hc_erl_node) + 63));
}

/* ------------------------------------------------------------------------ */
/* The change feed (watch.c delivers it)                                      */

/* watch_nif(Node, Prefix, Flags) -> {ok, Watch} | {error, _}. Dirty CPU:
 * with HC_WATCH_INITIAL the library scans every topic. */
static ERL_NIF_TERM watch_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    ErlNifBinary prefix;
    unsigned flags;
    if (!get_node(env, argv[0], &res) || !get_iodata(env, argv[1], &prefix) || !enif_get_uint(env, argv[2], &flags))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    hc_watch *w = NULL;
    hc_status st = hc_watch_new(node, prefix.size ? prefix.data : NULL, prefix.size, flags, &w);
    ERL_NIF_TERM result;
    if (st != HC_OK) {
        result = status_error(env, st);
    } else {
        enif_mutex_lock(res->watch_lock);
        if (!res->watcher)
            res->watcher = watcher_new();
        watcher *wr = res->watcher;
        enif_mutex_unlock(res->watch_lock);
        ERL_NIF_TERM term = 0;
        if (wr)
            term = watcher_add(env, wr, w); /* adopts w, also on failure */
        else
            hc_watch_free(w);
        result = term ? enif_make_tuple2(env, am_ok, term) : error_tuple(env, am_enomem);
    }
    release(res);
    return result;
}

/* unwatch_nif(Node, Watch) -> ok | {error, closed}; badarg for a watch of
 * another node. */
static ERL_NIF_TERM unwatch_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    watcher *wr;
    if (!get_node(env, argv[0], &res) || !(wr = watch_owner(env, argv[1])))
        return enif_make_badarg(env);
    if (!acquire(res))
        return error_tuple(env, am_closed);
    enif_mutex_lock(res->watch_lock);
    bool ours = wr == res->watcher;
    enif_mutex_unlock(res->watch_lock);
    if (ours)
        watch_end(env, argv[1]);
    release(res);
    return ours ? am_ok : enif_make_badarg(env);
}

/* top_nif(Node, K, Prefix) -> [{Topic, Count}] | {error, _}. Dirty CPU:
 * the library scans every topic. */
static ERL_NIF_TERM top_nif(ErlNifEnv *env, int argc, const ERL_NIF_TERM argv[])
{
    (void)argc;
    hc_erl_node *res;
    ErlNifUInt64 k;
    ErlNifBinary prefix;
    if (!get_node(env, argv[0], &res) || !enif_get_uint64(env, argv[1], &k) ||
        !get_iodata(env, argv[2], &prefix))
        return enif_make_badarg(env);
    hc_node *node = acquire(res);
    if (!node)
        return error_tuple(env, am_closed);
    hc_list *list = NULL;
    hc_status st = hc_top(node, prefix.size ? prefix.data : NULL, prefix.size, (size_t)k, &list);
    ERL_NIF_TERM result = st == HC_OK ? enif_make_list(env, 0) : status_error(env, st);
    release(res);
    if (st != HC_OK)
        return result;
    for (size_t i = hc_list_len(list); i-- > 0;) {
        const uint8_t *topic = NULL;
        size_t len = 0;
        uint64_t count = 0;
        if (hc_list_get(list, i, &topic, &len, &count, NULL) != HC_OK)
            continue; /* i < len: cannot fail */
        ERL_NIF_TERM bin;
        unsigned char *data = enif_make_new_binary(env, len, &bin);
        if (len)
            memcpy(data, topic, len);
        result = enif_make_list_cell(env, enif_make_tuple2(env, bin, enif_make_uint64(env, count)), result);
    }
    hc_list_free(list);
    return result;
}

/* ------------------------------------------------------------------------ */
/* Log lines                                                                  */

/*
 * The library's log lines (hc_set_log_callback, set at load) become messages
 * `{headcount_log, Level, Target, Node, Message}` (Level an OTP logger level
 * atom, the rest binaries) to the process registered as `headcount_logger`
 * (headcount_logger.erl, started by headcount:start/1), which hands them to
 * OTP's logger. With no such process the line is dropped.
 *
 * The callback runs on the library's own threads, where enif_whereis_pid
 * and enif_send take a NULL caller env, and on the scheduler thread of a
 * NIF call that logs (start and add_peer), where they must be given that
 * call's env: those calls set `log_env` (a thread-local) around the library
 * call. A line logged on any other ERTS thread (none today) is dropped
 * rather than sent with the wrong env.
 */

static ERL_NIF_TERM utf8_binary(ErlNifEnv *env, const char *s)
{
    ERL_NIF_TERM bin;
    size_t len = strlen(s);
    unsigned char *p = enif_make_new_binary(env, len, &bin);
    if (p != NULL)
        memcpy(p, s, len);
    return bin;
}

static void on_log(void *user_data, hc_log_level level, const char *target, const char *node,
                   const char *message)
{
    (void)user_data;
    ErlNifEnv *caller = log_env;
    if (caller == NULL && enif_thread_type() != ERL_NIF_THR_UNDEFINED)
        return;
    ErlNifPid pid;
    if (!enif_whereis_pid(caller, am_headcount_logger, &pid))
        return;
    ErlNifEnv *msg_env = enif_alloc_env();
    if (msg_env == NULL)
        return;
    unsigned l = (unsigned)level;
    ERL_NIF_TERM msg = enif_make_tuple5(msg_env, am_headcount_log, am_log_levels[l >= 1 && l <= 4 ? l : 4],
                                        utf8_binary(msg_env, target), utf8_binary(msg_env, node),
                                        utf8_binary(msg_env, message));
    enif_send(caller, &pid, msg_env, msg);
    enif_free_env(msg_env);
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                    */

static int load(ErlNifEnv *env, void **priv, ERL_NIF_TERM info)
{
    (void)priv;
    (void)info;
    ErlNifResourceTypeInit init;
    memset(&init, 0, sizeof init);
    init.dtor = handle_dtor;
    init.members = 1;
    node_type = enif_init_resource_type(env, "headcount_node", &init, ERL_NIF_RT_CREATE, NULL);
    memset(&init, 0, sizeof init);
    init.dtor = owner_dtor;
    init.down = owner_down;
    init.members = 3;
    owner_type = enif_init_resource_type(env, "headcount_monitors", &init, ERL_NIF_RT_CREATE, NULL);
    if (!node_type || !owner_type || !watch_load(env))
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
    am_headcount_log = mk_atom(env, "headcount_log");
    am_headcount_logger = mk_atom(env, "headcount_logger");
    am_log_levels[0] = am_log_levels[4] = mk_atom(env, "debug");
    am_log_levels[HC_LOG_ERROR] = mk_atom(env, "error");
    am_log_levels[HC_LOG_WARN] = mk_atom(env, "warning");
    am_log_levels[HC_LOG_INFO] = mk_atom(env, "info");
    return hc_set_log_callback(on_log, NULL) == HC_OK ? 0 : 1;
}

/* The library's threads must not call into this code once it is unloaded:
 * hc_set_log_callback returns only when no call of on_log is running. */
static void unload(ErlNifEnv *env, void *priv)
{
    (void)env;
    (void)priv;
    hc_set_log_callback(NULL, NULL);
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
    {"untrack_all", 2, untrack_all_nif, 0},
    {"count", 2, count_nif, 0},
    {"count_local", 2, count_local_nif, 0},
    {"count_info", 2, count_info_nif, 0},
    {"total", 1, total_nif, 0},
    {"local_addr", 1, local_addr_nif, 0},
    {"add_peer", 2, add_peer_nif, ERL_NIF_DIRTY_JOB_IO_BOUND},
    {"stats_json", 1, stats_json_nif, 0},
    {"beam_memory", 1, beam_memory_nif, 0},
    {"version", 0, version_nif, 0},
    {"watch_nif", 3, watch_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
    {"unwatch_nif", 2, unwatch_nif, 0},
    {"top", 3, top_nif, ERL_NIF_DIRTY_JOB_CPU_BOUND},
};

ERL_NIF_INIT(headcount, funcs, load, NULL, NULL, unload)
