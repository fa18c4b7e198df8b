"""Bounded load test of `spacy-emotion serve` on loopback (asyncio + httpx).

Sends a fixed number of ``POST /predict`` requests from a fixed number of
concurrent clients, then stops: requests/s, p50/p90/p99 latency, errors and
the server's mean model batch size (from ``/health``). It only ever talks to
127.0.0.1 / localhost / ::1.

Either against a running server::

    python benchmarks/load_test.py --url http://127.0.0.1:8000

or starting its own server (``python -m spacy_emotion serve``) for each mode,
one after the other, on a free loopback port::

    python benchmarks/load_test.py --model training/trf/model-best \\
        --modes batching,no-batching --requests 2000 --concurrency 32 --markdown

Requests the server sheds when its queue is full (503 with ``Retry-After``,
``--max-queue``) are counted apart from the errors, as ``shed``; they are
not retried. ``--record DIR`` writes ``load_test.json`` (with the date,
machine, commit and command) and ``load_test.md`` into DIR.

Exit code: 0 when every request succeeded, 1 when some failed, were shed or
the run hit ``--timeout``, 2 for bad arguments (e.g. a non-loopback URL).
"""

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.measure import percentile  # noqa: E402
from benchmarks.report import git_commit, machine_info  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TEXTS = [
    "i feel so lonely since my best friend moved away",
    "i am thrilled that we finally won the match",
    "i adore the way my grandmother tells stories",
    "i am furious that they cancelled my flight again without a word",
    "i feel nervous about the exam tomorrow morning",
    "i was amazed to see snow in the middle of may",
    "i feel miserable and tired of everything today",
    "what a cheerful morning, the sun is out and the coffee is great",
    "i feel so tender and caring towards my little brother",
    "i am really annoyed by the noise from the flat upstairs",
    "i am terrified of the storm that is coming tonight",
    "i was shocked when she told me the news",
    "i feel gloomy when it rains for days",
    "i am glad you could come to the party",
    "i love spending sundays with my family",
    "i feel mad at myself for forgetting her birthday",
]


def check_loopback(url: str) -> str:
    """RETURNS the URL without a trailing slash; RAISES ValueError unless it is loopback http."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise ValueError(f"{url}: the load test only targets http://127.0.0.1 / localhost / ::1")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _health(client: httpx.AsyncClient) -> Dict[str, Any]:
    response = await client.get("/health")
    response.raise_for_status()
    return response.json()


async def run_load(url: str, requests: int, concurrency: int, timeout: float, warmup: int = 8) -> Dict[str, Any]:
    """Send `requests` POST /predict from `concurrency` clients; RETURNS the figures."""
    latencies: List[float] = []
    errors: List[str] = []
    shed = 0
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0, trust_env=False) as client:

        async def one(i: int) -> None:
            nonlocal shed
            text = TEXTS[i % len(TEXTS)]
            start = time.perf_counter()
            try:
                response = await client.post("/predict", json={"text": text})
                if response.status_code == 503 and "Retry-After" in response.headers:
                    shed += 1  # the server's overload answer, counted apart from errors
                    return
                body = response.json()
                if response.status_code != 200 or len(body.get("cats", {})) != 6 or "emotion" not in body:
                    errors.append(f"{response.status_code}: {str(body)[:200]}")
                    return
            except (httpx.HTTPError, ValueError) as err:
                errors.append(f"{type(err).__name__}: {err}")
                return
            latencies.append(time.perf_counter() - start)

        async def client_loop() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                await one(i)

        for i in range(warmup):  # load caches, open a connection; not counted
            await client.post("/predict", json={"text": TEXTS[i % len(TEXTS)]})
        before = (await _health(client)).get("batching", {})
        started = time.perf_counter()
        workers = [asyncio.create_task(client_loop()) for _ in range(concurrency)]
        done, pending = await asyncio.wait(workers, timeout=timeout)
        for task in pending:
            task.cancel()
        elapsed = time.perf_counter() - started
        timed_out = bool(pending)
        after = (await _health(client)).get("batching", {}) if not timed_out else {}
    # the server's counters since the start (none after a timeout: the health check is skipped)
    calls = after["model_calls"] - before.get("model_calls", 0) if after else 0
    texts = after["texts"] - before.get("texts", 0) if after else 0
    return {
        "url": url,
        "requests": requests,
        "concurrency": concurrency,
        "ok": len(latencies),
        "errors": len(errors) + (requests - len(latencies) - len(errors) - shed if timed_out else 0),
        "shed": shed,
        "error_samples": errors[:5],
        "timed_out": timed_out,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(latencies) / elapsed, 2) if elapsed else 0.0,
        "p50_ms": round(1000 * percentile(latencies, 50), 1),
        "p90_ms": round(1000 * percentile(latencies, 90), 1),
        "p99_ms": round(1000 * percentile(latencies, 99), 1),
        "batching": after.get("enabled"),
        "mean_texts_per_model_call": round(texts / calls, 2) if calls else None,
    }


class Server:
    """`python -m spacy_emotion serve` in a subprocess on a free loopback port."""

    def __init__(self, model: str, batching: bool, extra: List[str], startup_timeout: float = 300.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [
            sys.executable,
            "-m",
            "spacy_emotion",
            "serve",
            "--model",
            model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-access-log",
            "--log-level",
            "warning",
            "--batching" if batching else "--no-batching",
            *extra,
        ]
        self.startup_timeout = startup_timeout
        self.proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> "Server":
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"The server exited with {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise RuntimeError(f"The server did not answer /health within {self.startup_timeout:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def markdown(results: List[Dict[str, Any]]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| mode | requests | clients | errors | shed (503) | req/s | p50 ms | p90 ms | p99 ms | texts/model call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        mode = {True: "batching", False: "no batching"}.get(r["batching"], "?")
        lines.append(
            f"| {mode} | {r['requests']} | {r['concurrency']} | {r['errors']} | {r['shed']} | {r['requests_per_s']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['mean_texts_per_model_call']} |"
        )
    return "\n".join(lines)


def write_record(folder: Path, results: List[Dict[str, Any]], argv: List[str]) -> None:
    """The results with what they were measured on, as JSON and Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": git_commit(),
        "machine": machine_info("cpu"),
        "command": "python benchmarks/load_test.py " + " ".join(argv),
        "results": results,
    }
    (folder / "load_test.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf8")
    machine = record["machine"]
    summary = (
        f"{record['date']}, commit `{record['commit']}`, {machine.get('cpu', '?')} ({machine.get('cpu_count')} CPUs, "
        f"load average at start {machine.get('load_average_at_start')}).\n\n`{record['command']}`\n\n"
    )
    (folder / "load_test.md").write_text(summary + markdown(results) + "\n", encoding="utf8")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="A running server on loopback, e.g. http://127.0.0.1:8000")
    target.add_argument("--model", help="Start `spacy-emotion serve --model MODEL` for each mode")
    parser.add_argument(
        "--modes", default="batching,no-batching", help="With --model: comma-separated batching, no-batching"
    )
    parser.add_argument("--requests", type=int, default=2000, help="Requests per mode (default 2000)")
    parser.add_argument("--concurrency", type=int, default=32, help="Concurrent clients (default 32)")
    parser.add_argument("--timeout", type=float, default=600.0, help="Give up on a mode after this many seconds")
    parser.add_argument(
        "--startup-timeout", type=float, default=300.0, help="With --model: wait this long for the server to start"
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="Extra `serve` argument (repeatable), e.g. --server-arg=--batch-wait-ms=5",
    )
    parser.add_argument("--json", dest="json_path", help="Also write the results as JSON to this file")
    parser.add_argument("--markdown", action="store_true", help="Print a Markdown table")
    parser.add_argument(
        "--record", help="Write load_test.json (results, date, machine, commit, command) and load_test.md here"
    )
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")
    results = []
    try:
        if args.url:
            results.append(
                asyncio.run(run_load(check_loopback(args.url), args.requests, args.concurrency, args.timeout))
            )
        else:
            modes = [m.strip() for m in args.modes.split(",") if m.strip()]
            if not modes or set(modes) - {"batching", "no-batching"}:
                parser.error("--modes: batching and/or no-batching")
            for mode in modes:
                with Server(args.model, mode == "batching", args.server_arg, args.startup_timeout) as server:
                    results.append(asyncio.run(run_load(server.url, args.requests, args.concurrency, args.timeout)))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for result in results:
        print(json.dumps(result))
    if args.markdown:
        print(markdown(results))
    if args.record:
        write_record(Path(args.record), results, argv if argv is not None else sys.argv[1:])
    if args.json_path:
        os.makedirs(os.path.dirname(os.path.abspath(args.json_path)), exist_ok=True)
        with open(args.json_path, "w", encoding="utf8") as fh:
            json.dump(results, fh, indent=2)
    return 0 if all(r["errors"] == 0 and r["shed"] == 0 and not r["timed_out"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
