"""Adversarial traffic for the recommender app, over real HTTP on loopback.

``fuzz_cases`` draws a reproducible mix of malformed and hostile requests (broken JSON, wrong
types, non-finite and huge numbers, lone surrogates, unknown ids, oversized, chunked and lying
bodies, odd methods, paths and headers, image bombs and extreme aspect ratios) plus bursts of
concurrent valid requests — a burst within the app's capacity and an overload beyond it;
``run_fuzz`` sends them one group at a time, probes ``/healthz`` throughout and reports status
counts per group. What counts as a failure: any 5xx other than a load-shedding 503 that carries
``Retry-After`` (which only the overload group should meet), or a ``/healthz`` probe not 200.
``benchmarks/serve_fuzz.py`` drives it against a served run; the suite runs a subset.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import struct
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class Case:
    group: str
    method: str = "POST"
    path: str = "/recommend"
    body: bytes | None = None
    headers: dict[str, str | bytes] = field(default_factory=dict)
    chunked: bool = False  # send the body in chunks, with no Content-Length
    declared: int | None = None  # a Content-Length that lies about the body


def jbody(obj) -> bytes:
    return obj if isinstance(obj, bytes) else json.dumps(obj, allow_nan=True).encode()


def png_header(w: int, h: int) -> bytes:
    """A PNG header declaring ``w`` x ``h`` pixels over garbage data (a bomb's header)."""

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x00" * 64)


def image_bytes(w: int, h: int, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (20, 120, 220)).save(buf, format=fmt)
    return buf.getvalue()


def image_payloads(rng: np.random.Generator) -> list[bytes]:
    """Images a decoder must refuse (or survive) without decoding them whole."""
    png = image_bytes(16, 16)
    return [
        png_header(65535, 65535), png_header(13000, 13000), png_header(1, 1_000_000),
        image_bytes(2, 20000), image_bytes(20000, 2), image_bytes(3, 600),
        png[: len(png) // 2], b"\x89PNG\r\n\x1a\n" + rng.bytes(200), b"GIF89a" + rng.bytes(64),
        image_bytes(40, 40, "GIF"), image_bytes(40, 40, "BMP"), image_bytes(40, 40, "TIFF"),
        b"<svg xmlns='http://www.w3.org/2000/svg' width='99999' height='99999'/>", b"", png,
    ]  # fmt: skip


def _json_cases(user: str, item: str, rng: np.random.Generator) -> list[Case]:
    bad_numbers = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e308", str(2**70), "-5",
                   "0", "3.5", '"10"', "true", "null", "[1]", "{}"]  # fmt: skip
    raw = [b"{not json", b"", b"null", b"[]", b"1", b'"x"', b"\xff\xfe\x00garbage", b"{" * 5000,
           b"[" * 100_000 + b"]" * 100_000, b'{"user_id": "u1",}', b'{"user_id": "u1"} trailing',
           b'{"user_id": "u1", "user_id": "u2"}', rng.bytes(512)]  # fmt: skip
    out = [Case("malformed_json", body=b) for b in raw]
    out += [Case("numbers", body=f'{{"user_id": "{user}", "k": {n}}}'.encode()) for n in bad_numbers]
    types = [{"user_id": 5}, {"user_id": [user]}, {"user_id": {"a": 1}}, {"history": item},
             {"history": [1, 2]}, {"history": [[item]]}, {"history": []}, {"text": 7},
             {"user_id": user, "modalities": "text"}, {"user_id": user, "rerank": "yes"},
             {"image_b64": 12}, {"user_id": user, "k": [10]}, {"user_id": None}]  # fmt: skip
    out += [Case("wrong_types", body=jbody(t)) for t in types]
    unknown = [{"user_id": "no-such-user"}, {"user_id": "x" * 199}, {"user_id": "x" * 5000},
               {"history": ["no-such-item"]}, {"history": [item, "nope"]},
               {"history": [item] * 600}, {"user_id": "../../etc/passwd"},
               {"user_id": "\u202eresu"}, {"user_id": "\x00"}, {"user_id": "u1", "colour": "red"},
               {"user_id": user, "modalities": ["smell"]}, {"user_id": user, "modalities": ["text"] * 9}]  # fmt: skip
    out += [Case("unknown_ids", body=jbody(u)) for u in unknown]
    surrogates = ['{"user_id": "\\ud800"}', '{"history": ["\\udfff"]}', '{"text": "lamp \\ud83d"}',
                  '{"user_id": "u", "modalities": ["\\ud800"]}', '{"text": "\\u0000\\u0000"}',
                  '{"image_b64": "\\ud800"}', '{"text": "' + "\\u200b" * 1999 + '"}']  # fmt: skip
    out += [Case("unicode", body=s.encode()) for s in surrogates]
    out += [Case("unicode", body=jbody({"text": "x" * 2001})),
            Case("unicode", body=jbody({"text": "ü" * 2000}))]  # fmt: skip
    return out


def _transport_cases(user: str, rng: np.random.Generator) -> list[Case]:
    big = b'{"text": "' + b"a" * 10_000_000 + b'"}'
    ok = jbody({"user_id": user, "k": 5})
    out = [Case("bodies", body=big), Case("bodies", body=big, chunked=True),
           Case("bodies", body=b"[" + b"1," * 2_500_000 + b"1]"),
           Case("bodies", body=ok, declared=len(ok) + 50), Case("bodies", body=ok + b" " * 5000, declared=len(ok)),
           Case("bodies", body=ok, declared=10_000_000)]  # fmt: skip
    ctypes = ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
              "application/json; charset=latin-1", ""]  # fmt: skip
    out += [Case("headers", body=ok, headers={"content-type": c}) for c in ctypes]
    timeouts = [b"\xff\xfe", "soon", "-1", "0", "nan", "inf", "1e12", "9" * 400, "0.5"]
    out += [Case("headers", body=ok, headers={"x-timeout-ms": t}) for t in timeouts]
    out += [Case("headers", body=ok, headers={"x-filler": "a" * 70_000}),
            Case("headers", body=ok, headers={f"x-h{i}": "v" for i in range(200)})]  # fmt: skip
    paths = [("GET", "/recommend"), ("PUT", "/recommend"), ("DELETE", "/recommend"),
             ("GET", "/items/no-such-item"), ("GET", "/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd"),
             ("GET", "/items/" + "x" * 20_000), ("GET", "/nope"), ("POST", "/healthz"),
             ("GET", "/items/%ff%fe"), ("OPTIONS", "/recommend")]  # fmt: skip
    out += [Case("methods_paths", method=m, path=p, body=ok if m != "GET" else None) for m, p in paths]
    return out


def fuzz_cases(users: list[str], items: list[str], n: int = 1000, seed: int = 0) -> list[Case]:
    """At least ``n`` hostile requests (every kind above, then random mixes of them with valid
    ones), plus bursts of concurrent valid queries, all reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    user, item = users[0], items[0]
    base = _json_cases(user, item, rng) + _transport_cases(user, rng)
    base += [Case("images", body=jbody({"image_b64": base64.b64encode(b).decode(), "k": 3}))
             for b in image_payloads(rng)]  # fmt: skip
    base += [Case("images", body=jbody({"image_b64": "!!!not-base64!!!"})),
             Case("images", body=jbody({"image_b64": "iVBO R w0K\nGgo="}))]  # fmt: skip
    out = list(base)
    while len(out) < n:  # mutations: a known-bad case with a random valid query beside it
        c = base[int(rng.integers(len(base)))]
        if c.group in ("bodies", "images"):  # the costly kinds stay at their base count
            continue
        u = users[int(rng.integers(len(users)))]
        extra = {"x-timeout-ms": str(int(rng.integers(1, 20_000)))} if rng.random() < 0.2 else {}
        body = c.body.replace(user.encode(), u.encode()) if c.body else c.body
        out.append(Case(c.group, c.method, c.path, body, {**c.headers, **extra}, c.chunked, c.declared))
    def valid(group: str) -> Case:
        return Case(group, body=jbody({"user_id": users[int(rng.integers(len(users)))], "k": 10}))

    bursts = [valid("burst") for _ in range(max(50, n // 10))]
    overload = [valid("overload") for _ in range(n // 10)]
    return out + bursts + overload


def send(base: str, c: Case, timeout: float = 30.0) -> tuple[str, dict]:
    """(status code, or what went wrong client-side; response headers)."""
    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.putrequest(c.method, (u.path.rstrip("/") + c.path) or "/", skip_accept_encoding=True)
        hdrs = {"content-type": "application/json", **c.headers}
        for k, v in hdrs.items():
            if v != "":
                conn.putheader(k, v)
        if c.body is not None and c.chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif c.body is not None:
            conn.putheader("Content-Length", str(c.declared if c.declared is not None else len(c.body)))
        conn.endheaders()
        if c.body is not None:
            _write_body(conn, c)
        if c.declared is not None and c.declared > len(c.body or b""):
            conn.sock.settimeout(2.0)  # the server waits for bytes that never come
        r = conn.getresponse()
        r.read()
        return str(r.status), {k.lower(): v for k, v in r.getheaders()}
    except (OSError, http.client.HTTPException) as e:
        return f"client:{type(e).__name__}", {}
    finally:
        conn.close()


def _write_body(conn: http.client.HTTPConnection, c: Case) -> None:
    try:
        if c.chunked:
            for s in range(0, len(c.body), 65536):
                part = c.body[s : s + 65536]
                conn.send(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            conn.send(b"0\r\n\r\n")
        else:
            conn.send(c.body)
    except OSError:  # the server answered (413) and closed before the body was all sent
        pass


def is_failure(code: str, headers: dict) -> bool:
    if not code.isdigit():
        return False
    return int(code) >= 500 and not (code == "503" and "retry-after" in headers)


BURST_CLIENTS = 16  # within the reranker's capacity (16 in flight + 8 queued): all answered
OVERLOAD_CLIENTS = 64  # beyond it: shed with 503 + Retry-After, by design


def run_fuzz(base: str, cases: list[Case], health_every: int = 20,
             on_request: Callable[[Case, float, float], None] | None = None) -> dict:  # fmt: skip
    """Every case in order, then the ``burst`` cases from ``BURST_CLIENTS`` threads and the
    ``overload`` cases from ``OVERLOAD_CLIENTS``; ``/healthz`` probed every ``health_every``
    requests; status counts per group. ``on_request(case, t_start, t_end)`` lets a caller
    attribute replica memory to single requests."""
    by: dict[str, dict[str, int]] = {}
    failures, health = [], {"probes": 0, "ok": 0}

    def record(c: Case, code: str, headers: dict) -> None:
        by.setdefault(c.group, {})[code] = by.setdefault(c.group, {}).get(code, 0) + 1
        if is_failure(code, headers):
            failures.append({"group": c.group, "status": code, "path": c.path,
                             "body_head": (c.body or b"")[:120].decode("utf-8", "replace")})  # fmt: skip

    serial = [c for c in cases if c.group not in ("burst", "overload")]
    for i, c in enumerate(serial):
        t0 = time.monotonic()
        code, headers = send(base, c)
        if on_request is not None:
            on_request(c, t0, time.monotonic())
        record(c, code, headers)
        if i % health_every == 0:
            health["probes"] += 1
            health["ok"] += send(base, Case("health", "GET", "/healthz"), 10.0)[0] == "200"
    for group, clients in (("burst", BURST_CLIENTS), ("overload", OVERLOAD_CLIENTS)):
        burst = [c for c in cases if c.group == group]
        with ThreadPoolExecutor(clients) as pool:
            for c, (code, headers) in zip(burst, pool.map(lambda c: send(base, c), burst), strict=True):
                record(c, code, headers)
    health["probes"] += 1
    health["ok"] += send(base, Case("health", "GET", "/healthz"), 10.0)[0] == "200"
    return {"requests": len(cases), "by_group": by, "failures": failures, "healthz": health}
