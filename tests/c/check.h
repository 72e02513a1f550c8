/* A tiny assertion library for the headcount C tests.
 *
 * A failed check prints where and why (with hc_last_error()) and exits at
 * once with _Exit(1), skipping atexit handlers so that LeakSanitizer does not
 * bury the message under the leaks of a test that stopped half-way. */
#ifndef HC_CHECK_H
#define HC_CHECK_H

#include "headcount.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exit status meaning "skipped" (the automake convention); tests/c/run.sh
 * counts it as neither passed nor failed. */
#define HC_SKIP 77

#define HC_FAIL(...)                                                     \
    do {                                                                 \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);            \
        fprintf(stderr, __VA_ARGS__);                                    \
        fprintf(stderr, "\n");                                           \
        fflush(stderr);                                                  \
        _Exit(1);                                                        \
    } while (0)

#define CHECK(cond)                                                      \
    do {                                                                 \
        if (!(cond)) HC_FAIL("%s", #cond);                               \
    } while (0)

/* `call` returns `want`; on a failure status the thread's last error must
 * be a non-empty message. */
#define CHECK_STATUS(call, want)                                         \
    do {                                                                 \
        hc_status got_ = (call);                                         \
        hc_status want_ = (want);                                        \
        if (got_ != want_)                                               \
            HC_FAIL("%s\n  returned %s\n  wanted   %s\n  last error: %s", \
                    #call, hc_status_str(got_), hc_status_str(want_),    \
                    hc_last_error());                                    \
        if (got_ != HC_OK && hc_last_error()[0] == '\0')                 \
            HC_FAIL("%s failed with an empty hc_last_error()", #call);   \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, HC_OK)

/* `call` fails with `want` and hc_last_error() contains `needle`. */
#define CHECK_FAILS(call, want, needle)                                  \
    do {                                                                 \
        CHECK_STATUS(call, want);                                        \
        if (strstr(hc_last_error(), (needle)) == NULL)                   \
            HC_FAIL("%s: last error %s does not mention %s", #call,      \
                    hc_last_error(), (needle));                          \
    } while (0)

#define CHECK_U64(got, want)                                             \
    do {                                                                 \
        uint64_t g_ = (got), w_ = (want);                                \
        if (g_ != w_)                                                    \
            HC_FAIL("%s == %" PRIu64 ", want %" PRIu64, #got, g_, w_);   \
    } while (0)

#define CHECK_STR(got, want)                                             \
    do {                                                                 \
        const char *g_ = (got), *w_ = (want);                            \
        if (strcmp(g_, w_) != 0)                                         \
            HC_FAIL("%s == \"%s\", want \"%s\"", #got, g_, w_);          \
    } while (0)

/* Runs one test case and reports it. */
#define RUN(test)                                                        \
    do {                                                                 \
        test();                                                          \
        printf("ok - %s\n", #test);                                      \
        fflush(stdout);                                                  \
        hc_cases_passed_++;                                              \
    } while (0)

static int hc_cases_passed_;

#define T(s) ((const uint8_t *)(s)), (sizeof(s) - 1) /* topic literal: pointer, length */

/* A started local-only node, or a failed test. */
static inline hc_node *start_local(void) {
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(hc_config_set(cfg, "flush_interval_ms", "20"));
    hc_node *node = NULL;
    CHECK_OK(hc_node_start(cfg, &node));
    CHECK(node != NULL);
    hc_config_free(cfg);
    return node;
}

static inline uint64_t count_of(const hc_node *node, const uint8_t *topic, size_t len) {
    uint64_t n = UINT64_MAX;
    CHECK_OK(hc_count(node, topic, len, &n));
    return n;
}

static inline uint64_t local_count_of(const hc_node *node, const uint8_t *topic, size_t len) {
    uint64_t n = UINT64_MAX;
    CHECK_OK(hc_count_local(node, topic, len, &n));
    return n;
}

#endif /* HC_CHECK_H */
