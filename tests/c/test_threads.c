/* Many threads on one node at once: exact final counts, idempotent tracks
 * racing each other, and a last error that belongs to each thread. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <stdbool.h>

enum { THREADS = 8, TOPICS = 16, CONNS_PER_THREAD = 1000, ROUNDS = 3 };

static hc_node *node;
static pthread_barrier_t barrier;

static void topic_name(int i, char *buf, size_t cap, size_t *len) {
    int n = snprintf(buf, cap, "room:%d", i);
    CHECK(n > 0 && (size_t)n < cap);
    *len = (size_t)n;
}

/* Thread t owns connections t*1000 + c. Each connection joins topics c % TOPICS
 * and (c + 1) % TOPICS; in every round but the last, half the connections are
 * untracked again, one topic at a time or all at once. */
static void *churn(void *arg) {
    int t = (int)(intptr_t)arg;
    char topic[32];
    size_t len;
    pthread_barrier_wait(&barrier);
    for (int round = 0; round < ROUNDS; round++) {
        for (int c = 0; c < CONNS_PER_THREAD; c++) {
            uint64_t conn = (uint64_t)t * 1000 + (uint64_t)c;
            for (int k = 0; k < 2; k++) {
                bool added = false;
                topic_name((c + k) % TOPICS, topic, sizeof topic, &len);
                CHECK_OK(hc_track(node, (const uint8_t *)topic, len, conn, &added));
                CHECK(added); /* this thread alone owns conn, and it was not in the topic */
            }
        }
        if (round == ROUNDS - 1) break;
        for (int c = 0; c < CONNS_PER_THREAD; c++) {
            uint64_t conn = (uint64_t)t * 1000 + (uint64_t)c;
            if (c % 2 == 0) {
                size_t removed = 0;
                CHECK_OK(hc_untrack_all(node, conn, &removed));
                CHECK_U64(removed, 2);
            } else {
                for (int k = 0; k < 2; k++) {
                    bool removed = false;
                    topic_name((c + k) % TOPICS, topic, sizeof topic, &len);
                    CHECK_OK(hc_untrack(node, (const uint8_t *)topic, len, conn, &removed));
                    CHECK(removed);
                }
            }
        }
    }
    return NULL;
}

static void test_concurrent_churn_gives_exact_counts(void) {
    node = start_local();
    CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&th[t], NULL, churn, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    CHECK(pthread_barrier_destroy(&barrier) == 0);

    /* Every connection ends in exactly two topics, and each topic is joined by
     * the connections c with c % TOPICS or (c + 1) % TOPICS equal to it. */
    uint64_t sum = 0;
    for (int i = 0; i < TOPICS; i++) {
        char topic[32];
        size_t len;
        topic_name(i, topic, sizeof topic, &len);
        uint64_t want = 0;
        for (int c = 0; c < CONNS_PER_THREAD; c++) want += (c % TOPICS == i) + ((c + 1) % TOPICS == i);
        want *= THREADS;
        CHECK_U64(count_of(node, (const uint8_t *)topic, len), want);
        CHECK_U64(local_count_of(node, (const uint8_t *)topic, len), want);
        sum += want;
    }
    uint64_t total = 0;
    CHECK_OK(hc_total(node, &total));
    CHECK_U64(total, sum);
    CHECK_U64(sum, (uint64_t)THREADS * CONNS_PER_THREAD * 2);
    hc_node_free(node);
}

/* All threads track and untrack the same (topic, conn) pairs: exactly one
 * track of each pair reports "added" and exactly one untrack "removed". */
static int winners_added, winners_removed;
static pthread_mutex_t winners_lock = PTHREAD_MUTEX_INITIALIZER;

static void *same_pairs(void *arg) {
    (void)arg;
    int added = 0, removed = 0;
    pthread_barrier_wait(&barrier);
    for (uint64_t conn = 0; conn < 500; conn++) {
        bool a = false;
        CHECK_OK(hc_track(node, T("shared"), conn, &a));
        added += a;
    }
    pthread_barrier_wait(&barrier);
    for (uint64_t conn = 0; conn < 500; conn++) {
        bool r = false;
        CHECK_OK(hc_untrack(node, T("shared"), conn, &r));
        removed += r;
    }
    pthread_mutex_lock(&winners_lock);
    winners_added += added;
    winners_removed += removed;
    pthread_mutex_unlock(&winners_lock);
    return NULL;
}

static void test_racing_tracks_of_one_pair_count_once(void) {
    node = start_local();
    CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&th[t], NULL, same_pairs, NULL) == 0);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    CHECK(pthread_barrier_destroy(&barrier) == 0);
    CHECK_U64(winners_added, 500);
    CHECK_U64(winners_removed, 500);
    CHECK_U64(count_of(node, T("shared")), 0);
    hc_node_free(node);
}

/* hc_add from every thread at once. */
static void *adder(void *arg) {
    int t = (int)(intptr_t)arg;
    pthread_barrier_wait(&barrier);
    for (int i = 0; i < 5000; i++) {
        CHECK_OK(hc_add(node, T("raw"), 3));
        CHECK_OK(hc_add(node, T("raw"), -1));
        if (i % 100 == 0) {
            uint64_t n = 0;
            CHECK_OK(hc_count(node, T("raw"), &n)); /* reads race writes, and must not fail */
        }
    }
    CHECK_OK(hc_add(node, T("raw"), t));
    return NULL;
}

static void test_concurrent_adds_are_exact(void) {
    node = start_local();
    CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&th[t], NULL, adder, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    CHECK(pthread_barrier_destroy(&barrier) == 0);
    CHECK_U64(count_of(node, T("raw")), (uint64_t)THREADS * 5000 * 2 + THREADS * (THREADS - 1) / 2);
    hc_node_free(node);
}

/* Each thread fails in its own way, waits for the others to fail too, then
 * still sees its own message. */
static void *own_error(void *arg) {
    int t = (int)(intptr_t)arg;
    uint8_t topic[2048];
    memset(topic, 'x', sizeof topic);
    size_t len = 1025 + (size_t)t; /* a distinct oversize length per thread */
    CHECK_STATUS(hc_track(node, topic, len, 1, NULL), HC_ERR_INVALID_TOPIC);
    const char *mine = hc_last_error();
    pthread_barrier_wait(&barrier);
    char want[64];
    snprintf(want, sizeof want, "topic is %zu bytes", len);
    if (strstr(mine, want) == NULL) HC_FAIL("thread %d sees \"%s\"", t, mine);
    CHECK(hc_last_error() == mine);
    return NULL;
}

static void test_last_error_is_per_thread(void) {
    node = start_local();
    CHECK_STATUS(hc_count(node, T("a"), NULL), HC_ERR_NULL_ARG);
    CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&th[t], NULL, own_error, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < THREADS; t++) CHECK(pthread_join(th[t], NULL) == 0);
    CHECK(pthread_barrier_destroy(&barrier) == 0);
    CHECK(strstr(hc_last_error(), "count_out is NULL") != NULL); /* main thread's own */
    hc_node_free(node);
}

int main(void) {
    RUN(test_concurrent_churn_gives_exact_counts);
    RUN(test_racing_tracks_of_one_pair_count_once);
    RUN(test_concurrent_adds_are_exact);
    RUN(test_last_error_is_per_thread);
    printf("test_threads: %d cases passed\n", hc_cases_passed_);
    return 0;
}
