#!/usr/bin/env python3
"""Write the benign corpus the DLP unit test must pass without a finding (deterministic: a
fixed seed). Shapes of real traffic from a coding agent: npm registry metadata, git smart-HTTP
request bodies, API calls with multilingual text, HTML with inline images, minified JS,
lock files and URLs full of hashes, UUIDs and digests."""
import base64, hashlib, json, os, random, uuid

R = random.Random(1313)
here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "benign")
os.makedirs(out, exist_ok=True)

def rb(n):
    return bytes(R.getrandbits(8) for _ in range(n))

def hexs(n):
    return rb(n).hex()

def w(name, text):
    with open(os.path.join(out, name), "w", encoding="utf-8") as f:
        f.write(text)

# npm registry metadata (GET /pkg with the full document, as `npm install` fetches it)
versions = {}
times = {}
for major in range(1, 4):
    for minor in range(0, 12):
        v = f"{major}.{minor}.{R.randrange(0, 9)}"
        tgz = rb(2000)
        versions[v] = {
            "name": "left-pad-ultra", "version": v,
            "description": "String padding with unicode width support",
            "main": "index.js", "license": "MIT",
            "dependencies": {"string-width": f"^{R.randrange(1,6)}.0.0", "ansi-regex": "^5.0.1"},
            "dist": {
                "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode(),
                "shasum": hashlib.sha1(tgz).hexdigest(),
                "tarball": f"https://registry.npmjs.org/left-pad-ultra/-/left-pad-ultra-{v}.tgz",
                "fileCount": R.randrange(3, 40), "unpackedSize": R.randrange(1000, 900000),
                "signatures": [{"keyid": "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
                                "sig": "MEUCI" + base64.b64encode(rb(64)).decode()}],
            },
            "_npmUser": {"name": "someone", "email": "someone@example.com"},
            "gitHead": hexs(20),
            "_id": f"left-pad-ultra@{v}",
        }
        times[v] = f"20{R.randrange(15,26)}-0{R.randrange(1,9)}-1{R.randrange(0,9)}T12:3{R.randrange(0,9)}:00.{R.randrange(100,999)}Z"
w("npm-metadata.json", json.dumps({"_id": "left-pad-ultra", "_rev": f"42-{hexs(16)}",
    "name": "left-pad-ultra", "dist-tags": {"latest": "3.11.2"}, "versions": versions,
    "time": times, "readme": "# left-pad-ultra\n\nPads strings. 日本語もOK. Ünïcödé.\n"}, indent=1))

# npm lock file
lock = {"name": "app", "lockfileVersion": 3, "packages": {}}
for i in range(150):
    name = f"pkg-{hexs(3)}"
    lock["packages"][f"node_modules/{name}"] = {
        "version": f"{R.randrange(0,20)}.{R.randrange(0,30)}.{R.randrange(0,50)}",
        "resolved": f"https://registry.npmjs.org/{name}/-/{name}-1.0.{i}.tgz",
        "integrity": "sha512-" + base64.b64encode(rb(64)).decode(),
    }
w("package-lock.json", json.dumps(lock, indent=2))

# git smart-HTTP: the upload-pack request body (want/have negotiation) and a receive-pack
# command list, pkt-line framed
def pkt(s):
    return f"{len(s) + 4:04x}{s}"
body = pkt(f"want {hexs(20)} multi_ack_detailed no-done side-band-64k thin-pack ofs-delta deepen-since deepen-not agent=git/2.39.2\n")
for _ in range(60):
    body += pkt(f"want {hexs(20)}\n")
body += "0000"
for _ in range(200):
    body += pkt(f"have {hexs(20)}\n")
body += pkt("done\n")
w("git-upload-pack.txt", body)
w("git-receive-pack.txt", pkt(f"{hexs(20)} {hexs(20)} refs/heads/main\0 report-status side-band-64k agent=git/2.39.2\n") + "0000" + "PACK" + base64.b64encode(rb(3000)).decode())
w("git-protocol-v2.txt", pkt("command=fetch\n") + pkt("agent=git/2.43.0\n") + pkt("object-format=sha1\n") + "0001" + "".join(pkt(f"want {hexs(20)}\n") for _ in range(30)) + pkt("ofs-delta\n") + "0000")

# API calls: an LLM request with multilingual text, GitHub REST calls
msgs = [
    "Please refactor the function `parse_config` so it returns -EINVAL on errors.",
    "東京の天気はどうですか？明日は雨が降るかもしれません。",
    "Привет! Как дела? Проверь, пожалуйста, этот код.",
    "مرحبا، هل يمكنك مساعدتي في هذا البرنامج؟",
    "这个函数的时间复杂度是多少？请解释一下。",
    "Ça va? Je voudrais une explication détaillée, s'il vous plaît.",
    "Grüß Gott! Größenänderung der Straße: 4 km.",
    "हिन्दी में उत्तर दीजिए।  🎉🚀✨ emoji test",
    "The build id is " + str(uuid.UUID(int=R.getrandbits(128))) + " and commit " + hexs(20),
    "Order 12345, phone +1 555 123 4567, total 1,234.56 USD, ISBN 978-3-16-148410-0",
    "Timestamps: 1732881234567 1732881234 1732881234567891234, version 4.18.2, port 8443",
    "sha256:" + hexs(32) + " is the image digest; md5 " + hexs(16),
]
calls = []
for i in range(40):
    calls.append({"model": "claude-sonnet-4-5", "max_tokens": 4096, "stream": True,
                  "metadata": {"user_id": str(uuid.UUID(int=R.getrandbits(128)))},
                  "messages": [{"role": "user", "content": R.choice(msgs)},
                               {"role": "assistant", "content": R.choice(msgs)}]})
w("api-llm.json", "\n".join(json.dumps(c, ensure_ascii=False) for c in calls))
gh = [{"title": "Fix flaky test in CI", "body": f"Fails on {hexs(20)}; see run {R.randrange(10**9, 10**10)}",
       "head": f"fix/{hexs(4)}", "base": "main", "sha": hexs(20), "node_id": "PR_kwDO" + base64.b64encode(rb(12)).decode().rstrip('='),
       "id": R.randrange(10**9, 10**11), "created_at": "2026-11-29T16:00:00Z"} for _ in range(50)]
w("api-github.json", json.dumps(gh, indent=2))

# HTML with inline images and links
PNG = b"\x89PNG\r\n\x1a\n"
imgs = "".join('<img alt="logo %d" src="data:image/png;base64,%s">\n' % (i, base64.b64encode(PNG + rb(1500)).decode()) for i in range(12))
w("page.html", f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Docs</title>
<link rel="stylesheet" href="/static/app.{hexs(10)}.css" integrity="sha384-{base64.b64encode(rb(48)).decode()}" crossorigin="anonymous">
<script src="https://cdn.example.com/npm/vue@3.4.21/dist/vue.global.prod.js"></script></head>
<body><h1>Getting started</h1><p>Install with <code>npm i left-pad-ultra</code>. Questions? Ask in the forum.</p>
<p>Récupérez la clé depuis les paramètres — 設定からキーを取得してください.</p>
{imgs}<a href="/download/v1.2.3/tool-linux-amd64.tar.gz?checksum=sha256:{hexs(32)}">download</a>
<div data-id="{uuid.UUID(int=R.getrandbits(128))}" data-etag="W/&quot;{hexs(16)}&quot;">etag</div>
<footer>© 2026 Example Corp. Tel. 030 1234567. IBAN-like ref DE44 5001 0517 5407 3249 31</footer></body></html>
""")

# minified JS
parts = []
for i in range(400):
    parts.append(R.choice([
        f"function e{i}(t,n){{return t+n*{R.randrange(0, 10**6)}}}",
        f"var a{i}=\"{base64.b64encode(rb(R.randrange(8, 90))).decode()}\";",
        f"const k{i}=0x{hexs(4)},m{i}=4503599627370496,n{i}=9007199254740991,p{i}=1.7976931348623157e308;",
        f"e.exports={{id:\"{uuid.UUID(int=R.getrandbits(128))}\",hash:\"{hexs(32)}\"}};",
        f"t.prototype.render=function(){{return this.el.querySelector(\".x-{hexs(3)}\")}};",
        f"if(r>=0x7fffffff)throw new Error(\"overflow at \"+r);",
        f"window.__INITIAL_STATE__={{\"ts\":{R.randrange(10**12, 2*10**12)},\"n\":{R.randrange(10**15, 10**16)}}};",
        f"e.getItem(\"eyeColor\");e.eyes=2;",
    ]))
w("app.min.js", "".join(parts))

# URLs, lock files, checksums
urls = []
for i in range(300):
    urls.append(R.choice([
        f"http://deb.debian.org/debian/pool/main/c/curl/curl_7.88.1-10+deb12u{i % 9}_amd64.deb",
        f"https://files.pythonhosted.org/packages/{hexs(1)}/{hexs(1)}/{hexs(28)}/requests-2.31.0-py3-none-any.whl#sha256={hexs(32)}",
        f"https://github.com/org/repo/archive/{hexs(20)}.tar.gz",
        f"https://objects.githubusercontent.com/github-production-release-asset-2e65be/{R.randrange(10**8,10**9)}/{uuid.UUID(int=R.getrandbits(128))}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261129T160000Z&X-Amz-Expires=300&X-Amz-Signature={hexs(32)}&X-Amz-SignedHeaders=host",
        f"https://crates.io/api/v1/crates/serde/1.0.{i}/download",
        f"https://proxy.golang.org/github.com/!burnt!sushi/toml/@v/v1.{i}.0.zip",
        f"https://registry-1.docker.io/v2/library/debian/blobs/sha256:{hexs(32)}",
        f"https://example.com/api/v2/items/{R.randrange(10**12, 10**13)}?page={i}&cursor={base64.urlsafe_b64encode(rb(24)).decode()}",
    ]))
w("urls.txt", "\n".join(urls) + "\n")
w("Cargo.lock", "".join(f'[[package]]\nname = "crate{i}"\nversion = "0.{i}.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\nchecksum = "{hexs(32)}"\n\n' for i in range(200)))
w("requirements.txt", "".join(f"pkg{i}=={R.randrange(0,9)}.{R.randrange(0,30)} \\\n    --hash=sha256:{hexs(32)}\n" for i in range(150)))
w("go.sum", "".join(f"github.com/x/mod{i} v1.{i}.0 h1:{base64.b64encode(rb(32)).decode()}\n" for i in range(200)))
