#!/usr/bin/env python3
"""Opens a viewer page in headless Chromium and watches it follow live events (tests/e2e/events.sh).

usage: cdp_live.py CHROMIUM URL APPEND_CMD HIDE_CMD REVOKE_CMD
Loads URL, then runs each shell command in turn (an append, a hide, a revoke through the owner
RPCs) and waits for the open page to change by itself. Prints one JSON object with what it saw;
the calling test asserts on it.
"""
import json, os, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cdp_check import console_errors, launch, poll, stop  # noqa: E402


def main():
    chromium, url, append_cmd, hide_cmd, revoke_cmd = sys.argv[1:6]
    out = {}
    proc, profile, cdp = launch(chromium)
    try:
        cdp.call("Page.navigate", url=url)
        cdp.wait_event("Page.loadEventFired", timeout=120)
        # a marker that a navigation (a reload) would erase
        cdp.eval("window.__still_here = 1")
        articles = "[...document.querySelectorAll('main article')].map(a => a.id)"
        toc = "[...document.querySelectorAll('nav a')].map(a => a.getAttribute('href'))"
        out["before"] = cdp.eval(articles)
        # the event stream is open once the server counts it; give it a moment to connect
        time.sleep(1.0)
        subprocess.run(append_cmd, shell=True, check=True)
        out["after_append"] = poll(cdp, articles, lambda v: len(v) == len(out["before"]) + 1)
        out["appended_text"] = cdp.eval("document.querySelector('main').textContent.includes('gamma live answer')")
        out["toc_after_append"] = cdp.eval(toc)
        out["count_after_append"] = cdp.eval("(document.querySelector('header .count')||{}).textContent")
        subprocess.run(hide_cmd, shell=True, check=True)
        out["after_hide"] = poll(cdp, articles, lambda v: len(v) == len(out["after_append"]) - 1)
        out["toc_after_hide"] = cdp.eval(toc)
        subprocess.run(revoke_cmd, shell=True, check=True)
        out["h1_after_revoke"] = poll(cdp, "(document.querySelector('h1')||{}).textContent",
                                      lambda v: v == "This share link does not exist")
        out["navigations"] = 1 if cdp.eval("window.__still_here") == 1 else 2
        out["console_errors"] = console_errors(cdp)
    finally:
        stop(proc, profile)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
