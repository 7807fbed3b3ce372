"""The annotator serves only its user (issue 22, section 2).

FastAPI's test client for what one request proves (Host names, origin and CSRF checks, body
limit, token, cookies, headers); a real headless Chromium, launched once for the module,
for what only a browser shows: DNS rebinding (``--host-resolver-rules`` maps a foreign name
to 127.0.0.1) and a foreign page's auto-submitted forms.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import socket
import threading
import time

import pytest

from inference.annotator import create_app, open_annotator
from tests.annotator_helpers import CLICK_1, PredictorCache, api_client, csrf_token
from tests.browser import launch

EVIL = "attacker.example"
LIMIT = 2 * 1024 * 1024
SECURITY_HEADERS = {"x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "no-referrer",
                    "cache-control": "no-store"}


@pytest.fixture(scope="module")
def predictors(mini_checkpoint):
    return PredictorCache(mini_checkpoint)


def _prompted(state):
    """One object with one click on frame 0: what a forged undo would take away."""
    state.add_object("grasper")
    state.add_point(1, 0, *CLICK_1)
    return state


@pytest.fixture()
def annotator(two_object_video, predictors, tmp_path):
    state = _prompted(open_annotator(two_object_video[0], predictors, tmp_path / "out"))
    app = create_app(state)
    yield state, app, api_client(app)
    state.close()


def _exported(state):
    return (state.output_dir / "clip").exists() or (state.output_dir / "coco").exists()


def _assert_headers(r, what):
    for name, value in SECURITY_HEADERS.items():
        assert r.headers.get(name) == value, (what, r.status_code, name, r.headers.get(name))
    csp = r.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp, (what, csp)


# ---------------------------------------------------------------------- Host names
FOREIGN_HOSTS = [EVIL, f"{EVIL}:8765", "127.0.0.1.attacker.example", "localhost.attacker.example:8765",
                 "127.0.0.1:8765@attacker.example", "192.168.1.20:8765", "[::2]:8765", "", "localhost:80:80"]


def test_foreign_host_names_get_403_and_no_bytes(annotator):
    """DNS rebinding: a page whose own name now resolves to 127.0.0.1 sends its own Host;
    nothing of the video or of the folders reaches it."""
    state, _, client = annotator
    for host in FOREIGN_HOSTS:
        for path in ("/", "/api/info", "/api/frame/0", "/api/overlay/0", "/api/timeline", "/static/app.js"):
            r = client.get(path, headers={"Host": host})
            assert r.status_code == 403, (host, path, r.status_code)
            assert list(r.json()) == ["error"] and "Host" in r.json()["error"], (host, path)
            assert b"\xff\xd8" not in r.content and str(state.output_dir) not in r.text and "clip" not in r.text
        assert client.post("/api/undo", headers={"Host": host}).status_code == 403
    assert sorted(state.prompts) == [(1, 0)]
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST", "127.0.0.1", "localhost."):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host


def test_host_names_follow_the_bound_address():
    from inference.annotator.security import HostPolicy

    lan = HostPolicy("10.0.0.5")
    assert lan.allows("10.0.0.5:8765") and lan.allows("localhost:8765") and not lan.allows("10.0.0.6:8765")
    named = HostPolicy("gpu-box.lan")
    assert named.allows("gpu-box.lan:8765") and not named.allows(f"{EVIL}:8765")
    everywhere = HostPolicy("0.0.0.0")  # reached by this machine's name or any address; a DNS name is not rebindable
    assert everywhere.allows(f"{socket.gethostname()}:8765") and everywhere.allows("10.1.2.3:8765")
    assert everywhere.allows("[fe80::1]:8765") and not everywhere.allows(f"{EVIL}:8765")


# ---------------------------------------------------------------------- origin and CSRF
FORGED = [  # (headers, body, content type): what a foreign page (or a form) can send
    ({}, None, None),  # no CSRF header
    ({"X-CSRF-Token": "guess"}, None, None),
    ({"Origin": "http://evil.example"}, None, None),  # with the right CSRF token, even
    ({"Origin": "null"}, None, None),
    ({"Origin": "http://127.0.0.1:9999"}, None, None),  # another port of this host
    ({"Sec-Fetch-Site": "cross-site"}, None, None),
    ({"Sec-Fetch-Site": "same-site"}, None, None),
    ({}, b'{"x":"=y"}', "text/plain"),  # an auto-submitted text/plain form
    ({}, b"a=b", "application/x-www-form-urlencoded"),
    ({}, b"--x\r\n", "multipart/form-data; boundary=x"),
]


@pytest.mark.parametrize("path", ["/api/undo", "/api/export"])
def test_forged_state_changes_are_refused_before_the_handler(annotator, path):
    state, app, client = annotator
    called = []
    state.undo = lambda: called.append("undo")  # the handlers' only entry into the state
    state._idle = lambda: called.append("export")
    csrf = csrf_token(app)
    for i, (headers, body, ctype) in enumerate(FORGED):
        sent = dict(headers)
        sent["X-CSRF-Token"] = headers.get("X-CSRF-Token", csrf if ("Origin" in headers or "Sec-Fetch-Site" in headers) else "")
        if ctype:
            sent["Content-Type"] = ctype
        r = client.post(path, content=body, headers=sent)
        assert r.status_code in (403, 415), (i, headers, r.status_code)
        assert list(r.json()) == ["error"] and "\n" not in r.json()["error"]
    assert called == [] and not _exported(state) and sorted(state.prompts) == [(1, 0)]
    # the page itself: same origin, same-origin fetch metadata, the CSRF header
    del state.undo, state._idle
    ok = client.post(path, headers={"Origin": "http://127.0.0.1:8765", "Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200, ok.text
    assert (state.prompts == {}) if path == "/api/undo" else _exported(state)


def test_every_state_changing_method_needs_the_csrf_header(annotator):
    state, app, _ = annotator
    bare = api_client(app)
    bare.headers.pop("X-CSRF-Token")
    for method, path, body in (("post", "/api/objects", {}), ("patch", "/api/objects/1", {"name": "x"}),
                               ("delete", "/api/objects/1", None), ("post", "/api/preset", {"preset": "sam2"}),
                               ("post", "/api/track", {}),
                               ("post", "/api/prompt/point", {"obj_id": 1, "frame": 0, "x": 5, "y": 5})):
        r = bare.request(method.upper(), path, json=body)
        assert r.status_code == 403 and "CSRF" in r.json()["error"], (method, path, r.status_code)
    assert [o.name for o in state.objects.values()] == ["grasper"] and state.preset == "tsms" and state.job is None


# ---------------------------------------------------------------------- body size
def _drive(app, method, path, headers, chunk=64 * 1024, total=8 * LIMIT):
    """Send one request straight into the ASGI app, feeding up to ``total`` body bytes in
    ``chunk`` pieces; returns (status, json body, bytes the app pulled)."""
    pulled, out = [0], {}

    async def receive():
        if pulled[0] >= total:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled[0] += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": pulled[0] < total}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] = out.get("body", b"") + message.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
             "raw_path": path.encode(), "root_path": "", "scheme": "http", "query_string": b"",
             "server": ("127.0.0.1", 8765), "client": ("127.0.0.1", 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    result = []
    worker = threading.Thread(target=lambda: result.append(asyncio.run(app(scope, receive, send))))
    worker.start()  # a thread of its own: the module's Playwright may hold this thread's event loop
    worker.join(60)
    return out.get("status"), json.loads(out.get("body") or b"null"), pulled[0]


def test_bodies_over_the_limit_are_refused_before_they_are_read(annotator):
    state, app, _ = annotator
    headers = {"host": "127.0.0.1:8765", "x-csrf-token": csrf_token(app), "content-type": "application/json"}
    status, body, pulled = _drive(app, "POST", "/api/prompt/point", dict(headers, **{"content-length": "300000000"}))
    assert (status, pulled) == (413, 0) and "kB" in body["error"]  # refused on its Content-Length, nothing read
    status, body, pulled = _drive(app, "POST", "/api/prompt/point", dict(headers, **{"transfer-encoding": "chunked"}))
    assert status == 413 and pulled <= LIMIT + 64 * 1024  # chunked: read up to the limit, then refused
    status, _, pulled = _drive(app, "GET", "/api/info", dict(headers, **{"content-length": "300000000"}))
    assert (status, pulled) == (413, 0)
    assert sorted(state.prompts) == [(1, 0)]


# ---------------------------------------------------------------------- token and cookies
def test_a_token_never_comes_from_the_command_line(tmp_path, monkeypatch):
    from inference.annotate import parse_args
    from utils.errors import UserError

    base = ["--video_path", "v.mp4", "--model_cfg", "mini"]
    good = "k" * 20 + "-" + "Z" * 20
    monkeypatch.delenv("TSMS_ANNOTATOR_TOKEN", raising=False)
    with pytest.raises(UserError, match=r"visible to every local user.*TSMS_ANNOTATOR_TOKEN.*--token_file"):
        parse_args(base + ["--token", good])
    monkeypatch.setenv("TSMS_ANNOTATOR_TOKEN", good)
    args = parse_args(base + ["--host", "0.0.0.0"])
    assert args.token == good and good not in " ".join(base)  # used, and never in argv
    monkeypatch.setenv("TSMS_ANNOTATOR_TOKEN", "a")
    with pytest.raises(UserError, match="TSMS_ANNOTATOR_TOKEN: the token has 1 characters; use at least 32"):
        parse_args(base)
    monkeypatch.delenv("TSMS_ANNOTATOR_TOKEN")
    (tmp_path / "tok").write_text(good + "\n")
    assert parse_args(base + ["--token_file", str(tmp_path / "tok")]).token == good
    (tmp_path / "short").write_text("s3cr3t")
    with pytest.raises(UserError, match="short: the token has 6 characters"):
        parse_args(base + ["--token_file", str(tmp_path / "short")])
    with pytest.raises(UserError, match="is not a file"):
        parse_args(base + ["--token_file", str(tmp_path)])
    made_up = parse_args(base + ["--host", "0.0.0.0"]).token
    assert len(made_up) >= 32 and made_up != parse_args(base + ["--host", "0.0.0.0"]).token


def test_short_tokens_are_refused_by_the_app(annotator):
    from utils.errors import UserError

    state, _, _ = annotator
    for token in ("a", "s3cr3t", "x" * 31):
        with pytest.raises(UserError, match="at least 32"):
            create_app(state, token=token)


def test_cookies_are_per_server_and_never_hold_the_token(annotator):
    state, _, _ = annotator
    token = "t" * 40
    apps = [create_app(state, token=token, port=port) for port in (8765, 8766)]
    clients = [api_client(app) for app in apps]
    cookies = []
    for client in clients:
        r = client.get(f"/?token={token}")
        assert r.status_code == 200
        header = r.headers["set-cookie"]
        assert "httponly" in header.lower() and "samesite=strict" in header.lower()
        name, value = header.split(";")[0].split("=", 1)
        assert token not in header  # the cookie holds a per-run secret, not the token
        cookies.append((name, value))
        assert client.get("/api/info", headers={"Cookie": f"{name}={value}"}).status_code == 200
        other_apps = 'prefs={"theme": "dark"}; '  # another local app's cookie that SimpleCookie chokes on
        assert client.get("/api/info", headers={"Cookie": other_apps + f"{name}={value}"}).status_code == 200
    assert cookies[0][0] != cookies[1][0]  # another port's server never overwrites or reuses it
    other = api_client(apps[1])
    for name in (cookies[0][0], cookies[1][0]):  # server A's cookie value is nothing to server B
        assert other.get("/api/info", headers={"Cookie": f"{name}={cookies[0][1]}"}).status_code == 403


# ---------------------------------------------------------------------- headers
def test_security_headers_on_every_response(annotator):
    state, app, client = annotator
    responses = {
        "page": client.get("/"), "static js": client.get("/static/app.js"), "static css": client.get("/static/app.css"),
        "frame": client.get("/api/frame/0"), "overlay": client.get("/api/overlay/0"), "api": client.get("/api/info"),
        "404": client.get("/nope"), "frame 404": client.get("/api/frame/99"),
        "422": client.post("/api/prompt/point", content=b"{", headers={"Content-Type": "application/json"}),
        "foreign host": client.get("/", headers={"Host": EVIL}),
        "no csrf": client.post("/api/undo", headers={"X-CSRF-Token": ""}),
        "413": client.post("/api/objects", content=b"x" * (LIMIT + 1), headers={"Content-Type": "application/json"}),
        "post": client.post("/api/objects", json={}),
    }
    for what, r in responses.items():
        _assert_headers(r, what)
    state.timeline = lambda: 1 / 0  # an unexpected crash: still one JSON line, still the headers
    responses["500"] = client.get("/api/timeline")
    _assert_headers(responses["500"], "500")
    assert responses["page"].status_code == 200 and responses["frame"].content[:2] == b"\xff\xd8"
    assert responses["413"].status_code == 413 and list(responses["413"].json()) == ["error"]
    assert responses["500"].status_code == 500 and list(responses["500"].json()) == ["error"]
    page = responses["page"].text
    assert csrf_token(app) in page and "<script>" not in page and "style=" not in page  # CSP: no inline code


# ---------------------------------------------------------------------- the port check
def _port_in_time_wait():
    """A port whose last connection lingers in TIME_WAIT, as after killing a server."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    conn.close()  # the server side closes first: its end goes to TIME_WAIT
    time.sleep(0.05)
    cli.close()
    srv.close()
    return port


def test_port_check_accepts_time_wait_and_refuses_a_listener():
    from inference.annotator.launch import check_port_free
    from utils.errors import UserError

    port = _port_in_time_wait()
    plain = socket.socket()
    with pytest.raises(OSError):  # the old check's bind: refused for ~60 s
        plain.bind(("127.0.0.1", port))
    plain.close()
    check_port_free("127.0.0.1", port)  # uvicorn binds it (SO_REUSEADDR), so do we
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(UserError, match="port in use"):
            check_port_free("127.0.0.1", busy.getsockname()[1])


# ---------------------------------------------------------------------- a real server, a real browser
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app, port):
    """uvicorn in a thread; returns a function that stops it."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)

    def stop():
        srv.should_exit = True
        thread.join(10)
    return stop


@pytest.fixture(scope="module")
def live(two_object_video, predictors, tmp_path_factory):
    """The annotator under uvicorn with one prompted object, and an attacker's page server
    on another port whose page auto-submits a text/plain form to ``?to=<api path>``."""
    state = _prompted(open_annotator(two_object_video[0], predictors, tmp_path_factory.mktemp("live") / "out"))
    port = _free_port()
    stop = _serve(create_app(state, port=port), port)

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            target = self.path.partition("?to=")[2] or "/api/undo"
            page = (f'<form id="f" method="POST" enctype="text/plain" action="http://127.0.0.1:{port}{target}">'
                    f'<input name=\'{{"obj_id": 1, "x":"\' value=\'"}}\'></form><script>f.submit()</script>').encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args):
            pass

    attacker = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    threading.Thread(target=attacker.serve_forever, daemon=True).start()
    yield state, port, attacker.server_address[1]
    attacker.shutdown()
    stop()
    state.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, extra_args=[f"--host-resolver-rules=MAP {EVIL} 127.0.0.1"])
        yield b
        b.close()


def test_a_raw_300_mb_request_is_answered_413_at_once(live):
    _, port, _ = live
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST /api/prompt/point HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {300 * 1024 * 1024}\r\n\r\n".encode() + b"[" * 65536)  # then nothing more
        answer = s.recv(65536).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413"), answer[:200]


def test_dns_rebinding_page_reads_nothing(live, browser):
    """http://attacker.example:PORT/ resolves to the annotator; the page there gets 403s only."""
    state, port, _ = live
    page = browser.new_page()
    try:
        r = page.goto(f"http://{EVIL}:{port}/")
        assert r.status == 403 and "csrf-token" not in r.text()
        reads = page.evaluate("""async () => { const out = {};
            for (const p of ['/api/info', '/api/frame/0', '/api/overlay/0', '/api/timeline', '/static/app.js']) {
                const r = await fetch(p); out[p] = [r.status, await r.text()]; }
            out.undo = (await fetch('/api/undo', {method: 'POST'})).status;
            return out; }""")
        undo = reads.pop("undo")
        for path, (status, text) in reads.items():
            assert status == 403 and str(state.output_dir) not in text and "clip" not in text, (path, status)
        assert undo == 403 and sorted(state.prompts) == [(1, 0)]
        # the same browser on the annotator's own names: the page loads and works under the CSP
        violations = []
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        page.goto(f"http://localhost:{port}/")
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        obj = page.evaluate("api('POST', '/api/objects', {name: 'from the page'})")
        assert obj["name"] == "from the page" and not violations, violations
        state.delete_object(obj["id"])
    finally:
        page.close()


@pytest.mark.parametrize("attacker_host", ["127.0.0.1", EVIL])  # same site (another port) and cross site
def test_foreign_pages_forms_change_nothing(live, browser, attacker_host):
    state, port, attacker_port = live
    page = browser.new_page()
    try:
        for target in ("/api/undo", "/api/export", "/api/objects"):
            with page.expect_response(f"http://127.0.0.1:{port}{target}", timeout=15000) as answer:
                page.goto(f"http://{attacker_host}:{attacker_port}/?to={target}")
            assert answer.value.status == 403, (target, answer.value.status)
            # and a script's no-cors POST (a "simple" request: no preflight, so it is sent)
            page.evaluate(f"""() => fetch('http://127.0.0.1:{port}{target}', {{method: 'POST', mode: 'no-cors',
                headers: {{'Content-Type': 'text/plain'}}, body: '{{}}'}}).catch(() => null)""")
    finally:
        page.close()
    time.sleep(0.2)
    assert sorted(state.prompts) == [(1, 0)] and state.history and not _exported(state)
    assert [o.name for o in state.objects.values()] == ["grasper"]


def test_the_page_works_with_a_token_that_then_leaves_the_url(live, browser):
    """An exposed annotator: the printed URL's token buys an HttpOnly cookie, the address bar
    drops the token, and the page then works (reads, and writes with its CSRF header)."""
    state, _, _ = live
    token, port = "p" * 40, _free_port()
    stop = _serve(create_app(state, token=token, port=port), port)
    page = browser.new_page()
    try:
        assert page.goto(f"http://127.0.0.1:{port}/").status == 403
        page.goto(f"http://127.0.0.1:{port}/?token={token}")
        page.wait_for_selector("body[data-ready='1']", timeout=30000)
        assert page.evaluate("location.href") == f"http://127.0.0.1:{port}/"
        assert token not in page.evaluate("document.cookie")  # HttpOnly, and never the token anyway
        obj = page.evaluate("api('PATCH', '/api/objects/1', {name: 'renamed in the page'})")
        assert obj["name"] == "renamed in the page" == state.objects[1].name
    finally:
        page.close()
        state.update_object(1, "grasper")
        stop()
