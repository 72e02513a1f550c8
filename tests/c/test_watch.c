/* The change feed and ranked reads through the C ABI: hc_watch_* with its
 * fd under poll(2), HC_WATCH_INITIAL, prefix filtering, a watch outliving
 * its node, hc_top against brute force, hc_list access and every argument
 * error. Run under ASan/UBSan/LSan by run.sh, so every list and watch must
 * be freed. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <poll.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int readable(const hc_watch *w, int ms) {
    struct pollfd p = {hc_watch_fd(w), POLLIN, 0};
    CHECK(p.fd >= 0);
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

/* The last value a watch delivered per topic, over a few fixed topics. */
#define SEEN_MAX 16
typedef struct {
    char topic[SEEN_MAX][32];
    uint64_t count[SEEN_MAX];
    int n;
} seen_t;

static uint64_t seen_get(const seen_t *s, const char *topic) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->topic[i], topic) == 0) return s->count[i];
    return 0;
}

static int seen_has(const seen_t *s, const char *topic) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->topic[i], topic) == 0) return 1;
    return 0;
}

/* Folds one batch into `s`, checking that it names each topic once. */
static void seen_add(seen_t *s, const hc_list *list) {
    size_t len = hc_list_len(list);
    for (size_t i = 0; i < len; i++) {
        const uint8_t *t = NULL;
        size_t tl = 0;
        uint64_t count = 0, users = 0;
        CHECK_OK(hc_list_get(list, i, &t, &tl, &count, &users));
        CHECK(t != NULL && tl > 0 && tl < 32);
        CHECK_U64(users, count);
        for (size_t j = 0; j < i; j++) {
            const uint8_t *u = NULL;
            size_t ul = 0;
            CHECK_OK(hc_list_get(list, j, &u, &ul, NULL, NULL));
            CHECK(!(ul == tl && memcmp(u, t, tl) == 0));
        }
        char name[32];
        memcpy(name, t, tl);
        name[tl] = '\0';
        int k = 0;
        while (k < s->n && strcmp(s->topic[k], name) != 0) k++;
        if (k == s->n) {
            CHECK(s->n < SEEN_MAX);
            strcpy(s->topic[s->n++], name);
        }
        s->count[k] = count;
    }
}

/* Reads `w` until `topic` was last delivered as `want` (up to 30 s). */
static void seen_until(seen_t *s, hc_watch *w, const char *topic, uint64_t want) {
    double deadline = now_ms() + 30000;
    while (seen_get(s, topic) != want || !seen_has(s, topic)) {
        if (now_ms() > deadline) HC_FAIL("%s never reached %" PRIu64 " (at %" PRIu64 ")", topic, want, seen_get(s, topic));
        hc_list *list = NULL;
        CHECK_OK(hc_watch_next(w, 50, &list));
        CHECK(list != NULL);
        seen_add(s, list);
        hc_list_free(list);
    }
}

static void test_watch_prefix_and_fd(void) {
    hc_node *node = start_local();
    hc_watch *rooms = NULL, *all = NULL;
    CHECK_OK(hc_watch_new(node, T("room:"), 0, &rooms));
    CHECK_OK(hc_watch_new(node, NULL, 0, 0, &all)); /* empty prefix: every topic */
    CHECK(hc_watch_fd(rooms) >= 0 && hc_watch_fd(rooms) != hc_watch_fd(all));
    CHECK(!readable(rooms, 0));
    CHECK_OK(hc_track(node, T("room:1"), 1, NULL));
    CHECK_OK(hc_track(node, T("room:1"), 2, NULL));
    CHECK_OK(hc_track(node, T("lobby"), 1, NULL));
    CHECK(readable(rooms, 30000));
    CHECK(readable(rooms, 0)); /* level-triggered: still readable */
    seen_t r = {0}, a = {0};
    seen_until(&r, rooms, "room:1", 2);
    seen_until(&a, all, "lobby", 1);
    seen_until(&a, all, "room:1", 2);
    CHECK(!seen_has(&r, "lobby"));
    CHECK(!readable(rooms, 0)); /* drained */
    CHECK_OK(hc_untrack_all(node, 1, NULL));
    CHECK_OK(hc_untrack_all(node, 2, NULL));
    seen_until(&r, rooms, "room:1", 0); /* a final 0 is delivered */
    hc_list *list = NULL;
    CHECK_OK(hc_watch_next(rooms, 0, &list)); /* nothing pending: an empty list at once */
    CHECK(list != NULL);
    CHECK_U64(hc_list_len(list), 0);
    hc_list_free(list);
    hc_watch_free(rooms);
    hc_watch_free(all);
    hc_node_free(node);
}

static void test_watch_initial(void) {
    hc_node *node = start_local();
    CHECK_OK(hc_track(node, T("a:1"), 1, NULL));
    CHECK_OK(hc_track(node, T("a:1"), 2, NULL));
    CHECK_OK(hc_track(node, T("a:2"), 3, NULL));
    CHECK_OK(hc_track(node, T("b"), 4, NULL));
    hc_watch *w = NULL;
    CHECK_OK(hc_watch_new(node, T("a:"), HC_WATCH_INITIAL, &w));
    CHECK(readable(w, 0));
    hc_list *list = NULL;
    CHECK_OK(hc_watch_next(w, 0, &list));
    CHECK_U64(hc_list_len(list), 2);
    seen_t s = {0};
    seen_add(&s, list);
    CHECK_U64(seen_get(&s, "a:1"), 2);
    CHECK_U64(seen_get(&s, "a:2"), 1);
    hc_list_free(list);
    hc_watch_free(w);
    hc_node_free(node);
}

static void test_watch_outlives_its_node(void) {
    hc_node *node = start_local();
    hc_watch *w = NULL;
    CHECK_OK(hc_watch_new(node, T("x"), 0, &w));
    hc_node_free(node);
    CHECK(readable(w, 0)); /* a closed watch's fd is readable, so pollers wake */
    hc_list *list = (hc_list *)&list;
    CHECK_FAILS(hc_watch_next(w, -1, &list), HC_ERR_CLOSED, "closed");
    CHECK(list == (hc_list *)&list); /* not written on failure */
    hc_watch_free(w);
}

static void test_watch_argument_errors(void) {
    hc_node *node = start_local();
    hc_watch *w = (hc_watch *)&w;
    CHECK_FAILS(hc_watch_new(NULL, T("x"), 0, &w), HC_ERR_NULL_ARG, "node");
    CHECK_FAILS(hc_watch_new(node, T("x"), 0, NULL), HC_ERR_NULL_ARG, "watch_out");
    CHECK_FAILS(hc_watch_new(node, NULL, 3, 0, &w), HC_ERR_NULL_ARG, "topic");
    CHECK_FAILS(hc_watch_new(node, T("x"), 2, &w), HC_ERR_INVALID_ARG, "flags");
    static uint8_t big[2000];
    CHECK_FAILS(hc_watch_new(node, big, sizeof big, 0, &w), HC_ERR_INVALID_TOPIC, "1024");
    CHECK(w == (hc_watch *)&w);
    hc_list *list = NULL;
    CHECK_FAILS(hc_watch_next(NULL, 0, &list), HC_ERR_NULL_ARG, "watch");
    CHECK_OK(hc_watch_new(node, T("x"), 0, &w));
    CHECK_FAILS(hc_watch_next(w, 0, NULL), HC_ERR_NULL_ARG, "list_out");
    CHECK(hc_watch_fd(NULL) == -1);
    CHECK_FAILS(hc_top(NULL, NULL, 0, 3, &list), HC_ERR_NULL_ARG, "node");
    CHECK_FAILS(hc_top(node, NULL, 0, 3, NULL), HC_ERR_NULL_ARG, "list_out");
    CHECK_FAILS(hc_top(node, big, sizeof big, 3, &list), HC_ERR_INVALID_TOPIC, "1024");
    CHECK_U64(hc_list_len(NULL), 0);
    CHECK_FAILS(hc_list_get(NULL, 0, NULL, NULL, NULL, NULL), HC_ERR_NULL_ARG, "list");
    CHECK_OK(hc_top(node, NULL, 0, 3, &list));
    CHECK_U64(hc_list_len(list), 0);
    CHECK_FAILS(hc_list_get(list, 0, NULL, NULL, NULL, NULL), HC_ERR_INVALID_ARG, "out of range");
    hc_list_free(list);
    hc_list_free(NULL);
    hc_watch_free(w);
    hc_watch_free(NULL);
    hc_node_free(node);
}

static void test_top_against_brute_force(void) {
    hc_node *node = start_local();
    uint64_t want[26] = {0};
    uint32_t rng = 12345;
    for (uint64_t conn = 0; conn < 500; conn++) {
        rng = rng * 1103515245u + 12345u;
        int t = (int)((rng >> 16) % 26);
        char name[8] = {'t', ':', (char)('a' + t), 0};
        bool added = false;
        CHECK_OK(hc_track(node, (const uint8_t *)name, 3, conn, &added));
        if (added) want[t]++;
    }
    CHECK_OK(hc_track(node, T("other"), 1, NULL));
    size_t ks[] = {0, 1, 5, 26, 100};
    for (size_t c = 0; c < sizeof ks / sizeof ks[0]; c++) {
        hc_list *list = NULL;
        CHECK_OK(hc_top(node, T("t:"), ks[c], &list));
        size_t expect = ks[c] < 26 ? ks[c] : 26;
        for (int t = 0; t < 26; t++)
            if (want[t] == 0 && ks[c] >= 26) expect--;
        CHECK_U64(hc_list_len(list), expect);
        /* Brute force: entry i is the best topic not yet listed. */
        int used[26] = {0};
        for (size_t i = 0; i < hc_list_len(list); i++) {
            int best = -1;
            for (int t = 0; t < 26; t++)
                if (!used[t] && want[t] > 0 && (best < 0 || want[t] > want[best])) best = t;
            const uint8_t *topic = NULL;
            size_t len = 0;
            uint64_t count = 0, users = 0;
            CHECK_OK(hc_list_get(list, i, &topic, &len, &count, &users));
            CHECK(len == 3 && topic[2] == 'a' + best);
            CHECK_U64(count, want[best]);
            CHECK_U64(users, want[best]);
            used[best] = 1;
        }
        hc_list_free(list);
    }
    hc_node_free(node);
}

int main(void) {
    RUN(test_watch_prefix_and_fd);
    RUN(test_watch_initial);
    RUN(test_watch_outlives_its_node);
    RUN(test_watch_argument_errors);
    RUN(test_top_against_brute_force);
    printf("%d cases passed\n", hc_cases_passed_);
    return 0;
}
