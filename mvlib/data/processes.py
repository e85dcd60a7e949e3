"""A training stream's crops made in worker processes, out of reach of Python's GIL.

By default a stream makes its batches in threads, and threads share one interpreter lock. Pillow's resize and
numpy's conversions release it, but drawing each crop, Pillow's object handling and the Python between
them hold it -- about a quarter of a 160-px crop's time on the 2-core development machine -- so however
many cores a machine has, threads make at most a few times one thread's batches. Processes have a lock
each. Which is faster on a given machine is measured, not assumed: ``python bench/pipeline.py`` times
both, and ``MVLIB_LOADER=processes`` (or ``TrainStream(processes=True)``) picks them.

As in PyTorch's ``DataLoader``, the decoded images are written once to a memory-mapped file that every
worker maps; each worker crops a batch's images with the stream's own ``crops`` (the same pixels, to the
bit) into one of a few batch-sized uint8 slots of a second mapped file, from which the caller copies
them; it converts and mixes them in its thread, where numpy releases the GIL. Workers are started with
``spawn``, not forked: a fork of a process that runs JAX or CUDA can deadlock (Keras' own
``use_multiprocessing`` forks). Each imports this package, so it starts in a few seconds (6 s under JAX,
12 s under TensorFlow on the 2-core machine), once per stream.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import queue
import shutil
import signal
import tempfile
import threading
import weakref
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

_PREFIX = "mvlib-crops-"  # + the pid of the process that made the folder
_worker: dict = {}  # in a worker process: its stream and the mapped slots


class CropProcesses:
    """``processes`` worker processes that make ``make_stream(images, labels)``'s crops, a batch each at a time.

    ``make_stream`` must be picklable (a class or a top-level function with picklable arguments, e.g. a
    ``functools.partial`` of ``TrainStream``); its ``crops(epoch, index)`` must return uint8 images of
    ``batch_shape`` and labels. :meth:`crops` may be called from several threads at once.
    """

    def __init__(self, make_stream, images: np.ndarray, labels: np.ndarray, batch_shape: tuple[int, ...],
                 *, processes: int):
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        slots = processes  # one batch in flight per worker
        images = np.ascontiguousarray(images)
        slot_bytes = int(np.prod(batch_shape))
        memory_dir = _memory_dir(images.nbytes + slots * slot_bytes)
        _remove_stale_folders(memory_dir)
        self._dir = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=memory_dir))
        images_path, slots_path = self._dir / "images.u8", self._dir / "crops.u8"
        shared = np.memmap(images_path, np.uint8, "w+", shape=images.shape)
        shared[:] = images
        shared.flush()
        self._slots = np.memmap(slots_path, np.uint8, "w+", shape=(slots, *batch_shape))
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(slots):
            self._free.put(slot)
        self._pool = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(make_stream, str(images_path), images.shape, labels, str(slots_path), (slots, *batch_shape)),
        )
        # Workers and files go when this object does, or at exit -- not only after a clean close().
        self._finalizer = weakref.finalize(self, _shut_down, self._pool, self._dir)

    def crops(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        slot = self._free.get()
        try:
            labels = self._pool.submit(_make_crops, epoch, index, slot).result()
            return np.array(self._slots[slot]), labels  # a copy: the slot is reused as soon as it is free
        finally:
            self._free.put(slot)

    def close(self) -> None:
        self._finalizer()


def _memory_dir(nbytes: int) -> str | None:
    """A RAM-backed folder (/dev/shm) when it has room for ``nbytes`` twice over, else the temporary folder.

    Some containers give /dev/shm 64 MB; a mapped file there that outgrows it kills its writer with SIGBUS.
    """
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free >= 2 * nbytes:
        return shm
    return None


def _remove_stale_folders(parent: str | None) -> None:
    """Remove the folders of streams whose process was killed (kill -9) before it could remove them."""
    if os.name != "posix":  # os.kill(pid, 0) asks whether a process exists only on POSIX
        return
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name[len(_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True


def _shut_down(pool: ProcessPoolExecutor, folder: Path) -> None:
    pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(folder, ignore_errors=True)


def _start_worker(make_stream, images_path, images_shape, labels, slots_path, slots_shape) -> None:
    # A Ctrl-C reaches the terminal's whole process group; the training process answers it by finishing its
    # epoch, with its workers. SIGTERM still ends them (the pool uses it on a broken pool); after a SIGTERM to
    # the group, as `timeout` sends, the stream makes the epoch's last batches in threads.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Stop with the parent however it ends (kill -9 too): an idle worker would wait for tasks forever.
    parent = multiprocessing.parent_process()
    threading.Thread(target=lambda: (multiprocessing.connection.wait([parent.sentinel]), os._exit(0)), daemon=True).start()
    images = np.memmap(images_path, np.uint8, "r", shape=images_shape)
    _worker["stream"] = make_stream(images, labels)
    _worker["slots"] = np.memmap(slots_path, np.uint8, "r+", shape=slots_shape)


def _make_crops(epoch: int, index: int, slot: int) -> np.ndarray:
    images, labels = _worker["stream"].crops(epoch, index)
    _worker["slots"][slot] = images
    return labels
