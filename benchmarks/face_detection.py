"""Face-found rate and time per frame of each face detector, in the same run, on: the shared HDTF clip (512x512),
tall phone-shaped copies of it (704x1216 and 1080x1920, the clip filling the width or half of it, or the frame
rolled 20° or 30° as by a tilted hand-held phone; the face visible in every frame) and the 3 shared portraits.

    python benchmarks/face_detection.py [--stride 5] [--detectors mediapipe opencv_haar 'dlib_hog upsample=0']

A frame counts as found when the preprocessing rule (:func:`emo_lightning.preprocess.faces.main_face`: the
largest box of at least ``min_face`` of the shorter side) keeps a box, and as on the face when that box also
holds both eye centres and the mouth centre given by MediaPipe's face mesh on the square source frame (mapped into
the tall frames). Time per frame is a ratio to the first detector on the same frames.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

from emo_lightning import registry
from emo_lightning.media import fit_into_frame, load_image, read_video
from emo_lightning.preprocess.crop import DEFAULT_MIN_FACE
from emo_lightning.preprocess.faces import main_face

SAMPLES = Path(os.environ.get("EMO_SAMPLES", Path(__file__).resolve().parents[2] / "shared" / "samples"))
PORTRAITS = ("portrait_painting.jpg", "portrait_sketch.jpg", "portrait_statue.jpg")
PHONE = ((704, 1216, 1.0, 0), (1080, 1920, 1.0, 0), (704, 1216, 0.25, 0), (1080, 1920, 0.25, 0), (704, 1216, 1.0, 20),
         (704, 1216, 1.0, 30))
"""Phone-shaped copies of the clip: width, height, the share of the width the clip fills, and a roll of the whole
frame in degrees (a hand-held phone held at a tilt)."""
DETECTORS = ("opencv_haar", "opencv_haar short_side=null", "mediapipe", "mediapipe max_ratio=null",
             "mediapipe model=short", "dlib_hog", "dlib_hog upsample=0", "dlib_cnn")
"""Defaults of ``--detectors``: a registered name, then ``key=value`` overrides (YAML values)."""


def parse(spec: str) -> dict:
    name, *pairs = spec.split()
    return {"name": name, **{k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}}


def face_points(images: list[np.ndarray]) -> np.ndarray:
    """(N, 3, 2) left eye, right eye and mouth centres per image by the face mesh (NaN where it finds none)."""
    mesh = registry.build("landmarks", "mediapipe_mesh")
    parts = ("left_eye", "right_eye", "lips_outer")
    return np.stack([np.stack([p[mesh.regions[r]].mean(0) for r in parts]) for p in map(mesh.detect, images)])


def image_sets(stride: int) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Named sets of (images, reference face points per image)."""
    frames = read_video(SAMPLES / "hdtf_clip.mp4")[0][::stride]
    points = face_points(list(frames))
    sets = {f"HDTF clip {frames.shape[2]}x{frames.shape[1]}": (list(frames), points)}
    for width, height, fill, roll in PHONE:
        tall, (scale, left, top) = fit_into_frame(frames, width, height, fill)
        placed = points * scale + np.array([left, top])
        if roll:
            turn = cv2.getRotationMatrix2D((width / 2, height / 2), roll, 1.0)
            tall = np.stack([cv2.warpAffine(f, turn, (width, height), borderMode=cv2.BORDER_REPLICATE) for f in tall])
            placed = placed @ turn[:, :2].T + turn[:, 2]
        name = f"HDTF clip in {width}x{height}" + (f", {fill:.0%} wide" if fill != 1 else "") + (
            f", rolled {roll}°" if roll else "")
        sets[name] = (list(tall), placed)
    portraits = [load_image(SAMPLES / name) for name in PORTRAITS]
    sets["3 portraits"] = (portraits, face_points(portraits))
    return sets


def measure(detector, images: list[np.ndarray], points: np.ndarray) -> dict[str, float]:
    found = on_face = 0
    start = time.perf_counter()
    boxes = [main_face(detector.detect(image), image.shape, DEFAULT_MIN_FACE) for image in images]
    seconds = (time.perf_counter() - start) / len(images)
    for box, reference in zip(boxes, points, strict=True):
        if box is not None:
            found += 1
            on_face += bool(np.all((reference >= box[:2]) & (reference <= box[2:])))
    return {"found": found / len(images), "on_face": on_face / len(images), "seconds": seconds,
            "box_width": float(np.nanmean([b[2] - b[0] if b is not None else np.nan for b in boxes]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stride", type=int, default=5, help="every n-th frame of the 8-s, 200-frame clip")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    sets = image_sets(args.stride)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for spec in args.detectors:
        config = parse(spec)
        detector = registry.build("face_detector", config)
        detector.detect(sets["3 portraits"][0][0])  # warm-up: lazy initialisation is not per-frame time
        results[spec] = {name: measure(detector, images, points) for name, (images, points) in sets.items()}
    baseline = results[args.detectors[0]]
    print(f"face found (on the face) % and time per frame relative to `{args.detectors[0]}`; "
          f"{len(sets['3 portraits'][0])} portraits, {len(next(iter(sets.values()))[0])} frames per clip\n")
    print("| detector | " + " | ".join(sets) + " |")
    print("|---" * (len(sets) + 1) + "|")
    for spec, per_set in results.items():
        cells = [f"{r['found']:.0%} ({r['on_face']:.0%}) · {r['seconds'] / baseline[name]['seconds']:.2g}×"
                 for name, r in per_set.items()]
        print(f"| `{spec}` | " + " | ".join(cells) + " |")
    print(f"\nseconds per frame of `{args.detectors[0]}`: "
          + ", ".join(f"{name} {r['seconds'] * 1000:.0f} ms" for name, r in baseline.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
