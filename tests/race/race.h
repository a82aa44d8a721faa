/* Internal to race_check: what race_check.c (readers, owner, the checks) and race_faults.c (fault
 * mode) share. */
#ifndef SL_TESTS_RACE_H
#define SL_TESTS_RACE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "client/client.h"

extern const char *base, *read_base, *session;
extern char tag[64]; /* "CANARY-<pid>-" */
extern atomic_int stop;
extern const char *fault_cmd; /* fault mode when set */

uint64_t now_ns(void);

/* A response body being read (curl write callback on_body). */
typedef struct body {
    char *p;
    size_t n, cap;
} body_t;
size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud);

/* One owner RPC (retried under faults) and a msgpack string field. */
int rpc(const char *method, msgpack_sbuffer *sb, sl_client_answer_t *a);
/* GetSession of the race's session (rpc's retries and answer rules). */
int get_session(sl_client_answer_t *a);
void pk_str(msgpack_packer *pk, const char *k, const char *v);

/* What the owner did to canary i, by version. 0 = not (yet) done. */
typedef struct canary {
    uint64_t appended, hidden, shown, deleted;
    int ghost;  /* an append that failed and may have been applied */
    int ledger; /* stays; checked at the end */
    uint64_t id;
} canary_t;

/* ---- fault mode (race_faults.c) ---- */

typedef struct window {
    const char *what;
    int redis_down; /* public reads must keep working from MariaDB inside it */
    int db_down;    /* /readyz must say 503 inside it */
    uint64_t from, to;
} window_t;
extern window_t windows[8];
extern int nwindows;
extern atomic_int faults_done;
extern uint64_t recovered_at; /* every GET that starts after this must succeed */
extern int fault_failed;

typedef struct probe {
    uint64_t t;
    int status;        /* /readyz */
    int steady_status; /* GET of a public session nobody edits (SL_FAULT_STEADY_URL), 0: none */
} probe_t;
extern probe_t *probes;
extern size_t nprobes, probes_cap;

void *fault_main(void *arg); /* the plan of faults, then faults_done */
void *probe_main(void *arg); /* /readyz and the steady session every 100 ms, until stop */
/* The end state: ledger canaries lost or wrong in GetSession / wrong in a final public GET. */
uint64_t check_ledger(const canary_t *can, int ncan, uint64_t *checked);
uint64_t check_final_get(const canary_t *can, int ncan, uint64_t *checked);

#endif
