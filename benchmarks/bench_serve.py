"""Load on `rnnflow serve`: N predict requests from C concurrent clients against one real server.

    python -m benchmarks.bench_serve                      # the tutorial's model, random weights
    python -m benchmarks.bench_serve --run runs/tutorial --requests 200 --clients 8

Starts `rnnflow serve RUN --port 0` in a subprocess (uvicorn, as a user runs it), then C threads,
each with its own keep-alive HTTP connection, send ``POST /api/predict`` requests (canvas pixels,
every 4th an uploaded PNG) until N have been sent. Every answer must be 200 with a prediction;
the script exits 1 otherwise. Prints one JSON line: latency percentiles (ms, from the client
side: send to last byte), throughput, and the machine (CPU model, ISA flags, load average).
Without ``--run`` the model is the tutorial preset's (BasicRNNCell, 128 units) with its initial
weights, written to a temporary run folder: the latency does not depend on the weights.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_run(folder: Path) -> Path:
    """A run folder holding the tutorial preset's model, untrained (best.safetensors)."""
    import torch

    from rnnflow.tasks.image import build_model
    from rnnflow.training import PRESETS, save_checkpoint

    torch.manual_seed(0)
    config = PRESETS["tutorial"]
    save_checkpoint(
        folder / "best.safetensors", model=build_model(config), config=config, progress={"step": 0}
    )
    return folder


def requests_bodies(n: int) -> list[tuple[str, bytes]]:
    """(content type, body) for n requests: random strokes; every 4th a PNG upload."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        pixels = np.zeros((28, 28), dtype=np.uint8)
        r0, c0 = rng.integers(3, 12, 2)
        pixels[r0 : r0 + rng.integers(8, 16), c0 : c0 + rng.integers(2, 10)] = 255
        if i % 4 == 3:
            buffer = io.BytesIO()
            Image.fromarray(255 - np.kron(pixels, np.ones((8, 8), np.uint8))).save(buffer, "PNG")
            out.append(("image/png", buffer.getvalue()))
        else:
            out.append(("application/json", json.dumps({"pixels": pixels.tolist()}).encode()))
    return out


def cpu() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx2|avx512f|avx512_bf16)\b", text)))
    return {
        "cpu": model[1].strip() if model else platform.processor(),
        "flags": flags,
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="run folder (default: the tutorial's model, untrained)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else make_run(Path(tmp))
        server = subprocess.Popen(
            [sys.executable, "-m", "rnnflow", "serve", str(run), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            port = None
            for line in server.stdout:
                match = re.search(r"open http://127\.0\.0\.1:(\d+)/", line)
                if match:
                    port = int(match[1])
                    break
            if port is None:
                print("bench_serve: the server did not start", file=sys.stderr)
                return 1
            bodies = requests_bodies(args.requests)
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()
            next_index = iter(range(len(bodies)))

            def client() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                while True:
                    with lock:
                        i = next(next_index, None)
                    if i is None:
                        break
                    kind, body = bodies[i]
                    start = time.perf_counter()
                    conn.request("POST", "/api/predict", body, {"Content-Type": kind})
                    response = conn.getresponse()
                    data = response.read()
                    elapsed = time.perf_counter() - start
                    ok = response.status == 200 and json.loads(data)["predictions"][0]["class"]
                    with lock:
                        latencies.append(elapsed)
                        if not ok:
                            failures.append(f"{response.status}: {data[:200]!r}")
                conn.close()

            load_before = os.getloadavg()
            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            wall = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - wall
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(timeout=10)
            server.stdout.close()

    ms = sorted(1000 * x for x in latencies)
    pct = lambda q: ms[min(len(ms) - 1, round(q / 100 * (len(ms) - 1)))]  # noqa: E731
    record = {
        "bench": "serve_predict",
        "requests": len(ms),
        "clients": args.clients,
        "failed": len(failures),
        "p50_ms": round(pct(50), 1),
        "p90_ms": round(pct(90), 1),
        "p99_ms": round(pct(99), 1),
        "max_ms": round(ms[-1], 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "requests_per_s": round(len(ms) / wall, 1),
        "model": "tutorial preset (BasicRNNCell 128), untrained" if not args.run else args.run,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        **cpu(),
        "python": platform.python_version(),
    }
    print(json.dumps(record))
    for failure in failures[:5]:
        print(f"bench_serve: failed request: {failure}", file=sys.stderr)
    return 1 if failures or len(ms) != args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
