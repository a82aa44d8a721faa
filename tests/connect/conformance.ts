// The owner API through a client nobody on the team wrote: the TypeScript code protoc-gen-es
// generated from rpc/proto/shareline/v1/sessions.proto, over the Connect protocol (connect-node,
// JSON codec, HTTP/2 and HTTP/1.1). Every method is called on its success path, and each failure
// class is checked to arrive as the right typed error (ConnectError.code).
//
// usage: node conformance.js BASE_URL TOKEN OTHER_TENANT_TOKEN SERVICE_TOKEN USER_ID MAX_BODY FULL_SESSION
// (FULL_SESSION: a session of TOKEN's user that already holds 10,000 exchanges, the most a session
// may hold)
// Prints one line per case, "ok <method> <case>" or "FAIL <method> <case>: <why>", then a summary
// line "cases <n> failed <m> methods <k>"; exits 1 when a case failed.
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Sessions } from "./gen/shareline/v1/sessions_pb.js";

const [base, token, otherToken, serviceToken, userId, maxBody, fullSession] = process.argv.slice(2);
let failed = 0,
    cases = 0;
const methods = new Set<string>();

function bearer(t: string): Interceptor {
    return (next) => async (req) => {
        req.header.set("Authorization", `Bearer ${t}`);
        return next(req);
    };
}

function client(t: string | null, httpVersion: "2" | "1.1" = "2"): Client<typeof Sessions> {
    const transport = createConnectTransport({
        baseUrl: `${base}/rpc`,
        httpVersion,
        useBinaryFormat: false,
        interceptors: t ? [bearer(t)] : [],
    });
    return createClient(Sessions, transport);
}

function report(method: string, name: string, ok: boolean, why = "") {
    cases++;
    methods.add(method);
    if (ok) console.log(`ok ${method} ${name}`);
    else {
        failed++;
        console.log(`FAIL ${method} ${name}: ${why}`);
    }
}

async function success<T>(method: string, name: string, call: () => Promise<T>, check: (r: T) => string | null) {
    try {
        const r = await call();
        const why = check(r);
        report(method, name, why === null, why ?? "");
        return r;
    } catch (e) {
        report(method, name, false, `threw ${e instanceof ConnectError ? Code[e.code] + ": " + e.rawMessage : e}`);
        return undefined;
    }
}

async function failure(method: string, name: string, want: Code, call: () => Promise<unknown>) {
    try {
        await call();
        report(method, name, false, `succeeded, wanted ${Code[want]}`);
    } catch (e) {
        const err = ConnectError.from(e);
        report(method, name, err.code === want, `got ${Code[err.code]} (${err.rawMessage}), wanted ${Code[want]}`);
    }
}

const md = (n: number, tag: string) =>
    Array.from({ length: n }, (_, i) => `_**User**_\n\n${tag} question ${i + 1}\n\n---\n\n_**Agent**_\n\n${tag} answer ${i + 1}\n`).join(
        "\n---\n\n"
    );

async function main() {
    const c = client(token);
    const c1 = client(token, "1.1");
    const other = client(otherToken);
    const anon = client(null);
    const bad = client("slt_not_a_token");
    const svc = client(serviceToken);
    const sid = `connect-${process.pid}`;

    // ---- success paths, every method ----
    const synced = await success("SyncSession", "creates a session from SpecStory markdown", () =>
        c.syncSession({ sessionId: sid, project: { name: "connect-conformance" }, title: "Made by a generated client", markdown: md(3, "sync"), metadata: { tool: "conformance", nested: { n: 1 } } }),
        (r) => (r.sessionId === sid && r.created && Number(r.exchangeCount) === 3 && r.etag !== "" ? null : JSON.stringify(r))
    );
    await success("SyncSession", "re-sync over HTTP/1.1 adds one exchange", () =>
        c1.syncSession({ sessionId: sid, project: { name: "connect-conformance" }, markdown: md(4, "sync") }),
        (r) => (!r.created && Number(r.exchangeCount) === 4 && r.version > (synced?.version ?? 0n) ? null : JSON.stringify(r))
    );
    const appended = await success("AppendExchanges", "appends two exchanges, ids as int64", () =>
        c.appendExchanges({ sessionId: sid, exchanges: [{ prompt: "appended one", response: "" }, { prompt: "appended two", response: "fine", title: "Two" }] }),
        (r) => (r.exchangeIds.length === 2 && typeof r.exchangeIds[0] === "bigint" ? null : JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
    );
    const got = await success("GetSession", "lists every exchange with ids, titles, hidden flags", () => c.getSession({ sessionId: sid }),
        (r) => (r.exchanges.length === 6 && r.exchanges.every((e) => e.id > 0n && e.hidden === false) ? null : `exchanges ${r.exchanges.length}`)
    );
    const ids = got ? got.exchanges.map((e) => e.id) : [1n, 2n];
    await success("ListSessions", "finds the session by full-text search, with a snippet", () => c.listSessions({ query: "appended", pageSize: 10 }),
        (r) => (r.sessions.some((s) => s.sessionId === sid && (s.snippet ?? "").includes("appended")) ? null : JSON.stringify(r.sessions.map((s) => s.sessionId)))
    );
    await success("SetVisibility", "public: true gives the share URL", () => c.setVisibility({ sessionId: sid, public: true }),
        (r) => (r.public && r.shareUrl.endsWith(`/share/${sid}`) ? null : JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
    );
    await success("UpdateSessionTitle", "retitles the session", () => c.updateSessionTitle({ sessionId: sid, title: "Retitled by Connect" }),
        (r) => (r.version > 0n ? null : "no version"));
    await success("UpdateSessionTitle", "an omitted title (the default \"\") restores the default", () => c.updateSessionTitle({ sessionId: sid }),
        (r) => (r.version > 0n ? null : "no version"));
    await success("UpdateExchangeTitle", "retitles an exchange (its id sent as a JSON string)", () =>
        c.updateExchangeTitle({ sessionId: sid, exchangeId: ids[0], title: "First, renamed" }), (r) => (r.version > 0n ? null : "no version"));
    await success("SetExchangesHidden", "hides two exchanges", () => c.setExchangesHidden({ sessionId: sid, exchangeIds: [ids[0], ids[1]], hidden: true }),
        (r) => (Number(r.hiddenCount) === 2 ? null : `hidden_count ${r.hiddenCount}`));
    await success("SetExchangesHidden", "hidden: false (omitted on the wire) shows one again", () =>
        c.setExchangesHidden({ sessionId: sid, exchangeIds: [ids[1]], hidden: false }), (r) => (Number(r.hiddenCount) === 1 ? null : `hidden_count ${r.hiddenCount}`));
    await success("GetShareSettings", "public, the URL, hidden and total counts", () => c.getShareSettings({ sessionId: sid }),
        (r) => (r.public && Number(r.hiddenCount) === 1 && Number(r.exchangeCount) === 6 ? null : JSON.stringify(r, (_, v) => (typeof v === "bigint" ? v.toString() : v))));
    await success("PreviewAsViewer", "the public document and page", () => c.previewAsViewer({ sessionId: sid }),
        (r) => (r.document.includes("appended two") && !r.document.includes("sync question 1") && r.html.startsWith("<!doctype html>") ? null : "document"));
    await success("DeleteExchange", "deletes one exchange", () => c.deleteExchange({ sessionId: sid, exchangeId: ids[2] }), (r) => (r.version > 0n ? null : "no version"));
    await success("ExportSession", "the markdown as uploaded, byte-exact", () => c.exportSession({ sessionId: sid }),
        (r) => (r.markdown === md(4, "sync") ? null : `markdown of ${r.markdown.length} bytes`));
    const projects = await success("ListProjects", "lists the project with its session count", () => c.listProjects({}),
        (r) => (r.projects.some((p) => p.name === "connect-conformance" && Number(p.sessionCount) === 1) ? null : JSON.stringify(r.projects.map((p) => p.name))));
    const pid = projects?.projects.find((p) => p.name === "connect-conformance")?.projectId ?? 0n;
    await success("UpdateProject", "renames the project, sets icon and colour", () =>
        c.updateProject({ projectId: pid, name: "connect-renamed", icon: "C", color: "#10b981" }), (r) => (r.projectId === pid ? null : "project id"));
    await success("SessionSizes", "sizes of the project's sessions", () =>
        c.sessionSizes({ projectExtId: "connect-conformance", sessionId: sid }), (r) => (Number(r.sessions[sid] ?? 0) > 0 ? null : JSON.stringify(r.sessions, (_, v) => (typeof v === "bigint" ? v.toString() : v))));
    const fsid = `${sid}-f`;
    await c.syncSession({ sessionId: fsid, project: { name: "connect-conformance" }, markdown: "_**User**_\n\nkey ghp_F2Pb6Fx4vFfKYoUrUwejMAnH7x5OEm1F9Iu5\n\n---\n\n_**Agent**_\n\nok\n" });
    const findings = await success("ListFindings", "the token found in the prompt", () => c.listFindings({ sessionId: fsid }),
        (r) => (r.findings.length >= 1 && r.findings.every((f) => f.kind === "github-token" && f.state === "redacted") ? null : JSON.stringify(r.findings, (_, v) => (typeof v === "bigint" ? v.toString() : v))));
    const fid = findings?.findings[0]?.findingId ?? 1n;
    await success("ResolveFinding", "reveal, then redact again", async () => {
        await c.resolveFinding({ sessionId: fsid, findingId: fid, state: "revealed" });
        return c.resolveFinding({ sessionId: fsid, findingId: fid, state: "redacted" });
    }, (r) => (r.version > 0n ? null : "no version"));
    await success("DeleteSession", "deletes a session", () => c.deleteSession({ sessionId: fsid }), () => null);

    // ---- failure classes, as typed errors ----
    await failure("GetSession", "no token: unauthenticated", Code.Unauthenticated, () => anon.getSession({ sessionId: sid }));
    await failure("GetSession", "a wrong token: unauthenticated", Code.Unauthenticated, () => bad.getSession({ sessionId: sid }));
    await failure("GetSession", "an unknown session: not_found", Code.NotFound, () => c.getSession({ sessionId: "no-such-session" }));
    await failure("GetSession", "another tenant's session: not_found", Code.NotFound, () => other.getSession({ sessionId: sid }));
    await failure("SetVisibility", "another tenant's session: not_found", Code.NotFound, () => other.setVisibility({ sessionId: sid, public: false }));
    await failure("DeleteExchange", "another tenant's exchange: not_found", Code.NotFound, () => other.deleteExchange({ sessionId: sid, exchangeId: ids[0] }));
    await failure("UpdateProject", "another tenant's project: not_found", Code.NotFound, () => other.updateProject({ projectId: pid, name: "stolen" }));
    await failure("GetSession", "a missing session_id: invalid_argument", Code.InvalidArgument, () => c.getSession({}));
    await failure("GetSession", "an impossible session id: invalid_argument", Code.InvalidArgument, () => c.getSession({ sessionId: "../etc/passwd" }));
    await failure("ListSessions", "a malformed date: invalid_argument", Code.InvalidArgument, () => c.listSessions({ from: "yesterday" }));
    await failure("ResolveFinding", "an unknown state: invalid_argument", Code.InvalidArgument, () => c.resolveFinding({ sessionId: sid, findingId: 1n, state: "maybe" }));
    await failure("GetSession", "a service token without as_user: invalid_argument", Code.InvalidArgument, () => svc.getSession({ sessionId: sid }));
    await success("GetSession", "a service token acting for its user (as_user as int64)", () => svc.getSession({ sessionId: sid, asUser: BigInt(userId) }),
        (r) => (r.exchanges.length === 5 ? null : `exchanges ${r.exchanges.length}`));
    await failure("AppendExchanges", "past 10,000 exchanges: failed_precondition", Code.FailedPrecondition, () =>
        c.appendExchanges({ sessionId: fullSession, exchanges: [{ prompt: "one too many", response: "r" }] }));
    await failure("SyncSession", `a body over ${maxBody} bytes: resource_exhausted`, Code.ResourceExhausted, () =>
        c.syncSession({ sessionId: `${sid}-big`, project: { name: "big" }, markdown: "x".repeat(Number(maxBody) + 1) }));
    await failure("GetSession", "the console cookie without its CSRF token: permission_denied", Code.PermissionDenied, () =>
        anon.getSession({ sessionId: sid }, { headers: { Cookie: "shareline_console=slt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", Origin: base } }));
    // a method of the service the server does not have: the generated GetSession descriptor under
    // another name, sent through the same transport
    const transport = createConnectTransport({ baseUrl: `${base}/rpc`, httpVersion: "2", useBinaryFormat: false });
    await failure("(none)", "a method the server lacks: unimplemented", Code.Unimplemented, () =>
        transport.unary({ ...Sessions.method.getSession, name: "ArchiveSession" }, undefined, undefined,
            { Authorization: `Bearer ${token}` }, { sessionId: sid }));
    const redisPid = Number(process.env.SL_REDIS_PID ?? 0);
    if (redisPid > 0) {
        // Redis frozen: a change of a public session cannot reach it within its 1 s timeout
        process.kill(redisPid, "SIGSTOP");
        try {
            await failure("UpdateSessionTitle", "Redis frozen during a change of a public session: unavailable", Code.Unavailable, () =>
                c.updateSessionTitle({ sessionId: sid, title: "while Redis sleeps" }));
        } finally {
            process.kill(redisPid, "SIGCONT");
        }
    } else report("UpdateSessionTitle", "Redis frozen: unavailable", false, "SL_REDIS_PID not given");
    await failure("SyncSession", "a deadline that passes (timeoutMs 1 on a 6 MB upload): deadline_exceeded", Code.DeadlineExceeded, () =>
        c.syncSession({ sessionId: `${sid}-slow`, project: { name: "slow" }, markdown: md(3000, "slow ".repeat(200)) }, { timeoutMs: 1 }));
    methods.delete("(none)");
    console.log(`cases ${cases} failed ${failed} methods ${methods.size}`);
    process.exit(failed ? 1 : 0);
}

main().catch((e) => {
    console.log(`FAIL run: ${e instanceof Error ? e.stack : e}`);
    process.exit(1);
});
