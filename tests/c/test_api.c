/* Every function of the C ABI, with good and bad inputs, on a local node. */
#include "check.h"

#include <stdbool.h>

static void test_last_error_starts_empty(void) {
    /* Must run first: no call has failed on this thread yet. */
    CHECK(hc_last_error() != NULL);
    CHECK_STR(hc_last_error(), "");
}

static void test_version(void) {
    const char *v = hc_version();
    CHECK(v != NULL);
    CHECK(v[0] >= '0' && v[0] <= '9');
    CHECK(strchr(v, '.') != NULL);
    CHECK(hc_version() == v); /* static */
}

static void test_status_str(void) {
    static const char *names[] = {
        "HC_OK",  "HC_ERR_NULL_ARG", "HC_ERR_INVALID_ARG",      "HC_ERR_INVALID_TOPIC", "HC_ERR_CONFIG",
        "HC_ERR_IO", "HC_ERR_BUFFER_TOO_SMALL", "HC_ERR_CLOSED", "HC_ERR_PANIC",
    };
    hc_status all[] = {HC_OK,     HC_ERR_NULL_ARG,         HC_ERR_INVALID_ARG, HC_ERR_INVALID_TOPIC, HC_ERR_CONFIG,
                       HC_ERR_IO, HC_ERR_BUFFER_TOO_SMALL, HC_ERR_CLOSED,      HC_ERR_PANIC};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK((int)all[i] == (int)i); /* the numeric values are part of the ABI */
        const char *s = hc_status_str(all[i]);
        CHECK(s != NULL);
        size_t n = strlen(names[i]);
        if (strncmp(s, names[i], n) != 0 || s[n] != ':') HC_FAIL("hc_status_str(%zu) = \"%s\"", i, s);
    }
    /* C lets any value through an enum parameter: it must not be UB. */
    CHECK_STR(hc_status_str((hc_status)9), "unknown hc_status");
    CHECK_STR(hc_status_str((hc_status)12345), "unknown hc_status");
}

static void test_config_every_key(void) {
    static const char *good[][2] = {
        {"node_name", "a"},          {"cluster", "prod"},       {"secret", "s3cret"},
        {"flush_interval_ms", "50"}, {"down_after_ms", "500"}, {"down_grace_ms", "0"},
        {"max_topic_len", "512"},    {"gc_after_ms", "1000"},  {"seeds", ""},
    };
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) CHECK_OK(hc_config_set(cfg, good[i][0], good[i][1]));
    /* Setting a key again replaces it (and must not leak the old value). */
    CHECK_OK(hc_config_set(cfg, "node_name", "b"));
    CHECK_OK(hc_config_set(cfg, "secret", "another"));
    hc_node *node = NULL;
    CHECK_OK(hc_node_start(cfg, &node));
    hc_config_free(cfg); /* the node does not need it any more */
    char json[4096];
    size_t len = 0;
    CHECK_OK(hc_stats_json(node, json, sizeof json, &len));
    CHECK(strstr(json, "\"node\":\"b\"") != NULL);
    hc_node_free(node);
}

static void test_config_errors(void) {
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    CHECK_FAILS(hc_config_set(cfg, "colour", "blue"), HC_ERR_CONFIG, "unknown key");
    CHECK_FAILS(hc_config_set(cfg, "colour", "blue"), HC_ERR_CONFIG, "colour");
    CHECK_FAILS(hc_config_set(cfg, "flush_interval_ms", "soon"), HC_ERR_CONFIG, "not a whole number");
    CHECK_FAILS(hc_config_set(cfg, "flush_interval_ms", "0"), HC_ERR_CONFIG, "out of range");
    CHECK_FAILS(hc_config_set(cfg, "max_topic_len", "65536"), HC_ERR_CONFIG, "max_topic_len");
    CHECK_FAILS(hc_config_set(cfg, "listen", "127.0.0.1"), HC_ERR_CONFIG, "host:port");
    CHECK_FAILS(hc_config_set(cfg, "secret", ""), HC_ERR_CONFIG, "empty");
    CHECK_FAILS(hc_config_set(NULL, "node_name", "a"), HC_ERR_NULL_ARG, "cfg is NULL");
    CHECK_FAILS(hc_config_set(cfg, NULL, "a"), HC_ERR_NULL_ARG, "key is NULL");
    CHECK_FAILS(hc_config_set(cfg, "node_name", NULL), HC_ERR_NULL_ARG, "value is NULL");
    CHECK_FAILS(hc_config_set(cfg, "node_\xff", "a"), HC_ERR_CONFIG, "UTF-8");
    CHECK_FAILS(hc_config_set(cfg, "node_name", "caf\xc3"), HC_ERR_CONFIG, "UTF-8");
    CHECK_FAILS(hc_config_set(cfg, "node_name", "caf\xc3"), HC_ERR_CONFIG, "node_name");

    /* A failed set changes nothing: max_topic_len stays 8. */
    CHECK_OK(hc_config_set(cfg, "max_topic_len", "8"));
    CHECK_STATUS(hc_config_set(cfg, "max_topic_len", "0"), HC_ERR_CONFIG);
    hc_node *node = NULL;
    CHECK_OK(hc_node_start(cfg, &node));
    CHECK_OK(hc_track(node, T("12345678"), 1, NULL));
    CHECK_FAILS(hc_track(node, T("123456789"), 1, NULL), HC_ERR_INVALID_TOPIC, "9 bytes");
    hc_node_free(node);

    hc_config_free(cfg);
    hc_config_free(NULL);
}

static void test_node_start_errors(void) {
    hc_config *cfg = hc_config_new();
    hc_node *node = (hc_node *)&node; /* a sentinel: must stay unwritten on failure */
    CHECK_FAILS(hc_node_start(NULL, &node), HC_ERR_NULL_ARG, "cfg is NULL");
    CHECK(node == (hc_node *)&node);
    CHECK_FAILS(hc_node_start(cfg, NULL), HC_ERR_NULL_ARG, "node_out is NULL");
    /* A network without a secret is refused as a whole configuration. */
    CHECK_OK(hc_config_set(cfg, "listen", "127.0.0.1:0"));
    CHECK_FAILS(hc_node_start(cfg, &node), HC_ERR_CONFIG, "secret");
    CHECK(node == (hc_node *)&node);
    hc_config_free(cfg);
    hc_node_free(NULL);
}

static void test_track_untrack_count(void) {
    hc_node *node = start_local();
    bool added = false, removed = true;
    uint64_t n = 0;

    CHECK_U64(count_of(node, T("room:never")), 0); /* an unknown topic counts 0 */
    CHECK_OK(hc_track(node, T("room:a"), 1, &added));
    CHECK(added);
    CHECK_OK(hc_track(node, T("room:a"), 1, &added)); /* idempotent */
    CHECK(!added);
    CHECK_OK(hc_track(node, T("room:a"), 2, NULL)); /* added_out may be NULL */
    CHECK_OK(hc_track(node, T("room:b"), 1, NULL));
    CHECK_U64(count_of(node, T("room:a")), 2);
    CHECK_U64(local_count_of(node, T("room:a")), 2);
    CHECK_U64(count_of(node, T("room:b")), 1);

    hc_topic_count info;
    memset(&info, 0xAB, sizeof info);
    CHECK_OK(hc_count_info(node, T("room:a"), &info));
    CHECK_U64(info.count, 2);
    CHECK_U64(info.local, 2);
    CHECK_U64(info.peers_reporting, 0);
    CHECK_U64(info.peers_known, 0);
    CHECK_U64(info.oldest_report_age_ms, 0);

    CHECK_OK(hc_total(node, &n));
    CHECK_U64(n, 3);

    CHECK_OK(hc_untrack(node, T("room:a"), 2, &removed));
    CHECK(removed);
    CHECK_OK(hc_untrack(node, T("room:a"), 2, &removed)); /* not tracked: a no-op */
    CHECK(!removed);
    CHECK_OK(hc_untrack(node, T("room:zzz"), 9, &removed)); /* unknown topic: a no-op */
    CHECK(!removed);
    CHECK_OK(hc_untrack(node, T("room:a"), 1, NULL));
    CHECK_U64(count_of(node, T("room:a")), 0);
    CHECK_U64(count_of(node, T("room:b")), 1);
    hc_node_free(node);
}

static void test_untrack_all(void) {
    hc_node *node = start_local();
    size_t removed = 12345;
    for (uint64_t conn = 1; conn <= 2; conn++) {
        CHECK_OK(hc_track(node, T("t1"), conn, NULL));
        CHECK_OK(hc_track(node, T("t2"), conn, NULL));
        CHECK_OK(hc_track(node, T("t3"), conn, NULL));
    }
    CHECK_OK(hc_untrack_all(node, 1, &removed));
    CHECK_U64(removed, 3);
    CHECK_OK(hc_untrack_all(node, 1, &removed));
    CHECK_U64(removed, 0);
    CHECK_OK(hc_untrack_all(node, 2, NULL)); /* removed_out may be NULL */
    CHECK_U64(count_of(node, T("t1")) + count_of(node, T("t2")) + count_of(node, T("t3")), 0);
    CHECK_OK(hc_untrack_all(node, 99, &removed)); /* an unknown connection */
    CHECK_U64(removed, 0);
    hc_node_free(node);
}

static void test_add(void) {
    hc_node *node = start_local();
    CHECK_OK(hc_add(node, T("raw"), 5));
    CHECK_OK(hc_add(node, T("raw"), -2));
    CHECK_U64(count_of(node, T("raw")), 3);
    CHECK_OK(hc_add(node, T("raw"), 0));
    CHECK_U64(count_of(node, T("raw")), 3);
    /* hc_add and tracked membership add up in the same count. */
    CHECK_OK(hc_track(node, T("raw"), 7, NULL));
    CHECK_U64(count_of(node, T("raw")), 4);
    uint64_t total = 0;
    CHECK_OK(hc_total(node, &total));
    CHECK_U64(total, 4);
    hc_node_free(node);
}

static void test_topics_are_bytes(void) {
    hc_node *node = start_local();
    static const uint8_t a[] = {'r', 0, 'm'}, b[] = {'r', 0, 'n'}, c[] = {0xff, 0xfe};
    CHECK_OK(hc_track(node, a, sizeof a, 1, NULL));
    CHECK_OK(hc_track(node, b, sizeof b, 1, NULL));
    CHECK_OK(hc_track(node, b, sizeof b, 2, NULL));
    CHECK_OK(hc_track(node, c, sizeof c, 1, NULL));
    CHECK_U64(count_of(node, a, sizeof a), 1);
    CHECK_U64(count_of(node, b, sizeof b), 2);
    CHECK_U64(count_of(node, c, sizeof c), 1);
    CHECK_U64(count_of(node, a, 1), 0); /* a prefix is another topic */
    hc_node_free(node);
}

static void test_topic_lengths(void) {
    hc_node *node = start_local();
    static uint8_t big[1025];
    memset(big, 'x', sizeof big);
    uint64_t n = 77;
    bool flag = true;
    hc_topic_count info;
    memset(&info, 0xAB, sizeof info);

    CHECK_OK(hc_track(node, big, 1024, 1, NULL)); /* the default limit itself is fine */
    CHECK_U64(count_of(node, big, 1024), 1);
    CHECK_OK(hc_track(node, big, 1, 1, NULL)); /* and so is one byte */

#define BAD_TOPIC(ptr, len, want, needle)                                                       \
    do {                                                                                       \
        CHECK_FAILS(hc_track(node, ptr, len, 1, &flag), want, needle);                         \
        CHECK_FAILS(hc_untrack(node, ptr, len, 1, &flag), want, needle);                       \
        CHECK_FAILS(hc_add(node, ptr, len, 1), want, needle);                                  \
        CHECK_FAILS(hc_count(node, ptr, len, &n), want, needle);                               \
        CHECK_FAILS(hc_count_local(node, ptr, len, &n), want, needle);                         \
        CHECK_FAILS(hc_count_info(node, ptr, len, &info), want, needle);                       \
    } while (0)

    BAD_TOPIC(big, 0, HC_ERR_INVALID_TOPIC, "empty");                   /* zero length */
    BAD_TOPIC(NULL, 0, HC_ERR_INVALID_TOPIC, "empty");                  /* NULL, zero length */
    BAD_TOPIC(big, 1025, HC_ERR_INVALID_TOPIC, "1025 bytes");          /* oversize */
    BAD_TOPIC(big, SIZE_MAX, HC_ERR_INVALID_TOPIC, "the limit");       /* absurd, never read */
    BAD_TOPIC(NULL, 5, HC_ERR_NULL_ARG, "topic");                      /* NULL, non-zero length */
#undef BAD_TOPIC

    /* Failures wrote none of the out-parameters. */
    CHECK_U64(n, 77);
    CHECK(flag);
    CHECK_U64(info.count, 0xABABABABABABABABull);
    CHECK_U64(count_of(node, big, 1024), 1);
    hc_node_free(node);
}

static void test_null_node_and_out_pointers(void) {
    hc_node *node = start_local();
    uint64_t n = 0;
    size_t len = 0;
    bool flag = false;
    char buf[64];
    hc_topic_count info;

    CHECK_FAILS(hc_track(NULL, T("a"), 1, &flag), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_untrack(NULL, T("a"), 1, &flag), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_untrack_all(NULL, 1, &len), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_add(NULL, T("a"), 1), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_count(NULL, T("a"), &n), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_count_local(NULL, T("a"), &n), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_count_info(NULL, T("a"), &info), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_total(NULL, &n), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_stats_json(NULL, buf, sizeof buf, &len), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_node_local_addr(NULL, buf, sizeof buf, &len), HC_ERR_NULL_ARG, "node is NULL");
    CHECK_FAILS(hc_node_add_peer(NULL, "127.0.0.1:1"), HC_ERR_NULL_ARG, "node is NULL");

    CHECK_FAILS(hc_count(node, T("a"), NULL), HC_ERR_NULL_ARG, "count_out is NULL");
    CHECK_FAILS(hc_count_local(node, T("a"), NULL), HC_ERR_NULL_ARG, "count_out is NULL");
    CHECK_FAILS(hc_count_info(node, T("a"), NULL), HC_ERR_NULL_ARG, "info_out is NULL");
    CHECK_FAILS(hc_total(node, NULL), HC_ERR_NULL_ARG, "total_out is NULL");
    CHECK_FAILS(hc_stats_json(node, buf, sizeof buf, NULL), HC_ERR_NULL_ARG, "len_out is NULL");
    CHECK_FAILS(hc_stats_json(node, NULL, 16, &len), HC_ERR_NULL_ARG, "buf");
    CHECK_FAILS(hc_node_local_addr(node, buf, sizeof buf, NULL), HC_ERR_NULL_ARG, "len_out is NULL");
    CHECK_FAILS(hc_node_local_addr(node, NULL, 16, &len), HC_ERR_NULL_ARG, "buf");
    CHECK_FAILS(hc_node_add_peer(node, NULL), HC_ERR_NULL_ARG, "addr is NULL");
    hc_node_free(node);
}

static void test_stats_json_buffers(void) {
    /* The stats must hold still between the two calls: no flush may run
     * (a flush changes "flushes" and the flush timings, so the length). */
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(hc_config_set(cfg, "flush_mode", "fixed"));
    CHECK_OK(hc_config_set(cfg, "flush_interval_ms", "60000"));
    hc_node *node = NULL;
    CHECK_OK(hc_node_start(cfg, &node));
    hc_config_free(cfg);
    CHECK_OK(hc_track(node, T("room"), 1, NULL));
    size_t need = 0;
    /* Ask for the length with a NULL buffer. */
    CHECK_FAILS(hc_stats_json(node, NULL, 0, &need), HC_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK(need > 10);
    /* Exactly the length is one short (the NUL): untouched, length reported. */
    char *buf = malloc(need + 1);
    CHECK(buf != NULL);
    memset(buf, '#', need + 1);
    size_t len = 0;
    CHECK_FAILS(hc_stats_json(node, buf, need, &len), HC_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK_U64(len, need);
    for (size_t i = 0; i <= need; i++) CHECK(buf[i] == '#');
    /* Length + 1 fits. */
    CHECK_OK(hc_stats_json(node, buf, need + 1, &len));
    CHECK_U64(len, need);
    CHECK_U64(strlen(buf), need);
    CHECK(buf[0] == '{' && buf[need - 1] == '}');
    CHECK(strstr(buf, "\"tracked_pairs\":1") != NULL);
    free(buf);
    hc_node_free(node);
}

static void test_local_addr_without_listener(void) {
    hc_node *node = start_local();
    char buf[64];
    memset(buf, '#', sizeof buf);
    size_t len = 99;
    CHECK_OK(hc_node_local_addr(node, buf, sizeof buf, &len));
    CHECK_U64(len, 0);
    CHECK_STR(buf, "");
    /* Even "" needs room for its NUL. */
    len = 99;
    CHECK_FAILS(hc_node_local_addr(node, NULL, 0, &len), HC_ERR_BUFFER_TOO_SMALL, "too small");
    CHECK_U64(len, 0);
    hc_node_free(node);
}

static void test_add_peer_errors(void) {
    hc_node *node = start_local();
    CHECK_STATUS(hc_node_add_peer(node, "not an address"), HC_ERR_INVALID_ARG);
    CHECK_FAILS(hc_node_add_peer(node, "127.0.0.1:\xff"), HC_ERR_INVALID_ARG, "UTF-8");
    hc_node_free(node);
}

static void test_last_error_lifetime(void) {
    hc_node *node = start_local();
    CHECK_STATUS(hc_count(node, NULL, 3, NULL), HC_ERR_NULL_ARG);
    const char *msg = hc_last_error();
    char copy[256];
    snprintf(copy, sizeof copy, "%s", msg);
    CHECK(strncmp(copy, "hc_count: ", 10) == 0);
    /* Successful calls leave it alone: same pointer, same text. */
    CHECK_OK(hc_track(node, T("x"), 1, NULL));
    CHECK_U64(count_of(node, T("x")), 1);
    CHECK(hc_last_error() == msg);
    CHECK_STR(msg, copy);
    /* The next failure replaces it. */
    CHECK_STATUS(hc_track(node, T(""), 1, NULL), HC_ERR_INVALID_TOPIC);
    CHECK(strncmp(hc_last_error(), "hc_track: ", 10) == 0);
    hc_node_free(node);
}

int main(void) {
    RUN(test_last_error_starts_empty);
    RUN(test_version);
    RUN(test_status_str);
    RUN(test_config_every_key);
    RUN(test_config_errors);
    RUN(test_node_start_errors);
    RUN(test_track_untrack_count);
    RUN(test_untrack_all);
    RUN(test_add);
    RUN(test_topics_are_bytes);
    RUN(test_topic_lengths);
    RUN(test_null_node_and_out_pointers);
    RUN(test_stats_json_buffers);
    RUN(test_local_addr_without_listener);
    RUN(test_add_peer_errors);
    RUN(test_last_error_lifetime);
    printf("test_api: %d cases passed\n", hc_cases_passed_);
    return 0;
}
