"""X and O from EMNIST letters: the course's own source, for users with internet.

The NIST archive ``gzip.zip`` (~560 MB) is downloaded once into the cache, checked against the
MD5 that torchvision's ``EMNIST`` dataset class records for it, and read in place: only the four
``emnist-letters-*`` members are decompressed. Letters are labelled 1..26 (A = 1), so O = 15 and
X = 24; the images are stored transposed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np

from k210.core.errors import BadInputError
from k210.core.fsutil import atomic_path

from .idx import MAX_IDX_BYTES, parse_idx

EMNIST_URL = "https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip"
# torchvision.datasets.EMNIST.md5 (pytorch/vision, torchvision/datasets/mnist.py).
EMNIST_MD5 = "58c8d27c78d21e728a6bc7b3cc06412e"
ARCHIVE_NAME = "gzip.zip"
EMNIST_O, EMNIST_X = 15, 24
LETTER_FILES = {
    "x_train": "emnist-letters-train-images-idx3-ubyte",
    "y_train": "emnist-letters-train-labels-idx1-ubyte",
    "x_test": "emnist-letters-test-images-idx3-ubyte",
    "y_test": "emnist-letters-test-labels-idx1-ubyte",
}
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """``$K210_CACHE``, else ``$XDG_CACHE_HOME/k210-deploy``, else ``~/.cache/k210-deploy``."""
    if os.environ.get("K210_CACHE"):
        return Path(os.environ["K210_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "k210-deploy"


def load_emnist_xo(path: str | os.PathLike[str] | None = None) -> tuple[dict[str, np.ndarray], str]:
    """X/O arrays (labels 0 = O, 1 = X, images upright) and where they came from.

    ``path``: the downloaded ``gzip.zip`` or a folder with the letters IDX files; without it the
    archive is taken from the cache, downloaded there first if need be.
    """
    if path is None:
        archive = cached_archive()
        letters, source = _read_archive(archive), f"{EMNIST_URL} (cached at {archive})"
    else:
        path = Path(path)
        if path.is_dir():
            letters, source = _read_folder(path), str(path)
        elif path.is_file():
            letters, source = _read_archive(path), str(path)
        else:
            raise BadInputError(f"EMNIST: no such file or folder: {path}")
    return select_xo(letters, source), source


def select_xo(letters: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """Keep the Os and Xs of EMNIST letters, relabelled 0 and 1, transposed upright."""
    out: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images, labels = letters[f"x_{split}"], letters[f"y_{split}"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise BadInputError(f"EMNIST {source}: {split} images {images.shape} and labels "
                                f"{labels.shape} do not match")
        keep = (labels == EMNIST_O) | (labels == EMNIST_X)
        if not keep.any():
            raise BadInputError(f"EMNIST {source}: no O ({EMNIST_O}) or X ({EMNIST_X}) in the {split} "
                                "labels; is this the letters split?")
        out[f"x_{split}"] = np.ascontiguousarray(images[keep].transpose(0, 2, 1))
        out[f"y_{split}"] = (labels[keep] == EMNIST_X).astype(np.int64)
    return out


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    letters: dict[str, np.ndarray] = {}
    for key, stem in LETTER_FILES.items():
        candidates = [folder / sub / f"{stem}{ext}" for sub in ("", "gzip") for ext in (".gz", "")]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise BadInputError(f"EMNIST: {folder} lacks {stem}.gz")
        letters[key] = parse_idx(found.read_bytes(), str(found))
    return letters


def _read_archive(archive: Path) -> dict[str, np.ndarray]:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = {Path(name).name: name for name in zf.namelist()}
            letters: dict[str, np.ndarray] = {}
            for key, stem in LETTER_FILES.items():
                member = members.get(f"{stem}.gz") or members.get(stem)
                if member is None:
                    raise BadInputError(f"EMNIST: {archive} has no {stem}.gz; is it EMNIST's gzip.zip?")
                letters[key] = parse_idx(_read_member(zf, member, f"{archive}:{member}"), f"{archive}:{member}")
            return letters
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise BadInputError(f"EMNIST: {archive} is not a readable zip archive ({exc})") from None
    except OSError as exc:
        raise BadInputError(f"EMNIST: cannot read {archive}: {exc.strerror or exc}") from None


def _read_member(zf: zipfile.ZipFile, member: str, name: str) -> bytes:
    """A member's bytes, never more than MAX_IDX_BYTES whatever its header in the zip says (a zip bomb)."""
    if zf.getinfo(member).file_size > MAX_IDX_BYTES:
        raise BadInputError(f"{name}: {zf.getinfo(member).file_size:,} bytes, more than the {MAX_IDX_BYTES:,} "
                            "bytes this reads")
    with zf.open(member) as f:
        data = f.read(MAX_IDX_BYTES + 1)
    if len(data) > MAX_IDX_BYTES:
        raise BadInputError(f"{name}: inflates to more than the {MAX_IDX_BYTES:,} bytes this reads")
    return data


# --- download and cache --------------------------------------------------------------------


def cached_archive(url: str = EMNIST_URL) -> Path:
    """The verified archive in the cache, downloading it first when it is not there."""
    archive = cache_dir() / "emnist" / ARCHIVE_NAME
    if archive.is_file():
        _verify_cached(archive)
        return archive
    download(url, archive)
    return archive


def _stamp(archive: Path) -> Path:
    """Marker written once the archive's MD5 was checked, so later loads skip hashing 560 MB."""
    return archive.with_name(archive.name + ".md5")


def _verify_cached(archive: Path) -> None:
    stamp = _stamp(archive)
    expected = f"{EMNIST_MD5} {archive.stat().st_size}"
    if stamp.is_file() and stamp.read_text().strip() == expected:
        return
    digest = md5_file(archive)
    if digest != EMNIST_MD5:
        raise BadInputError(f"EMNIST: cached {archive} has MD5 {digest}, expected {EMNIST_MD5}; "
                            "delete it to download again")
    stamp.write_text(expected + "\n")


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path, expected_md5: str | None = None) -> None:
    """Fetch ``url`` to ``target`` with a progress bar, via a temporary name; a failed or
    mismatching download leaves nothing behind."""
    from tqdm import tqdm

    expected_md5 = expected_md5 or EMNIST_MD5
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                              desc=f"EMNIST {target.name}", leave=False) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            if digest.hexdigest() != expected_md5:
                raise BadInputError(f"EMNIST: download from {url} has MD5 {digest.hexdigest()}, "
                                    f"expected {expected_md5}; not kept")
    except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets, a full disk
        reason = getattr(exc, "reason", None) or exc
        raise BadInputError(f"EMNIST: cannot download {url} ({reason}); download it elsewhere and "
                            "pass --data PATH/gzip.zip") from None
    _stamp(target).write_text(f"{expected_md5} {target.stat().st_size}\n")
