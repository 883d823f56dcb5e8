"""`rnnflow download NAME [--data-dir D]`: fetch and verify a registered dataset's four files.

Without ``--data-dir``, a dataset already found locally (``$RNNFLOW_DATA_DIR``, the user cache,
or a system folder such as Debian's ``/usr/share/datasets/fashion-mnist``) is verified and
nothing is downloaded, so this works offline wherever the OS package is installed. Otherwise it
downloads into ``D/<name>`` (default: ``$RNNFLOW_DATA_DIR/<name>``, else the user cache
``~/.cache/rnnflow/<name>``) only the files missing there, then checks all four against their
published checksums. EMNIST splits are extracted from NIST's zip of every split, downloaded
once into ``D`` (``D/emnist-gzip.zip``, kept for the other splits). Progress bars (tqdm) are
drawn on stderr when it is a terminal. Exit status 0 when the folder holds the verified dataset,
1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from rnnflow.cli._config_args import dataset_choices, dataset_type


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "download",
        help="download and verify a registered dataset (mnist, kmnist, emnist-letters, ...)",
        description=(
            "Download the four IDX files of a dataset from its mirrors (checked against the "
            "published checksums, atomically renamed) into DATA_DIR/<name>, then verify them."
        ),
    )
    parser.add_argument(
        "dataset",
        type=dataset_type(),
        choices=dataset_choices(idx=False),
        help="dataset name (train's --dataset spelling; the other separator and the "
        "catalog's aliases are accepted)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="root folder; files go to DATA_DIR/<name> (default: $RNNFLOW_DATA_DIR/<name>, "
        "else ~/.cache/rnnflow/<name>)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per connect/read (default: 30)"
    )
    parser.add_argument(
        "--retries", type=int, default=3, help="tries per mirror for transient errors (default: 3)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bar (none is drawn off a terminal)"
    )
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from rnnflow.data.datasets import (
        DATASETS,
        DatasetChecksumError,
        canonical_name,
        download_dataset,
        download_dir,
        find_dataset_dir,
        verify_dataset_dir,
    )
    from rnnflow.data.download import DownloadError, TqdmProgress, tqdm_progress
    from rnnflow.data.idx import IdxFormatError

    name = canonical_name(args.dataset)
    target = download_dir(name, args.data_dir)
    bars: list[TqdmProgress] = []

    def progress(file: str) -> TqdmProgress:
        bars.append(tqdm_progress(sys.stderr, f"  {file}"))
        return bars[-1]

    def close_bars() -> None:  # a transfer that broke off leaves its bar open
        for bar in bars:
            bar.close()

    if args.data_dir is None:
        found, _ = find_dataset_dir(name)
        if found is not None:
            try:
                verify_dataset_dir(name, found)
            except (DatasetChecksumError, IdxFormatError, OSError) as exc:
                print(f"rnnflow download: {exc}", file=sys.stderr)
                return 1
            print(f"{name}: 4 files verified in {found} (found locally, nothing downloaded)")
            return 0
    try:
        download_dataset(
            name,
            target,
            progress=None if args.quiet else progress,
            timeout=args.timeout,
            retries=args.retries,
        )
        verify_dataset_dir(name, target)
    except DownloadError as exc:
        close_bars()
        print(f"rnnflow download: {exc}", file=sys.stderr)
        elsewhere, _ = find_dataset_dir(name)
        if elsewhere is not None and elsewhere != target:
            print(
                f"note: {name} is already available in {elsewhere}; training finds it there "
                "without downloading",
                file=sys.stderr,
            )
        else:
            spec = DATASETS[name]
            kinds = "gzip or uncompressed" if spec.files[0].sha256 else "the .gz files as published"
            where = f"copy the files into {target} ({kinds})"
            if spec.bundle is not None:
                where = f"put {spec.bundle.urls[0]} at {target.parent / spec.bundle.name}"
            print(
                f"to fix it: connect to the internet and retry, or {where}",
                file=sys.stderr,
            )
        return 1
    except (DatasetChecksumError, IdxFormatError, OSError) as exc:
        close_bars()
        print(f"rnnflow download: {exc}", file=sys.stderr)
        return 1
    print(f"{name}: 4 files verified in {target}")
    bundle = DATASETS[name].bundle
    if bundle is not None and (target.parent / bundle.name).is_file():
        print(
            f"note: {target.parent / bundle.name} stays for the other splits it holds; "
            "delete it when done"
        )
    return 0
