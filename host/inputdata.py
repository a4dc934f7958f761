"""The inputs of a run, from wherever the user has them, as each stage takes them.

Sources, for a given model input and :class:`~k210.converters.preprocess.Preprocess` spec:
- a named set (``--dataset NAME``, its files at ``--data``): its test split for verify/hil, train
  split for calibration;
- ``--data DIR``: an image folder (class subfolders = labels, flat = unlabelled);
- ``--data FILE.npz | FILE.npy``: arrays ``x`` (uint8 pixels or float32 model inputs), optional ``y``;
- ``--dataset random``: seeded uniform pixels (no labels), a different draw for calibration and checks.

Every stage (calibration, TF reference, simulator, board) gets its input from the same pixels through
the same spec, so they all see the same data. User data has one split: compile calibrates on a
deterministic share of it and verify/hil check the rest (host/heldout.py): the samples a kmodel was
calibrated on (their hashes are in its card) are left out of checks unless asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from k210.converters.preprocess import Preprocess
from k210.core.errors import BadInputError

ARRAY_SUFFIXES = (".npz", ".npy")
PURPOSES = ("calibration", "check")


@dataclass(frozen=True)
class DataRequest:
    dataset: str | None = None  # a registered name, "random", or None for --data user files
    data: str | None = None
    seed: int = 0
    split: str = "test"  # of a named set, for checks (calibration always takes "train")
    limit: int | None = None  # checks: the first N inputs; calibration: how many samples
    exclude: frozenset[str] = frozenset()  # checks: hashes of samples not to check (the calibration samples)
    holdout: float = 0.0  # calibration from the user's own data: the share left for checks

    def describe(self) -> dict:
        return {"dataset": self.dataset, "data": self.data, "seed": self.seed}


@dataclass
class ModelInputs:
    name: str  # what to call the data in reports
    source: str
    reference: np.ndarray  # float32 [N, *model input per item], what TF takes
    kmodel: np.ndarray  # [N, *kmodel input per item], what the simulator and the board take
    labels: np.ndarray | None  # int64 [N], or None when the data has no labels
    class_names: list[str] = field(default_factory=list)
    pixels: np.ndarray | None = None  # uint8 [N, H, W, C] when the data are images
    hashes: list[str] = field(default_factory=list)  # per sample (host.heldout)
    excluded: int = 0  # samples left out because the kmodel was calibrated on them

    def __len__(self) -> int:
        return len(self.kmodel)

    def subset(self, index: np.ndarray) -> ModelInputs:
        index = np.asarray(index, np.int64)
        return replace(self, reference=self.reference[index], kmodel=self.kmodel[index],
                       labels=None if self.labels is None else self.labels[index],
                       pixels=None if self.pixels is None else self.pixels[index],
                       hashes=[self.hashes[i] for i in index] if self.hashes else [])


def is_user_data(req: DataRequest) -> bool:
    return req.dataset is None and req.data is not None


def load_inputs(req: DataRequest, spec: Preprocess, input_shape: list[int] | tuple[int, ...], *,
                purpose: str = "check", class_names: list[str] | None = None) -> ModelInputs:
    """The inputs for a model whose (batch 1) input shape is `input_shape`, through `spec`.

    `class_names` (from the model card) name the classes of user data with labels. Checks leave out
    `req.exclude`; calibration from the user's own data draws from its calibration share (`req.holdout`).
    """
    from .heldout import calibration_pool, keep_unless, sample_hashes

    if purpose not in PURPOSES:
        raise ValueError(purpose)
    if req.limit is not None and req.limit < 1:
        raise BadInputError("--limit must be at least 1" if purpose == "check" else "--calib must be at least 1")
    pool = purpose == "calibration" and req.holdout > 0 and is_user_data(req)
    drop = purpose == "check" and bool(req.exclude)
    whole = (pool or drop) and req.dataset != _random_name()
    inputs = _load(replace(req, limit=None) if whole else req, spec, input_shape, purpose, class_names)
    inputs.hashes = sample_hashes(inputs.pixels if inputs.pixels is not None else inputs.reference)
    if pool:
        index = calibration_pool(inputs.hashes, req.holdout)
        if req.limit is not None and req.limit < len(index):
            index = np.sort(np.random.default_rng(req.seed).choice(index, size=req.limit, replace=False))
        return inputs.subset(index)
    if drop:
        keep = keep_unless(inputs.hashes, req.exclude)
        excluded = len(inputs) - len(keep)
        if whole and req.limit is not None:
            keep = keep[: req.limit]
        inputs = inputs.subset(keep)
        inputs.excluded = excluded
        if not len(inputs):
            raise BadInputError(f"every input of {inputs.name} is one of the kmodel's calibration samples: check "
                                "on other data, or pass --on-calibration-data to check on them anyway")
    return inputs


def _random_name() -> str:
    from k210.models.datasets import RANDOM

    return RANDOM


def _load(req: DataRequest, spec: Preprocess, input_shape: list[int] | tuple[int, ...], purpose: str,
          class_names: list[str] | None) -> ModelInputs:
    from k210.models.datasets import RANDOM

    per_item = [int(d) for d in input_shape[1:]]
    if req.dataset == RANDOM:
        if req.data is not None:
            raise BadInputError("dataset 'random' is generated: it reads no --data")
        return _random(req, spec, per_item, purpose)
    if req.dataset is None:
        if req.data is None:
            raise BadInputError("which data? pass --dataset NAME, --data DIR (images) or --data FILE.npz, "
                                "or --dataset random")
        return _user_files(req, spec, per_item, purpose, class_names)
    return _named(req, spec, per_item, purpose)


def _finish(name: str, source: str, pixels: np.ndarray, labels: np.ndarray | None, class_names: list[str],
            spec: Preprocess, per_item: list[int]) -> ModelInputs:
    reference = _fit(spec.to_float(pixels), per_item, name)
    kmodel = _fit(spec.to_kmodel(pixels), per_item, name)
    return ModelInputs(name, source, reference, kmodel, labels, class_names, pixels)


def _fit(x: np.ndarray, per_item: list[int], name: str) -> np.ndarray:
    if list(x.shape[1:]) == per_item:
        return x
    if int(np.prod(x.shape[1:])) != int(np.prod(per_item)):
        raise BadInputError(f"{name}: inputs {list(x.shape[1:])} do not fit the model input {per_item}")
    return np.ascontiguousarray(x.reshape(len(x), *per_item))


def _random(req: DataRequest, spec: Preprocess, per_item: list[int], purpose: str) -> ModelInputs:
    from k210.models.random_set import DEFAULT_COUNT

    count = req.limit or DEFAULT_COUNT
    # Calibration and checks draw different inputs from the same seed.
    rng = np.random.default_rng([req.seed, PURPOSES.index(purpose)])
    pixels = rng.integers(0, 256, (count, *spec.image_shape), dtype=np.uint8)
    lo, hi = spec.input_range
    return _finish("random", f"uniform random pixels (seed {req.seed}, {purpose}), inputs over {lo:g}..{hi:g}",
                   pixels, None, [], spec, per_item)


def _named(req: DataRequest, spec: Preprocess, per_item: list[int], purpose: str) -> ModelInputs:
    from k210.models.datasets import load_dataset, sample_calibration

    dataset = load_dataset(req.dataset, path=req.data, seed=req.seed)  # type: ignore[arg-type]
    if purpose == "calibration":
        images = sample_calibration(dataset, req.limit or 200, req.seed)
        labels = None
    else:
        images = (dataset.x_test if req.split == "test" else dataset.x_train)[: req.limit]
        labels = (dataset.y_test if req.split == "test" else dataset.y_train)[: req.limit]
    images = images[..., None] if images.ndim == 3 else images
    if images.shape[1:] != spec.image_shape:
        h, w, c = images.shape[1:]
        raise BadInputError(f"dataset '{dataset.name}' images {h}x{w}x{c} do not fit the model's "
                            f"{spec.height}x{spec.width}x{spec.channels} input {[1, *per_item]}; "
                            "give your own with --data DIR or --data FILE.npz, or use --dataset random")
    return _finish(dataset.name, dataset.source, images, labels, list(dataset.labels), spec, per_item)


def _user_files(req: DataRequest, spec: Preprocess, per_item: list[int], purpose: str,
                class_names: list[str] | None) -> ModelInputs:
    path = Path(req.data)  # type: ignore[arg-type]
    if path.is_dir():
        from k210.models.image_folder import load_image_folder

        # A folder is sorted by class: `limit` images are drawn by the seed (in folder order), not the first N.
        folder = load_image_folder(path, spec, limit=req.limit, seed=req.seed)
        pixels, labels = folder.pixels, folder.labels
        names = list(folder.class_names)
        return _finish(path.name, f"image folder {path}", pixels, labels, names, spec, per_item)
    if path.suffix.lower() not in ARRAY_SUFFIXES or not path.exists():
        if not path.exists():
            raise BadInputError(f"--data not found: {path}")
        raise BadInputError(f"--data {path}: expected an image folder or a .npz/.npy array file "
                            "(for a named set's file add --dataset NAME)")
    from k210.models.arrays import load_arrays

    arrays = load_arrays(path)
    x, y = arrays.x, arrays.y
    if purpose == "calibration" and req.limit and req.limit < len(x):
        pick = np.sort(np.random.default_rng(req.seed).choice(len(x), size=req.limit, replace=False))
        x, y = x[pick], None if y is None else y[pick]
    elif purpose == "check" and req.limit:
        x, y = x[: req.limit], None if y is None else y[: req.limit]
    names = list(class_names or [])
    if y is not None and len(y):
        classes = int(y.max()) + 1
        if names and classes > len(names):
            raise BadInputError(f"{path}: y has class {classes - 1} but the model has {len(names)} classes")
        names = names or [str(i) for i in range(classes)]
    if arrays.are_pixels:
        pixels = x[..., None] if x.ndim == 3 and spec.channels == 1 else x
        if pixels.shape[1:] != spec.image_shape:
            if int(np.prod(pixels.shape[1:])) == int(np.prod(spec.image_shape)) and pixels.ndim == 2:
                pixels = pixels.reshape(len(pixels), *spec.image_shape)
            else:
                raise BadInputError(f"{path}: x holds {list(x.shape[1:])} pixels per input, the model takes "
                                    f"{spec.height}x{spec.width}x{spec.channels} (arrays are not resized)")
        return _finish(path.name, f"arrays {path}", pixels, y, names, spec, per_item)
    # float32 arrays are model inputs already: the same tensor for TF and a float kmodel
    if spec.dtype == "uint8":
        raise BadInputError(f"{path}: x is float32 (model inputs) but the kmodel takes uint8 pixels: "
                            "give x as uint8 pixels")
    tensors = _fit(x, per_item, path.name)
    return ModelInputs(path.name, f"arrays {path} (float32 model inputs)", tensors, tensors, y, names, None)
