/* Nodes over loopback converging to the same counts. Needs a library with
 * clustering: if a node with `listen` cannot start with HC_ERR_CONFIG, the
 * program prints "SKIP: ..." and exits 77 (run.sh counts it as skipped);
 * any other failure fails. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <time.h>

#define SECRET "test-cluster-secret"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static hc_status start_node(const char *name, const char *listen, const char *seeds, hc_node **out) {
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(hc_config_set(cfg, "node_name", name));
    CHECK_OK(hc_config_set(cfg, "cluster", "c-abi-test"));
    CHECK_OK(hc_config_set(cfg, "secret", SECRET));
    CHECK_OK(hc_config_set(cfg, "flush_interval_ms", "20"));
    CHECK_OK(hc_config_set(cfg, "down_after_ms", "3000"));
    CHECK_OK(hc_config_set(cfg, "listen", listen));
    if (seeds != NULL) CHECK_OK(hc_config_set(cfg, "seeds", seeds));
    hc_status s = hc_node_start(cfg, out);
    hc_config_free(cfg);
    return s;
}

/* Waits up to `ms` for hc_count(node, topic) == want; fails the test if it
 * never gets there. */
#define CONVERGES(node, topic_lit, want, ms)                                                                  \
    do {                                                                                                      \
        double deadline_ = now_ms() + (ms);                                                                   \
        uint64_t got_ = count_of(node, T(topic_lit));                                                        \
        while (got_ != (want) && now_ms() < deadline_) {                                                      \
            sleep_ms(10);                                                                                     \
            got_ = count_of(node, T(topic_lit));                                                             \
        }                                                                                                     \
        if (got_ != (want))                                                                                   \
            HC_FAIL("hc_count(%s, \"%s\") is %" PRIu64 " after %d ms, want %" PRIu64, #node, topic_lit, got_, \
                    (int)(ms), (uint64_t)(want));                                                             \
    } while (0)

static void addr_of(const hc_node *node, char *buf, size_t cap) {
    size_t len = 0;
    CHECK_OK(hc_node_local_addr(node, buf, cap, &len));
    CHECK(len > 0 && strlen(buf) == len);
}

static hc_node *a, *b;
static char addr_a[64], addr_b[64];

static void test_local_addr_buffers(void) {
    size_t need = 0;
    CHECK_FAILS(hc_node_local_addr(a, NULL, 0, &need), HC_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK(need >= strlen("127.0.0.1:1") && need < sizeof addr_a);
    char small[64];
    memset(small, '#', sizeof small);
    size_t len = 0;
    CHECK_FAILS(hc_node_local_addr(a, small, need, &len), HC_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK_U64(len, need);
    for (size_t i = 0; i < sizeof small; i++) CHECK(small[i] == '#');
    CHECK_OK(hc_node_local_addr(a, small, need + 1, &len));
    CHECK_U64(len, need);
    CHECK_STR(small, addr_a);
    CHECK(strncmp(addr_a, "127.0.0.1:", 10) == 0);
    CHECK(strcmp(addr_a, "127.0.0.1:0") != 0); /* the port actually bound */
}

static void test_two_nodes_converge(void) {
    for (uint64_t conn = 1; conn <= 3; conn++) CHECK_OK(hc_track(a, T("room"), conn, NULL));
    for (uint64_t conn = 10; conn <= 11; conn++) CHECK_OK(hc_track(b, T("room"), conn, NULL));
    CHECK_OK(hc_track(b, T("only-b"), 10, NULL));
    CHECK_OK(hc_add(a, T("raw"), 7));

    CONVERGES(a, "room", 5, 10000);
    CONVERGES(b, "room", 5, 10000);
    CONVERGES(a, "only-b", 1, 10000);
    CONVERGES(b, "raw", 7, 10000);
    CHECK_U64(local_count_of(a, T("room")), 3);
    CHECK_U64(local_count_of(b, T("room")), 2);
    CHECK_U64(local_count_of(a, T("only-b")), 0);

    hc_topic_count info;
    CHECK_OK(hc_count_info(a, T("room"), &info));
    CHECK_U64(info.count, 5);
    CHECK_U64(info.local, 3);
    CHECK_U64(info.peers_reporting, 1);
    CHECK_U64(info.peers_known, 1);
    CHECK(info.oldest_report_age_ms < 10000);

    uint64_t total = 0;
    CHECK_OK(hc_total(a, &total));
    CHECK_U64(total, 3 + 2 + 1 + 7);

    /* Changes keep flowing: connection 10 leaves everything on b. */
    size_t removed = 0;
    CHECK_OK(hc_untrack_all(b, 10, &removed));
    CHECK_U64(removed, 2);
    CONVERGES(a, "room", 4, 10000);
    CONVERGES(a, "only-b", 0, 10000);
    CHECK_OK(hc_untrack(a, T("room"), 1, NULL));
    CONVERGES(b, "room", 3, 10000);
}

static void test_add_peer_joins_a_third_node(void) {
    hc_node *c = NULL;
    CHECK_OK(start_node("c", "127.0.0.1:0", NULL, &c));
    CHECK_OK(hc_node_add_peer(c, addr_a)); /* joining one node is enough */
    CHECK_OK(hc_track(c, T("room"), 20, NULL));
    CONVERGES(a, "room", 4, 10000);
    CONVERGES(b, "room", 4, 10000); /* b learns of c through a */
    CONVERGES(c, "room", 4, 10000);
    CHECK_OK(hc_node_add_peer(a, addr_b)); /* a peer it already has: still fine */
    char json[8192];
    size_t len = 0;
    CHECK_OK(hc_stats_json(a, json, sizeof json, &len));
    CHECK(strstr(json, "\"peers\"") != NULL);
    /* A graceful leave: the others drop c's count at once, well before
     * down_after_ms would have declared it down. */
    double t0 = now_ms();
    hc_node_free(c);
    CONVERGES(a, "room", 3, 10000);
    CONVERGES(b, "room", 3, 10000);
    if (now_ms() - t0 > 2000) HC_FAIL("c's count lingered %.0f ms after hc_node_free", now_ms() - t0);
}

static void test_listen_on_a_port_in_use_is_io(void) {
    hc_node *d = (hc_node *)&d;
    CHECK_STATUS(start_node("d", addr_a, NULL, &d), HC_ERR_IO);
    CHECK(d == (hc_node *)&d);
}

int main(void) {
    hc_status s = start_node("a", "127.0.0.1:0", NULL, &a);
    if (s == HC_ERR_CONFIG) {
        printf("SKIP: node built without clustering (hc_node_start with listen: %s)\n", hc_last_error());
        return HC_SKIP;
    }
    CHECK_STATUS(s, HC_OK);
    addr_of(a, addr_a, sizeof addr_a);
    CHECK_OK(start_node("b", "127.0.0.1:0", addr_a, &b));
    addr_of(b, addr_b, sizeof addr_b);

    RUN(test_local_addr_buffers);
    RUN(test_two_nodes_converge);
    RUN(test_add_peer_joins_a_third_node);
    RUN(test_listen_on_a_port_in_use_is_io);

    hc_node_free(b);
    hc_node_free(a);
    printf("test_cluster: %d cases passed\n", hc_cases_passed_);
    return 0;
}
