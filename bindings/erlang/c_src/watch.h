/*
 * watch.h: the change feed's delivery (watch.c).
 *
 * A node's watches are served by one thread of the NIF's own (a
 * `watcher`, started with the node's first watch) that waits on every
 * watch's fd with epoll and turns each batch into the message
 * `{headcount_changes, Watch, [{Topic, Count, Users}]}` sent to the
 * process that called watch; `Watch` is the watch's resource term (a
 * reference to Erlang). See watch.c for the protocol.
 */
#ifndef HEADCOUNT_WATCH_H
#define HEADCOUNT_WATCH_H

#include <erl_nif.h>

#include "headcount.h"

typedef struct watcher watcher;

/* Registers the `headcount_watch` resource type; 0 on failure. */
int watch_load(ErlNifEnv *env);

/* A new watcher with its thread, or NULL (no memory, fd or thread). */
watcher *watcher_new(void);

/* Ends every watch of `wr` (freeing their hc_watch), stops and joins its
 * thread, and drops the caller's reference. No call may use `wr` after. */
void watcher_stop(watcher *wr);

/*
 * Hands the new watch `w` to `wr`, for messages to the calling process
 * (monitored: the watch ends when it exits). Returns the watch's term in
 * `env`, or 0 with `w` freed (no memory).
 */
ERL_NIF_TERM watcher_add(ErlNifEnv *env, watcher *wr, hc_watch *w);

/* The watcher of the watch `term`, or NULL if it is not a watch. */
watcher *watch_owner(ErlNifEnv *env, ERL_NIF_TERM term);

/*
 * Ends the watch `term` (a watch of `wr`: see watch_owner): no message is
 * sent for it once this returns. Idempotent.
 */
void watch_end(ErlNifEnv *env, ERL_NIF_TERM term);

#endif
