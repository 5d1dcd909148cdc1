import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from lrsearch.cli import main
from lrsearch.training.data import (
    CLASSES,
    DataError,
    DeviceLoader,
    _cache_path,
    load_cifar10,
    resolve_source,
    stratified_split,
    stratified_subset,
    to_device,
)

# ------------------------------------------------------------ the real archives


def test_jpeg_archive_counts(jpeg_data):
    assert jpeg_data.train_images.shape == (50000, 32, 32, 3) and jpeg_data.train_images.dtype == np.uint8
    assert jpeg_data.test_images.shape == (10000, 32, 32, 3)
    assert jpeg_data.train_labels.dtype == np.int64
    assert np.bincount(jpeg_data.train_labels).tolist() == [5000] * 10
    assert np.bincount(jpeg_data.test_labels).tolist() == [1000] * 10
    assert jpeg_data.classes == CLASSES


def test_mini_archive_official_layout(mini_data):
    assert mini_data.train_images.shape == (5000, 32, 32, 3)
    assert mini_data.test_images.shape == (1000, 32, 32, 3)
    assert mini_data.classes == CLASSES  # read from batches.meta
    assert mini_data.layout == "python"


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_jpeg_copy_matches_lossless_originals(jpeg_data, mini_data):
    """Independent check of labels, image order and RGB channel order: the JPEG copy's
    first images of a class are the originals' first images of that class (data README:
    ~30.5 dB on average); a swapped channel order or label would fall far below that."""
    first_batch = slice(0, 1000)  # the mini archive's data_batch_1 = official data_batch_1[:1000]
    labels = mini_data.train_labels[first_batch]
    psnrs, swapped = [], []
    for c in range(10):
        originals = mini_data.train_images[first_batch][labels == c][:20]
        copies = jpeg_data.train_images[jpeg_data.train_labels == c][:20]
        psnrs += [_psnr(o, j) for o, j in zip(originals, copies)]
        swapped += [_psnr(o, j[..., ::-1]) for o, j in zip(originals, copies)]
    assert np.mean(psnrs) > 27 and min(psnrs) > 20
    assert np.mean(swapped) < np.mean(psnrs) - 3


# ------------------------------------------------------------ generated sources


def _fake_batches(n_per_batch=20, seed=0):
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, n_per_batch)]
        batches[name] = {b"data": data, b"labels": labels}
    batches["batches.meta"] = {b"label_names": [c.encode() for c in CLASSES]}
    return batches


def _write_python_folder(root, batches):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, obj in batches.items():
        (folder / name).write_bytes(pickle.dumps(obj))
    return folder


def _tar_folder(src, dest, arcname):
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=arcname)
    return dest


def test_official_layouts_archive_folder_and_parent(tmp_path):
    batches = _fake_batches()
    folder = _write_python_folder(tmp_path / "extracted", batches)
    archive = _tar_folder(folder, tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py")
    expected = batches["data_batch_1"][b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0)
    for source in (archive, folder, folder.parent):
        data = load_cifar10(source)
        assert data.train_images.shape == (100, 32, 32, 3) and data.test_images.shape == (20, 32, 32, 3)
        np.testing.assert_array_equal(data.train_images[3], expected)  # channel-major -> HWC
        assert data.train_labels[:20].tolist() == batches["data_batch_1"][b"labels"]


def _write_image_folder(root, size=(32, 32), classes=("cat", "dog"), n=3):
    rng = np.random.default_rng(1)
    for split in ("train", "test"):
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(root / split / cls / f"{i:04d}.png")
    return root


def test_image_folder_as_folder_and_tar(tmp_path):
    root = _write_image_folder(tmp_path / "tree")
    tar_path = tmp_path / "tree.tar"
    with tarfile.open(tar_path, "w") as tar:
        for split in ("train", "test"):
            tar.add(root / split, arcname=f"cifar10/{split}")
    for source in (root, tar_path):
        data = load_cifar10(source)
        assert data.layout == "imagefolder"
        assert data.train_images.shape == (6, 32, 32, 3)
        assert data.train_labels.tolist() == [3, 3, 3, 5, 5, 5]  # label = CIFAR-10 index of the folder name
        png = np.asarray(Image.open(root / "train" / "dog" / "0001.png"))
        np.testing.assert_array_equal(data.train_images[4], png)


@pytest.mark.parametrize("problem, match", [
    ("missing", "no such file or folder"),
    ("unknown_layout", "unknown layout"),
    ("truncated", "truncated or not a CIFAR-10 pickle"),
    ("wrong_size", "is 28x28; CIFAR-10 images are 32x32"),
    ("unknown_class", "unknown class folder (train|test)/unicorn/"),
    ("not_tar", "not a tar archive"),
])
def test_bad_sources_name_path_and_problem(tmp_path, problem, match):
    if problem == "missing":
        source = tmp_path / "nope.tar.gz"
    elif problem == "unknown_layout":
        source = tmp_path / "empty"
        (source / "stuff").mkdir(parents=True)
        (source / "stuff" / "readme.txt").write_text("hi")
    elif problem == "truncated":
        folder = _write_python_folder(tmp_path / "x", _fake_batches())
        raw = (folder / "data_batch_2").read_bytes()
        (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
        source = folder
    elif problem == "wrong_size":
        source = _write_image_folder(tmp_path / "t", size=(28, 28))
    elif problem == "unknown_class":
        source = _write_image_folder(tmp_path / "t", classes=("cat", "unicorn"))
    else:
        source = tmp_path / "junk.tar.gz"
        source.write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match=match) as info:
        load_cifar10(source)
    assert str(source) in str(info.value)


def test_cli_prints_one_line_without_traceback(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "missing" in err


def test_no_source_anywhere_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRSEARCH_DATA", raising=False)
    with pytest.raises(DataError, match="LRSEARCH_DATA") as info:
        resolve_source(None)
    assert "lrsearch data download" in str(info.value)
    monkeypatch.setenv("LRSEARCH_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"\$LRSEARCH_DATA"):
        resolve_source(None)


def test_download_offline_fails_clearly(tmp_path):
    from lrsearch.training.data import download

    with pytest.raises(DataError, match="could not download"):
        download(tmp_path, url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert not any(tmp_path.iterdir())  # nothing half-written left behind


# ------------------------------------------------------------ cache


def test_cache_is_reused_invalidated_and_rebuilt_when_corrupt(tmp_path):
    cache_dir = tmp_path / "cache"
    folder = _write_python_folder(tmp_path / "src", _fake_batches())
    first = load_cifar10(folder, cache_dir=cache_dir)
    cache = _cache_path(folder.resolve(), cache_dir)
    assert cache.exists()
    # a changed source gets a new key and is read again
    batches = _fake_batches(seed=7)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batches["data_batch_1"]))
    os.utime(folder / "data_batch_1", ns=(1, 1))
    changed = load_cifar10(folder, cache_dir=cache_dir)
    assert not np.array_equal(changed.train_images[:20], first.train_images[:20])
    # a corrupt cache file is rebuilt, not trusted
    cache = _cache_path(folder.resolve(), cache_dir)
    raw = bytearray(cache.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    cache.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match="rebuilding"):
        again = load_cifar10(folder, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.train_images, changed.train_images)


# ------------------------------------------------------------ splits and loader


def test_stratified_split_is_seeded_disjoint_and_balanced(jpeg_data):
    kept, held = stratified_split(jpeg_data.train_labels, 5000, seed=0)
    assert len(kept) == 45000 and len(held) == 5000 and not set(kept) & set(held)
    assert np.bincount(jpeg_data.train_labels[held]).tolist() == [500] * 10
    assert np.array_equal(held, stratified_split(jpeg_data.train_labels, 5000, seed=0)[1])
    assert not np.array_equal(held, stratified_split(jpeg_data.train_labels, 5000, seed=1)[1])
    sub = stratified_subset(jpeg_data.train_labels, 1000, seed=3)
    assert np.bincount(jpeg_data.train_labels[sub]).tolist() == [100] * 10


def _loader(n=250, batch=32, augment=False, seed=0, pad=4):
    images = np.arange(n * 32 * 32 * 3, dtype=np.int64).reshape(n, 32, 32, 3) % 251
    labels = np.arange(n, dtype=np.int64)  # label = image index, to trace samples
    x = to_device(images.astype(np.uint8), torch.device("cpu"), mean=np.zeros((3, 1, 1)))
    return DeviceLoader(x, torch.from_numpy(labels), batch, augment=augment, seed=seed, pad=pad), images


def test_loader_epoch_accounting_and_reshuffle():
    loader, _ = _loader()
    assert len(loader) == 250 // 32
    epoch1 = torch.cat([y for _, y in loader])
    epoch2 = torch.cat([y for _, y in loader])
    assert len(epoch1) == len(loader) * 32 and len(set(epoch1.tolist())) == len(epoch1)  # no repeats
    assert not torch.equal(epoch1, epoch2)
    again, _ = _loader()
    assert torch.equal(torch.cat([y for _, y in again]), epoch1)  # seeded


def test_loader_images_follow_labels_and_augmentation_is_crop_and_flip():
    loader, images = _loader(augment=True, pad=0)
    for x, y in loader:
        for xi, yi in zip(x, y):
            original = torch.from_numpy(images[yi.item()]).permute(2, 0, 1).float()
            assert torch.equal(xi, original) or torch.equal(xi, original.flip(2))
    shifted, images = _loader(augment=True, pad=4)
    x, y = next(iter(shifted))
    original = torch.from_numpy(images[y[0].item()]).permute(2, 0, 1).float()
    padded = torch.nn.functional.pad(original[None], (4, 4, 4, 4), mode="reflect")[0]
    windows = [padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)]
    assert any(torch.equal(x[0], w) or torch.equal(x[0], w.flip(2)) for w in windows)


def test_eval_loader_covers_every_image_once_in_order():
    images = np.zeros((105, 32, 32, 3), dtype=np.uint8)
    x = to_device(images, torch.device("cpu"), mean=np.full((3, 1, 1), 2.0), std=np.full((3, 1, 1), 4.0))
    assert torch.all(x == -0.5)  # (0 - mean) / std
    loader = DeviceLoader(x, torch.arange(105), 50, train=False)
    assert len(loader) == 3 and torch.equal(torch.cat([y for _, y in loader]), torch.arange(105))


def test_augmented_batches_keep_the_memory_format():
    images = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    for channels_last in (True, False):
        x = to_device(images, torch.device("cpu"), mean=np.zeros((3, 1, 1)), channels_last=channels_last)
        for augment, pad, flip in ((True, 2, "alternating"), (True, 4, "random"), (False, 0, "random")):
            batch, _ = next(iter(DeviceLoader(x, torch.arange(64), 16, augment=augment, pad=pad, flip=flip)))
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            assert batch.is_contiguous(memory_format=fmt), (channels_last, augment, pad, flip)
            assert channels_last == (batch.stride(1) == 1)  # channels innermost only in channels_last


def test_alternating_flip_shows_each_image_both_ways_in_consecutive_epochs():
    loader, images = _loader(n=96, batch=32, augment=True, pad=0)
    loader = DeviceLoader(loader.images, loader.labels, 32, augment=True, pad=0, flip="alternating", seed=1)
    flipped_by_epoch = []
    for _ in range(4):
        flipped = {}
        for x, y in loader:
            for xi, yi in zip(x, y):
                original = torch.from_numpy(images[yi.item()]).permute(2, 0, 1).float()
                assert torch.equal(xi, original) or torch.equal(xi, original.flip(2))
                flipped[yi.item()] = not torch.equal(xi, original)
        flipped_by_epoch.append(flipped)
    first = flipped_by_epoch[0]
    assert 20 < sum(first.values()) < 76  # about half flipped in the first epoch
    for epoch, flipped in enumerate(flipped_by_epoch):
        assert all(flipped[i] == (first[i] ^ (epoch % 2 == 1)) for i in flipped)
    with pytest.raises(ValueError, match="flip 'sometimes'"):
        DeviceLoader(loader.images, loader.labels, 32, augment=True, flip="sometimes")
