"""`lrsearch data check` and `lrsearch data download`."""

from __future__ import annotations

import argparse


def _data_check(args: argparse.Namespace) -> int:
    import numpy as np

    from lrsearch.training.data import _cache_path, load_cifar10, resolve_source

    data = load_cifar10(args.source)
    print(f"source: {data.source} ({data.layout} layout)")
    print(f"cache:  {_cache_path(resolve_source(args.source).resolve(), None)}")
    print(f"image shape: {data.train_images.shape[1:]} {data.train_images.dtype}")
    print(f"{'class':<12}{'train':>8}{'test':>8}")
    for i, name in enumerate(data.classes):
        print(f"{name:<12}{int(np.sum(data.train_labels == i)):>8}{int(np.sum(data.test_labels == i)):>8}")
    print(f"{'total':<12}{len(data.train_labels):>8}{len(data.test_labels):>8}")
    print(f"{len(data.train_labels)} train and {len(data.test_labels)} test images in {len(data.classes)} classes")
    return 0


def _data_download(args: argparse.Namespace) -> int:
    from lrsearch.training.data import download

    path = download(args.dest)
    print(f"{path}: md5 verified")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect or fetch CIFAR-10").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="print counts per split and class, image shape and cache location")
    check.add_argument("source", nargs="?", help="archive or folder (default: $LRSEARCH_DATA, else ./data/)")
    check.set_defaults(func=_data_check)
    dl = data.add_parser("download", help="fetch the official cifar-10-python.tar.gz and check its md5")
    dl.add_argument("--dest", default="data", help="folder to put it in (default: ./data)")
    dl.set_defaults(func=_data_download)
