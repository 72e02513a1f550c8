/* hc_set_log_callback: the library's log lines reach the callback with
 * their level, target, node and message, from the library's own threads as
 * well as the caller's, with the caller's user_data; after
 * hc_set_log_callback(NULL, NULL) returns, the callback is never called
 * again. Skipped (exit 77) when HEADCOUNT_LOG filters out info lines. */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define SECRET "test-log-secret"

typedef struct {
    pthread_mutex_t lock;
    pthread_t main_thread;
    int calls;
    int bad_args;
    int listening_info;       /* "listening on" at INFO from headcount::cluster, node "logged" */
    int debug_from_a_thread;  /* a DEBUG line from a thread that is not the caller's */
} seen;

static void on_log(void *user_data, hc_log_level level, const char *target, const char *node,
                   const char *message) {
    seen *s = user_data;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    if (target == NULL || node == NULL || message == NULL || level < HC_LOG_ERROR || level > HC_LOG_DEBUG ||
        strncmp(target, "headcount::", 11) != 0) {
        s->bad_args++;
    } else {
        if (level == HC_LOG_INFO && strcmp(node, "logged") == 0 && strncmp(target, "headcount::cluster", 18) == 0 &&
            strstr(message, "listening on 127.0.0.1:") != NULL)
            s->listening_info++;
        if (level == HC_LOG_DEBUG && strstr(message, "dial ") != NULL &&
            !pthread_equal(pthread_self(), s->main_thread))
            s->debug_from_a_thread++;
    }
    pthread_mutex_unlock(&s->lock);
}

static int snapshot(seen *s, int *debug_from_a_thread) {
    pthread_mutex_lock(&s->lock);
    int calls = s->calls;
    if (debug_from_a_thread) *debug_from_a_thread = s->debug_from_a_thread;
    pthread_mutex_unlock(&s->lock);
    return calls;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static hc_node *start(const char *name, const char *seeds) {
    hc_config *cfg = hc_config_new();
    CHECK(cfg != NULL);
    CHECK_OK(hc_config_set(cfg, "node_name", name));
    CHECK_OK(hc_config_set(cfg, "secret", SECRET));
    CHECK_OK(hc_config_set(cfg, "listen", "127.0.0.1:0"));
    if (seeds) CHECK_OK(hc_config_set(cfg, "seeds", seeds));
    hc_node *n = NULL;
    CHECK_OK(hc_node_start(cfg, &n));
    hc_config_free(cfg);
    return n;
}

static seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
static const char *env;

/* A listening node logs where it listens (INFO, on this thread); with a
 * seed that refuses, its dialer thread logs each failed dial (DEBUG). */
static void lines_reach_the_callback_from_node_threads(void) {
    s.main_thread = pthread_self();
    CHECK_OK(hc_set_log_callback(on_log, &s));
    hc_node *n = start("logged", "127.0.0.1:1");
    int from_thread = 0;
    bool debug = env == NULL || strcmp(env, "debug") == 0;
    for (int i = 0; debug && i < 1000 && (snapshot(&s, &from_thread), from_thread == 0); i++) sleep_ms(10);
    if (debug) CHECK(from_thread > 0);
    hc_node_free(n);
    pthread_mutex_lock(&s.lock);
    CHECK(s.bad_args == 0);
    CHECK(s.listening_info == 1);
    pthread_mutex_unlock(&s.lock);
}

/* Back to stderr: once hc_set_log_callback returns, no more calls. */
static void no_call_after_clearing(void) {
    CHECK_OK(hc_set_log_callback(NULL, NULL));
    int before = snapshot(&s, NULL);
    hc_node *m = start("unlogged", "127.0.0.1:1");
    sleep_ms(200);
    hc_node_free(m);
    CHECK(snapshot(&s, NULL) == before);
}

static void set_twice_then_cleared(void) {
    CHECK_OK(hc_set_log_callback(on_log, &s));
    CHECK_OK(hc_set_log_callback(on_log, &s));
    CHECK_OK(hc_set_log_callback(NULL, NULL));
}

int main(void) {
    env = getenv("HEADCOUNT_LOG");
    if (env != NULL && strcmp(env, "info") != 0 && strcmp(env, "debug") != 0) {
        printf("SKIP: HEADCOUNT_LOG=%s hides the lines this test looks for\n", env);
        return HC_SKIP;
    }
    RUN(lines_reach_the_callback_from_node_threads);
    RUN(no_call_after_clearing);
    RUN(set_twice_then_cleared);
    return 0;
}
