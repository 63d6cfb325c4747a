"""The DALI pipeline and its driver.

One pipeline serves clean images and pairs. Python decides everything random (ipt.data.plan: order,
shards, task per batch, crop, flips, rotation) and feeds it through external_source with the encoded
bytes; DALI decodes only the crop (decoders.image_slice with absolute anchors), flips it, and swaps H and
W where a quarter turn needs it (every flip/quarter-turn combination is flips plus an optional swap,
ipt.data.batch.flips_then_transpose): a per-sample conditional transpose in DALI's threads, where DALI's
general rotation, a per-pixel warp, would cost a third of the throughput. Batches stay HWC in memory and
reach torch as channels-last (B, 3, H, W) tensors without a layout copy. The decoder settings match
Pillow's (fancy JPEG upsampling, no EXIF rotation), so on the CPU both loaders give identical pixels.

A file that passed the pre-training scan can be gone or unreadable by the time its batch comes: the
source reads every file's bytes before handing a batch to DALI, leaves out the samples whose files it
cannot read, and passes over a batch with none left (counted warnings, ipt.data.loader). A file can also
fail to decode or to crop (damaged, or replaced by an image of another size), and DALI then aborts the
pipeline for good. The driver then decodes the bytes of the batches in flight with Pillow, skips the
culprits (counted warning), builds a new pipeline and resumes at the first unfinished batch: no lost epoch.
"""

from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ipt.cuda_support import DALI_WHEELS, OLDEST_ARCH, dali_wheel, sm
from ipt.data.batch import Batch, flips_then_transpose
from ipt.data.datasets import ImagePairs, TrainingImages
from ipt.data.loader import PlannedLoader, decode_usable
from ipt.data.plan import BatchSpec, EpochPlan, SampleSpec
from ipt.data.scan import ImageRecord
from ipt.devices import describe_gpu
from ipt.errors import IPTError

# DALI is imported inside the functions that use it, never at the top: it is an optional dependency
# (the torch loader needs none of it), and importing it takes seconds.


class DaliUnavailableError(IPTError, ImportError):
    """The DALI loader was asked for, but DALI is not installed."""


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True


def installed_dali_cuda() -> int | None:
    """The CUDA major version of the installed DALI wheel (12 for nvidia-dali-cuda120), None if unknown."""
    import importlib.metadata

    for major, wheel in DALI_WHEELS.items():
        try:
            importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            continue
        return major
    return None


def check_dali_runs_on(device: torch.device) -> None:
    """A clear error, before a pipeline is built, when the installed DALI has no code for this GPU (the
    CUDA 13 wheel on a V100): DALI itself would fail deep inside its first run."""
    major = installed_dali_cuda()
    oldest = OLDEST_ARCH.get(major)
    if oldest is not None and torch.cuda.get_device_capability(device) < oldest:
        raise DaliUnavailableError(
            f"{DALI_WHEELS[major]} does not run on {device}, a {describe_gpu(device)} (it needs {sm(oldest)} or "
            f"newer): pip uninstall {DALI_WHEELS[major]} && pip install {DALI_WHEELS[12]}, beside a CUDA 12 torch "
            "(README: GPUs and CUDA toolchains), or leave out --dali")


def _decode_crop_flip(encoded, anchor, shape, flip_h, flip_v, gpu: bool):
    from nvidia.dali import fn, types

    image = fn.decoders.image_slice(
        encoded, anchor, shape, device="mixed" if gpu else "cpu", normalized_anchor=False, normalized_shape=False,
        output_type=types.RGB, jpeg_fancy_upsampling=True, adjust_orientation=False,
    )
    return fn.flip(image, horizontal=flip_h, vertical=flip_v)  # HWC


def _swap_hw(image):
    from nvidia.dali import fn

    return fn.transpose(image, perm=[1, 0, 2], transpose_layout=False)  # still "HWC" for the merge


def build_pipeline(source, paired: bool, batch_size: int, threads: int, device_id: int | None, seed: int):
    from nvidia.dali import fn, pipeline_def

    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id, seed=seed, prefetch_queue_depth=2,
                  enable_conditionals=True)
    def crops():
        gpu = device_id is not None
        if paired:
            enc_lr, anc_lr, shp_lr, enc_hr, anc_hr, shp_hr, flip_h, flip_v, swap = fn.external_source(
                source=source, num_outputs=9, batch=True)
            hr = _decode_crop_flip(enc_hr, anc_hr, shp_hr, flip_h, flip_v, gpu)
            lr = _decode_crop_flip(enc_lr, anc_lr, shp_lr, flip_h, flip_v, gpu)
            if swap:
                hr, lr = _swap_hw(hr), _swap_hw(lr)
            return hr, lr
        enc, anc, shp, flip_h, flip_v, swap = fn.external_source(source=source, num_outputs=6, batch=True)
        image = _decode_crop_flip(enc, anc, shp, flip_h, flip_v, gpu)
        if swap:
            image = _swap_hw(image)
        return (image,)

    pipe = crops()
    pipe.build()
    return pipe


@dataclass
class Fed:
    """A batch handed to DALI, kept until the driver takes its result."""

    spec: BatchSpec
    samples: list[SampleSpec]  # those whose files could be read
    encoded: list[tuple[tuple[ImageRecord, np.ndarray], ...]]  # per sample: its files and their bytes, as DALI got them
    unread: list[str]  # files of the batch that could not be read
    passed_over: list[tuple[int, list[str]]]  # (index, unread files) of the batches before it with no sample left


class PlanSource:
    """external_source callback: the next batch of the plan as encoded bytes and crop/augment arguments;
    remembers what it handed out (in_flight) until the driver has taken the results. Files are read here,
    before DALI sees them, so one that is gone is a sample left out, not a failed pipeline."""

    def __init__(self, data, skip: set):
        self.data, self.skip = data, skip
        self.plan, self.next = None, 0
        self.in_flight: deque[Fed] = deque()
        self.passed_over_at_end: list[tuple[int, list[str]]] = []  # after the last batch fed

    def restart(self, plan: EpochPlan, start: int) -> None:
        self.plan, self.next = plan, start
        self.in_flight.clear()
        self.passed_over_at_end = []

    def _files(self, sample) -> tuple[ImageRecord, ...]:
        record = self.data.records[sample.item]
        return (record.input, record.target) if isinstance(self.data, ImagePairs) else (record,)

    def _read(self, spec: BatchSpec) -> Fed:
        """The batch's samples whose files (none known bad) can all be read, with their bytes."""
        fed = Fed(spec, [], [], [], [])
        for sample in spec.samples:
            files = self._files(sample)
            if any(f.name in self.skip for f in files):
                continue
            encoded = []
            for file in files:
                try:
                    encoded.append((file, np.frombuffer(file.read_bytes(), dtype=np.uint8)))
                except OSError:  # deleted, made unreadable or cut short since the scan
                    fed.unread.append(file.name)
                    break
            else:
                fed.samples.append(sample)
                fed.encoded.append(tuple(encoded))
        return fed

    def __call__(self):
        passed_over = []
        while self.next < len(self.plan):
            fed = self._read(self.plan.batch(self.next))
            self.next += 1
            if fed.samples:
                break
            passed_over.append((fed.spec.index, fed.unread))
        else:
            self.passed_over_at_end = passed_over
            raise StopIteration
        fed.passed_over = passed_over
        self.in_flight.append(fed)
        spec, samples = fed.spec, fed.samples
        # Per-sample scalars and pairs go as one array per batch (first axis: the samples).
        flip_h, flip_v, swap = (np.array(column) for column in zip(*(flips_then_transpose(s) for s in samples)))
        anchors = np.array([[s.left, s.top] for s in samples], np.int32)  # (x, y), DALI's "WH" order

        def crop_args(side, scale):
            return ([files[side][1] for files in fed.encoded], anchors * scale,
                    np.full((len(samples), 2), spec.crop * scale, np.int32))

        flips = (flip_h.astype(np.int32), flip_v.astype(np.int32), swap.astype(bool))
        if isinstance(self.data, ImagePairs):  # files: (input, target)
            return (*crop_args(0, 1), *crop_args(1, self.data.scale), *flips)
        return (*crop_args(0, 1), *flips)


class DaliLoader(PlannedLoader):
    """Same interface and batches as ipt.data.loader.TorchLoader, with DALI doing the decoding.

    device: "cpu" runs DALI's CPU operators (device_id=None); a CUDA device decodes on that GPU and
    yields CUDA tensors. workers: DALI threads.
    """

    backend = "dali"

    def __init__(self, data: TrainingImages | ImagePairs, crops: Sequence[int], batch_size: int, seed: int = 0, **kw):
        if not dali_available():
            raise DaliUnavailableError(f"DALI is not installed: pip install {dali_wheel(torch.version.cuda)} (or leave "
                                       "out --dali to use the torch loader)")
        super().__init__(data, crops, batch_size, seed, **kw)
        if self.device.type == "cuda":
            check_dali_runs_on(self.device)
        self.paired = isinstance(data, ImagePairs)
        self._source = PlanSource(data, self.bad_files)
        self._pipe = None  # built on first use, reused across epochs, rebuilt after a decode failure

    def _to_torch(self, tensor_list) -> torch.Tensor:
        """DALI's (B, H, W, 3) output as a (B, 3, H, W) channels-last torch batch (the same memory, so
        no layout copy)."""
        dense = tensor_list.as_tensor()
        if self.device.type == "cuda":
            from nvidia.dali.plugin.pytorch import feed_ndarray

            hwc = torch.empty(dense.shape(), dtype=torch.uint8, device=self.device)
            feed_ndarray(dense, hwc, cuda_stream=torch.cuda.current_stream(self.device))
        else:
            hwc = torch.from_numpy(np.array(dense))  # our own copy: DALI reuses its output buffers
        return hwc.permute(0, 3, 1, 2)

    @staticmethod
    def _culprits(in_flight) -> set[str]:
        """Files of the in-flight batches whose bytes, as DALI got them, Pillow cannot decode either or
        decodes to another size than the scan found (the crops do not fit). The bytes, not the file: it
        may have changed or gone since."""
        bad = set()
        for fed in in_flight:
            for files in fed.encoded:
                for record, data in files:
                    if decode_usable(record, data.tobytes()) is None:
                        bad.add(record.name)
        return bad

    def _report(self, epoch: int, fed: Fed) -> None:
        """The counted warnings for what the source left out up to this batch."""
        for index, unread in fed.passed_over:
            self._unusable(epoch, index, unread, dropped=True, stacklevel=4)
        if fed.unread:
            self._unusable(epoch, fed.spec.index, fed.unread, dropped=False, stacklevel=4)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        plan = self.plan(epoch)
        device_id = self.device.index or 0 if self.device.type == "cuda" else None
        k = start
        source = self._source
        while k < len(plan):
            if self._pipe is None:
                self._pipe = build_pipeline(source, self.paired, self.batch_size, self.workers, device_id,
                                            (self.seed + self.rank) % 2 ** 63)  # DALI's seed is an int64
            else:
                self._pipe.reset()
            source.restart(plan, k)
            pipe = self._pipe
            try:
                while True:
                    try:
                        outputs = pipe.run()
                    except StopIteration:
                        break
                    fed = source.in_flight.popleft()
                    self._report(epoch, fed)
                    k = fed.spec.index + 1
                    hr = self._to_torch(outputs[0])
                    lr = self._to_torch(outputs[1]) if self.paired else None
                    ids = torch.tensor([s.sample_id for s in fed.samples], dtype=torch.int64, device=hr.device)
                    yield Batch(hr, fed.spec.task, ids, epoch, fed.spec.index, lr, fed.unread)
            except RuntimeError as error:
                if not (isinstance(error.__cause__, StopIteration) or "StopIteration" in str(error)):
                    self._pipe = None  # DALI pipelines do not recover from a failed run: build a new one
                    self._recover(error, source.in_flight, epoch, k)
                    continue  # at batch k, without the culprits
            # The end of the epoch; the batches after the last one fed may have been passed over.
            for index, unread in source.passed_over_at_end:
                self._unusable(epoch, index, unread, dropped=True)
            return

    def _recover(self, error: RuntimeError, in_flight, epoch: int, k: int) -> None:
        """After DALI failed on a batch in flight: the files to skip from now on, with a counted warning."""
        bad = self._culprits(in_flight)
        if not bad:  # not the data's fault that we can see: a bug, with DALI's error as its cause
            files = sorted({r.name for fed in in_flight for files in fed.encoded for r, _ in files})
            raise RuntimeError(f"DALI failed in batch {k} of epoch {epoch} or the next, yet Pillow decodes every "
                               f"file it was given, at the size the scan found ({len(files)}, e.g. {files[:3]})") from error
        self.bad_files |= bad
        warnings.warn(f"DALI could not decode or crop {len(bad)} images (damaged, or of another size since the scan; "
                      f"e.g. {sorted(bad)[0]}); skipping them and resuming at batch {k} of epoch {epoch} "
                      f"({len(self.bad_files)} unusable so far)", RuntimeWarning, stacklevel=3)
