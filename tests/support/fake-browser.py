#!/usr/bin/env python3
"""A scripted "browser" for Keyport's OAuth tests, set as BROWSER (the way kubelogin's
integration tests drive their IdP): it opens the URL Keyport gives it, fills in
oidc-provider's login / consent / device pages, and follows redirects until it reaches
Keyport's loopback callback (or a page with no form).

FAKE_BROWSER_MODE:
  approve      (default) log in and consent
  deny         press Cancel / Abort: the provider redirects with error=access_denied
  wrong-state  approve, but change `state` on the way to the callback
  ignore       do nothing (the login times out)
FAKE_BROWSER_LOG: append one line per URL visited.
FAKE_BROWSER_ARGV: append the arguments it was started with (what every local user can read
in /proc/PID/cmdline), one line per start.
"""
import html.parser
import http.cookiejar
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

MODE = os.environ.get("FAKE_BROWSER_MODE", "approve")
LOG = os.environ.get("FAKE_BROWSER_LOG")
ARGV = os.environ.get("FAKE_BROWSER_ARGV")


def log(line):
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")


class Forms(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms, self.links, self.buttons = [], [], []
        self._form = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {"action": a.get("action"), "method": (a.get("method") or "get").lower(),
                          "id": a.get("id"), "inputs": []}
            self.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("name"):
            self._form["inputs"].append((a["name"], a.get("value") or "", a.get("type") or "text"))
        elif tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "button":
            self.buttons.append(a)

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(
    urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect)


def fetch(url, data=None):
    log(("POST " if data else "GET ") + url)
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None)
    try:
        r = opener.open(req, timeout=20)
        return r.status, r.headers, r.read().decode("utf-8", "replace"), url
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace"), url


def main(url):
    if MODE == "ignore":
        log("IGNORE " + url)
        return
    callback_prefix = None
    data = None
    for _ in range(30):
        # (Keyport starts the browser on a loopback start URL that redirects to the
        # authorization URL: the redirect_uri is learnt on the way)
        q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        if callback_prefix is None and "redirect_uri" in q:
            callback_prefix = q["redirect_uri"][0]
        status, headers, body, current = fetch(url, data)
        data = None
        if status in (301, 302, 303, 307, 308):
            nxt = urllib.parse.urljoin(current, headers["Location"])
            if callback_prefix and nxt.startswith(callback_prefix) and MODE == "wrong-state":
                parts = urllib.parse.urlparse(nxt)
                qs = urllib.parse.parse_qs(parts.query)
                qs["state"] = ["forged-" + qs.get("state", ["x"])[0]]
                nxt = parts._replace(query=urllib.parse.urlencode(qs, doseq=True)).geturl()
            url = nxt
            continue
        if callback_prefix and current.startswith(callback_prefix):
            log("CALLBACK %d" % status)
            return
        p = Forms()
        p.feed(body)
        if MODE == "deny":
            cancel = [l for l in p.links if "/abort" in l]
            if cancel:
                url = urllib.parse.urljoin(current, cancel[0])
                continue
        forms = [f for f in p.forms if f["method"] == "post"]
        if not forms:
            log("DONE %d" % status)
            return
        f = forms[0]
        data = {}
        for name, value, typ in f["inputs"]:
            if name == "login":
                value = "alice"
            elif typ == "password":
                value = "any-password"
            data[name] = value
        if MODE == "deny" and any(b.get("name") == "abort" for b in p.buttons):
            data["abort"] = "yes"
        url = urllib.parse.urljoin(current, f["action"] or current)
    log("GAVE UP")


if __name__ == "__main__":
    if ARGV:
        with open(ARGV, "a") as f:
            f.write(" ".join(sys.argv[1:]) + "\n")
    main(sys.argv[1])
