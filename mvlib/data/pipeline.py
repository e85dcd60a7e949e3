"""Batches for ``model.fit`` on any backend: ``keras.utils.PyDataset`` objects over cached uint8 images.

Every random draw of the training stream comes from ``numpy.random.default_rng((seed, epoch, pass,
position))``, so epoch ``e`` is a function of (seed, e) alone: a run resumed at epoch ``e`` sees exactly
the batches an uninterrupted run would have, whichever backend and however many worker threads.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import keras
import numpy as np

from mvlib.data.images import AUGMENTATIONS, augment
from mvlib.data.processes import CropProcesses

MIXES = ("mixup", "cutmix", "mixup-or-cutmix")


class Batches(keras.utils.PyDataset):
    """Fixed batches of cached uint8 images as ``(float32 images, one-hot labels)``, in order (evaluation)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int = 64):
        super().__init__()
        self.images, self.labels, self.num_classes, self.batch_size = images, labels, num_classes, batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(index)
        part = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.images[part].astype(np.float32), one_hot(self.labels[part], self.num_classes)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


class TrainStream(keras.utils.PyDataset):
    """Augmented training batches, epoch after epoch from ``initial_epoch``, reproducible from (seed, epoch).

    Epoch ``e`` reads the endless sequence "permutation 0 of the training images, then permutation 1,
    ..." where permutation ``p`` and the augmentation of the image at position ``i`` are drawn from
    ``(seed, e, p)`` and ``(seed, e, p, i)``. An epoch is ``steps_per_epoch`` full batches (default
    ``ceil(n / batch_size)``: every image once, the last batch topped up from permutation 1), so every
    batch has the same shape (one compiled step; batches split evenly across devices).

    ``stream[index]`` is batch ``index`` of epoch ``stream.epoch``, which ``fit`` moves through the callback
    :meth:`epoch_callback` makes: ``fit(stream, callbacks=[stream.epoch_callback()], shuffle=False)``
    (the stream is shuffled already; ``shuffle=True`` would ask for its batches out of order). Fit's own
    epoch number is the one to trust: Keras also calls a PyDataset's ``on_epoch_end`` when it resets its
    loader, which it does before the first epoch as well, so a stream that counted those calls would run
    an epoch ahead (and on JAX and PyTorch ``fit`` reads one more batch to build the model).

    Keras is told ``workers=1`` and so asks for the batches in order, one at a time, while ``workers``
    threads of the stream's own make up to ``2 * workers`` ahead (at most an epoch), each keyed by its
    (epoch, index). (With ``workers > 1`` Keras' ``OrderedEnqueuer`` would make them, but it carries the
    batches it made ahead for one epoch -- or for the batch ``fit`` reads to build the model -- into the
    next, which mixes epochs.)
    ``processes=True`` has their :meth:`crops` made in worker processes instead (:mod:`mvlib.data.processes`:
    the same pixels, past the GIL that caps threads; the rest of :meth:`batch` stays in the thread);
    ``None`` takes the environment variable ``MVLIB_LOADER`` (``threads``, the default, or ``processes``).
    """

    def __init__(self, images, labels, num_classes, *, image_size, augment_mode="keras-io", batch_size=64,
                 seed=42, initial_epoch=0, steps_per_epoch=None, workers=None, mix=None, processes=None):
        if augment_mode not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {augment_mode!r}; valid: {', '.join(AUGMENTATIONS)}")
        if mix is not None and mix not in MIXES:
            raise ValueError(f"unknown mix {mix!r}; valid: None, {', '.join(MIXES)}")
        if len(images) == 0:
            raise ValueError("no training images: an endless stream of empty epochs would never yield")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be None or >= 1, got {steps_per_epoch!r}")
        super().__init__(workers=1, use_multiprocessing=False)
        self.batch_workers = workers or min(16, os.cpu_count() or 1)
        self.images, self.labels, self.num_classes = images, labels, num_classes
        self.image_size, self.augment_mode, self.batch_size, self.seed = image_size, augment_mode, batch_size, seed
        self.mix = mix
        self.epoch = initial_epoch
        self.steps = steps_per_epoch or math.ceil(len(images) / batch_size)
        self._orders: dict[tuple[int, int], np.ndarray] = {}
        self.processes = processes
        self._pool: CropProcesses | None = None
        self._pool_lock = threading.Lock()
        self._threads: ThreadPoolExecutor | None = None
        self._ahead: dict[tuple[int, int], Future] = {}
        self._ahead_lock = threading.Lock()

    def __len__(self) -> int:
        return self.steps

    def _order(self, epoch: int, pass_index: int) -> np.ndarray:
        """Permutation ``pass_index`` of epoch ``epoch``, cached (worker threads share it; a race only recomputes it)."""
        key = (epoch, pass_index)
        order = self._orders.get(key)
        if order is None:
            order = np.random.default_rng((self.seed, epoch, pass_index)).permutation(len(self.images))
            # Threads making the next epoch's first batches share the cache with those finishing this one.
            self._orders = {**{k: v for k, v in self._orders.items() if abs(k[0] - epoch) <= 1}, key: order}
        return order

    def crops(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The augmented images of batch ``index`` of epoch ``epoch`` (uint8) and their one-hot labels."""
        n, images = len(self.images), []
        positions = range(index * self.batch_size, (index + 1) * self.batch_size)
        picked = [(p // n, p % n) for p in positions]
        for pass_index, i in picked:
            rng = np.random.default_rng((self.seed, epoch, pass_index, i))
            image = self.images[self._order(epoch, pass_index)[i]]
            images.append(augment(image, self.image_size, self.augment_mode, rng, dtype=np.uint8))
        labels = [self.labels[self._order(epoch, p)[i]] for p, i in picked]
        return np.stack(images), one_hot(np.array(labels), self.num_classes)

    def batch(self, epoch: int, index: int, crops: tuple[np.ndarray, np.ndarray] | None = None):
        """Batch ``index`` of epoch ``epoch`` (what ``stream[index]`` returns during that epoch): its
        :meth:`crops` (or ``crops``, made already by a worker process) as float32, mixed if the recipe mixes."""
        images, labels = crops or self.crops(epoch, index)
        images = images.astype(np.float32)  # once per batch: a quarter of the bytes to stack as uint8
        if self.mix:
            # Its own stream, apart from the per-image (seed, epoch, pass, position) ones: a spawn key.
            seed = np.random.SeedSequence((self.seed, epoch), spawn_key=(index,)).generate_state(1)[0]
            images, labels = mix_batch(images, labels, self.mix, int(seed))
        return images, labels

    def epoch_callback(self) -> keras.callbacks.Callback:
        """A callback for ``fit`` that points the stream at each epoch as it begins, and drops the batches
        made ahead for an epoch that will not come when training ends."""
        return keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs=None: setattr(self, "epoch", epoch),
                                              on_train_end=lambda logs=None: self._drop_ahead())

    def __getitem__(self, index: int):
        if not 0 <= index < self.steps:
            raise IndexError(index)
        # this batch and the next ones, into the next epoch (made while fit validates)
        first, ahead = self.epoch * self.steps + index, min(2 * self.batch_workers, self.steps)
        wanted = [divmod(first + k, self.steps) for k in range(ahead + 1)]
        with self._ahead_lock:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.batch_workers, thread_name_prefix="mvlib-batches")
            for key in self._ahead.keys() - set(wanted):  # asked out of order (a new fit, a rebuilt iterator)
                self._ahead.pop(key).cancel()
            for key in wanted:
                if key not in self._ahead:
                    self._ahead[key] = self._threads.submit(self._make, *key)
            made = self._ahead.pop(wanted[0])
        return made.result()

    def _make(self, epoch: int, index: int):
        pool = self._worker_processes()
        if pool is not None:
            try:
                return self.batch(epoch, index, crops=pool.crops(epoch, index))
            except BrokenProcessPool:  # a worker ended (a SIGTERM, out of memory): threads make the same batches
                if self._stop_processes():  # once, though every batch in flight fails
                    warnings.warn("the crop worker processes stopped; making batches in threads from here")
        return self.batch(epoch, index)

    def _worker_processes(self) -> CropProcesses | None:
        """The worker processes, started at the first batch (threads ask at once), or None for threads."""
        with self._pool_lock:
            if self.processes is None:
                self.processes = _processes_from_environment()
            if self.processes and self._pool is None:
                make_stream = functools.partial(
                    TrainStream, num_classes=self.num_classes, image_size=self.image_size, augment_mode=self.augment_mode,
                    batch_size=self.batch_size, seed=self.seed, steps_per_epoch=self.steps, workers=1, mix=self.mix,
                    processes=False)
                shape = (self.batch_size, self.image_size, self.image_size, 3)  # a batch's crops
                self._pool = CropProcesses(make_stream, self.images, self.labels, shape, processes=self.batch_workers)
            return self._pool

    def close(self) -> None:
        """Stop the threads and the worker processes, if any; later batches start threads again (without
        processes). (Without it, the processes stop when the stream is garbage, or at exit.)"""
        with self._ahead_lock:
            threads, self._threads = self._threads, None
        self._drop_ahead()
        if threads is not None:
            threads.shutdown(wait=True)  # a batch being made may use the worker processes: let it finish
        self._stop_processes()

    def _drop_ahead(self) -> None:
        """Forget the batches made ahead (those being made finish, unread)."""
        with self._ahead_lock:
            ahead, self._ahead = self._ahead, {}
        for made in ahead.values():
            made.cancel()

    def _stop_processes(self) -> bool:
        """Stop the worker processes and make batches in threads from now on; whether there were any."""
        with self._pool_lock:
            self.processes = False
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        return pool is not None

    def __iter__(self):
        return (self[i] for i in range(self.steps))


def _processes_from_environment() -> bool:
    choice = os.environ.get("MVLIB_LOADER", "threads").strip().lower()
    if choice not in ("threads", "processes"):
        raise ValueError(f"MVLIB_LOADER={choice!r}: expected 'threads' or 'processes'")
    return choice == "processes"


def mix_batch(images: np.ndarray, labels: np.ndarray, mode: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MixUp (each image blended with another of the batch, its label in the same proportion) or CutMix (a
    rectangle pasted from another image, the labels in proportion to its area); ``"mixup-or-cutmix"`` picks
    one per batch, as timm does. Every draw comes from ``seed``: a batch is a function of (seed, epoch, index).

    The draws are those of ``keras.layers.MixUp`` and ``keras.layers.CutMix`` at their default strengths,
    written in numpy rather than calling the layers: they compute with the Keras backend, eagerly, once per
    batch in the loader's threads, which on JAX cost 0.54 s per batch of 128 at 256 px on a 2-core CPU
    (numpy: 0.03-0.06 s; cropping the batch: 0.21 s) and held a 16-core H100 box to 169 images/s (1,321
    unmixed). Numpy also makes the same batches on every backend.
    """
    rng, images = np.random.default_rng(seed), np.asarray(images, np.float32)
    if mode == "mixup-or-cutmix":
        mode = ("mixup", "cutmix")[rng.integers(2)]
    n, height, width = images.shape[:3]
    partner = rng.permutation(n)  # image i is mixed with image partner[i]
    if mode == "mixup":  # weight ~ Beta(0.2, 0.2) per image: mostly near 0 or 1, so most blends are faint
        weight = rng.beta(0.2, 0.2, n)
        w = weight.astype(np.float32)[:, None, None, None]
        mixed = images[partner]
        mixed *= 1 - w
        mixed += w * images
    elif mode == "cutmix":  # a box of (1 - weight) of the area, weight ~ Beta(a, a) per image, a ~ U(0, 1) per batch
        alpha = rng.uniform(0, 1) + 1e-6
        side = np.sqrt(1 - rng.beta(alpha, alpha, n))
        box_h, box_w = side * height, side * width
        top, left = rng.uniform(size=n) * (height - box_h), rng.uniform(size=n) * (width - box_w)
        # the pixels whose row r and column c have top <= r < top + box_h and left <= c < left + box_w
        r0, r1, c0, c1 = (np.ceil(v).astype(int) for v in (top, top + box_h, left, left + box_w))
        mixed = images.copy()
        for i, j in enumerate(partner):
            mixed[i, r0[i] : r1[i], c0[i] : c1[i]] = images[j, r0[i] : r1[i], c0[i] : c1[i]]
        weight = 1 - box_h * box_w / (height * width)
    else:
        raise ValueError(f"unknown mix {mode!r}; valid: {', '.join(MIXES)}")
    w = weight.astype(np.float32)[:, None]
    return mixed, w * labels + (1 - w) * labels[partner]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels, dtype=np.int64)]
