#!/usr/bin/env python3
"""make_corpus.py: writes the seed corpora of tests/fuzz/corpus/<target>/ (docs/fuzzing.md).

Seeds come from the unit tests' vectors (the C string literals of tests/check_*.c that look
like each parser's input), tests/data, and a few hand-made hostile inputs (path tricks,
a zip bomb, device entries). Run from the source root: python3 tests/fuzz/make_corpus.py.
Files are named by content hash, so a rerun only adds what is new. The fuzzers' own finds
that became seeds (regressions) are kept: nothing is deleted here.
"""
import gzip
import hashlib
import io
import json
import os
import re
import struct
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fuzz", "corpus")


def put(target, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


ESC = {"n": b"\n", "r": b"\r", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'",
       "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v", "?": b"?"}


def unescape(body):
    out = bytearray()
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        n = body[i + 1]
        if n == "x":
            m = re.match(r"[0-9a-fA-F]+", body[i + 2:])
            out.append(int(m.group(0), 16) & 0xFF)
            i += 2 + len(m.group(0))
        elif n in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i + 1:])
            out.append(int(m.group(0), 8) & 0xFF)
            i += 1 + len(m.group(0))
        else:
            out += ESC.get(n, n.encode())
            i += 2
    return bytes(out)


TOKEN = re.compile(r'"((?:[^"\\\n]|\\.)*)"|([A-Z_][A-Z0-9_]*)')


def literals(path):
    """Each run of adjacent string literals (and simple string macros) in a C file."""
    src = open(path, encoding="utf-8").read()
    macros = {}
    for m in re.finditer(r'^#define\s+([A-Z_][A-Z0-9_]*)\s+((?:"(?:[^"\\\n]|\\.)*"\s*(?:\\\n\s*)?)+)$',
                         src, re.M):
        macros[m.group(1)] = b"".join(unescape(x) for x in re.findall(r'"((?:[^"\\\n]|\\.)*)"', m.group(2)))
    src = re.sub(r"^#define.*(?:\\\n.*)*$", "", src, flags=re.M)
    src = re.sub(r"/\*.*?\*/", " ", src, flags=re.S)
    runs, cur, last = [], None, -1
    for m in TOKEN.finditer(src):
        gap = src[last:m.start()] if last >= 0 else "x"
        adjacent = cur is not None and gap.strip() == ""
        if m.group(1) is not None:
            piece = unescape(m.group(1))
        elif m.group(2) in macros:
            piece = macros[m.group(2)]
        else:
            if cur is not None:
                runs.append(cur)
            cur, last = None, m.end()
            continue
        cur = (cur + piece) if adjacent else piece
        if not adjacent and runs is not None and cur is not piece:
            pass
        last = m.end()
    if cur is not None:
        runs.append(cur)
    return runs


def tests(name):
    return literals(os.path.join(ROOT, "tests", name))


# ---- JSON and lockfiles ----------------------------------------------------------------
for lit in tests("check_npm_lock.c"):
    if b"lockfileVersion" in lit:
        put("fuzz_npm_lock", lit)
put("fuzz_npm_lock", json.dumps({"lockfileVersion": 3, "packages": {
    "": {"name": "x"}, "node_modules/../../etc": {"version": "1.0.0", "resolved": "file:../../etc"},
    "node_modules/a": {"version": "1.0.0/../../x", "resolved": "https://registry.npmjs.org/a/-/a-1.0.0.tgz"},
    "node_modules/@s/b": {"version": "2.0.0", "resolved": "https://registry.npmjs.org/@s/b/-/b-2.0.0.tgz",
                          "integrity": "sha512-AAAA"}}}))
put("fuzz_npm_lock", '{"lockfileVersion":2,"dependencies":{"a":{"version":"file:/etc"}},"packages":{"":{}}}')

for lit in tests("check_generic_lock.c"):
    if b"artifacts" in lit or b"download_url" in lit:
        put("fuzz_generic_lock", lit)
put("fuzz_generic_lock", "metadata: {version: '1.0'}\nartifacts:\n - download_url: https://u:p@h/x\n"
    "   checksum: sha256:" + "0" * 64 + "\n   filename: ../x\n - &a {download_url: 'http://[::1]:99/a', "
    "checksum: 'SHA384:" + "A" * 96 + "'}\n - *a\n")

reqs = [
    {"repo": "https://github.com/release-engineering/retrodep.git",
     "ref": "c50b93a32df1c9d700e3e80996845bc2e13be848", "pkg_managers": ["npm"]},
    {"repo": "https://x/y.git", "ref": "a" * 40, "pkg_managers": ["npm", "generic"],
     "packages": {"npm": [{"path": "client"}, {"path": "./a/../b"}], "generic": [{"path": "."}]},
     "flags": ["include-git-dir"], "user": "someone",
     "dependency_replacements": [{"name": "x", "type": "gomod", "version": "v1"}]},
    {"repo": "https://x/y.git", "ref": "b" * 40, "pkg_managers": [],
     "packages": {"npm": [{"path": "../../etc"}]}},
]
for r in reqs:
    put("fuzz_reqcheck", b"\x00" + json.dumps(r).encode())
put("fuzz_reqcheck", b"\x01" + json.dumps({"state": "complete", "state_reason": "done",
    "environment_variables": {"A": {"value": "b", "kind": "path"}},
    "packages_count": 3, "dependencies_count": 4}).encode())
put("fuzz_reqcheck", b"\x02" + json.dumps([{"type": "base64", "path": "app/.npmrc",
    "content": "cmVnaXN0cnk9aHR0cDovL3gK"}]).encode())
put("fuzz_reqcheck", b"\x03" + json.dumps({"state": "done", "worker": "w1",
    "progress_message": "cooking", "result": {"bundle_sha256": "0" * 64, "bundle_size": 10}}).encode())
put("fuzz_reqcheck", b"\x03" + json.dumps({"state": "running", "worker": "w", "error": None}).encode())
put("fuzz_reqcheck", b"\x04" + b"a/./b//c/../../d/")
put("fuzz_reqcheck", b"\x04" + b"/".join([b"a"] * 300 + [b".."] * 299))

# ---- the API's requests ------------------------------------------------------------------
HEX = "1" * 40
rq = [
    ("POST /vault/directory/" + HEX, {"notify_url": "https://example.org/hook", "format": "tar.gz"}),
    ("POST /vault/revision/swh:1:rev:" + HEX + "?format=git-bare", {}),
    ("POST /vault/snapshot/" + HEX, {"notify_url": "http://127.0.0.1:1/x"}),
    ("GET /vault/directory/" + HEX + "/status?wait=5&format=zip", None),
    ("GET /vault/directory?limit=10&after=" + HEX, None),
    ("POST /loads", {"url": "https://example.org/repo.git", "ref": "refs/heads/main"}),
    ("POST /loads", {"url": "file:///etc", "ref": "HEAD"}),
    ("PATCH /jobs/42", {"state": "running", "worker": "w1"}),
    ("PATCH /jobs/42", {"state": "done", "result": {"bundle_sha256": "0" * 64, "bundle_size": 1}}),
    ("POST /api/v1/requests", reqs[1]),
    ("PATCH /api/v1/requests/7", {"state": "complete", "state_reason": "ok"}),
    ("POST /api/v1/requests/7/configuration-files", [{"type": "base64", "path": "a", "content": "eA=="}]),
    ("GET /api/v1/requests?state=complete&page=2&per_page=5&verbose=true", None),
    ("GET /api/v1/content-manifest?requests=1,2,3", None),
    ("POST /v3/packages", {"type": "bits", "relationships": {"app": {"data": {"guid": "0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00"}}}}),
    ("POST /v3/packages", {"type": "docker", "data": {"image": "r/i:1", "username": "u", "password": "p"},
                           "relationships": {"app": {"data": {"guid": "0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00"}}}}),
    ("POST /v3/packages?source_guid=0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f01",
     {"relationships": {"app": {"data": {"guid": "0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00"}}}}),
    ("GET /v3/packages?guids=a,b&states=READY&order_by=-created_at&per_page=2", None),
    ("POST /app_stash/matches", [{"fn": "a/b", "sha1": HEX, "size": 3, "mode": "644"}]),
    ("POST /app_stash/bundles", [{"fn": "a", "sha1": HEX, "mode": "0755"}, {"fn": "../x", "sha1": HEX}]),
    ("PUT /packages/0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00", {"source_guid": "abc"}),
    ("POST /sync/have", {"keys": ["droplets/a/b", "x"]}),
    ("PUT /buildpack_cache/entries/app/stack", {"source_guid": "x"}),
]
for line, body in rq:
    b = b"" if body is None else (body.encode("latin-1") if isinstance(body, str) else json.dumps(body).encode())
    put("fuzz_request", line.encode() + b"\n" + b)


def form(parts, boundary="XyZ"):
    out = b""
    for name, filename, data in parts:
        fn = b'; filename="%s"' % filename.encode() if filename else b""
        out += b"--" + boundary.encode() + b'\r\nContent-Disposition: form-data; name="' + \
            name.encode() + b'"' + fn + b"\r\n\r\n" + data + b"\r\n"
    return out + b"--" + boundary.encode() + b"--\r\n"


CT = b"Content-Type: multipart/form-data; boundary=XyZ\n"
_zb = io.BytesIO()
with zipfile.ZipFile(_zb, "w") as _z:
    _z.writestr(zipfile.ZipInfo("a/b.txt", (1980, 1, 1, 0, 0, 0)), b"hello\n")
ZIP = _zb.getvalue()
RES = json.dumps([{"fn": "a/b.txt", "sha1": HEX, "mode": "644"}, {"fn": "c", "sha1": HEX}]).encode()
for line, parts in [
        ("PUT /packages/0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00", [("resources", None, RES), ("package", "p.zip", ZIP)]),
        ("PUT /packages/g1", [("resources", None, b"not json \xe2\x82"), ("package", "p.zip", ZIP)]),
        ("PUT /packages/g1", [("resources", None, b"[]"), ("bits", "p.zip", b"notzip")]),
        ("PUT /droplets/g1/" + HEX, [("droplet", "d.tgz", b"\x1f\x8b")]),
        ("POST /v3/packages/0d1f6c3e-0bb4-4c3a-9c5a-7c5b2a1e8f00/upload", [("resources", None,
            json.dumps([{"checksum": {"value": HEX}, "fn": "x/y", "size_in_bytes": 3, "mode": "644"}]).encode()),
            ("bits", "b.zip", ZIP)]),
        ("POST /app_stash/entries", [("application", "a.zip", ZIP)]),
        ("POST /app_stash/bundles", [("resources", "r.json", RES), ("application", "a.zip", ZIP)]),
        ("POST /buildpacks", [("buildpack", "b.zip", ZIP), ("stack", None, b"cflinuxfs4")])]:
    put("fuzz_request", line.encode() + b"\n" + CT + form(parts))

for line in ["GET\n/vault/directory/" + HEX + "/status?wait=5&format=tar.gz",
             "HEAD\n/api/1/vault/flat/swh:1:dir:" + HEX + "/raw/",
             "DELETE\n/buildpack_cache/entries/a%2Fb/c", "GET\n/v3/packages/%2e%2e",
             "PATCH\n/jobs/1?x=%zz", "POST\n/directories", "OPTIONS\n/status",
             "GET\n/api/v1/requests/latest?repo_name=a+b&ref=%41"]:
    put("fuzz_router", line)

# ---- multipart, range, swhid, signurl ------------------------------------------------------
for lit in tests("check_multipart.c"):
    if b"Content-Disposition" in lit and lit.startswith(b"--"):
        b = lit.split(b"\r\n", 1)[0][2:]
        put("fuzz_multipart", b"multipart/form-data; boundary=" + b + b"\n\x03" + lit)
put("fuzz_multipart", b'multipart/form-data; boundary="a b"\n\x01--a b\r\nContent-Disposition: form-data; '
    b'name="f"; filename="C:\\dir\\f.txt"\r\n\tcontinued\r\n\r\nx\r\n--a b--\r\n')

for size, hdr in [(100, "bytes=0-9"), (100, "bytes=-5"), (100, "bytes=90-"), (100, "bytes=100-"),
                  (0, "bytes=-1"), (2 ** 63, "bytes=18446744073709551615-"), (10, "Bytes= 1-2 "),
                  (10, "bytes=1-2,4-5")]:
    put("fuzz_range", struct.pack("<Q", size) + hdr.encode())

for k, s in [(0, "swh:1:dir:" + "a" * 40), (1, "swh:1:rev:" + "0123456789ABCDEF" * 2 + "01234567"),
             (2, HEX), (3, "swh:1:snp:" + HEX + ";origin=x"), (4, "swh:1:cnt:" + "f" * 40),
             (5, "swh:2:dir:" + HEX)]:
    put("fuzz_swhid", bytes([k]) + s.encode())

for lit in tests("check_signurl.c"):
    if lit.startswith(b"signature=") or lit.startswith(b"md5=") or b"expires=" in lit:
        put("fuzz_signurl", b"GET\n/packages/myguid\n" + lit + b"\nk1:a,k2:b")
put("fuzz_signurl", b"PUT\n/packages/myguid\nsignature=6af8f7670641f1d5ac3c5c428e06801764d14502835e6265918b6092fd0a3525"
    b"&expires=1497357804\nk1:old-secret, k2:new:secret")
put("fuzz_signurl", b"GET\n/read/cc-packages/ab/cd/abcdef\nmd5=iIMVrFlqQWIVTz7dCUtAag&expires=1510839810\n")
put("fuzz_signurl", b"get\n/droplets/a%2Fb\nAccessKeyId=k2&signature=00&expires=01&verb=put\n,k:,:s")

# ---- git objects -------------------------------------------------------------------------
ID = bytes(range(20))
tree = b"100644 a.txt\0" + ID + b"40000 dir\0" + ID + b"120000 link\0" + ID + b"160000 sub\0" + ID
put("fuzz_gitobj", b"\x00" + tree)
put("fuzz_gitobj", b"\x00" + b"100755 .GIT\0" + ID + b"040000 a\0" + ID + b"100644 a\0" + ID)
put("fuzz_gitobj", b"\x00100644 \xe2\x80\x8c.git\0" + ID + b"644 ..\0" + ID[:10])
put("fuzz_gitobj", b"\x01tree " + HEX.encode() + b"\nparent " + ("2" * 40).encode() + b"\nparent " +
    ("3" * 40).encode() + b"\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 2 +0100\ngpgsig -----BEGIN\n \n"
    b" x\n\nmessage\n")
put("fuzz_gitobj", b"\x01tree " + HEX.upper().encode() + b"\nauthor A <a@x> 1 +0000\n")
put("fuzz_gitobj", b"\x02object " + HEX.encode() + b"\ntype commit\ntag v1.0\ntagger T <t@x> 3 +0000\n\nx\n")
put("fuzz_gitobj", b"\x02object " + HEX.encode() + b"\ntype tag\ntag \n")
snp = (b"alias HEAD\x0015:refs/heads/main" + b"dangling refs/heads/gone\x000:" +
       b"revision refs/heads/main\x0020:" + ID + b"release refs/tags/v1\x0020:" + ID)
put("fuzz_gitobj", b"\x03" + snp)
put("fuzz_gitobj", b"\x03revision b\x0020:" + ID + b"revision a\x00020:" + ID)

# ---- config ------------------------------------------------------------------------------
put("fuzz_config", json.dumps({"listen": "127.0.0.1:8080", "max_upload_size": "2G",
    "max_json_size": "1M", "admin_token": "a-secret-token", "database_url":
    "postgresql://u:pw-secret@localhost/db", "log_level": "info", "job_lease": 30}))
put("fuzz_config", json.dumps({"max_upload_size": "9999999999T", "admin_token": "s3cret-value",
                               "worker_token": 5}))
put("fuzz_config", b'{"gzip_level": 13, "user_tokens": "abcdef,ghijkl", "bits_signing_keys": "k:v"}')
put("fuzz_config", b'{"listen": "x", "listen": "y"}')

# ---- archives ----------------------------------------------------------------------------


def tar_bytes(entries, mode="w"):
    if mode == "w:gz":  # gzip without a timestamp: the same seed on every run
        return gzip.compress(tar_bytes(entries), mtime=0)
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode, format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime = 315532800
            if kind == "file":
                ti.size = len(data)
                ti.mode = 0o644
                t.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                ti.linkname = data
            ti.mode = 0o755 if kind == "dir" else 0o644
            t.addfile(ti)
    return b.getvalue()


good = [("d", "dir", None), ("d/a.txt", "file", b"hello\n"), ("d/x.sh", "file", b"#!/bin/sh\n"),
        ("d/l", "sym", "a.txt"), ("d/h", "hard", "d/a.txt"), ("./e/f", "file", b"")]
put("fuzz_ingest", tar_bytes(good))
put("fuzz_ingest", tar_bytes(good, "w:gz"))
put("fuzz_ingest", tar_bytes(good, "w:bz2"))
put("fuzz_ingest", tar_bytes(good, "w:xz"))
for bad in ([("../evil", "file", b"x")], [("/etc/passwd", "file", b"x")],
            [("a/../../b", "file", b"x")], [("l", "sym", "/etc"), ("l/passwd", "file", b"x")],
            [("l", "sym", "../.."), ("l/x", "file", b"x")], [("dev", "chr", None)],
            [("f", "fifo", None)], [("h", "hard", "/etc/shadow")], [("a", "file", b"1"), ("a/b", "file", b"2")],
            [("a//b", "file", b"x")], [("./.", "file", b"x")], [(".git/config", "file", b"x")]):
    put("fuzz_ingest", tar_bytes(bad))


def zip_bytes(entries, method=zipfile.ZIP_DEFLATED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in entries:
            zi = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            zi.compress_type = method
            zi.external_attr = (0o100644 << 16)
            z.writestr(zi, data)
    return b.getvalue()


put("fuzz_ingest", zip_bytes([("a/b.txt", b"hello\n"), ("c", b"")]))
put("fuzz_ingest", zip_bytes([("../../x", b"x")]))
put("fuzz_ingest", zip_bytes([("/abs", b"x")]))
put("fuzz_ingest", zip_bytes([("a\\..\\..\\b", b"x")]))
# A zip bomb: 16 MiB of zeros in a few KiB (past fuzz_ingest's 8 MiB limit: a 413).
put("fuzz_ingest", zip_bytes([("bomb", b"\0" * (16 << 20))]))
# A nested one: a zip holding a zip is stored as a file, not opened.
put("fuzz_ingest", zip_bytes([("inner.zip", zip_bytes([("bomb", b"\0" * (1 << 20))]))]))
# Past the entry limit (2,000 in fuzz_ingest): a 413.
put("fuzz_ingest", tar_bytes([("f%d" % i, "file", b"") for i in range(2001)], "w:gz"))
with open(os.path.join(ROOT, "tests", "data", "utf8-flag.zip"), "rb") as f:
    put("fuzz_ingest", f.read())
