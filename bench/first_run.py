"""A clean clone's first run, timed: install, first answer, the start page's first analysis, all default exports.

    python bench/first_run.py [--keep] [--port N] [--branch B]

Clones this repository (its committed HEAD) into a temporary folder, runs ``make .venv/.base`` there
(a fresh virtual environment; pip's own download cache may be reused), starts ``resviz serve`` on
127.0.0.1 and measures, from the end of the install: the first answer of ``/``; the first analysis the
start page makes (the default model, resnet20, on the sample shapes-32, retried after each 503 as the
page does, following Retry-After); and the moment the last default model's export is done
(GET /api/exports). Prints a table and writes JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
START_MODEL = "resnet20"
START_SAMPLE = "shapes-32.png"
TARGETS = {"url_s": 10.0, "first_analysis_s": 60.0}
LIMIT_S = 1800  # every wait below stops by itself after this


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _post(url: str, body: bytes = b"", ctype: str = "", timeout: float = 120) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _multipart(field: str, filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _retrying(call, deadline: float) -> tuple[int, bytes, int]:  # noqa: ANN001
    """Call until the answer is not a 503, sleeping Retry-After between (as the page does); (status, body, 503s)."""
    waits = 0
    while True:
        status, headers, body = call()
        retry = {k.lower(): v for k, v in headers.items()}.get("retry-after")
        if status != 503 or retry is None or time.monotonic() > deadline:
            return status, body, waits
        waits += 1
        time.sleep(min(30.0, max(1.0, float(retry))))


def run(args: argparse.Namespace) -> dict:
    """Clone, install, serve and time; return the measurements."""
    tmp = Path(tempfile.mkdtemp(prefix="resviz-first-run-"))
    clone = tmp / "resviz"
    branch = (
        args.branch
        or subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "--abbrev-ref", "HEAD"], text=True).strip()
    )
    commit = subprocess.check_output(["git", "-C", str(REPO), "rev-parse", "HEAD"], text=True).strip()
    subprocess.run(["git", "clone", "--quiet", "--branch", branch, str(REPO), str(clone)], check=True)
    out: dict = {"commit": commit, "branch": branch, "cpus": os.cpu_count(), "load_before": os.getloadavg()}
    server = None
    log = (tmp / "server.log").open("wb")
    try:
        t0 = time.monotonic()
        subprocess.run(["make", "-C", str(clone), ".venv/.base", f"PYTHON={args.python}"], check=True, timeout=LIMIT_S)
        installed = time.monotonic()
        out["install_s"] = round(installed - t0, 1)

        port = args.port or _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "RESVIZ_DATA_DIR": str(tmp / "data"), "PYTHONUNBUFFERED": "1"}
        env.pop("RESVIZ_MODELS_DIR", None)  # the clone's own (empty) models/ folder
        cmd = [str(clone / ".venv" / "bin" / "resviz"), "serve", "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(cmd, cwd=clone, env=env, stdout=log, stderr=log)
        deadline = installed + LIMIT_S
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with {server.returncode}; see {tmp / 'server.log'}")
            try:
                status, _, _ = _get(f"{base}/", timeout=2)
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        out["url_s"] = round(time.monotonic() - installed, 2)

        sample = (clone / "static" / "samples" / START_SAMPLE).read_bytes()
        body, ctype = _multipart("image", START_SAMPLE, sample)
        status, up, _ = _retrying(lambda: _post(f"{base}/api/images", body, ctype), deadline)
        if status != 201:
            raise RuntimeError(f"upload failed: {status} {up[:200]!r}")
        image_id = json.loads(up)["id"]
        status, _, manifest_503 = _retrying(lambda: _get(f"{base}/api/models/{START_MODEL}", timeout=60), deadline)
        url = f"{base}/api/models/{START_MODEL}/analyze?image_id={image_id}"
        status, result, analysis_503 = _retrying(lambda: _post(url), deadline)
        if status != 200:
            raise RuntimeError(f"the first analysis failed: {status} {result[:300]!r}")
        out["first_analysis_s"] = round(time.monotonic() - installed, 2)
        out["first_analysis_503s"] = manifest_503 + analysis_503
        out["first_analysis_layers"] = len(json.loads(result)["layers"])

        snapshot: dict = {}
        while time.monotonic() < deadline:
            status, _, raw = _get(f"{base}/api/exports")
            snapshot = json.loads(raw)
            if status == 200 and not snapshot["busy"]:
                break
            time.sleep(1)
        out["all_defaults_s"] = round(time.monotonic() - installed, 1)
        out["exports"] = [
            {"key": j["key"], "state": j["state"], "graphs": len(j["graphs_done"]), "error": j["error"]}
            for j in reversed(snapshot.get("recent", []))
        ]
    finally:
        if server is not None and server.poll() is None:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def table(out: dict) -> str:
    """The measurements as a text table, with the targets."""
    rows = [
        ("install (fresh venv, make .venv/.base)", "install_s", None),
        ("first answer of / after the install", "url_s", TARGETS["url_s"]),
        ("start page's first analysis after the install", "first_analysis_s", TARGETS["first_analysis_s"]),
        ("all default models exported after the install", "all_defaults_s", None),
    ]
    lines = [f"{'step':<48} {'seconds':>8} {'target':>8}  ok", "-" * 72]
    for label, key, target in rows:
        value = out.get(key)
        ok = "" if target is None or value is None else ("yes" if value <= target else "NO")
        shown = f"{value:8.1f}" if value is not None else "       -"
        lines.append(f"{label:<48} {shown} {'' if target is None else f'<= {target:g}':>8}  {ok}")
    lines.append(f"(503 answers before the first analysis: {out.get('first_analysis_503s')}; cpus {out.get('cpus')})")
    for job in out.get("exports", []):
        lines.append(f"  export {job['key']:<22} {job['state']:<7} {job['graphs']} graphs {job['error'] or ''}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the first-run bench, print its table, write its JSON."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep the temporary clone")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--branch", default=None, help="branch to clone (default: the current one)")
    p.add_argument("--python", default="python3", help="interpreter that makes the venv")
    args = p.parse_args(argv)
    out = run(args)
    print(table(out))
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"first_run-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path.relative_to(REPO)}")
    ok = all(out.get(k) is not None and out[k] <= v for k, v in TARGETS.items())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
