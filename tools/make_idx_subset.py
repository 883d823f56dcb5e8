"""Cut a smaller IDX set out of an MNIST-layout one: N training and M test images, as IDX files.

    python tools/make_idx_subset.py SOURCE OUT [--train 4000] [--test 1000] [--seed 0]
                                    [--classes NAME] [--raw]

SOURCE holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte`` (raw or ``.gz``; any H x W). OUT receives the same four names
(``.gz`` unless ``--raw``) with ``--train`` images drawn from the training split and ``--test``
from the test split: a seeded sample without replacement, in the source's order, the same for
the same ``--seed``. ``classes.txt`` is copied from SOURCE when there is one; ``--classes NAME``
writes a registered dataset's class names instead (``--classes fashion-mnist``). OUT is then a
``--dataset idx`` folder:

    rnnflow train --dataset idx --data-dir OUT --preset tutorial --val-size 500 ...

The issue's case is "a 4,000/1,000-image subset of MNIST": MNIST is not on every machine, so
docs/DATA.md records the run on a subset of Debian's Fashion-MNIST
(``/usr/share/datasets/fashion-mnist``), made by this script.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

from rnnflow.data.catalog import CLASS_NAMES, canonical_name
from rnnflow.data.idx import read_idx, write_idx
from rnnflow.data.idx_folder import CLASSES_FILE, IDX_FILES


def _find(folder: Path, name: str) -> Path:
    for candidate in (folder / name, folder / (name + ".gz")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"make_idx_subset: {folder} has no {name} (or {name}.gz)")


def subset_indices(n_source: int, n: int, seed: int) -> np.ndarray:
    """``n`` distinct indices of ``range(n_source)``, sorted, drawn with ``seed``."""
    if not 0 < n <= n_source:
        raise ValueError(f"make_idx_subset: asked for {n} images, the source has {n_source}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_source, size=n, replace=False))


def make_subset(
    source: Path, out: Path, *, n_train: int, n_test: int, seed: int, gz: bool = True
) -> dict[str, Path]:
    """Write the subset into ``out``; returns {file name: path written}."""
    suffix = ".gz" if gz else ""
    targets = [out / (name + suffix) for pair in IDX_FILES.values() for name in pair]
    if existing := [str(p) for p in targets if p.exists()]:
        raise FileExistsError(f"make_idx_subset: will not overwrite {', '.join(existing)}")
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images_name, labels_name = IDX_FILES[split]
        images = read_idx(_find(source, images_name))  # uint8 [N, H, W]
        labels = read_idx(_find(source, labels_name))  # uint8 [N]
        if len(images) != len(labels):
            raise ValueError(
                f"make_idx_subset: {source}: {len(images)} {split} images, {len(labels)} labels"
            )
        keep = subset_indices(len(images), n, split_seed)
        for name, array in ((images_name, images[keep]), (labels_name, labels[keep])):
            path = out / (name + suffix)
            write_idx(path, np.ascontiguousarray(array))
            written[path.name] = path
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="folder of the four IDX files")
    parser.add_argument("out", type=Path, help="folder for the subset")
    parser.add_argument("--train", type=int, default=4000, help="training images (4000)")
    parser.add_argument("--test", type=int, default=1000, help="test images (1000)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed (0)")
    parser.add_argument("--classes", default=None, help="write this registered set's names")
    parser.add_argument("--raw", action="store_true", help="uncompressed files (default: .gz)")
    args = parser.parse_args(argv)
    try:
        names = CLASS_NAMES[canonical_name(args.classes)] if args.classes else None
        written = make_subset(
            args.source, args.out, n_train=args.train, n_test=args.test, seed=args.seed,
            gz=not args.raw,
        )  # fmt: skip
    except (OSError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    if names is not None:
        (args.out / CLASSES_FILE).write_text("\n".join(names) + "\n", encoding="utf-8")
    elif (args.source / CLASSES_FILE).is_file():
        shutil.copyfile(args.source / CLASSES_FILE, args.out / CLASSES_FILE)
    print(
        f"{args.out}: {args.train} training and {args.test} test images from {args.source} "
        f"(seed {args.seed}): {', '.join(sorted(written))}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
