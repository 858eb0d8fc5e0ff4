"""Does the tiny EMO learn? Runs the full `emo quickstart` and checks issue 5's targets.

    python benchmarks/learning.py [output_dir] [extra overrides of experiment=tiny ...]

The ground truth and the audio-zeroed ablation are measured in the same run by the same code, so the
sync Pearson is read against them, not as an absolute number.
"""

from __future__ import annotations

import json
import sys

from emo_lightning.quickstart import quickstart

TARGETS = {  # metric: (comparison, bound)
    "sync_pearson": (">=", 0.8),
    "sync_pearson_audio_zeroed": ("<=", 0.2),
    "boundary_ratio": ("<=", 1.5),
    "minutes": ("<=", 10.0),
}


def main() -> int:
    output = sys.argv[1] if len(sys.argv) > 1 else "runs/learning"
    metrics = quickstart(output, sys.argv[2:])
    print(json.dumps(metrics, indent=2))
    failed = 0
    for key, (op, bound) in TARGETS.items():
        ok = metrics[key] >= bound if op == ">=" else metrics[key] <= bound
        failed += not ok
        print(f"{'PASS' if ok else 'FAIL'}  {key} = {metrics[key]:.3f}  (target {op} {bound})")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
