/*
 * The viewer page's live script (rpc.h): it follows /share/{id}/events and applies each change to
 * the open page without reloading it (README, "Live events"):
 *   - a "version" event whose "prev" is the page's version (meta shareline-version) is applied:
 *     "removed" exchange ids leave the page and the ToC, "upserted" articles (rendered HTML, each
 *     with the id it follows) replace or join them, "header" replaces the header (title, count,
 *     updated time);
 *   - any other newer version ("reload", a missed event, a page that had no exchanges) reloads the
 *     page; an older or equal one is ignored;
 *   - "gone" replaces the content with the not-found notice and closes the stream.
 * No inline handlers, no eval, nothing from elsewhere; without JavaScript the page is as before.
 * The page carries it inline and the Content-Security-Policy allows exactly it by its hash.
 */
#include <string.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "rpc/rpc.h"

static const char SCRIPT[] =
    "(function () {\n"
    "  \"use strict\";\n"
    "  var meta = document.querySelector('meta[name=\"shareline-version\"]');\n"
    "  if (!meta || !window.EventSource || !window.JSON) return;\n"
    "  var version = Number(meta.getAttribute(\"content\"));\n"
    "  var base = location.pathname.replace(/\\/+$/, \"\");\n"
    "  var source = new EventSource(base + \"/events\");\n"
    "  function parse(html) {\n"
    "    var t = document.createElement(\"template\");\n"
    "    t.innerHTML = html;\n"
    "    return t.content.firstElementChild;\n"
    "  }\n"
    "  function article(id) { return document.getElementById(\"exchange-\" + id); }\n"
    "  function tocItem(id) {\n"
    "    var a = document.querySelector('nav a[href=\"#exchange-' + id + '\"]');\n"
    "    return a ? a.parentNode : null;\n"
    "  }\n"
    "  function newTocItem(node) {\n"
    "    var li = document.createElement(\"li\"), a = document.createElement(\"a\"), h = "
    "node.querySelector(\"h2\");\n"
    "    a.setAttribute(\"href\", \"#\" + node.id);\n"
    "    a.textContent = h ? h.textContent : node.id;\n"
    "    li.appendChild(a);\n"
    "    return li;\n"
    "  }\n"
    "  function apply(d) {\n"
    "    var main = document.querySelector(\"main\"), ols = document.querySelectorAll(\"nav ol\"), nav = "
    "ols[ols.length - 1];\n"
    "    if (!main || (!nav && d.upserted && d.upserted.length)) return false;\n"
    "    (d.removed || []).forEach(function (id) {\n"
    "      var a = article(id), li = tocItem(id);\n"
    "      if (a) a.remove();\n"
    "      if (li) li.remove();\n"
    "    });\n"
    "    (d.upserted || []).forEach(function (u) {\n"
    "      var node = parse(u.html), old = article(u.id), li = tocItem(u.id);\n"
    "      if (!node) return;\n"
    "      if (old) {\n"
    "        old.replaceWith(node);\n"
    "        if (li) li.replaceWith(newTocItem(node));\n"
    "        return;\n"
    "      }\n"
    "      var prev = u.after ? article(u.after) : null, prevLi = u.after ? tocItem(u.after) : null;\n"
    "      if (prev) prev.after(node); else if (u.after) main.appendChild(node); else main.prepend(node);\n"
    "      var item = newTocItem(node);\n"
    "      if (prevLi) prevLi.after(item); else if (u.after) nav.appendChild(item); else nav.prepend(item);\n"
    "    });\n"
    "    if (d.header) {\n"
    "      var h = parse(d.header), old = document.querySelector(\"header\");\n"
    "      if (h && old) {\n"
    "        old.replaceWith(h);\n"
    "        var t = h.querySelector(\"h1\");\n"
    "        if (t) document.title = t.textContent + \" \\u00b7 Shareline\";\n"
    "      }\n"
    "    }\n"
    "    return true;\n"
    "  }\n"
    "  source.addEventListener(\"version\", function (e) {\n"
    "    var d = JSON.parse(e.data);\n"
    "    if (d.version <= version) return;\n"
    "    if (d.prev !== version || d.reload || !apply(d)) { source.close(); location.reload(); return; }\n"
    "    version = d.version;\n"
    "    meta.setAttribute(\"content\", String(version));\n"
    "  });\n"
    "  source.addEventListener(\"gone\", function () {\n"
    "    source.close();\n"
    "    var wrap = document.querySelector(\".wrap\") || document.body, h = document.createElement(\"h1\"),\n"
    "        p = document.createElement(\"p\");\n"
    "    h.textContent = \"This share link does not exist\";\n"
    "    p.textContent = \"The session may never have existed, or its owner made it private or deleted "
    "it.\";\n"
    "    wrap.textContent = \"\";\n"
    "    wrap.appendChild(h);\n"
    "    wrap.appendChild(p);\n"
    "    document.title = \"Not found \\u00b7 Shareline\";\n"
    "  });\n"
    "})();\n";

const char *sl_rpc_live_script(size_t *len)
{
    *len = sizeof(SCRIPT) - 1;
    return SCRIPT;
}

const char *sl_rpc_live_script_hash(void)
{
    static char out[64];
    if (out[0] == '\0') {
        unsigned char d[SHA256_DIGEST_LENGTH];
        SHA256((const unsigned char *)SCRIPT, sizeof(SCRIPT) - 1, d);
        char b64[48];
        EVP_EncodeBlock((unsigned char *)b64, d, SHA256_DIGEST_LENGTH); /* 44 characters and a NUL */
        memcpy(out, "'sha256-", 8);
        memcpy(out + 8, b64, 44);
        memcpy(out + 52, "'", 2);
    }
    return out;
}
