#!/usr/bin/env python3
"""Drives the owner console in headless Chromium with real clicks and typing (tests/e2e/console.sh).

usage: cdp_console.py CHROMIUM BASE_URL SHOTS_DIR ATTACK_PORT LOGIN_LINK SESSION HOSTILE_SESSION TOKEN
The share flow of issue 19 on SESSION (private, 3 exchanges, searchable by "goroutine"); after each
step the public endpoints are read over HTTP (no cookie) to check what a viewer gets. Then the
hostile session (payloads in every field), a phone-sized viewport, dark mode, the keyboard, pages of
other origins that try to act with the cookie, and sign-out. Prints one JSON object:
{"steps": [{"name", "ok", "detail"?}], "xss", "console_errors"}; the calling test asserts on it.
"""
import base64, http.server, json, os, sys, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp_check import console_errors, launch, poll, stop  # noqa: E402

steps = []


def step(name, ok, detail=None):
    steps.append({"name": name, "ok": bool(ok), "detail": None if ok else (str(detail)[:300] if detail is not None else None)})
    return ok


def viewer_get(url, headers=None):
    """(status, body bytes) of a GET without cookies: what a viewer gets."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Page:
    def __init__(self, cdp, shots):
        self.cdp, self.shots = cdp, shots

    def eval(self, expr):
        return self.cdp.eval(expr)

    def poll(self, expr, want, timeout=8.0):
        return poll(self.cdp, expr, want, timeout)

    def wait_for(self, selector, timeout=8.0):
        return self.poll(f"!!document.querySelector({json.dumps(selector)})", bool, timeout)

    def click(self, selector):
        """A real mouse click at the centre of the element (after scrolling it into view); returns
        whether the element under the pointer was the target or inside it."""
        s = json.dumps(selector)
        rect = self.eval(f"(() => {{ const e = document.querySelector({s}); if (!e) return null;"
                         f" e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();"
                         f" return [r.left + r.width / 2, r.top + r.height / 2]; }})()")
        if rect is None:
            return False
        hit = self.eval(f"(() => {{ const t = document.querySelector({s}); const e = document.elementFromPoint({rect[0]}, {rect[1]});"
                        f" return !!e && (e === t || t.contains(e)); }})()")
        self.cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=rect[0], y=rect[1])
        for t in ("mousePressed", "mouseReleased"):
            self.cdp.call("Input.dispatchMouseEvent", type=t, x=rect[0], y=rect[1], button="left", clickCount=1)
        return hit

    def type(self, text):
        self.cdp.call("Input.insertText", text=text)

    def key(self, key, code, vk, text=None):
        p = {"key": key, "code": code, "windowsVirtualKeyCode": vk}
        self.cdp.call("Input.dispatchKeyEvent", type="keyDown", **p, **({"text": text} if text else {}))
        self.cdp.call("Input.dispatchKeyEvent", type="keyUp", **p)

    def select_all(self):
        self.cdp.call("Input.dispatchKeyEvent", type="keyDown", key="a", code="KeyA", windowsVirtualKeyCode=65,
                      modifiers=2, commands=["selectAll"])
        self.cdp.call("Input.dispatchKeyEvent", type="keyUp", key="a", code="KeyA", windowsVirtualKeyCode=65, modifiers=2)

    def shot(self, name):
        data = self.cdp.call("Page.captureScreenshot", format="png")["data"]
        with open(os.path.join(self.shots, f"console-{name}.png"), "wb") as f:
            f.write(base64.b64decode(data))

    def navigate(self, url):
        # a change of the fragment alone fires no load event: leave the page first
        if self.eval("location.href.split('#')[0]") == url.split("#")[0]:
            self.cdp.call("Page.navigate", url="about:blank")
            self.cdp.wait_event("Page.loadEventFired", timeout=60)
        self.cdp.call("Page.navigate", url=url)
        self.cdp.wait_event("Page.loadEventFired", timeout=60)


def rpc(base, token, method, req):
    """An owner RPC with the bearer token (what the CLI does)."""
    r = urllib.request.Request(f"{base}/rpc/shareline.v1.Sessions/{method}", data=json.dumps(req).encode(),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=30).read())


def public_doc(base, sid):
    st, body = viewer_get(f"{base}/api/v1/share/{sid}")
    return st, (json.loads(body) if st == 200 else None)


def attack_server(port, base, sid):
    """Pages of another origin that try to use the console's cookie: a form posted into a frame
    (no preflight), fetches with credentials (simple and JSON), and a sign-out form."""
    target = f"{base}/rpc/shareline.v1.Sessions/SetVisibility"
    body = json.dumps({"session_id": sid, "public": True})
    page = f"""<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="f1" method="post" action="{target}" enctype="text/plain" target="sink">
<input name='{body[:-1]}, "x": "' value='"}}'></form>
<form id="f2" method="post" action="{base}/console/logout" target="sink"></form>
<script>
document.getElementById('f1').submit();
setTimeout(() => document.getElementById('f2').submit(), 300);
fetch({json.dumps(target)}, {{method: 'POST', mode: 'no-cors', credentials: 'include',
  headers: {{'Content-Type': 'text/plain'}}, body: {json.dumps(body)}}}).catch(() => {{}});
fetch({json.dumps(target)}, {{method: 'POST', credentials: 'include',
  headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': 'guess'}}, body: {json.dumps(body)}}}).catch(() => {{}});
setTimeout(() => {{ document.title = 'done'; }}, 1500);
</script></body></html>""".encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main():
    chromium, base, shots, attack_port, link, sid, hsid, token = sys.argv[1:9]
    attack_port = int(attack_port)
    os.makedirs(shots, exist_ok=True)
    out = {"steps": steps}
    proc, profile, cdp = launch(chromium, 1200)
    p = Page(cdp, shots)
    try:
        cdp.call("Network.enable")
        # the page keeps focus as a foreground tab would (keyboard steps need a focused document)
        cdp.call("Emulation.setFocusEmulationEnabled", enabled=True)
        cdp.call("Browser.grantPermissions", permissions=["clipboardReadWrite", "clipboardSanitizedWrite"], origin=base)
        # ---- the sign-in link: a page with one button; its click signs in ----
        p.navigate(link)
        step("the sign-in link shows its Sign in button", p.wait_for("#link-signin"))
        p.click("#link-signin")
        cdp.wait_event("Page.loadEventFired", timeout=60)
        p.poll("location.pathname", lambda v: v == "/console/")
        step("its click lands on /console/", p.eval("location.pathname") == "/console/", p.eval("location.href"))
        who = p.poll("(document.getElementById('who')||{}).textContent || ''", lambda v: "Signed in" in v)
        step("the header says who is signed in", "Signed in" in who, who)
        step("the cookie is not readable by the page (HttpOnly)", p.eval("document.cookie") == "", p.eval("document.cookie"))
        p.wait_for("#session-list li")
        p.shot("signed-in")
        # paging: 32 sessions, 25 a page, newest first
        n = p.poll("document.querySelectorAll('#session-list .session-link').length", lambda v: v == 25)
        step("the list shows the first 25 sessions", n == 25, n)
        step("More loads the next page", p.click("#more") and
             p.poll("document.querySelectorAll('#session-list .session-link').length", lambda v: v == 32) == 32)
        times = p.eval("[...document.querySelectorAll('#session-list .session-link time')].map(t => t.getAttribute('datetime'))")
        step("newest first", times == sorted(times, reverse=True), times[:3])
        # the date filter: from tomorrow on, nothing
        p.eval("document.getElementById('filter-from').value = new Date(Date.now() + 2 * 86400000).toISOString().slice(0, 10)")
        p.click("#search-form button[type=submit]")
        n = p.poll("document.querySelectorAll('#session-list .session-link').length", lambda v: v == 0)
        step("the date filter (from the day after tomorrow): no session", n == 0, n)
        p.eval("document.getElementById('filter-from').value = ''")

        # ---- find the session by search ----
        p.click("#search-query")
        p.type("goroutine")
        p.click("#search-form button[type=submit]")
        sel = f"button.session-link[data-session-id={json.dumps(sid)}]"
        found = p.poll(f"[...document.querySelectorAll('#session-list .session-link')].map(b => b.dataset.sessionId)",
                       lambda v: v == [sid])
        step("search finds exactly the synced session", found == [sid], found)
        snip = p.poll(f"(document.querySelector({json.dumps(sel + ' .snippet')})||{{}}).textContent || ''", bool)
        step("the result shows a snippet with the word", "goroutine" in snip.lower(), snip)
        p.shot("search")
        step("a real click opens the session", p.click(sel))
        title = p.poll("(document.getElementById('session-title')||{}).textContent || ''", lambda v: "flaky" in v)
        step("the session page shows its title", "flaky" in title, title)
        p.wait_for("article.exchange")
        ex_ids = p.eval("[...document.querySelectorAll('article.exchange')].map(a => a.dataset.exchangeId)")
        step("the session page shows its 3 exchanges", len(ex_ids) == 3, ex_ids)
        p.shot("session")

        # ---- make it public, copy the link ----
        step("Share opens the dialog", p.click("#open-share") and p.poll("document.getElementById('share-dialog').open", bool))
        p.poll("document.getElementById('hidden-summary').textContent", bool)
        p.poll("document.getElementById('share-toggle').disabled", lambda v: not v)
        p.click("#share-toggle")
        pressed = p.poll("document.getElementById('share-toggle').getAttribute('aria-pressed')", lambda v: v == "true")
        step("the toggle says Public (aria-pressed)", pressed == "true", pressed)
        st, _ = viewer_get(f"{base}/share/{sid}")
        step("viewers: the share page is 200 after Public", st == 200, st)
        p.click("#copy-link")
        copied = p.poll("document.getElementById('share-url').dataset.copied || ''", bool)
        url = p.eval("document.getElementById('share-url').value")
        clip = cdp.call("Runtime.evaluate", expression="navigator.clipboard.readText()", awaitPromise=True,
                        userGesture=True, returnByValue=True).get("result", {}).get("value")
        step("Copy Link copies the share URL", copied == url == f"{base}/share/{sid}" and clip == url, [copied, url, clip])
        st, _ = viewer_get(url)
        step("the copied link opens for a viewer", st == 200, st)
        p.shot("share-dialog")
        p.click("#share-close")
        p.poll("document.getElementById('share-dialog').open", lambda v: not v)

        # ---- hide two exchanges ----
        for x in ex_ids[:2]:
            p.click(f"article.exchange[data-exchange-id='{x}'] button.eye")
            v = p.poll(f"document.querySelector(\"article.exchange[data-exchange-id='{x}'] button.eye\").getAttribute('aria-pressed')",
                       lambda v: v == "false")
            step(f"the eye of exchange {x} turns off", v == "false", v)
        p.click("#open-share")
        summary = p.poll("document.getElementById('hidden-summary').textContent", lambda v: "2" in v)
        step("the dialog says \"You've hidden 2 exchanges\"", summary.strip() == "You've hidden 2 exchanges", summary)
        st, doc = public_doc(base, sid)
        shown = [str(e["id"]) for e in doc["exchanges"]] if doc else None
        step("viewers: only the third exchange", shown == [ex_ids[2]], [st, shown])
        p.click("#share-close")

        # ---- retitle the session and an exchange ----
        p.click("#edit-session-title")
        p.wait_for("#session-title-input")
        p.click("#session-title-input")
        p.select_all()
        p.type("Console <b>retitled</b> session")
        p.key("Enter", "Enter", 13, "\r")
        t = p.poll("(document.getElementById('session-title')||{}).textContent || ''", lambda v: "retitled" in v)
        step("the session title is edited inline", t == "Console <b>retitled</b> session", t)
        st, doc = public_doc(base, sid)
        step("viewers: the new session title", doc and doc["title"] == "Console <b>retitled</b> session", doc and doc["title"])
        x3 = ex_ids[2]
        p.click(f"article.exchange[data-exchange-id='{x3}'] button.edit-exchange-title")
        p.wait_for(f"article.exchange[data-exchange-id='{x3}'] input.exchange-title-input")
        p.click(f"article.exchange[data-exchange-id='{x3}'] input.exchange-title-input")
        p.select_all()
        p.type("The third one, renamed")
        p.key("Enter", "Enter", 13, "\r")
        p.poll(f"(document.querySelector(\"article.exchange[data-exchange-id='{x3}'] .ex-title\")||{{}}).textContent || ''",
               lambda v: "renamed" in v)
        st, doc = public_doc(base, sid)
        t3 = [e.get("title") for e in doc["exchanges"]] if doc else None
        step("viewers: the exchange's new title", t3 == ["The third one, renamed"], t3)

        # ---- delete an exchange (a hidden one, then the public page is unchanged but the count) ----
        x1 = ex_ids[0]
        p.click(f"article.exchange[data-exchange-id='{x1}'] button.delete-exchange")
        step("Delete asks first", p.poll("document.getElementById('confirm-dialog').open", bool))
        p.click("#confirm-no")
        step("Cancel keeps it", p.eval(f"!!document.querySelector(\"article.exchange[data-exchange-id='{x1}']\")"))
        p.click(f"article.exchange[data-exchange-id='{x1}'] button.delete-exchange")
        p.poll("document.getElementById('confirm-dialog').open", bool)
        p.click("#confirm-yes")
        gone = p.poll(f"!document.querySelector(\"article.exchange[data-exchange-id='{x1}']\")", bool)
        step("Delete (confirmed) removes the exchange", gone)
        r = rpc(base, token, "GetSession", {"session_id": sid})
        left = [str(e["id"]) for e in r["exchanges"]]
        step("the owner's API no longer lists it", x1 not in left, left)
        st, doc = public_doc(base, sid)
        step("viewers: still only the third exchange", doc and [str(e["id"]) for e in doc["exchanges"]] == [x3],
             [st, doc and [e["id"] for e in doc["exchanges"]]])

        # ---- live: a change made elsewhere (a sync from the CLI) appears without a reload ----
        p.eval("window.__still_here = 1")
        n0 = p.eval("document.querySelectorAll('article.exchange').length")
        rpc(base, token, "AppendExchanges", {"session_id": sid, "exchanges": [
            {"prompt": "Appended from the CLI while the console is open", "response": "Seen live."}]})
        n1 = p.poll("document.querySelectorAll('article.exchange').length", lambda v: v == n0 + 1, 10)
        step("live: an exchange appended elsewhere appears without a reload",
             n1 == n0 + 1 and p.eval("window.__still_here") == 1, [n0, n1])

        # ---- Preview as Viewer: exactly the public bytes ----
        p.click("#open-share")
        summary = p.poll("document.getElementById('hidden-summary').textContent", lambda v: "1" in v)
        step("after the delete: \"You've hidden 1 exchange\"", summary.strip() == "You've hidden 1 exchange", summary)
        p.click("#preview-open")
        p.wait_for("#preview-frame")
        sandbox = p.eval("document.getElementById('preview-frame').getAttribute('sandbox')")
        step("the preview frame is sandboxed (no script, no origin)", sandbox == "", sandbox)
        loaded = p.poll("document.getElementById('preview-frame').getAttribute('src') || ''", bool)
        step("the preview frame loads /console/preview/<id>", loaded.endswith(f"/console/preview/{sid}"), loaded)
        # its bytes, as the console's origin gets them (the frame itself is opaque to the page)
        got = cdp.call("Runtime.evaluate", awaitPromise=True, returnByValue=True, expression=(
            f"fetch('/console/preview/{sid}').then(r => r.arrayBuffer()).then(b => {{ let s = '';"
            " for (const c of new Uint8Array(b)) s += String.fromCharCode(c); return btoa(s); })"))
        why = got
        got = base64.b64decode(got["result"]["value"]) if "value" in got.get("result", {}) else None
        st, page_bytes = viewer_get(f"{base}/share/{sid}")
        step("Preview as Viewer shows exactly the public page's bytes", st == 200 and got == page_bytes,
             [st, len(page_bytes), why if got is None else len(got)])
        time.sleep(0.3)
        p.shot("preview")

        # ---- make it private ----
        p.click("#share-toggle")
        pressed = p.poll("document.getElementById('share-toggle').getAttribute('aria-pressed')", lambda v: v == "false")
        step("the toggle says Private", pressed == "false", pressed)
        st, _ = viewer_get(f"{base}/share/{sid}")
        step("viewers: 404 after Private", st == 404, st)
        p.key("Escape", "Escape", 27)
        p.poll("document.getElementById('share-dialog').open", lambda v: not v)

        # ---- keyboard: the eye toggle is a button that Space presses ----
        x2 = ex_ids[1]
        eye = f"document.querySelector(\"article.exchange[data-exchange-id='{x2}'] button.eye\")"
        v = None
        tries = []
        for _ in range(3):  # the page's live refresh may replace the button between focus and key
            # wait until no call is running on it (it is disabled meanwhile), then read its state:
            # a press that took effect late is not pressed again
            v = p.poll(f"{eye} && !{eye}.disabled ? {eye}.getAttribute('aria-pressed') : null",
                       lambda v: v is not None, 5)
            if v == "true":
                break
            focused = p.eval(f"({eye}.focus(), document.activeElement === {eye})")
            tries.append([v, focused, p.eval("document.hasFocus()")])
            if focused:
                p.key("Enter", "Enter", 13, "\r")
                v = p.poll(f"{eye} ? {eye}.getAttribute('aria-pressed') : null", lambda v: v == "true", 5)
                if v == "true":
                    break
        step("keyboard: Enter on a focused eye shows the exchange again", v == "true", [v, tries])
        p.eval(f"{eye}.focus()")
        p.key("Shift", "ShiftLeft", 16)  # a key press: focus is now keyboard focus (:focus-visible)
        outline = p.eval("getComputedStyle(document.activeElement).outlineStyle + ' ' + document.activeElement.className")
        step("keyboard: the focused toggle has a visible outline", outline.split()[0] not in ("", "none"), outline)

        # ---- hostile strings everywhere: shown as text, nothing runs ----
        p.navigate(f"{base}/console/#/session/{hsid}")
        p.wait_for("article.exchange")
        p.click("#open-share")
        p.poll("document.querySelectorAll('#findings li.finding').length", bool, 10)
        kinds = p.eval("[...document.querySelectorAll('#findings li.finding')].map(li => li.textContent)")
        step("the hostile session lists its finding", bool(kinds), kinds)
        if kinds:
            label = p.eval("document.querySelector('#findings li.finding button.finding-toggle').textContent")
            p.click("#findings li.finding button.finding-toggle")
            after = p.poll("document.querySelector('#findings li.finding button.finding-toggle').textContent",
                           lambda v: v != label)
            f = rpc(base, token, "ListFindings", {"session_id": hsid})["findings"]
            step("Reveal flips the finding (button and server state)", label == "Reveal" and after == "Redact"
                 and f[0]["state"] == "revealed", [label, after, f[0]["state"]])
            p.click("#findings li.finding button.finding-toggle")
            p.poll("document.querySelector('#findings li.finding button.finding-toggle').textContent", lambda v: v == "Reveal")
        p.click("#share-close")
        step("the hostile session title is text", "<script>" in (p.eval("document.getElementById('session-title').textContent") or ""))
        p.shot("xss")
        p.navigate(f"{base}/console/#/")
        p.wait_for("#session-list li")
        p.navigate(f"{base}/console/#/projects")
        p.wait_for("#project-list li")
        names = p.eval("[...document.querySelectorAll('#project-list .project-title')].map(e => e.textContent)")
        step("hostile project names are text", any("<img" in n for n in names), names)
        # edit the plain project's icon and colour in its form
        k = next((i for i, n in enumerate(names) if n == "fixtures"), None)
        if step("the projects page lists the fixtures project", k is not None, names):
            for field, value in (("icon", "R"), ("color", "#10b981")):
                p.click(f"#project-{k}-{field}")
                p.select_all()
                p.type(value)
            p.click(f"#project-list li:nth-child({k + 1}) form.project-form button[type=submit]")
            p.poll("1", lambda v: any(x["name"] == "fixtures" and x["icon"] == "R" for x in
                                              rpc(base, token, "ListProjects", {})["projects"]))
            got = [x for x in rpc(base, token, "ListProjects", {})["projects"] if x["name"] == "fixtures"]
            step("a project's icon and colour are edited in its form", got and got[0]["icon"] == "R"
                 and got[0]["color"] == "#10b981", got)
        # the project filter of the list: the hostile project alone
        p.navigate(f"{base}/console/#/")
        p.wait_for("#session-list li")
        p.eval("(() => { const s = document.getElementById('filter-project'); const o = [...s.options]"
               ".find(o => o.textContent.includes('<img')); s.value = o.value; })()")
        p.click("#search-form button[type=submit]")
        ids = p.poll("[...document.querySelectorAll('#session-list .session-link')].map(b => b.dataset.sessionId)",
                     lambda v: v == [hsid])
        step("the project filter lists that project's sessions only", ids == [hsid], ids)
        bad = p.eval("[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length")
        step("no element carries an event-handler attribute", bad == 0, bad)
        extra = p.eval("document.querySelectorAll('main img, main svg, main script, main iframe:not(#preview-frame)').length")
        step("no payload became an element", extra == 0, extra)
        out["xss"] = p.eval("typeof window.__xss === 'undefined' ? null : String(window.__xss)")

        # ---- a phone, dark mode ----
        p.navigate(f"{base}/console/#/session/{sid}")
        p.wait_for("article.exchange")
        light_bg = p.eval("getComputedStyle(document.body).backgroundColor")
        cdp.call("Emulation.setDeviceMetricsOverride", width=375, height=800, deviceScaleFactor=2, mobile=True)
        time.sleep(0.3)
        sw = p.eval("document.documentElement.scrollWidth")
        step("375 px wide: no horizontal scroll", sw <= 375, sw)
        p.shot("phone")
        cdp.call("Emulation.clearDeviceMetricsOverride")
        cdp.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "dark"}])
        time.sleep(0.3)
        dark_bg = p.eval("getComputedStyle(document.body).backgroundColor")
        step("dark mode changes the colours", dark_bg != light_bg, [light_bg, dark_bg])
        p.shot("dark")
        cdp.call("Emulation.setEmulatedMedia", features=[{"name": "prefers-color-scheme", "value": "light"}])
        out["console_errors"] = console_errors(cdp)

        # ---- other origins try to act with the cookie ----
        srv = attack_server(attack_port, base, sid)
        try:
            for origin in (f"http://127.0.0.1:{attack_port}", f"http://localhost:{attack_port}"):
                p.navigate(f"{origin}/attack.html")
                p.poll("document.title", lambda v: v == "done", 10)
                time.sleep(0.5)
                st, _ = viewer_get(f"{base}/share/{sid}")
                step(f"a page of {origin} (form post, fetch with credentials) changes nothing", st == 404, st)
        finally:
            srv.shutdown()
        p.navigate(f"{base}/console/")
        who = p.poll("(document.getElementById('who')||{}).textContent || ''", lambda v: "Signed in" in v)
        step("their sign-out form did not sign the owner out", "Signed in" in who, who)

        # ---- sign out ----
        p.click("#logout")
        v = p.poll("!document.getElementById('signin-view').hidden", bool)
        step("Sign out shows the sign-in form", v)
        p.navigate(f"{base}/console/")
        v = p.poll("!document.getElementById('signin-view').hidden", bool)
        step("after sign-out a reload is signed out", v)

        # ---- the token form, typed and clicked ----
        p.click("#token")
        p.type(token)
        p.click("#token-form button[type=submit]")
        cdp.wait_event("Page.loadEventFired", timeout=60)
        who = p.poll("(document.getElementById('who')||{}).textContent || ''", lambda v: "Signed in" in v)
        step("the token form signs in (a form post from this origin)", "Signed in" in who, who)
    except Exception as e:  # a step that could not run is a failed step, with what happened
        step("the run went through", False, repr(e))
        out.setdefault("console_errors", console_errors(cdp))
        out.setdefault("xss", p.eval("typeof window.__xss === 'undefined' ? null : String(window.__xss)"))
    finally:
        stop(proc, profile)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
