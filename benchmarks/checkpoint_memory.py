"""Memory that writing a checkpoint and keeping an EMA cost, as ratios against the checkpoint's own size.

Saving: a process holding a checkpoint of ``--mb`` MB of tensors writes it with Lightning's ``TorchCheckpointIO``
(serialises into an in-memory buffer first) and with ``AtomicCheckpointIO`` (streams into a temporary file); each
in a fresh process, the extra peak resident memory of the save is reported. EMA: the bytes Lightning's
``EMAWeightAveraging`` copies (the whole LightningModule) and those ``emo_lightning.training.ema.EMA`` keeps
(the trainable parameters) for ``experiment=tiny``.

    python benchmarks/checkpoint_memory.py [--mb 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_save(kind: str, mb: int) -> dict[str, float]:
    import torch
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from emo_lightning.training.checkpoint_io import AtomicCheckpointIO

    checkpoint = {"state_dict": {f"w{i}": torch.ones(mb * 2**20 // 64 // 4) for i in range(64)}}
    io = TorchCheckpointIO() if kind == "lightning" else AtomicCheckpointIO()
    with tempfile.TemporaryDirectory() as folder:
        before = peak_mb()
        io.save_checkpoint(checkpoint, Path(folder) / "last.ckpt")
        return {"extra_peak_mb": peak_mb() - before}


def ema_bytes() -> dict[str, int]:
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import tiny_module

    module = tiny_module()
    every = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    trainable = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
    return {"lightning_ema_bytes": every, "emo_ema_bytes": trainable}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=1024, help="checkpoint size in MB")
    parser.add_argument("--one", choices=["lightning", "atomic"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_save(args.one, args.mb)))
        return
    results = {"checkpoint_mb": args.mb}
    for kind in ("lightning", "atomic"):
        out = subprocess.run([sys.executable, __file__, "--one", kind, "--mb", str(args.mb)], check=True,
                             capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": ""}).stdout
        extra = json.loads(out.strip().splitlines()[-1])["extra_peak_mb"]
        results[f"{kind}_save_extra_peak_mb"] = round(extra)
        results[f"{kind}_save_extra_peak_ratio"] = round(extra / args.mb, 3)
    ema = ema_bytes()
    results.update(ema, ema_ratio_emo_vs_lightning=round(ema["emo_ema_bytes"] / ema["lightning_ema_bytes"], 3))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
