/*
 * C shims used by the Go package (not part of the public C ABI).
 *
 * hc_last_error() is thread-local, and a goroutine may move to another OS
 * thread between two cgo calls (and another goroutine may make a C call on
 * this thread in between). So each shim calls one hc_* function and, when it
 * fails, copies the message in the same C call, on the same thread. The copy
 * is malloc'ed; the Go side frees it. Results come back by value, so the Go
 * side passes no pointers to its own variables, only topic bytes and buffers.
 */
#ifndef HEADCOUNT_GO_SHIMS_H
#define HEADCOUNT_GO_SHIMS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "headcount.h"

typedef struct {
    hc_status status;
    uint64_t value; /* added/removed (0 or 1), a count, a total or a length */
    char *err;      /* malloc'ed copy of hc_last_error() on failure, or NULL */
} hcgo_result;

typedef struct {
    hc_status status;
    hc_topic_count info;
    char *err;
} hcgo_info_result;

typedef struct {
    hc_status status;
    hc_node *node;
    char *err;
} hcgo_start_result;

/* A non-NULL pointer for zero-length topics, so that the library judges the
 * length (HC_ERR_INVALID_TOPIC) rather than the pointer. Never read. */
static const uint8_t hcgo_empty[1] = {0};

static inline char *hcgo_take_error(hc_status st) {
    if (st == HC_OK) {
        return NULL;
    }
    const char *m = hc_last_error();
    if (m == NULL) {
        return NULL;
    }
    return strdup(m); /* NULL on OOM: the Go side then uses hc_status_str */
}

static inline const uint8_t *hcgo_topic(const uint8_t *p, size_t len) {
    return len == 0 ? hcgo_empty : p;
}

static inline hcgo_result hcgo_config_set(hc_config *cfg, const char *key, const char *value) {
    hc_status st = hc_config_set(cfg, key, value);
    hcgo_result r = {st, 0, hcgo_take_error(st)};
    return r;
}

static inline hcgo_start_result hcgo_node_start(const hc_config *cfg) {
    hc_node *node = NULL;
    hc_status st = hc_node_start(cfg, &node);
    hcgo_start_result r = {st, st == HC_OK ? node : NULL, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_local_addr(const hc_node *n, char *buf, size_t cap) {
    size_t len = 0;
    hc_status st = hc_node_local_addr(n, buf, cap, &len);
    hcgo_result r = {st, len, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_add_peer(hc_node *n, const char *addr) {
    hc_status st = hc_node_add_peer(n, addr);
    hcgo_result r = {st, 0, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_track(hc_node *n, const uint8_t *t, size_t len, uint64_t conn) {
    bool added = false;
    hc_status st = hc_track(n, hcgo_topic(t, len), len, conn, &added);
    hcgo_result r = {st, added ? 1 : 0, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_untrack(hc_node *n, const uint8_t *t, size_t len, uint64_t conn) {
    bool removed = false;
    hc_status st = hc_untrack(n, hcgo_topic(t, len), len, conn, &removed);
    hcgo_result r = {st, removed ? 1 : 0, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_untrack_all(hc_node *n, uint64_t conn) {
    size_t removed = 0;
    hc_status st = hc_untrack_all(n, conn, &removed);
    hcgo_result r = {st, removed, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_add(hc_node *n, const uint8_t *t, size_t len, int64_t delta) {
    hc_status st = hc_add(n, hcgo_topic(t, len), len, delta);
    hcgo_result r = {st, 0, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_count(const hc_node *n, const uint8_t *t, size_t len) {
    uint64_t c = 0;
    hc_status st = hc_count(n, hcgo_topic(t, len), len, &c);
    hcgo_result r = {st, c, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_count_local(const hc_node *n, const uint8_t *t, size_t len) {
    uint64_t c = 0;
    hc_status st = hc_count_local(n, hcgo_topic(t, len), len, &c);
    hcgo_result r = {st, c, hcgo_take_error(st)};
    return r;
}

static inline hcgo_info_result hcgo_count_info(const hc_node *n, const uint8_t *t, size_t len) {
    hcgo_info_result r;
    memset(&r, 0, sizeof r);
    r.status = hc_count_info(n, hcgo_topic(t, len), len, &r.info);
    r.err = hcgo_take_error(r.status);
    return r;
}

static inline hcgo_result hcgo_total(const hc_node *n) {
    uint64_t t = 0;
    hc_status st = hc_total(n, &t);
    hcgo_result r = {st, t, hcgo_take_error(st)};
    return r;
}

static inline hcgo_result hcgo_stats_json(const hc_node *n, char *buf, size_t cap) {
    size_t len = 0;
    hc_status st = hc_stats_json(n, buf, cap, &len);
    hcgo_result r = {st, len, hcgo_take_error(st)};
    return r;
}

/* A list from hc_watch_next or hc_top, with what Go needs to allocate its
 * copy: the number of entries and the total bytes of their topics. The
 * list is NULL when it was empty (already freed) or on failure. */
typedef struct {
    hc_status status;
    hc_list *list;
    size_t len;
    size_t bytes;
    char *err;
} hcgo_list_result;

static inline hcgo_list_result hcgo_list_result_of(hc_status st, hc_list *list) {
    hcgo_list_result r = {st, NULL, 0, 0, hcgo_take_error(st)};
    if (st != HC_OK) {
        return r;
    }
    size_t len = hc_list_len(list);
    for (size_t i = 0; i < len; i++) {
        size_t tl = 0;
        if (hc_list_get(list, i, NULL, &tl, NULL, NULL) == HC_OK) {
            r.bytes += tl;
        }
    }
    if (len == 0) {
        hc_list_free(list);
        return r;
    }
    r.list = list;
    r.len = len;
    return r;
}

typedef struct {
    hc_status status;
    hc_watch *watch;
    char *err;
} hcgo_watch_result;

static inline hcgo_watch_result hcgo_watch_new(const hc_node *n, const uint8_t *p, size_t len, uint32_t flags) {
    hc_watch *w = NULL;
    hc_status st = hc_watch_new(n, len == 0 ? NULL : p, len, flags, &w);
    hcgo_watch_result r = {st, st == HC_OK ? w : NULL, hcgo_take_error(st)};
    return r;
}

static inline hcgo_list_result hcgo_watch_next(hc_watch *w, int64_t timeout_ms) {
    hc_list *list = NULL;
    hc_status st = hc_watch_next(w, timeout_ms, &list);
    return hcgo_list_result_of(st, list);
}

static inline hcgo_list_result hcgo_top(const hc_node *n, const uint8_t *p, size_t len, size_t k) {
    hc_list *list = NULL;
    hc_status st = hc_top(n, len == 0 ? NULL : p, len, k, &list);
    return hcgo_list_result_of(st, list);
}

/* Copies `list` (from an hcgo_list_result) into Go memory and frees it:
 * every topic's bytes back to back into `bytes` (r.bytes long), and per
 * entry i: nums[3i] the end offset of its topic in `bytes`, nums[3i+1] its
 * count, nums[3i+2] its users (3 * r.len entries). */
static inline void hcgo_list_take(hc_list *list, uint8_t *bytes, uint64_t *nums) {
    size_t len = hc_list_len(list), off = 0;
    for (size_t i = 0; i < len; i++) {
        const uint8_t *t = NULL;
        size_t tl = 0;
        uint64_t count = 0, users = 0;
        if (hc_list_get(list, i, &t, &tl, &count, &users) == HC_OK && tl > 0) {
            memcpy(bytes + off, t, tl);
            off += tl;
        }
        nums[3 * i] = off;
        nums[3 * i + 1] = count;
        nums[3 * i + 2] = users;
    }
    hc_list_free(list);
}

#endif
