#!/usr/bin/env python3
"""Drives headless Chromium over the DevTools protocol (standard library only) to check a viewer page.

usage: cdp_check.py CHROMIUM URL SCREENSHOT.png TOC_EXCHANGE_ID [SHOT_WIDTH]
Prints one JSON object with what it observed; the calling test asserts on it.
"""
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time, urllib.request


class WS:
    """A minimal RFC 6455 client: text frames, masking, large lengths, fragmented replies."""

    def __init__(self, url):
        assert url.startswith("ws://")
        hostport, path = url[5:].split("/", 1)
        host, port = hostport.split(":")
        self.s = socket.create_connection((host, int(port)), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.s.sendall(req.encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise RuntimeError("websocket handshake failed")
            buf += chunk
        if b" 101 " not in buf.split(b"\r\n", 1)[0]:
            raise RuntimeError("websocket handshake refused: %r" % buf[:200])
        self.rest = buf.split(b"\r\n\r\n", 1)[1]

    def send(self, text):
        data = text.encode()
        head = bytearray([0x81])
        n = len(data)
        if n < 126:
            head.append(0x80 | n)
        elif n < 65536:
            head.append(0x80 | 126)
            head += struct.pack(">H", n)
        else:
            head.append(0x80 | 127)
            head += struct.pack(">Q", n)
        mask = os.urandom(4)
        head += mask
        self.s.sendall(bytes(head) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.rest) < n:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise RuntimeError("websocket closed")
            self.rest += chunk
        out, self.rest = self.rest[:n], self.rest[n:]
        return out

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            if b1 & 0x80:
                mask = self._read(4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read(n)))
            else:
                payload = self._read(n)
            op = b0 & 0x0F
            if op == 9:  # ping
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode()


class CDP:
    def __init__(self, ws):
        self.ws, self.next_id, self.events = ws, 0, []

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == my:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, name, timeout=60):
        end = time.time() + timeout
        for i, m in enumerate(self.events):
            if m.get("method") == name:
                del self.events[i]
                return m
        while time.time() < end:
            m = json.loads(self.ws.recv())
            if m.get("method") == name:
                return m
            self.events.append(m)
        raise RuntimeError(f"timed out waiting for {name}")

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate failed: {expr}: {r['exceptionDetails']}")
        return r["result"].get("value")


def launch(chromium, width=1200):
    """Starts headless Chromium with a fresh profile; returns (process, profile dir, CDP of its page)
    with the Page, Runtime and Log domains enabled. The caller stops it with stop()."""
    profile = tempfile.mkdtemp(prefix="sl-chromium-")
    proc = subprocess.Popen([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                             f"--user-data-dir={profile}", "--remote-debugging-port=0", "--no-first-run",
                             f"--window-size={width},1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        for _ in range(300):
            if os.path.exists(port_file) and open(port_file).read().count("\n") >= 1:
                break
            time.sleep(0.1)
        port = int(open(port_file).read().split("\n")[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t.get("type") == "page")
        cdp = CDP(WS(page["webSocketDebuggerUrl"]))
        cdp.call("Page.enable")
        cdp.call("Runtime.enable")
        cdp.call("Log.enable")
    except Exception:
        stop(proc, profile)
        raise
    return proc, profile, cdp


def poll(cdp, expr, want, timeout=5.0):
    """Evaluates expr until it returns something for which want(value) holds; returns the last value."""
    end = time.time() + timeout
    v = cdp.eval(expr)
    while not want(v) and time.time() < end:
        time.sleep(0.05)
        v = cdp.eval(expr)
    return v


def console_errors(cdp):
    """The texts of the errors the page logged so far."""
    return [m["params"]["entry"]["text"] for m in cdp.events
            if m.get("method") == "Log.entryAdded" and m["params"]["entry"]["level"] == "error"]


def stop(proc, profile):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)


def main():
    chromium, url, shot, toc_id = sys.argv[1:5]
    width = int(sys.argv[5]) if len(sys.argv) > 5 else 1200
    out = {}
    proc, profile, cdp = launch(chromium, width)
    try:
        t0 = time.time()
        cdp.call("Page.navigate", url=url)
        cdp.wait_event("Page.loadEventFired", timeout=120)
        out["load_seconds"] = round(time.time() - t0, 3)
        out["title"] = cdp.eval("document.title")
        out["h1"] = cdp.eval("document.querySelector('h1') && document.querySelector('h1').textContent")
        out["project"] = cdp.eval("(document.querySelector('.project-name')||{}).textContent")
        out["author"] = cdp.eval("(document.querySelector('.author')||{}).textContent")
        out["articles"] = cdp.eval("[...document.querySelectorAll('article')].map(a => a.id)")
        out["toc"] = cdp.eval("[...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))")
        out["toc_sections"] = cdp.eval("document.querySelectorAll('nav details').length")
        out["text_has_script_tag"] = cdp.eval("document.body.innerText.includes('<script>')")
        out["xss_flag"] = cdp.eval("typeof window.__xss === 'undefined' ? null : String(window.__xss)")
        out["script_elements"] = cdp.eval("document.querySelectorAll('script').length")
        out["event_handler_attrs"] = cdp.eval(
            "[...document.querySelectorAll('*')].filter(e => [...e.attributes].some(a => a.name.startsWith('on'))).length")
        out["javascript_links"] = cdp.eval(
            "[...document.querySelectorAll('[href],[src]')].filter(e => /^\\s*(javascript|data|vbscript):/i"
            ".test(e.getAttribute('href')||e.getAttribute('src')||'')).length")
        out["embedded_elements"] = cdp.eval("document.querySelectorAll('img,iframe,object,embed,form,textarea,input').length")
        out["details_blocks"] = cdp.eval("document.querySelectorAll('main details').length")
        out["html"] = cdp.eval("document.documentElement.outerHTML")
        out["resources"] = cdp.eval("performance.getEntriesByType('resource').map(r => r.name)")
        # A real click on the ToC link of exchange toc_id
        sel = f"nav a[href=\"#exchange-{toc_id}\"]"
        cdp.eval(f"(() => {{ const a = document.querySelector('{sel}'); const d = a.closest('details');"
                 f" if (d) d.open = true; a.scrollIntoView({{block: 'center'}}); }})()")
        time.sleep(0.2)
        rect = cdp.eval(f"(() => {{ const r = document.querySelector('{sel}').getClientRects()[0];"
                        f" return [r.left + r.width / 2, r.top + r.height / 2]; }})()")
        out["scroll_before_click"] = cdp.eval("window.scrollY")
        out["element_at_click"] = cdp.eval(
            f"(() => {{ const e = document.elementFromPoint({rect[0]}, {rect[1]}); return e && e.outerHTML.slice(0, 80); }})()")
        cdp.call("Input.dispatchMouseEvent", type="mouseMoved", x=rect[0], y=rect[1])
        for t in ("mousePressed", "mouseReleased"):
            cdp.call("Input.dispatchMouseEvent", type=t, x=rect[0], y=rect[1], button="left", clickCount=1)
        time.sleep(0.5)
        out["hash_after_click"] = cdp.eval("location.hash")
        out["target_top_after_click"] = cdp.eval(
            f"Math.round(document.getElementById('exchange-{toc_id}').getBoundingClientRect().top)")
        out["scroll_after_click"] = cdp.eval("window.scrollY")
        out["viewport_height"] = cdp.eval("window.innerHeight")
        cdp.eval("window.scrollTo(0, 0)")
        time.sleep(0.2)
        shot_data = cdp.call("Page.captureScreenshot", format="png")["data"]
        os.makedirs(os.path.dirname(shot) or ".", exist_ok=True)
        with open(shot, "wb") as f:
            f.write(base64.b64decode(shot_data))
        out["screenshot_bytes"] = os.path.getsize(shot)
        out["console_errors"] = console_errors(cdp)
    finally:
        stop(proc, profile)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
