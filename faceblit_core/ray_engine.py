"""Ray as the engine of chunked renders: each chunk is one Ray task (``--engine ray``).

The driver (the ``faceblit`` process) keeps the work folder and its manifest
(:mod:`faceblit_core.chunks`); the tasks only compute. What travels:

* the style asset — ``ray.put`` once per run, read from the object store by every
  task (zero-copy for its numpy arrays on one node; the 64 MB lookup table is not
  rebuilt per task);
* the input file's bytes — ``ray.put`` once per input, written by a task to a
  temporary file on its node (workers need no shared storage and no copy of the input);
* each chunk's encoded bytes — the task's return value, written into the work folder
  and recorded in the manifest by the driver as soon as it arrives, so a finished
  chunk survives a crash of the driver and is never rendered twice;
* progress — while a bar is shown, each task reports the frames it has written to a
  small actor (:class:`faceblit_core.ray_progress.FrameCounter`) every
  :data:`PROGRESS_INTERVAL` s, and the driver, while it waits for the tasks, moves one
  bar over all frames of the render (of the batch, on Ray) by what they reported:
  the bar follows the frames, not only the finished chunks.

Chosen over shared storage because it needs nothing mounted on the workers; the price
is that the input and the output chunks pass through the object store (an encoded
10 s chunk: a few MB). A task asks ``num_cpus=1`` (and ``num_gpus=1`` with
``--device cuda``) and is retried ``max_retries`` times when its worker dies.

Ray is optional (``pip install 'faceblit[ray]'``); it is imported lazily so the
local engine does not pay its import time.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
import warnings
import weakref
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from faceblit_core import media
from faceblit_core.errors import EnvironmentProblem, FaceblitError
from faceblit_core.media.outputs import process_gone
from faceblit_core.ray_progress import FrameCounter
from faceblit_core.setup import FrameProgress, make_backend, resolve_device
from faceblit_core.stylizer import FrameStylizer

#: Retries of a chunk task whose worker died (Ray's ``max_retries``).
MAX_RETRIES = 3
#: Seconds to wait for a TCP connection to ``--ray-address`` before calling it unreachable.
CONNECT_TIMEOUT = 5.0
#: Seconds between a task's reports of its frames, and between the driver's reads of them
#: (while a bar is shown): the bar lags the frames by about this, for two small actor calls a second.
PROGRESS_INTERVAL = 0.5


def check_installed() -> None:
    """Raise :class:`EnvironmentProblem` (exit 6) when Ray cannot be imported."""
    try:
        import ray  # noqa: F401  (lazy: optional dependency, ~1 s to import)
    except ImportError:
        raise EnvironmentProblem("--engine ray: Ray is not installed; pip install 'faceblit[ray]' (or use --engine local)") from None


def connect(address: str | None, device: str) -> None:
    """Join (or start) the Ray instance the chunks run on; check it can run them.

    Parameters
    ----------
    address : str or None
        ``None``: a running ``ray.init`` of this process, else a new local instance;
        ``auto``: the cluster this machine belongs to; ``host:port`` / ``ray://host:10001``.
    device : str
        The ``--device`` asked for: ``cuda…`` needs a GPU in the cluster.

    Raises
    ------
    EnvironmentProblem
        Ray missing, the address unreachable, no GPU in the cluster for ``cuda`` (exit 6).
    """
    check_installed()
    import ray

    if not ray.is_initialized():
        _check_reachable(address)
        # ray.init replaces the SIGTERM handler by one calling sys.exit(15); faceblit's own
        # (exit 143, outputs cleaned up) must stay.
        main = threading.current_thread() is threading.main_thread()
        old = signal.getsignal(signal.SIGTERM) if main else None
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     configure_logging=False)
        except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError… for a bad address
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EnvironmentProblem(f"--ray-address {address or '(local)'}: cannot reach a Ray cluster ({reason})") from None
        finally:
            if main and old is not None:
                signal.signal(signal.SIGTERM, old)
    if device.startswith("cuda") and ray.cluster_resources().get("GPU", 0) < 1:
        raise EnvironmentProblem(f"--device {device}: the Ray cluster has no GPU; use --device cpu or add GPU workers")


def _check_reachable(address: str | None) -> None:
    """Fail in seconds on a ``HOST:PORT`` nobody listens on (``ray.init`` would retry for minutes).

    Raises
    ------
    EnvironmentProblem
        The address does not parse or no TCP connection opens within ``CONNECT_TIMEOUT`` s.
    """
    if address is None or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[1] if "://" in address else address
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except ValueError:
        raise EnvironmentProblem(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT") from None
    except OSError as e:
        raise EnvironmentProblem(f"--ray-address {address}: cannot reach a Ray cluster ({e.strerror or type(e).__name__})") from None


def shutdown() -> None:
    """Disconnect from Ray (a local instance this process started stops, with its tasks)."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def render_chunks(input, info, asset, config, *, device: str, plan, todo, warmup: int, key_interval: int, side_by_side: bool, ext: str,
                  render: Callable, address: str | None = None,
                  progress: FrameProgress | None = None) -> Iterator[tuple[int, bytes, dict]]:
    """Run chunks ``todo`` of ``plan`` as Ray tasks; yield ``(index, encoded bytes, stats)`` as each finishes.

    ``render`` renders one chunk (:func:`faceblit_core.chunks.render_segment`); it is
    passed in, not imported, because chunks calls this module (no import circle).

    ``progress`` (its total already holding these chunks' frames) is moved by the frames
    the tasks report while they render, every :data:`PROGRESS_INTERVAL` s, and by the rest
    of a chunk's frames when it finishes; per frame, not per chunk. Only while it
    :attr:`~faceblit_core.setup.FrameProgress.shown`: otherwise the tasks report nothing.

    Raises
    ------
    FaceblitError
        The first failed task's error (the others are cancelled).
    """
    import ray

    connect(address, device)
    if not todo:
        return
    asset_ref = ray.put(_portable(asset))
    input_ref = ray.put(Path(input).read_bytes())
    task = ray.remote(_render_chunk_task).options(
        num_cpus=1, num_gpus=1 if device.startswith("cuda") else 0, max_retries=MAX_RETRIES, retry_exceptions=False,
    )
    counter = _frame_counter(progress) if progress is not None and progress.shown else None
    render_id = uuid.uuid4().hex
    pending = {task.remote(input_ref, Path(str(input)).suffix, asset_ref, config, device, plan[i][0], plan[i][1], warmup,
                           key_interval, side_by_side, ext, render,
                           (counter, render_id, i, PROGRESS_INTERVAL) if counter is not None else None): i for i in todo}
    counted: dict[int, int] = {}  # frames of each chunk counted on the bar so far

    def count(index: int, frames: int) -> None:
        if progress is not None and frames > counted.get(index, 0):
            progress.update(frames - counted.get(index, 0))
            counted[index] = frames

    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_INTERVAL if counter is not None else None)
            if counter is not None:
                try:
                    reported = ray.get(counter.counts.remote(render_id))
                except ray.exceptions.RayError:
                    # The bar must never stop a render: without the actor it moves by finished chunks.
                    counter, reported = None, {}
                running = set(pending.values())
                for index, frames in reported.items():
                    if index in running:
                        count(index, frames)
            for ref in done:
                index = pending.pop(ref)
                data, stats = _get(ref)
                count(index, int(stats["frames"]))
                yield index, data, stats
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if counter is not None:
            counter.forget.remote(render_id)


#: The FrameCounter actor of each bar: the renders sharing a bar (a batch's threads) share
#: one actor; it lives as long as the bar (Ray ends an actor when its last handle goes).
_counters: "weakref.WeakKeyDictionary[FrameProgress, object]" = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


def _frame_counter(progress: FrameProgress):
    """The :class:`~faceblit_core.ray_progress.FrameCounter` actor of ``progress``, made on first use.

    ``num_cpus=0``: it never takes a chunk task's core.
    """
    import ray

    with _counters_lock:
        if progress not in _counters:
            _counters[progress] = ray.remote(FrameCounter).options(num_cpus=0).remote()
        return _counters[progress]


def _get(ref):
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.as_instanceof_cause()
        if isinstance(cause, FaceblitError):
            raise cause from None
        raise


def _reporter(counter, render_id: str, index: int, interval: float) -> Callable[[], None]:
    """``on_frame`` of a chunk task: count the frames written, send the count every ``interval`` s
    (fire-and-forget: the render never waits for the driver)."""
    written, last = 0, time.monotonic()

    def on_frame() -> None:
        nonlocal written, last
        written += 1
        now = time.monotonic()
        if now - last >= interval:
            counter.report.remote(render_id, index, written)
            last = now

    return on_frame


def _portable(asset):
    """The asset with its lookup table as a plain array (the cache's memory map and its lock stay here)."""
    return dataclasses.replace(asset, lut=np.ascontiguousarray(asset.lut))


#: Name of a worker's temporary folder (the input's copy, the chunk): PREFIX + PID + "-" + random.
CHUNK_FOLDER_PREFIX = "faceblit-chunk-"


def remove_stale_chunk_folders(folder: str | None = None) -> list[str]:
    """Remove the temporary folders of chunk tasks whose worker process is gone.

    A worker killed in the middle of a chunk (SIGKILL, out of memory, a node that went
    away: Ray then retries the task elsewhere) cannot remove its folder, which holds a
    whole copy of the input. Each task sweeps its machine's temporary folder before it
    starts; a folder whose process still runs is never touched.

    Returns
    -------
    list of str
        The folders removed.
    """
    folder = folder or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        if not name.startswith(CHUNK_FOLDER_PREFIX):
            continue
        pid = name[len(CHUNK_FOLDER_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not process_gone(int(pid)):
            continue
        path = os.path.join(folder, name)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _render_chunk_task(input_bytes, suffix, asset, config, device, start, end, warmup, key_interval, side_by_side, ext, render_segment, report):
    """One chunk, in a Ray worker: the input to a temporary file, render, return the encoded bytes.

    ``report``: None, or ``(FrameCounter actor, render id, chunk index, interval s)`` to
    tell the driver's bar the frames written so far, at most every ``interval`` s.
    """
    # Ray gives a task the cores it asked for (OMP_NUM_THREADS); more torch threads oversubscribe them.
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    device = resolve_device(device)
    remove_stale_chunk_folders()
    with tempfile.TemporaryDirectory(prefix=f"{CHUNK_FOLDER_PREFIX}{os.getpid()}-") as tmp:
        src = Path(tmp) / f"input{suffix}"
        src.write_bytes(input_bytes)
        info = media.probe(src)
        backend = make_backend(config, None, device, video=True)
        with warnings.catch_warnings():
            # The asset's arrays come read-only from the object store; nothing writes to them.
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            stylizer = FrameStylizer(asset, config, fps=float(info.fps), backend=backend, device=device)
        out = Path(tmp) / f"chunk{ext}"
        stats = render_segment(info, stylizer, out, start=start, end=end, warmup=warmup, key_interval=key_interval, config=config,
                               side_by_side=side_by_side,
                               on_frame=_reporter(*report) if report is not None else None)
        stats["device"] = device
        return out.read_bytes(), stats
