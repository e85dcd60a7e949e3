"""Copy a ``<class>/<photo>`` folder with every photo resized to fit a square, as JPEG, to carry it to a GPU box.

    python tools/pack_photos.py ../shared/data/flower_photos data/flowers256 --size 256 --quality 75

The 3,303 tf_flowers photos become ~41 MiB at 256 px / quality 75, small enough to travel with the code.
Photos are resized to exactly ``size x size`` (the aspect ratio is not kept, as the training cache does
anyway). Files that do not decode are left out and listed, as ``mvlib.data`` would do.
"""

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from mvlib.data.flowers import _decode_resized, list_image_files  # noqa: E402


def pack(source: Path, target: Path, size: int, quality: int) -> tuple[int, list]:
    paths, labels, class_names = list_image_files(source)

    def one(item):
        path, label = item
        image = _decode_resized(path, size)
        if isinstance(image, str):
            return path, image
        out = target / class_names[label] / (Path(path).stem + ".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(out, quality=quality)
        return None

    with ThreadPoolExecutor() as pool:
        failed = [r for r in pool.map(one, zip(paths, labels)) if r is not None]
    return len(paths) - len(failed), failed


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--quality", type=int, default=75)
    args = p.parse_args()
    written, failed = pack(args.source, args.target, args.size, args.quality)
    total = sum(f.stat().st_size for f in args.target.rglob("*.jpg"))
    print(f"wrote {written} photos to {args.target} ({total / 2**20:.1f} MiB)")
    for path, reason in failed:
        print(f"skipped {path}: {reason}")
