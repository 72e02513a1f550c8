/* Starting and freeing nodes and configs over and over. Built with
 * -fsanitize=address, so LeakSanitizer (detect_leaks=1) fails this program at
 * exit if a node, a config, a string or a background thread's state leaks. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>

static void test_start_free_loop(void) {
    for (int i = 0; i < 200; i++) {
        hc_config *cfg = hc_config_new();
        CHECK(cfg != NULL);
        char name[32];
        snprintf(name, sizeof name, "loop-%d", i);
        CHECK_OK(hc_config_set(cfg, "node_name", name));
        CHECK_OK(hc_config_set(cfg, "flush_interval_ms", "1"));
        hc_node *node = NULL;
        CHECK_OK(hc_node_start(cfg, &node));
        hc_config_free(cfg);
        for (uint64_t conn = 0; conn < 20; conn++) CHECK_OK(hc_track(node, T("room"), conn, NULL));
        CHECK_U64(count_of(node, T("room")), 20);
        char json[2048];
        size_t len;
        CHECK_OK(hc_stats_json(node, json, sizeof json, &len));
        /* Free with topics and connections still tracked: all of it must go. */
        hc_node_free(node);
    }
}

static void test_one_config_many_nodes(void) {
    hc_config *cfg = hc_config_new();
    CHECK_OK(hc_config_set(cfg, "max_topic_len", "4"));
    hc_node *nodes[16];
    for (int i = 0; i < 16; i++) CHECK_OK(hc_node_start(cfg, &nodes[i]));
    hc_config_free(cfg); /* before the nodes: they do not borrow it */
    for (int i = 0; i < 16; i++) {
        CHECK_OK(hc_track(nodes[i], T("abcd"), (uint64_t)i, NULL));
        CHECK_STATUS(hc_track(nodes[i], T("abcde"), 1, NULL), HC_ERR_INVALID_TOPIC);
    }
    for (int i = 0; i < 16; i++) CHECK_U64(count_of(nodes[i], T("abcd")), 1); /* nodes are separate */
    for (int i = 15; i >= 0; i--) hc_node_free(nodes[i]);
}

static void test_config_churn(void) {
    for (int i = 0; i < 1000; i++) {
        hc_config *cfg = hc_config_new();
        CHECK(cfg != NULL);
        CHECK_OK(hc_config_set(cfg, "secret", "one"));
        CHECK_OK(hc_config_set(cfg, "secret", "two")); /* replacing frees the old value */
        CHECK_OK(hc_config_set(cfg, "seeds", "127.0.0.1:1,127.0.0.1:2"));
        CHECK_STATUS(hc_config_set(cfg, "nope", "x"), HC_ERR_CONFIG);
        hc_config_free(cfg);
    }
    hc_config_free(NULL);
    hc_node_free(NULL);
}

/* A node freed from another thread than the one that started it, while
 * threads that have their own last-error messages come and go. */
static void *start_on_a_thread(void *arg) {
    hc_node **out = arg;
    *out = start_local();
    CHECK_STATUS(hc_track(*out, T(""), 1, NULL), HC_ERR_INVALID_TOPIC); /* a thread-local message */
    return NULL;
}

static void test_threads_come_and_go(void) {
    for (int i = 0; i < 50; i++) {
        hc_node *node = NULL;
        pthread_t th;
        CHECK(pthread_create(&th, NULL, start_on_a_thread, &node) == 0);
        CHECK(pthread_join(th, NULL) == 0);
        CHECK(node != NULL);
        CHECK_OK(hc_track(node, T("x"), 1, NULL));
        hc_node_free(node);
    }
}

int main(void) {
    RUN(test_start_free_loop);
    RUN(test_one_config_many_nodes);
    RUN(test_config_churn);
    RUN(test_threads_come_and_go);
    printf("test_lifecycle: %d cases passed\n", hc_cases_passed_);
    return 0;
}
