"""Served detectors under load (benchmark.py --triton): C clients, each sending one image file
per request and waiting for the answer before the next, as an application's threads do.
Throughput counts the answers completed inside the measured window; the latencies are those of
the requests that started in it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tfod_trt.bench.timing import latency_stats
from tfod_trt.serve.client import TritonPool


def bench_served(pool: TritonPool, files: list[bytes], concurrency: int, warmup_s: float,
                 duration_s: float) -> dict:
    """One measurement at ``concurrency`` clients spread over the pool's live servers."""
    servers = [server.url for server in pool.servers if not server.failed]
    done: list[list[tuple[float, float]]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    stop = threading.Event()

    def client(index: int) -> None:
        session = pool.client(servers[index % len(servers)])
        turn = index
        while not stop.is_set():
            start = time.perf_counter()
            try:
                pool.infer_bytes(session, [files[turn % len(files)]])
            except Exception as err:  # noqa: BLE001 - reported in the result, the run stops
                errors.append(f"{type(err).__name__}: {err}")
                stop.set()
                return
            done[index].append((start, time.perf_counter()))
            turn += concurrency

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    window_start = time.perf_counter() + warmup_s
    time.sleep(warmup_s + duration_s)
    window_end = time.perf_counter()
    stop.set()
    for thread in threads:
        thread.join()
    return _entry(pool, concurrency, done, (window_start, window_end), errors)


def _entry(pool: TritonPool, concurrency: int, done: list[list[tuple[float, float]]],
           window: tuple[float, float], errors: list[str]) -> dict:
    start, end = window
    finished = [stop for runs in done for _, stop in runs if start <= stop <= end]
    latencies = [(stop - begin) * 1e3 for runs in done for begin, stop in runs
                 if start <= begin <= end]
    entry = {"kind": "triton", "source": ",".join(s.url for s in pool.servers),
             "model": pool.model, "concurrency": concurrency, "errors": errors[:5],
             "images": len(finished), "seconds": end - start,
             "images_per_s": len(finished) / (end - start)}
    if latencies:
        entry["latency_ms"] = latency_stats(latencies)
    return entry


def read_files(paths: list[Path]) -> list[bytes]:
    """The image files sent, read once before the clients start."""
    return [path.read_bytes() for path in paths]
