#!/usr/bin/env python3
"""Checks core/secret_rules.txt without the C engine: parses the file as strictly as core/secrets.c
does, runs its self-tests, measures recall on a labelled corpus (tests/secrets/gen_corpus.py) and
lists the findings on clean files (precision).

    check_rules.py RULES [--corpus OUTDIR] [--clean FILE...] [--quiet]

The engine is emulated with Python's `re` over bytes (so \\w, \\d, \\b and (?i) are ASCII-only, as in
PCRE2 without UTF): every rule runs left to right from the end of its previous match (or from the
end of the PEM block a `pem` rule extended to), its group is the secret, the checks are those of
core/secrets.c (entropy, placeholder, jwt, pem) byte for byte, and hits that overlap are merged.
The patterns must lie in the common subset of Hyperscan 5.4, PCRE2 and Python `re`: constructs
outside it are reported as errors. When libpcre2-8 is on the machine it is loaded (ctypes) and every
pattern is compiled by it too, and its group count checked.

A corpus sample is recalled when every occurrence of its secret in its text is covered by one
merged hit. Exit status 1 when a record is malformed, a test record fails, or a kind's recall in
the corpus is below 99%.
"""
import argparse
import ctypes
import ctypes.util
import glob
import json
import math
import os
import re
import sys

CHECK_WORDS = [b"example", b"xxxx", b"your", b"changeme", b"dummy", b"redacted", b"placeholder",
               b"sample", b"****", b"${", b"{{", b"%(", b"<", b">", b"....", b"0000"]
NAME_RE = re.compile(r"^[a-z0-9-]+$")

# constructs that Hyperscan (or PCRE2, or re) rejects or treats differently
FORBIDDEN = [
    (re.compile(r"\(\?[=!]"), "lookahead"),
    (re.compile(r"\(\?<[=!]"), "lookbehind"),
    (re.compile(r"\(\?>"), "atomic group"),
    (re.compile(r"\(\?\("), "conditional"),
    (re.compile(r"\(\?P?<[A-Za-z_]"), "named group"),
    (re.compile(r"\(\?P[=>]"), "named group/backreference"),
    (re.compile(r"\(\?[a-zA-Z-]*:?[^)]*\)") , None),  # inline flags, checked below
    (re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]"), "backreference"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[KZzGQEgkRXhHvVNpPu]"), "escape outside the common subset"),
    (re.compile(r"[*+?}]\+"), "possessive quantifier"),
]


def lint_pattern(pat):
    """returns a list of problems of PAT for Hyperscan/PCRE2/re portability"""
    probs = []
    for rx, what in FORBIDDEN:
        if what is None:
            for m in rx.finditer(pat):
                s = m.group(0)
                if s.startswith("(?:"):
                    continue
                if s == "(?i)" and m.start() == 0:
                    continue
                # escaped paren "\(?..." is a literal, not a group
                if m.start() > 0 and pat[m.start() - 1] == "\\":
                    continue
                probs.append("inline flags %r (only a leading (?i) is allowed)" % s)
            continue
        if rx.search(pat):
            probs.append(what)
    if "\t" in pat:
        probs.append("a TAB in the pattern")
    for m in re.finditer(r"\{(\d+)(?:,(\d*))?\}", pat):
        hi = m.group(2)
        top = int(hi) if hi else int(m.group(1))
        if top > 1000:
            probs.append("bounded repeat %s is too large for Hyperscan" % m.group(0))
    if re.search(r"(?<!\\)\.(?![^\[]*\])", pat.replace("\\\\", "")):
        # a bare '.' outside a class: allowed by the engines, but must not be used to span text
        probs.append("bare '.' (use a class; '.' must not span lines)")
    return probs


def entropy(b):
    if not b:
        return 0.0
    counts = {}
    for c in b:
        counts[c] = counts.get(c, 0) + 1
    n = len(b)
    return -sum((k / n) * math.log2(k / n) for k in counts.values())


def placeholder(b):
    if len(b) < 8 or b[:1] == b"$":
        return True
    if b.count(b[:1]) == len(b):
        return True
    low = b.lower()
    return any(w in low for w in CHECK_WORDS)


def b64url_value(c):
    if 65 <= c <= 90:
        return c - 65
    if 97 <= c <= 122:
        return c - 97 + 26
    if 48 <= c <= 57:
        return c - 48 + 52
    if c in (45, 43):  # - +
        return 62
    if c in (95, 47):  # _ /
        return 63
    return -1


def jwt_ok(b):
    dot = b.find(b".")
    if dot < 0 or b.find(b".", dot + 1) < 0:
        return False
    hl = min(dot, 1024)
    out = bytearray()
    acc = bits = 0
    for c in b[:hl]:
        v = b64url_value(c)
        if v < 0:
            break
        acc = ((acc << 6) | v) & 0xFFFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
            if len(out) >= 800:
                break
    return len(out) > 0 and out[:1] == b"{" and b'"alg"' in bytes(out).lower()


def pem_end(text, at):
    e = text.find(b"-----END ", at)
    if e < 0:
        return len(text)
    close = text.find(b"-----", e + 9)
    return close + 5 if close >= 0 else len(text)


class Rule:
    def __init__(self, lineno, rid, kind, group, checks, pattern):
        self.lineno, self.id, self.kind, self.group, self.pattern = lineno, rid, kind, group, pattern
        self.entropy = None
        self.placeholder = self.jwt = self.pem = False
        for tok in ([] if checks == "-" else checks.split(",")):
            if tok.startswith("entropy="):
                v = float(tok[8:])
                if not 0 < v <= 8:
                    raise ValueError("entropy out of range")
                self.entropy = v
            elif tok == "placeholder":
                self.placeholder = True
            elif tok == "jwt":
                self.jwt = True
            elif tok == "pem":
                self.pem = True
            else:
                raise ValueError("unknown check %r (the engine knows entropy=N, placeholder, jwt, pem)" % tok)
        self.re = re.compile(pattern.encode())
        if group > self.re.groups:
            raise ValueError("group %d but the pattern has %d" % (group, self.re.groups))

    def run(self, text):
        """[(start, end)] of the hits in TEXT, as core/secrets.c run_rule finds them"""
        hits = []
        at = 0
        n = len(text)
        while at <= n:
            m = self.re.search(text, at)
            if not m:
                break
            ms, me = m.span()
            gs, ge = m.span(self.group)
            nxt = me if me > ms else ms + 1
            if gs >= 0 and ge > gs:
                v = text[gs:ge]
                ok = True
                if self.entropy is not None and entropy(v) < self.entropy:
                    ok = False
                if ok and self.placeholder and placeholder(v):
                    ok = False
                if ok and self.jwt and not jwt_ok(v):
                    ok = False
                if ok and self.pem:
                    ge = pem_end(text, ge)
                    if ge > nxt:
                        nxt = ge
                if ok:
                    hits.append((gs, ge))
            at = nxt
        return hits


def unescape(s):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s) and s[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[s[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(path):
    rules, tests, errors = [], [], []
    ids = set()
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return [], [], ["not UTF-8: %s" % e]
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.endswith("\r"):
            errors.append("line %d: CR at the end of the line" % lineno)
        if not line or line.startswith("#"):
            continue
        if line.startswith("rule\t"):
            f = line.split("\t", 5)
            if len(f) != 6 or not NAME_RE.match(f[1]) or not NAME_RE.match(f[2]) or not f[5]:
                errors.append("line %d: want rule<TAB>id<TAB>kind<TAB>group<TAB>checks<TAB>pattern" % lineno)
                continue
            if f[1] in ids:
                errors.append("line %d: rule id %s is used twice" % (lineno, f[1]))
                continue
            if not re.fullmatch(r"\d+", f[3]):
                errors.append("line %d: bad group" % lineno)
                continue
            probs = lint_pattern(f[5])
            if probs:
                errors.append("line %d (%s): %s" % (lineno, f[1], "; ".join(probs)))
            try:
                r = Rule(lineno, f[1], f[2], int(f[3]), f[4], f[5])
            except (ValueError, re.error) as e:
                errors.append("line %d (%s): %s" % (lineno, f[1], e))
                continue
            if r.re.search(b"") or r.re.fullmatch(b""):
                errors.append("line %d (%s): matches the empty string (Hyperscan rejects it)" % (lineno, f[1]))
            ids.add(f[1])
            rules.append(r)
        elif line.startswith("test\t"):
            tests.append((lineno, line))
        else:
            errors.append("line %d: neither a comment, a rule nor a test" % lineno)
    return rules, tests, errors


def pcre2_check(rules):
    """compiles every pattern with the real PCRE2 when it is installed; [] or problems"""
    names = [ctypes.util.find_library("pcre2-8"), "libpcre2-8.so.0", "libpcre2-8.so", "libpcre2-8.dylib"]
    lib = None
    for n in names:
        if not n:
            continue
        try:
            lib = ctypes.CDLL(n)
            break
        except OSError:
            continue
    if lib is None:
        return None
    comp = lib.pcre2_compile_8
    comp.restype = ctypes.c_void_p
    comp.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.POINTER(ctypes.c_int),
                     ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    info = lib.pcre2_pattern_info_8
    info.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p]
    free = lib.pcre2_code_free_8
    free.argtypes = [ctypes.c_void_p]
    probs = []
    for r in rules:
        code = ctypes.c_int()
        off = ctypes.c_size_t()
        p = r.pattern.encode()
        c = comp(p, len(p), 0, ctypes.byref(code), ctypes.byref(off), None)
        if not c:
            probs.append("%s: PCRE2 error %d at offset %d" % (r.id, code.value, off.value))
            continue
        n = ctypes.c_uint32()
        info(c, 4, ctypes.byref(n))  # PCRE2_INFO_CAPTURECOUNT
        if n.value != r.re.groups:
            probs.append("%s: PCRE2 counts %d groups, re %d" % (r.id, n.value, r.re.groups))
        free(c)
    return probs


def scan(rules, text):
    """merged hits [(start, end, rule)] as sl_secrets_scan returns them"""
    hits = []
    for i, r in enumerate(rules):
        hits.extend((s, e, i) for s, e in r.run(text))
    hits.sort(key=lambda h: (h[0], h[2]))
    merged = []
    for s, e, i in hits:
        if merged and s < merged[-1][1]:
            ps, pe, pi = merged[-1]
            merged[-1] = (ps, max(pe, e), min(pi, i))
        else:
            merged.append((s, e, i))
    return merged


def covered(hits, text, secret):
    """every occurrence of SECRET in TEXT lies inside one hit"""
    at = text.find(secret)
    if at < 0:
        return False
    while at >= 0:
        if not any(s <= at and at + len(secret) <= e for s, e, _ in hits):
            return False
        at = text.find(secret, at + 1)
    return True


def run_tests(rules, tests):
    byid = {r.id: r for r in rules}
    fails = []
    count = {}
    for lineno, line in tests:
        f = line.split("\t")
        if len(f) < 4 or f[1] not in byid or not ((len(f) == 5 and f[2] == "+") or (len(f) == 4 and f[2] == "-")):
            fails.append("line %d: malformed test record or unknown rule" % lineno)
            continue
        r = byid[f[1]]
        count.setdefault(r.id, [0, 0])[0 if f[2] == "+" else 1] += 1
        text = unescape(f[3]).encode()
        hits = r.run(text)
        if f[2] == "-":
            if hits:
                fails.append("line %d (%s): found a secret where there is none: %r" %
                             (lineno, r.id, [text[s:e].decode(errors="replace") for s, e in hits]))
            continue
        secret = unescape(f[4]).encode()
        at = text.find(secret)
        if at < 0:
            fails.append("line %d (%s): the secret is not in the text" % (lineno, r.id))
        elif not any(s == at and e - s == len(secret) for s, e in hits):
            fails.append("line %d (%s): the rule does not find exactly the secret; found %r" %
                         (lineno, r.id, [text[s:e].decode(errors="replace") for s, e in hits]))
        elif not any(s <= at and e >= at + len(secret) for s, e, _ in scan(rules, text)):
            fails.append("line %d (%s): the whole scan misses it" % (lineno, r.id))
    for r in rules:
        pos, neg = count.get(r.id, [0, 0])
        if pos < 2 or neg < 2:
            fails.append("rule %s (line %d): %d positive and %d negative tests, want >= 2 each" %
                         (r.id, r.lineno, pos, neg))
    return fails


def preview(b):
    k = min(len(b) // 6, 4)
    show = lambda x: "".join(chr(c) if 32 < c < 127 else "*" for c in x)
    return "%s\u2026%s" % (show(b[:k]), show(b[len(b) - k:]) if k else "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rules")
    ap.add_argument("--corpus", help="a directory written by gen_corpus.py")
    ap.add_argument("--clean", nargs="*", default=[], help="files without secrets (globs allowed)")
    ap.add_argument("--quiet", action="store_true", help="print only failures and totals")
    a = ap.parse_args()

    bad = False
    rules, tests, errors = parse(a.rules)
    for e in errors:
        print("ERROR %s" % e)
    bad |= bool(errors)
    print("rules: %d, test records: %d" % (len(rules), len(tests)))
    p2 = pcre2_check(rules)
    if p2 is None:
        print("pcre2: libpcre2-8 not found, patterns checked with re only")
    else:
        for p in p2:
            print("ERROR pcre2 %s" % p)
        bad |= bool(p2)
        print("pcre2: %d patterns compiled by libpcre2-8, %d problems" % (len(rules), len(p2)))

    fails = run_tests(rules, tests)
    for f in fails:
        print("TEST FAIL %s" % f)
    print("self-tests: %d records, %d failures" % (len(tests), len(fails)))
    bad |= bool(fails)

    if a.corpus:
        per = {}
        missed = []
        with open(os.path.join(a.corpus, "samples.jsonl"), encoding="utf-8") as f:
            for line in f:
                s = json.loads(line)
                text, secret = s["text"].encode(), s["secret"].encode()
                ok = covered(scan(rules, text), text, secret)
                st = per.setdefault(s["kind"], [0, 0])
                st[0] += 1
                st[1] += ok
                if not ok:
                    missed.append(s)
        print("\n%-28s %8s %9s %8s" % ("kind", "samples", "recalled", "recall"))
        for k in sorted(per):
            n, ok = per[k]
            pct = 100.0 * ok / n
            print("%-28s %8d %9d %7.1f%%" % (k, n, ok, pct))
            if pct < 99.0:
                bad = True
        tot = sum(v[0] for v in per.values())
        rec = sum(v[1] for v in per.values())
        print("%-28s %8d %9d %7.1f%%" % ("all", tot, rec, 100.0 * rec / max(tot, 1)))
        for s in missed[:40]:
            print("MISSED %s/%s: %s" % (s["kind"], s["context"], json.dumps(s["secret"])[:90]))
        # the transcripts, scanned whole, as an upload would be
        lab = os.path.join(a.corpus, "labels.tsv")
        if os.path.exists(lab):
            cache = {}
            n = ok = 0
            with open(lab, encoding="utf-8") as f:
                for line in f:
                    fn, kind, sec = line.rstrip("\n").split("\t", 2)
                    if fn not in cache:
                        with open(os.path.join(a.corpus, fn), "rb") as tf:
                            t = tf.read()
                        cache[fn] = (t, scan(rules, t))
                    t, h = cache[fn]
                    secret = json.loads(sec).encode()
                    n += 1
                    if covered(h, t, secret):
                        ok += 1
                    else:
                        print("MISSED in %s: %s %s" % (fn, kind, sec[:80]))
                        bad = True
            print("transcripts: %d files, %d labelled secrets, %d covered" % (len(cache), n, ok))

    if a.clean:
        files = []
        for pat in a.clean:
            files.extend(sorted(glob.glob(pat, recursive=True)) if any(c in pat for c in "*?[") else [pat])
        total = 0
        nf = 0
        print()
        for fn in files:
            with open(fn, "rb") as f:
                t = f.read()
            total += len(t)
            for s, e, i in scan(rules, t):
                nf += 1
                line = t.count(b"\n", 0, s) + 1
                print("FINDING %s:%d %s (%s) %s" % (fn, line, rules[i].id, rules[i].kind, preview(t[s:e])))
        mb = total / 1e6
        print("clean: %d files, %.3f MB, %d findings, %.2f findings/MB" %
              (len(files), mb, nf, nf / mb if mb else 0.0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
