/*
 * sharectl — the owner CLI, built on the client library in client/client.h (msgpack over HTTP/2).
 * Run `sharectl --help`. Exit codes: 0 done, 1 the server refused (its code and message are
 * printed), 2 usage error, 3 the server could not be reached.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "rpc/rpc.h"

#define EXIT_REFUSED     1
#define EXIT_USAGE       2
#define EXIT_UNREACHABLE 3

static const char USAGE[] =
    "usage: sharectl [options] COMMAND [args]\n"
    "\n"
    "commands:\n"
    "  sync FILE [--session ID] [--project NAME] [--title TITLE]\n"
    "                               upload a SpecStory history file (new, or a re-sync of ID);\n"
    "                               prints the session id\n"
    "  share SESSION                make the session public; prints its share URL\n"
    "  unshare SESSION              make it private again (the link answers 404 at once)\n"
    "  hide SESSION EXCHANGE...     hide exchanges from viewers\n"
    "  show SESSION EXCHANGE...     show hidden exchanges again\n"
    "  retitle SESSION TITLE        set the session title (\"\" = back to the default)\n"
    "  retitle SESSION --exchange N TITLE\n"
    "                               set an exchange's title (\"\" = back to the default)\n"
    "  delete SESSION               delete the session (its link answers 404)\n"
    "  delete SESSION --exchange N  delete one exchange\n"
    "  export SESSION [-o FILE]     the uploaded markdown, byte-exact (stdout by default)\n"
    "  list [--project ID] [--query TEXT] [--limit N]\n"
    "                               your sessions, newest first\n"
    "  projects                     your projects\n"
    "  login-link                   a one-time URL that signs you in to the owner console\n"
    "                               (/console/; expires in 10 minutes, works once)\n"
    "  status SESSION               share settings: public?, URL, hidden/total exchanges, redactions\n"
    "  findings SESSION             secret-scanning findings: id, exchange, field, kind, preview, state\n"
    "  reveal SESSION FINDING       not a secret: show it publicly\n"
    "  redact SESSION FINDING       redact it again (the default)\n"
    "  show-session SESSION         every exchange with its id, title and hidden flag\n"
    "  raw METHOD JSON              call any owner method; JSON in, JSON out\n"
    "\n"
    "options:\n"
    "  --server URL     default $SHARELINE_SERVER, else http://127.0.0.1:8080\n"
    "  --token TOKEN    default $SHARELINE_TOKEN\n"
    "  --as-user ID     with a service token: the user to act for\n"
    "  --http1.1        use HTTP/1.1 instead of HTTP/2\n"
    "  -h, --help       this text\n"
    "\n"
    "exit codes: 0 done, 1 the server refused (code and message printed), 2 usage error,\n"
    "            3 the server could not be reached\n";

static sl_client_t *client;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sharectl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see sharectl --help)\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* Calls method with the packed request; on success leaves the answer in *a and returns 0. */
static int call(const char *method, msgpack_sbuffer *req, sl_client_answer_t *a)
{
    char err[512];
    if (sl_client_call(client, method, req->data, req->size, a, err, sizeof(err)) != 0) {
        fprintf(stderr, "sharectl: %s\n", err);
        return EXIT_UNREACHABLE;
    }
    if (a->status != 200) {
        if (a->code)
            fprintf(stderr, "sharectl: %.*s: %.*s\n", (int)a->code_len, a->code, (int)a->message_len,
                    a->message ? a->message : "");
        else
            fprintf(stderr, "sharectl: the server answered HTTP %d\n", a->status);
        sl_client_answer_free(a);
        return EXIT_REFUSED;
    }
    return 0;
}

static void print_str(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = sl_rpc_field(map, key);
    if (v && v->type == MSGPACK_OBJECT_STR)
        fwrite(v->via.str.ptr, 1, v->via.str.size, stdout);
}

static unsigned long long get_u(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = sl_rpc_field(map, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (unsigned long long)v->via.u64 : 0;
}

static int get_b(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = sl_rpc_field(map, key);
    return v && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
}

typedef struct req {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} req_t;

static void req_init(req_t *r, size_t fields)
{
    msgpack_sbuffer_init(&r->sb);
    msgpack_packer_init(&r->pk, &r->sb, msgpack_sbuffer_write);
    msgpack_pack_map(&r->pk, fields);
}

static void kv_str(req_t *r, const char *k, const char *v)
{
    sl_rpc_pack_str(&r->pk, k);
    sl_rpc_pack_str(&r->pk, v);
}

static int parse_u(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno || *s == '-')
        return -1;
    *out = v;
    return 0;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap);
    size_t got;
    while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *q = realloc(p, cap *= 2);
            if (q == NULL) {
                free(p);
                p = NULL;
            } else {
                p = q;
            }
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(p);
        return NULL;
    }
    *len = n;
    return p;
}

/* ---- commands ---- */

static int cmd_sync(int argc, char **argv)
{
    const char *file = NULL, *session = NULL, *project = "default", *title = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--session") == 0 && i + 1 < argc)
            session = argv[++i];
        else if (strcmp(argv[i], "--project") == 0 && i + 1 < argc)
            project = argv[++i];
        else if (strcmp(argv[i], "--title") == 0 && i + 1 < argc)
            title = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1])
            return usage_error("sync: unknown option %s", argv[i]);
        else if (file == NULL)
            file = argv[i];
        else
            return usage_error("sync: one FILE only (got %s too)", argv[i]);
    }
    if (file == NULL)
        return usage_error("sync needs a FILE");
    size_t len;
    char *md = slurp(file, &len);
    if (md == NULL) {
        fprintf(stderr, "sharectl: cannot read %s: %s\n", file, strerror(errno));
        return EXIT_USAGE;
    }
    req_t r;
    req_init(&r, 2 + (session != NULL) + (title != NULL));
    sl_rpc_pack_str(&r.pk, "markdown");
    sl_rpc_pack_strn(&r.pk, md, len);
    sl_rpc_pack_str(&r.pk, "project");
    msgpack_pack_map(&r.pk, 1);
    kv_str(&r, "name", project);
    if (session)
        kv_str(&r, "session_id", session);
    if (title)
        kv_str(&r, "title", title);
    free(md);
    sl_client_answer_t a;
    int rc = call("SyncSession", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    print_str(a.map, "session_id");
    printf("\n");
    fprintf(stderr, "%s, %llu exchanges, version %llu\n", get_b(a.map, "created") ? "created" : "updated",
            get_u(a.map, "exchange_count"), get_u(a.map, "version"));
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_visibility(int argc, char **argv, int public_)
{
    if (argc != 1)
        return usage_error("%s needs exactly one SESSION", public_ ? "share" : "unshare");
    req_t r;
    req_init(&r, 2);
    kv_str(&r, "session_id", argv[0]);
    sl_rpc_pack_str(&r.pk, "public");
    if (public_)
        msgpack_pack_true(&r.pk);
    else
        msgpack_pack_false(&r.pk);
    sl_client_answer_t a;
    int rc = call("SetVisibility", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    if (public_) {
        print_str(a.map, "share_url");
        printf("\n");
    } else {
        printf("private\n");
    }
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_hide(int argc, char **argv, int hidden)
{
    if (argc < 2)
        return usage_error("%s needs SESSION and at least one EXCHANGE id", hidden ? "hide" : "show");
    req_t r;
    req_init(&r, 3);
    kv_str(&r, "session_id", argv[0]);
    sl_rpc_pack_str(&r.pk, "hidden");
    if (hidden)
        msgpack_pack_true(&r.pk);
    else
        msgpack_pack_false(&r.pk);
    sl_rpc_pack_str(&r.pk, "exchange_ids");
    msgpack_pack_array(&r.pk, (size_t)(argc - 1));
    for (int i = 1; i < argc; i++) {
        unsigned long long id;
        if (parse_u(argv[i], &id) != 0) {
            msgpack_sbuffer_destroy(&r.sb);
            return usage_error("not an exchange id: %s", argv[i]);
        }
        msgpack_pack_uint64(&r.pk, id);
    }
    sl_client_answer_t a;
    int rc = call("SetExchangesHidden", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    printf("%llu hidden\n", get_u(a.map, "hidden_count"));
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_retitle(int argc, char **argv)
{
    unsigned long long ex = 0;
    if (argc == 4 && strcmp(argv[1], "--exchange") == 0) {
        if (parse_u(argv[2], &ex) != 0)
            return usage_error("not an exchange id: %s", argv[2]);
        argv[1] = argv[3];
    } else if (argc != 2) {
        return usage_error("retitle needs SESSION [--exchange N] TITLE");
    }
    req_t r;
    req_init(&r, ex ? 3 : 2);
    kv_str(&r, "session_id", argv[0]);
    kv_str(&r, "title", argv[1]);
    if (ex) {
        sl_rpc_pack_str(&r.pk, "exchange_id");
        msgpack_pack_uint64(&r.pk, ex);
    }
    sl_client_answer_t a;
    int rc = call(ex ? "UpdateExchangeTitle" : "UpdateSessionTitle", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    printf("version %llu\n", get_u(a.map, "version"));
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_delete(int argc, char **argv)
{
    unsigned long long ex = 0;
    if (argc == 3 && strcmp(argv[1], "--exchange") == 0) {
        if (parse_u(argv[2], &ex) != 0)
            return usage_error("not an exchange id: %s", argv[2]);
    } else if (argc != 1) {
        return usage_error("delete needs SESSION [--exchange N]");
    }
    req_t r;
    req_init(&r, ex ? 2 : 1);
    kv_str(&r, "session_id", argv[0]);
    if (ex) {
        sl_rpc_pack_str(&r.pk, "exchange_id");
        msgpack_pack_uint64(&r.pk, ex);
    }
    sl_client_answer_t a;
    int rc = call(ex ? "DeleteExchange" : "DeleteSession", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    printf("deleted\n");
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_export(int argc, char **argv)
{
    const char *out = NULL;
    if (argc == 3 && strcmp(argv[1], "-o") == 0)
        out = argv[2];
    else if (argc != 1)
        return usage_error("export needs SESSION [-o FILE]");
    req_t r;
    req_init(&r, 1);
    kv_str(&r, "session_id", argv[0]);
    sl_client_answer_t a;
    int rc = call("ExportSession", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    const msgpack_object *md = sl_rpc_field(a.map, "markdown");
    FILE *f = out ? fopen(out, "wb") : stdout;
    if (f == NULL) {
        fprintf(stderr, "sharectl: cannot write %s: %s\n", out, strerror(errno));
        sl_client_answer_free(&a);
        return EXIT_USAGE;
    }
    if (md && md->type == MSGPACK_OBJECT_STR)
        fwrite(md->via.str.ptr, 1, md->via.str.size, f);
    if (out)
        fclose(f);
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_list(int argc, char **argv)
{
    const char *query = NULL;
    unsigned long long project = 0, limit = 50;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--project") == 0 && i + 1 < argc) {
            if (parse_u(argv[++i], &project) != 0)
                return usage_error("not a project id: %s", argv[i]);
        } else if (strcmp(argv[i], "--query") == 0 && i + 1 < argc) {
            query = argv[++i];
        } else if (strcmp(argv[i], "--limit") == 0 && i + 1 < argc) {
            if (parse_u(argv[++i], &limit) != 0 || limit == 0 || limit > 200)
                return usage_error("--limit must be 1-200, not %s", argv[i]);
        } else {
            return usage_error("list: unknown argument %s", argv[i]);
        }
    }
    req_t r;
    req_init(&r, 1 + (project != 0) + (query != NULL));
    sl_rpc_pack_str(&r.pk, "page_size");
    msgpack_pack_uint64(&r.pk, limit);
    if (project) {
        sl_rpc_pack_str(&r.pk, "project_id");
        msgpack_pack_uint64(&r.pk, project);
    }
    if (query)
        kv_str(&r, "query", query);
    sl_client_answer_t a;
    int rc = call("ListSessions", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    const msgpack_object *list = sl_rpc_field(a.map, "sessions");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *s = &list->via.array.ptr[i];
        print_str(s, "session_id");
        printf("\t%s\t", get_b(s, "public") ? "public " : "private");
        print_str(s, "updated_at");
        printf("\t");
        print_str(s, "title");
        printf("\n");
        if (sl_rpc_field(s, "snippet")) {
            printf("\t… ");
            const msgpack_object *sn = sl_rpc_field(s, "snippet");
            for (uint32_t k = 0; sn->type == MSGPACK_OBJECT_STR && k < sn->via.str.size; k++)
                putchar(sn->via.str.ptr[k] == '\n' ? ' ' : sn->via.str.ptr[k]);
            printf(" …\n");
        }
    }
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_projects(int argc, char **argv)
{
    (void)argv;
    if (argc != 0)
        return usage_error("projects takes no arguments");
    req_t r;
    req_init(&r, 0);
    sl_client_answer_t a;
    int rc = call("ListProjects", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    const msgpack_object *list = sl_rpc_field(a.map, "projects");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *p = &list->via.array.ptr[i];
        printf("%llu\t", get_u(p, "project_id"));
        print_str(p, "name");
        printf("\t%llu sessions\n", get_u(p, "session_count"));
    }
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_login_link(int argc, char **argv)
{
    (void)argv;
    if (argc != 0)
        return usage_error("login-link takes no arguments");
    req_t r;
    req_init(&r, 0);
    sl_client_answer_t a;
    int rc = call("/console/login-link", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    print_str(a.map, "url");
    printf("\n");
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_status(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("status needs exactly one SESSION");
    req_t r;
    req_init(&r, 1);
    kv_str(&r, "session_id", argv[0]);
    sl_client_answer_t a;
    int rc = call("GetShareSettings", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    printf("%s ", get_b(a.map, "public") ? "public" : "private");
    print_str(a.map, "share_url");
    printf("\nYou've hidden %llu of %llu exchanges\n", get_u(a.map, "hidden_count"),
           get_u(a.map, "exchange_count"));
    printf("%llu secrets redacted\n", get_u(a.map, "findings_redacted"));
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_findings(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("findings needs exactly one SESSION");
    req_t r;
    req_init(&r, 1);
    kv_str(&r, "session_id", argv[0]);
    sl_client_answer_t a;
    int rc = call("ListFindings", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    const msgpack_object *list = sl_rpc_field(a.map, "findings");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *f = &list->via.array.ptr[i];
        printf("%llu\t", get_u(f, "finding_id"));
        if (sl_rpc_field(f, "exchange_id"))
            printf("%llu\t", get_u(f, "exchange_id"));
        else
            printf("-\t");
        print_str(f, "field");
        printf("\t");
        print_str(f, "kind");
        printf("\t");
        print_str(f, "preview");
        printf("\t");
        print_str(f, "state");
        printf("\n");
    }
    if (get_b(a.map, "truncated"))
        printf("(more findings than listed)\n");
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_resolve(int argc, char **argv, const char *name, const char *state)
{
    unsigned long long fid;
    if (argc != 2)
        return usage_error("%s needs SESSION and FINDING", name);
    if (parse_u(argv[1], &fid) != 0)
        return usage_error("not a finding id: %s", argv[1]);
    req_t r;
    req_init(&r, 3);
    kv_str(&r, "session_id", argv[0]);
    kv_str(&r, "state", state);
    sl_rpc_pack_str(&r.pk, "finding_id");
    msgpack_pack_uint64(&r.pk, fid);
    sl_client_answer_t a;
    int rc = call("ResolveFinding", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    printf("finding %llu %s (version %llu)\n", fid, state, get_u(a.map, "version"));
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_show_session(int argc, char **argv)
{
    if (argc != 1)
        return usage_error("show-session needs exactly one SESSION");
    req_t r;
    req_init(&r, 1);
    kv_str(&r, "session_id", argv[0]);
    sl_client_answer_t a;
    int rc = call("GetSession", &r.sb, &a);
    msgpack_sbuffer_destroy(&r.sb);
    if (rc)
        return rc;
    print_str(a.map, "title");
    printf(" (%s, version %llu)\n", get_b(a.map, "public") ? "public" : "private", get_u(a.map, "version"));
    const msgpack_object *list = sl_rpc_field(a.map, "exchanges");
    for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
        const msgpack_object *e = &list->via.array.ptr[i];
        printf("%4llu %s ", get_u(e, "id"), get_b(e, "hidden") ? "hidden " : "visible");
        print_str(e, "title");
        printf("\n");
    }
    sl_client_answer_free(&a);
    return 0;
}

static int cmd_raw(int argc, char **argv)
{
    if (argc != 2)
        return usage_error("raw needs METHOD and a JSON object");
    sl_rpc_limits_t lim;
    sl_rpc_limits_default(&lim);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256];
    if (sl_rpc_json_to_msgpack(argv[1], strlen(argv[1]), &lim, &sb, err, sizeof(err)) != 0) {
        msgpack_sbuffer_destroy(&sb);
        return usage_error("raw: the JSON is not valid: %s", err);
    }
    sl_client_answer_t a;
    char cerr[512];
    if (sl_client_call(client, argv[0], sb.data, sb.size, &a, cerr, sizeof(cerr)) != 0) {
        msgpack_sbuffer_destroy(&sb);
        fprintf(stderr, "sharectl: %s\n", cerr);
        return EXIT_UNREACHABLE;
    }
    msgpack_sbuffer_destroy(&sb);
    char *json = NULL;
    size_t jlen = 0;
    if (a.body_len && sl_rpc_msgpack_to_json(a.body, a.body_len, &json, &jlen) == 0) {
        fwrite(json, 1, jlen, stdout);
        printf("\n");
        free(json);
    }
    int rc = a.status == 200 ? 0 : EXIT_REFUSED;
    if (rc)
        fprintf(stderr, "sharectl: HTTP %d\n", a.status);
    sl_client_answer_free(&a);
    return rc;
}

int main(int argc, char **argv)
{
    const char *server = getenv("SHARELINE_SERVER"), *token = getenv("SHARELINE_TOKEN");
    unsigned long long as_user = 0;
    sl_client_proto_t proto = SL_CLIENT_HTTP2;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--server") == 0 && i + 1 < argc) {
            server = argv[++i];
        } else if (strcmp(argv[i], "--token") == 0 && i + 1 < argc) {
            token = argv[++i];
        } else if (strcmp(argv[i], "--as-user") == 0 && i + 1 < argc) {
            if (parse_u(argv[++i], &as_user) != 0)
                return usage_error("--as-user needs a user id, not %s", argv[i]);
        } else if (strcmp(argv[i], "--http1.1") == 0) {
            proto = SL_CLIENT_HTTP1;
        } else {
            return usage_error("unknown option %s", argv[i]);
        }
    }
    if (i >= argc)
        return usage_error("no COMMAND given");
    if (server == NULL || *server == '\0')
        server = "http://127.0.0.1:8080";
    if (token == NULL || *token == '\0')
        return usage_error("no token: set SHARELINE_TOKEN or pass --token");
    if (sl_client_open(&client, server, token, proto) != 0) {
        fprintf(stderr, "sharectl: out of memory\n");
        return EXIT_UNREACHABLE;
    }
    sl_client_set_as_user(client, as_user);
    const char *cmd = argv[i];
    int n = argc - i - 1;
    char **args = argv + i + 1;
    int rc;
    if (strcmp(cmd, "sync") == 0)
        rc = cmd_sync(n, args);
    else if (strcmp(cmd, "share") == 0)
        rc = cmd_visibility(n, args, 1);
    else if (strcmp(cmd, "unshare") == 0)
        rc = cmd_visibility(n, args, 0);
    else if (strcmp(cmd, "hide") == 0)
        rc = cmd_hide(n, args, 1);
    else if (strcmp(cmd, "show") == 0)
        rc = cmd_hide(n, args, 0);
    else if (strcmp(cmd, "retitle") == 0)
        rc = cmd_retitle(n, args);
    else if (strcmp(cmd, "delete") == 0)
        rc = cmd_delete(n, args);
    else if (strcmp(cmd, "export") == 0)
        rc = cmd_export(n, args);
    else if (strcmp(cmd, "list") == 0)
        rc = cmd_list(n, args);
    else if (strcmp(cmd, "login-link") == 0)
        rc = cmd_login_link(n, args);
    else if (strcmp(cmd, "projects") == 0)
        rc = cmd_projects(n, args);
    else if (strcmp(cmd, "status") == 0)
        rc = cmd_status(n, args);
    else if (strcmp(cmd, "findings") == 0)
        rc = cmd_findings(n, args);
    else if (strcmp(cmd, "reveal") == 0)
        rc = cmd_resolve(n, args, "reveal", "revealed");
    else if (strcmp(cmd, "redact") == 0)
        rc = cmd_resolve(n, args, "redact", "redacted");
    else if (strcmp(cmd, "show-session") == 0)
        rc = cmd_show_session(n, args);
    else if (strcmp(cmd, "raw") == 0)
        rc = cmd_raw(n, args);
    else
        rc = usage_error("unknown command %s", cmd);
    sl_client_close(client);
    return rc;
}
