"""Does the tiny EMO learn? Runs the full `emo quickstart` and checks issue 5's targets.

    python benchmarks/learning.py [output=runs/learning] [emo quickstart's arguments and overrides ...]

The ground truth and the audio-zeroed ablation are measured in the same run by the same code, so the
sync Pearson is read against them, not as an absolute number.
"""

from __future__ import annotations

import json
import sys

from emo_lightning.quickstart import parse_arguments, quickstart

TARGETS = {  # metric: (comparison, bound)
    "sync_pearson": (">=", 0.8),
    "sync_pearson_audio_zeroed": ("<=", 0.2),
    "boundary_ratio": ("<=", 1.5),
    "minutes": ("<=", 10.0),
}


def main() -> int:
    args = sys.argv[1:]
    output, overrides, kwargs = parse_arguments(args if any(a.startswith("output=") for a in args)
                                                else ["output=runs/learning", *args])
    metrics = quickstart(output, overrides, **kwargs)
    print(json.dumps(metrics, indent=2))
    failed = 0
    for key, (op, bound) in TARGETS.items():
        ok = metrics[key] >= bound if op == ">=" else metrics[key] <= bound
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {key} = {metrics[key]:.3f}  (target {op} {bound})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
