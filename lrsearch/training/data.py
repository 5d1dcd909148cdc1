"""CIFAR-10 as users have it: the official python archive, its extracted folder,
or an ImageFolder tree (folder, .tar or .tar.gz), decoded once and cached.

Also the seeded stratified splits and the device-resident batch iterator the
trainer uses (the whole split lives on the device as one tensor, as in airbench).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import pickle
import re
import tarfile
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_NAME = "cifar-10-python.tar.gz"
# Bump when the cache file's layout changes, so old caches are rebuilt.
_CACHE_VERSION = 1
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_PY_BATCH = re.compile(r"(?:^|/)(data_batch_[1-5]|test_batch|batches\.meta)$")
_FOLDER_IMAGE = re.compile(r"(?:^|/)(train|test)/([^/]+)/([^/]+)$")


class DataError(Exception):
    """A data source that cannot be read; the message names the path and the fix."""


@dataclass(frozen=True)
class CIFAR10:
    train_images: np.ndarray  # uint8, N x 32 x 32 x 3, RGB
    train_labels: np.ndarray  # int64, N
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    source: str
    layout: str  # "python" or "imagefolder"


# ---------------------------------------------------------------- locating


def default_data_dir() -> Path:
    return Path("data")


def resolve_source(source: str | os.PathLike | None = None) -> Path:
    """The explicit argument, else $LRSEARCH_DATA, else ./data/ (first match wins)."""
    if source is not None and str(source) != "":
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"{path}: no such file or folder. Pass an existing CIFAR-10 source "
                            f"(the official {OFFICIAL_NAME}, its cifar-10-batches-py/ folder, or an ImageFolder tree).")
        return path
    env = os.environ.get("LRSEARCH_DATA")
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise DataError(f"{path} (from $LRSEARCH_DATA): no such file or folder. "
                            "Point LRSEARCH_DATA at a CIFAR-10 source or unset it.")
        return path
    data_dir = default_data_dir()
    for candidate in (data_dir / OFFICIAL_NAME, data_dir / "cifar-10-batches-py", data_dir):
        if candidate.exists() and (candidate.is_file() or any(candidate.iterdir())):
            return candidate
    raise DataError(
        f"no CIFAR-10 data found: no --data argument, LRSEARCH_DATA is unset and {data_dir}/ is empty. "
        f"Put the official {OFFICIAL_NAME} into {data_dir}/ (`lrsearch run` fetches it when nothing names a source; `lrsearch data download` too), "
        "or set LRSEARCH_DATA=/path/to/cifar10 (archive or folder)."
    )


# ---------------------------------------------------------------- loading


def load_cifar10(source: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> CIFAR10:
    """Load CIFAR-10 from `source` (see `resolve_source`), using a decoded-array cache.

    The cache is keyed by the source's path, size and modification time, so a changed
    source is decoded again; a cache file that fails to load or to validate is rebuilt.
    """
    path = resolve_source(source).resolve()
    cache = _cache_path(path, cache_dir)
    if cache.exists():
        try:
            return _read_cache(cache, path)
        except Exception as err:  # a corrupt cache is rebuilt, never trusted
            warnings.warn(f"rebuilding unreadable cache {cache}: {err}", stacklevel=2)
    data = _decode(path)
    _write_cache(cache, data)
    return data


def _decode(path: Path) -> CIFAR10:
    if path.is_file():
        if not tarfile.is_tarfile(path):
            raise DataError(f"{path}: not a tar archive. Expected {OFFICIAL_NAME}, or an ImageFolder tree as .tar/.tar.gz.")
        with tarfile.open(path) as tar:
            # read in archive order: seeking backwards in a .tar.gz decompresses it again from the start
            files = [(m.name, tar.extractfile(m).read()) for m in tar
                     if m.isfile() and (_PY_BATCH.search(m.name) or _FOLDER_IMAGE.search(m.name))]
        if any(_PY_BATCH.search(name) for name, _ in files):
            return _from_python_batches(path, {_PY_BATCH.search(n).group(1): b for n, b in files if _PY_BATCH.search(n)})
        if files:
            return _from_image_folder(path, files)
        raise DataError(f"{path}: unknown layout. Expected cifar-10-batches-py/data_batch_1..5 + test_batch, "
                        "or train/<class>/*.png|jpg and test/<class>/*.")
    # a folder: the batches themselves, a folder holding cifar-10-batches-py/, an official archive, or an ImageFolder
    for folder in (path, path / "cifar-10-batches-py"):
        if (folder / "data_batch_1").exists() or (folder / "test_batch").exists():
            return _from_python_batches(path, {p.name: p.read_bytes() for p in folder.iterdir() if _PY_BATCH.search(p.name)})
    if (path / OFFICIAL_NAME).is_file():
        return _decode(path / OFFICIAL_NAME)
    if (path / "train").is_dir():
        names = [str(p.relative_to(path)) for p in sorted(path.glob("t*/*/*")) if p.is_file()]
        return _from_image_folder(path, [(n, (path / n).read_bytes()) for n in names if _FOLDER_IMAGE.search(n)])
    raise DataError(f"{path}: unknown layout. Expected cifar-10-batches-py/ (official python version), "
                    f"{OFFICIAL_NAME}, or an ImageFolder tree train/<class>/*, test/<class>/*.")


def _unpickle(name: str, raw: bytes, archive: Path) -> dict:
    try:
        return pickle.loads(raw, encoding="bytes")
    except Exception as err:
        raise DataError(f"{archive}: {name} is truncated or not a CIFAR-10 pickle ({type(err).__name__}: {err}). "
                        "Download the archive again.") from None


def _batch_arrays(name: str, raw: bytes, archive: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(name, raw, archive)
    try:
        flat = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (KeyError, TypeError) as err:
        raise DataError(f"{archive}: {name} lacks the key {err}; not a CIFAR-10 batch.") from None
    if flat.ndim != 2 or flat.shape[1] != 3072 or len(labels) != len(flat):
        raise DataError(f"{archive}: {name} holds data of shape {flat.shape} with {len(labels)} labels; "
                        "expected N x 3072 (32x32x3 channel-major) and N labels.")
    # channel-major rows (R plane, G plane, B plane) -> N x 32 x 32 x 3
    return flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _from_python_batches(archive: Path, files: dict[str, bytes]) -> CIFAR10:
    missing = [n for n in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"] if n not in files]
    if missing:
        raise DataError(f"{archive}: missing {', '.join(missing)} of the official cifar-10-batches-py layout.")
    train = [_batch_arrays(f"data_batch_{i}", files[f"data_batch_{i}"], archive) for i in range(1, 6)]
    test_images, test_labels = _batch_arrays("test_batch", files["test_batch"], archive)
    classes = CLASSES
    if "batches.meta" in files:
        meta = _unpickle("batches.meta", files["batches.meta"], archive)
        classes = tuple(name.decode() for name in meta.get(b"label_names", [c.encode() for c in CLASSES]))
    return CIFAR10(np.concatenate([a for a, _ in train]), np.concatenate([b for _, b in train]),
                   test_images, test_labels, classes, str(archive), "python")


def _from_image_folder(root: Path, entries: list[tuple[str, bytes]]) -> CIFAR10:
    splits: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
    for name, raw in entries:
        split, cls, filename = _FOLDER_IMAGE.search(name).groups()
        if not filename.lower().endswith(_IMAGE_SUFFIXES):
            continue
        if cls not in CLASSES:
            raise DataError(f"{root}: unknown class folder {split}/{cls}/. CIFAR-10's classes are {', '.join(CLASSES)}.")
        splits[split].append((name, CLASSES.index(cls), raw))
    if not splits["train"] or not splits["test"]:
        raise DataError(f"{root}: an ImageFolder tree needs both train/<class>/ and test/<class>/ images.")
    arrays = []
    for split in ("train", "test"):
        items = sorted(splits[split], key=lambda item: (item[1], item[0]))
        images = np.empty((len(items), 32, 32, 3), dtype=np.uint8)
        for i, (name, _, raw) in enumerate(items):
            try:
                with Image.open(io.BytesIO(raw)) as img:
                    if img.size != (32, 32):
                        raise DataError(f"{root}: {name} is {img.size[0]}x{img.size[1]}; CIFAR-10 images are 32x32.")
                    images[i] = np.asarray(img.convert("RGB"))
            except DataError:
                raise
            except Exception as err:
                raise DataError(f"{root}: {name} is not a readable image ({err}).") from None
        arrays += [images, np.array([label for _, label, _ in items], dtype=np.int64)]
    return CIFAR10(*arrays, classes=CLASSES, source=str(root), layout="imagefolder")


# ---------------------------------------------------------------- cache


def cache_dir_default() -> Path:
    return Path(os.environ.get("LRSEARCH_CACHE", Path.home() / ".cache" / "lrsearch"))


def _source_identity(path: Path) -> str:
    if path.is_file():
        st = path.stat()
        return f"{path}|{st.st_size}|{st.st_mtime_ns}"
    # a folder: its files' sizes and mtimes (a folder's own mtime misses edits deeper down)
    stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()]
    return f"{path}|{hashlib.sha1(repr(stats).encode()).hexdigest()}"


def _cache_path(path: Path, cache_dir: str | os.PathLike | None) -> Path:
    key = hashlib.sha1(f"v{_CACHE_VERSION}|{_source_identity(path)}".encode()).hexdigest()[:16]
    return Path(cache_dir or cache_dir_default()) / f"cifar10-{key}.npz"


def _write_cache(cache: Path, data: CIFAR10) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".tmp{os.getpid()}.npz")
    np.savez(tmp, train_images=data.train_images, train_labels=data.train_labels, test_images=data.test_images,
             test_labels=data.test_labels, classes=np.array(data.classes), meta=np.array([data.source, data.layout]))
    os.replace(tmp, cache)  # atomic: a reader never sees half a file


def _read_cache(cache: Path, path: Path) -> CIFAR10:
    # npz members carry CRC-32s that zipfile checks on read, so flipped or cut bytes raise here
    with np.load(cache, allow_pickle=False) as z:
        arrays = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels", "classes", "meta")}
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.dtype != np.uint8 or images.shape[1:] != (32, 32, 3) or len(images) != len(labels):
            raise ValueError(f"{split} arrays have shape {images.shape} / {labels.shape}")
    return CIFAR10(arrays["train_images"], arrays["train_labels"].astype(np.int64), arrays["test_images"],
                   arrays["test_labels"].astype(np.int64), tuple(str(c) for c in arrays["classes"]),
                   str(path), str(arrays["meta"][1]))


# ---------------------------------------------------------------- download


def download(dest_dir: str | os.PathLike = "data", url: str | None = None, md5: str | None = None) -> Path:
    """Fetch the official archive into `dest_dir` (a progress bar on a terminal, log lines elsewhere) and
    check its length and md5; a mirror may be named by $LRSEARCH_DATA_URL and $LRSEARCH_DATA_MD5. Nothing
    is left half-written: the file is renamed into place only once it checks out."""
    from lrsearch.training.progress import LOG, Bar

    url = url or os.environ.get("LRSEARCH_DATA_URL") or OFFICIAL_URL
    md5 = md5 or os.environ.get("LRSEARCH_DATA_MD5") or OFFICIAL_MD5
    dest = Path(dest_dir) / OFFICIAL_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and _md5(dest) == md5:
        return dest
    tmp = dest.with_suffix(".part")
    LOG.info("downloading %s into %s/", url, dest.parent)
    got, expected = 0, None
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
            expected = int(response.headers.get("Content-Length") or 0) or None
            bar, logged = Bar(expected or 0, OFFICIAL_NAME), 0
            try:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(completed=got, info=f"{got / 1e6:.0f} MB")
                    if expected and got * 10 // expected > logged:  # a line every 10% where no bar shows it
                        logged = got * 10 // expected
                        LOG.debug("downloaded %d of %d bytes", got, expected)
            finally:
                bar.close()
    except (OSError, http.client.HTTPException) as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, http.client.IncompleteRead) or (expected and got and got < expected):
            raise DataError(f"{url}: the download broke off after {got} of {expected} bytes; run the command again") from None
        raise DataError(f"could not download {url} ({err}). Offline? Copy {OFFICIAL_NAME} into {dest.parent}/ "
                        "by hand, or set LRSEARCH_DATA to a CIFAR-10 source you have.") from None
    if expected and got != expected:
        tmp.unlink()
        raise DataError(f"{url}: the download broke off after {got} of {expected} bytes; run the command again")
    digest = _md5(tmp)
    if digest != md5:
        tmp.unlink()
        raise DataError(f"{url}: md5 {digest} differs from the expected {md5} (a damaged or different file); "
                        "run the command again, or check $LRSEARCH_DATA_URL")
    os.replace(tmp, dest)
    LOG.info("%s: %d bytes, md5 verified", dest, got)
    return dest


def ensure_source(source: str | os.PathLike | None = None) -> Path:
    """`resolve_source`, except that where nothing names a source and ./data/ holds none (a fresh machine),
    the official archive is downloaded into ./data/ first. An explicit source or $LRSEARCH_DATA that does
    not exist stays an error: a typo is not a reason to download 170 MB."""
    named = (source is not None and str(source) != "") or bool(os.environ.get("LRSEARCH_DATA"))
    try:
        return resolve_source(source)
    except DataError:
        if named:
            raise
    return download(default_data_dir())


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- splits


def stratified_split(labels: np.ndarray, n_holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held_out): `n_holdout` images held out in equal share per class, seeded."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = n_holdout // len(classes)
    if per_class * len(classes) != n_holdout:
        raise ValueError(f"n_holdout={n_holdout} must be a multiple of the {len(classes)} classes")
    held = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if per_class > len(idx):
            raise ValueError(f"class {c} has {len(idx)} images, fewer than the {per_class} asked for")
        held.append(rng.choice(idx, size=per_class, replace=False))
    held_out = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(labels)), held_out)
    return kept, held_out


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of `n` images, equal share per class."""
    return stratified_split(labels, n, seed)[1]


def select_classes(images: np.ndarray, labels: np.ndarray, classes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The images of `classes` only, in their order, relabelled by position in `classes` ((5, 7): 5 -> 0, 7 -> 1)."""
    relabel = np.full(max(int(labels.max()), *classes) + 1, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    keep = np.flatnonzero(relabel[labels] >= 0)
    return images[keep], relabel[labels[keep]]


# ---------------------------------------------------------------- device-resident batches


def to_device(images: np.ndarray, device: torch.device, mean: np.ndarray, std: np.ndarray | None = None,
              dtype: torch.dtype = torch.float32, channels_last: bool = False) -> torch.Tensor:
    """uint8 N x H x W x C images -> normalised N x C x H x W tensor on `device`, done once."""
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float()
    x = x - torch.as_tensor(mean, dtype=torch.float32, device=device)
    if std is not None:
        x = x / torch.as_tensor(std, dtype=torch.float32, device=device)
    return x.to(dtype).contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class DeviceLoader:
    """Batches of one split that already lives on the device (see `to_device`), no workers.

    Augmentation runs on the whole batch on the device: a random translation by up to `pad`
    pixels (a crop of the reflect-padded image), and a horizontal flip, either `random` (each
    image, each epoch, with probability 1/2) or `alternating` (airbench94: each image's flip is
    drawn once, then inverted every other epoch, so that an image is seen both ways in any two
    consecutive epochs). The order is reshuffled each epoch from a seeded generator. Training
    batches drop the last partial batch, so every epoch has exactly `len(self)` steps of
    `batch_size` images; evaluation batches cover every image once. Batches keep the images'
    memory format (channels_last stays channels_last, so a compiled model sees one layout).
    """

    FLIPS = ("random", "alternating")

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, train: bool = True,
                 augment: bool = False, pad: int = 4, seed: int = 0, flip: str = "random"):
        if flip not in self.FLIPS:
            raise ValueError(f"flip {flip!r}: expected one of {', '.join(self.FLIPS)}")
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.augment, self.pad, self.flip = batch_size, train, augment, pad, flip
        self.memory_format = (torch.channels_last if images.dim() == 4 and images.shape[1] > 1
                              and images.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format)
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self.epoch = 0
        self._order: torch.Tensor | None = None  # this epoch's order, and the index of its next batch
        self._next = 0
        self._resume: tuple[torch.Tensor, int] | None = None  # (order, next batch) to go on from (load_state_dict)
        if train and len(labels) < batch_size:
            raise ValueError(f"{len(labels)} training images are fewer than one batch of {batch_size}")
        if augment and flip == "alternating":
            self.flip_bits = torch.rand(len(labels), device=images.device, generator=self.generator) < 0.5

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.train else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if not self.train:
            for start in range(0, n, self.batch_size):
                yield self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            return
        if self._resume is not None:  # part-way through an epoch whose order was drawn before a checkpoint
            (order, first), self._resume = self._resume, None
            epoch = self.epoch - 1
        else:
            order, first = torch.randperm(n, device=self.images.device, generator=self.generator), 0
            epoch, self.epoch = self.epoch, self.epoch + 1
        self._order = order
        for step in range(first, len(self)):
            self._next = step + 1
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = self._augment(x, idx, epoch)
            yield x.contiguous(memory_format=self.memory_format), self.labels[idx]

    def state_dict(self) -> dict:
        """Where a training loader stands, for a checkpoint: its generator, its epoch count and, part-way through
        an epoch, that epoch's order and the index of the next batch. A loader built alike and given this state
        yields the same batches, augmentation included, as this one goes on to yield."""
        mid_epoch = self._order is not None and self._next < len(self)
        return {"generator": self.generator.get_state(), "epoch": self.epoch,
                "order": self._order.to(torch.int32).cpu() if mid_epoch else None,
                "next": self._next if mid_epoch else 0}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.epoch = int(state["epoch"])
        order = state["order"]
        self._resume = (order.to(self.images.device, torch.int64), int(state["next"])) if order is not None else None

    def _augment(self, x: torch.Tensor, idx: torch.Tensor, epoch: int) -> torch.Tensor:
        b, _, h, w = x.shape
        p = self.pad
        if p:
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
            dy = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=self.generator)
            dx = torch.randint(0, 2 * p + 1, (b,), device=x.device, generator=self.generator)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            x = padded[torch.arange(b, device=x.device)[:, None, None, None],
                       torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
        if self.flip == "alternating":
            flip = self.flip_bits[idx] ^ bool(epoch % 2)
        else:
            flip = torch.rand(b, device=x.device, generator=self.generator) < 0.5
        return torch.where(flip[:, None, None, None], x.flip(3), x)
