/*
 * watch.c: delivers a node's change feed as Erlang messages.
 *
 * Why a thread of our own, and one per node: building the message of a
 * batch costs about a hundred nanoseconds per change, and a batch can hold
 * every topic (an `initial` watch of 1M topics), far over the millisecond
 * a NIF may hold a scheduler. enif_select on the watch fd would wake a
 * process, which would then have to build the terms on a scheduler (and
 * the contract's message goes to the caller, not to a relay). So one
 * thread per node waits on all its watches' fds with epoll (level-
 * triggered: hc_watch_fd stays readable while changes are pending, and
 * always once the node is closed), takes each ready watch's batch with
 * hc_watch_next(0) and sends it with enif_send: no scheduler ever waits,
 * and 10,000 watches cost one thread, not 10,000.
 *
 * Ownership: after watcher_add, only the thread calls hc_watch_next and
 * hc_watch_free on a watch (the header's rule: calls on one watch never
 * overlap). Other threads ask it to end a watch by a command.
 *
 * State of a watch (`ended` and the command lists are under `wr->lock`):
 *
 *   ended  who set it                  what follows
 *   -----  --------------------------  ------------------------------------
 *   0      -                           the thread delivers its batches
 *   1      unwatch (watch_end),        a REMOVE command is queued (unless
 *          the owner's down, or the    the thread itself set it); the
 *          thread (node closed)        thread frees the hc_watch and drops
 *                                      its resource reference
 *
 * The thread checks `ended` under the lock right before enif_send, and
 * watch_end sets it under the same lock, so once unwatch returns no
 * message for the watch is sent (headcount:unwatch/2 then flushes the ones
 * already in the mailbox).
 *
 * Lifetimes: a watcher is counted (1 for its node's core + 1 per watch
 * resource) and freed by the last. Each watch resource is kept by the
 * thread from watcher_add until the thread ends it. The core's reference
 * is dropped by watcher_stop after the thread is joined, so the thread
 * never sees its watcher freed; watcher_stop also closes the epoll fd and
 * the eventfd, which watch resources still held by Erlang outlive. A down
 * callback or unwatch that comes after the stop finds `stopping` and only
 * marks the watch: the stop ended everything.
 *
 * Locks: `wr->lock` is innermost (nothing else is taken under it except
 * enif_send's own, which never calls back into this code).
 */
#define _GNU_SOURCE
#include "watch.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct watch_res watch_res;

struct watch_res {
    watcher *wr;
    hc_watch *w;         /* the thread's once added */
    ErlNifPid owner;
    ErlNifMonitor mon;
    bool ended;          /* under wr->lock; see the table above */
    /* Under wr->lock: the links of `adds` and `removes`, one each, since a
     * watch ended before the thread took its add is in both lists. */
    watch_res *next_add, *next_remove;
    watch_res *prev, *next; /* the thread's list of registered watches */
};

struct watcher {
    ErlNifMutex *lock;
    ErlNifTid tid;
    int epfd, evfd;
    uint32_t refs;      /* atomic */
    bool stopping;      /* under lock */
    watch_res *adds;    /* under lock: commands for the thread */
    watch_res *removes; /* under lock */
    watch_res *live;    /* the thread's only: registered watches */
};

static ErlNifResourceType *watch_type;
static ERL_NIF_TERM am_headcount_changes;

static void watcher_unref(watcher *wr)
{
    if (__atomic_sub_fetch(&wr->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    enif_mutex_destroy(wr->lock);
    enif_free(wr);
}

/* Wakes the thread (an eventfd never blocks a writer short of 2^64-1). */
static void wake(watcher *wr)
{
    uint64_t one = 1;
    while (write(wr->evfd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

/* Marks `res` ended and queues its removal (a stopping thread ends every
 * watch anyway); under wr->lock. */
static void end_locked(watch_res *res)
{
    watcher *wr = res->wr;
    if (res->ended)
        return;
    res->ended = true;
    if (wr->stopping)
        return;
    res->next_remove = wr->removes;
    wr->removes = res;
    wake(wr);
}

/* ------------------------------------------------------------------------ */
/* The thread                                                                 */

static void register_watch(watcher *wr, watch_res *res)
{
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = res;
    res->prev = NULL;
    res->next = wr->live;
    if (wr->live)
        wr->live->prev = res;
    wr->live = res;
    /* Fails only without memory: the watch then never delivers, and ends
     * as every other (unwatch, down or stop). */
    (void)epoll_ctl(wr->epfd, EPOLL_CTL_ADD, hc_watch_fd(res->w), &ev);
}

/* Frees `res`'s hc_watch and drops the thread's reference; `res` must be
 * ended (or the watcher stopping). */
static void unregister_watch(watcher *wr, watch_res *res)
{
    (void)epoll_ctl(wr->epfd, EPOLL_CTL_DEL, hc_watch_fd(res->w), NULL);
    if (res->prev)
        res->prev->next = res->next;
    else
        wr->live = res->next;
    if (res->next)
        res->next->prev = res->prev;
    hc_watch_free(res->w);
    res->w = NULL;
    (void)enif_demonitor_process(NULL, res, &res->mon); /* gone already after a down */
    enif_release_resource(res);
}

/* Builds the message for `list` in `env` (a list in the batch's order). */
static ERL_NIF_TERM batch_message(ErlNifEnv *env, watch_res *res, const hc_list *list)
{
    ERL_NIF_TERM tail = enif_make_list(env, 0);
    for (size_t i = hc_list_len(list); i-- > 0;) {
        const uint8_t *topic = NULL;
        size_t len = 0;
        uint64_t count = 0, users = 0;
        if (hc_list_get(list, i, &topic, &len, &count, &users) != HC_OK)
            continue; /* i < len: cannot fail */
        ERL_NIF_TERM bin;
        unsigned char *data = enif_make_new_binary(env, len, &bin);
        if (len)
            memcpy(data, topic, len);
        tail = enif_make_list_cell(
            env, enif_make_tuple3(env, bin, enif_make_uint64(env, count), enif_make_uint64(env, users)), tail);
    }
    return enif_make_tuple3(env, am_headcount_changes, enif_make_resource(env, res), tail);
}

/* Takes `res`'s pending changes and sends them to its owner. */
static void deliver(watcher *wr, watch_res *res, ErlNifEnv *msg_env)
{
    hc_list *list = NULL;
    hc_status st = hc_watch_next(res->w, 0, &list);
    if (st != HC_OK) {
        /* HC_ERR_CLOSED: the node is closed and every change was taken.
         * Its fd stays readable, so end the watch now. */
        enif_mutex_lock(wr->lock);
        bool mine = !res->ended;
        res->ended = true;
        enif_mutex_unlock(wr->lock);
        if (mine)
            unregister_watch(wr, res); /* else a queued REMOVE does it */
        return;
    }
    if (hc_list_len(list) > 0) {
        ERL_NIF_TERM msg = batch_message(msg_env, res, list);
        enif_mutex_lock(wr->lock);
        if (!res->ended)
            (void)enif_send(NULL, &res->owner, msg_env, msg); /* fails only for a dead owner */
        enif_mutex_unlock(wr->lock);
        enif_clear_env(msg_env);
    }
    hc_list_free(list);
}

/* Runs the commands queued since the last call; true once stopping. */
static bool run_commands(watcher *wr)
{
    uint64_t n;
    while (read(wr->evfd, &n, sizeof n) < 0 && errno == EINTR) {
    }
    enif_mutex_lock(wr->lock);
    watch_res *adds = wr->adds, *removes = wr->removes;
    bool stopping = wr->stopping;
    wr->adds = wr->removes = NULL;
    enif_mutex_unlock(wr->lock);
    /* Adds first: a watch removed in the same round was added before. */
    for (watch_res *r = adds; r;) {
        watch_res *next = r->next_add;
        register_watch(wr, r);
        r = next;
    }
    if (stopping) {
        while (wr->live)
            unregister_watch(wr, wr->live); /* `removes` are among them */
        return true;
    }
    for (watch_res *r = removes; r;) {
        watch_res *next = r->next_remove;
        unregister_watch(wr, r);
        r = next;
    }
    return false;
}

static void *watcher_main(void *arg)
{
    watcher *wr = arg;
    ErlNifEnv *msg_env = enif_alloc_env();
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(wr->epfd, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            n = 0; /* not expected; the eventfd still works below */
        }
        bool commands = false;
        for (int i = 0; i < n; i++) {
            watch_res *res = evs[i].data.ptr;
            if (res == NULL)
                commands = true;
            else if (res->w != NULL && msg_env != NULL)
                deliver(wr, res, msg_env);
        }
        /* A failed epoll_wait (or no env) must not spin: check commands. */
        if ((commands || n == 0) && run_commands(wr))
            break;
    }
    if (msg_env)
        enif_free_env(msg_env);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* The API                                                                    */

watcher *watcher_new(void)
{
    watcher *wr = enif_alloc(sizeof *wr);
    if (!wr)
        return NULL;
    memset(wr, 0, sizeof *wr);
    wr->refs = 1;
    wr->lock = enif_mutex_create("headcount_watcher");
    wr->epfd = epoll_create1(EPOLL_CLOEXEC);
    wr->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;
    if (!wr->lock || wr->epfd < 0 || wr->evfd < 0 || epoll_ctl(wr->epfd, EPOLL_CTL_ADD, wr->evfd, &ev) != 0 ||
        enif_thread_create("headcount_watcher", &wr->tid, watcher_main, wr, NULL) != 0) {
        if (wr->lock)
            enif_mutex_destroy(wr->lock);
        if (wr->epfd >= 0)
            close(wr->epfd);
        if (wr->evfd >= 0)
            close(wr->evfd);
        enif_free(wr);
        return NULL;
    }
    return wr;
}

void watcher_stop(watcher *wr)
{
    enif_mutex_lock(wr->lock);
    wr->stopping = true;
    wake(wr);
    enif_mutex_unlock(wr->lock);
    enif_thread_join(wr->tid, NULL);
    /* Nothing uses the fds now: a watch ended after the stop only marks
     * itself (stopping is set), and its resource may outlive this. */
    close(wr->epfd);
    close(wr->evfd);
    watcher_unref(wr);
}

ERL_NIF_TERM watcher_add(ErlNifEnv *env, watcher *wr, hc_watch *w)
{
    watch_res *res = enif_alloc_resource(watch_type, sizeof *res);
    if (!res) {
        hc_watch_free(w);
        return 0;
    }
    memset(res, 0, sizeof *res);
    res->w = w;
    __atomic_add_fetch(&wr->refs, 1, __ATOMIC_RELAXED); /* dropped by the destructor */
    res->wr = wr;
    ERL_NIF_TERM term = enif_make_resource(env, res);
    enif_self(env, &res->owner);
    /* The caller is alive (it is running this call), so this succeeds. */
    (void)enif_monitor_process(env, res, &res->owner, &res->mon);
    enif_mutex_lock(wr->lock);
    /* The caller is inside the node's guard, so the watcher is not
     * stopping: the thread takes over `w` and our reference. */
    res->next_add = wr->adds;
    wr->adds = res;
    wake(wr);
    enif_mutex_unlock(wr->lock);
    return term;
}

watcher *watch_owner(ErlNifEnv *env, ERL_NIF_TERM term)
{
    watch_res *res;
    return enif_get_resource(env, term, watch_type, (void **)&res) ? res->wr : NULL;
}

void watch_end(ErlNifEnv *env, ERL_NIF_TERM term)
{
    watch_res *res;
    if (!enif_get_resource(env, term, watch_type, (void **)&res))
        return;
    enif_mutex_lock(res->wr->lock);
    end_locked(res);
    enif_mutex_unlock(res->wr->lock);
}

static void watch_dtor(ErlNifEnv *env, void *obj)
{
    (void)env;
    watch_res *res = obj;
    if (res->wr)
        watcher_unref(res->wr);
}

/* The owner exited: end its watch. */
static void watch_down(ErlNifEnv *env, void *obj, ErlNifPid *pid, ErlNifMonitor *mon)
{
    (void)env;
    (void)pid;
    (void)mon;
    watch_res *res = obj;
    enif_mutex_lock(res->wr->lock);
    end_locked(res);
    enif_mutex_unlock(res->wr->lock);
}

int watch_load(ErlNifEnv *env)
{
    ErlNifResourceTypeInit init;
    memset(&init, 0, sizeof init);
    init.dtor = watch_dtor;
    init.down = watch_down;
    init.members = 3;
    watch_type = enif_init_resource_type(env, "headcount_watch", &init, ERL_NIF_RT_CREATE, NULL);
    if (!watch_type)
        return 0;
    if (!enif_make_existing_atom(env, "headcount_changes", &am_headcount_changes, ERL_NIF_LATIN1))
        am_headcount_changes = enif_make_atom(env, "headcount_changes");
    return 1;
}
