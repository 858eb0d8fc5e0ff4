"""Quality of each fast-generation option on a trained checkpoint: held-out sync (Pearson of the generated mouth
opening with the audio loudness), identity colour error and clip-boundary ratio, with the option against without,
on the same checkpoint, held-out videos and seeds (``emo quickstart``'s evaluation).

    python benchmarks/fast_quality.py quickstart/video/checkpoints/last.ckpt [--videos 4] [--seconds 4]
        [--base steps=2] [--option precision=bf16 --option guidance_min_noise=0.5 ...]

Each ``--option`` is a comma-separated set of generation controls applied on top of ``--base`` (itself on top
of the checkpoint's own settings); the default options are the fast settings the README recommends, one by one.
"""

from __future__ import annotations

import argparse
import time

from emo_lightning.evaluation.synthetic_benchmark import score_held_out_videos
from emo_lightning.pipeline.loading import load_pipeline

DEFAULT_OPTIONS = ["precision=bf16", "guidance_min_noise=0.5", "sampler=unipc",
                   "precision=bf16,guidance_min_noise=0.5,sampler=unipc"]


def controls(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if item)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--base", default="", help="controls of the reference run, e.g. steps=10")
    parser.add_argument("--option", action="append", help="controls of one option run (repeatable)")
    args = parser.parse_args(argv)
    pipeline = load_pipeline(args.checkpoint)
    base = pipeline.settings.override(**controls(args.base))
    rows = []
    for option in ["", *(args.option or DEFAULT_OPTIONS)]:
        pipeline.settings = base.override(**controls(option))
        start = time.process_time()
        metrics, _ = score_held_out_videos(pipeline, num_videos=args.videos, seconds=args.seconds,
                                           audio_zeroed=False, progress=False)
        rows.append((option or "base", metrics, time.process_time() - start))
        print(f"  {rows[-1][0]}: sync {metrics['sync_pearson']:.3f}, "
              f"colour error {metrics['identity_color_error']:.2f}, "
              f"boundary ratio {metrics.get('boundary_ratio', float('nan')):.3f}, {rows[-1][2]:.0f} s CPU", flush=True)
    print(f"base: {args.base or 'the checkpoint’s settings'} ({base.sampler}, {base.steps} steps, guidance "
          f"{base.guidance_reference}/{base.guidance_audio}); {args.videos} held-out videos of {args.seconds:g} s")
    _, reference, seconds = rows[0]
    for name, metrics, cpu in rows[1:]:
        print(f"  {name}: sync {metrics['sync_pearson'] - reference['sync_pearson']:+.3f}, colour error "
              f"{metrics['identity_color_error'] - reference['identity_color_error']:+.2f}, boundary ratio "
              f"{metrics.get('boundary_ratio', 0) - reference.get('boundary_ratio', 0):+.3f}, generation time "
              f"{cpu / seconds:.2f}x")


if __name__ == "__main__":
    main()
