"""Surviving a killed run: `emo fit` killed (SIGKILL, SIGTERM) and restarted with the same command ends where an
uninterrupted run ends, on synthetic and on preprocessed data; a kill during a save leaves a loadable checkpoint.

Each run is a real `emo fit experiment=tiny` subprocess on one thread: 9 steps, a checkpoint every 3 steps and a
validation at steps 4 and 8.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_preprocess import hdtf  # noqa: F401  (the preprocessed HDTF data set, made once per module)

from emo_lightning.model.checkpoint import read_checkpoint
from emo_lightning.training.checkpoint_io import atomic_torch_save

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
MAX_STEPS = 9
RUN = ["experiment=tiny", f"trainer.max_steps={MAX_STEPS}", "callbacks.checkpoint.every_n_train_steps=3",
       "trainer.val_check_interval=4", "trainer.limit_val_batches=1", "trainer.log_every_n_steps=1", "logger=csv",
       "data.num_workers=0", "callbacks.samples.num_videos=0", "+trainer.enable_progress_bar=false",
       "+trainer.enable_model_summary=false"]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline",
            "EMO_CONFIG_DIR": str(REPO / "conf"), "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


def start(root: Path, *overrides: str) -> subprocess.Popen:
    root.mkdir(parents=True, exist_ok=True)
    log = open(root.parent / f"{root.name}.log", "ab")  # noqa: SIM115 (the process writes it)
    return subprocess.Popen([sys.executable, "-m", "emo_lightning.cli", "fit", *RUN, *overrides,
                             f"trainer.default_root_dir={root}"], env=environment(), stdout=log, stderr=log)


def finish(process: subprocess.Popen, root: Path) -> None:
    if process.wait(timeout=600) != 0:
        raise AssertionError(f"emo fit failed ({process.returncode}):\n"
                             + (root.parent / f"{root.name}.log").read_text()[-3000:])


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not path.is_file():
        assert process.poll() is None, f"the run ended before writing {path}"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def losses(root: Path) -> dict[int, float]:
    """train/loss by step over every CSV version of the run (a restart's rows replace the killed run's)."""
    curve = {}
    for metrics in sorted((root / "csv").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:])):
        for row in csv.DictReader(metrics.open()):
            if row.get("train/loss"):
                curve[int(row["step"])] = float(row["train/loss"])
    return curve


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    a, b = (read_checkpoint(root / "checkpoints" / "last.ckpt") for root in (resumed, uninterrupted))
    assert a["global_step"] == b["global_step"] == MAX_STEPS
    torch.testing.assert_close(a["state_dict"], b["state_dict"])
    torch.testing.assert_close(a["ema"]["state_dict"], b["ema"]["state_dict"])
    torch.testing.assert_close(a["optimizer_states"][0]["state"], b["optimizer_states"][0]["state"])
    curve, reference = losses(resumed), losses(uninterrupted)
    assert sorted(curve) == sorted(reference) == list(range(MAX_STEPS))
    assert curve == pytest.approx(reference, rel=1e-5)


def kill_after(root: Path, process: subprocess.Popen, step: int) -> int:
    """SIGKILL the run a moment after its checkpoint of ``step``; the step its last.ckpt then holds."""
    last = root / "checkpoints" / "last.ckpt"
    wait_for(last, process)
    deadline = time.monotonic() + 600
    while read_checkpoint(last)["global_step"] < step:
        assert process.poll() is None and time.monotonic() < deadline, f"the run ended before step {step}"
        time.sleep(0.05)
    time.sleep(0.3)
    process.kill()
    assert process.wait(timeout=600) == -signal.SIGKILL
    killed_at = read_checkpoint(last)["global_step"]
    assert killed_at < MAX_STEPS
    return killed_at


class Background:
    """A run started at once and waited for when its result is needed (runs overlap on the 2 cores)."""

    def __init__(self, root: Path, *overrides: str):
        self.root, self.process = root, start(root, *overrides)

    def result(self) -> Path:
        finish(self.process, self.root)
        return self.root


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Background:
    """The uninterrupted run (batch 2, one process)."""
    return Background(tmp_path_factory.mktemp("resume") / "uninterrupted")


def sigterm_at(root: Path, step: int) -> None:
    """Run until the run SIGTERMs itself at the end of ``step`` (tests/sigterm_at_step.py): it exits with 143
    after saving last.ckpt at that step."""
    process = start(root, "+callbacks.sigterm.class_path=sigterm_at_step.SigtermAtStep",
                    f"+callbacks.sigterm.step={step}")
    assert process.wait(timeout=600) == 128 + signal.SIGTERM
    assert read_checkpoint(root / "checkpoints" / "last.ckpt")["global_step"] == step
    log = (root.parent / f"{root.name}.log").read_text()
    assert f"SIGTERM: saved {root / 'checkpoints' / 'last.ckpt'} at step {step}" in log


def test_sigkill_and_sigterm_then_restarts_equal_the_uninterrupted_run(synthetic_run, tmp_path):
    """SIGKILL after the step-3 checkpoint, restart; SIGTERM at the end of step 4 (it validates) and of step 7 (it
    does not), each saving where it stops, restart: the same weights, EMA, optimizer state and loss curve as the
    uninterrupted run."""
    root = tmp_path / "killed"
    killed_at = kill_after(root, start(root), 3)
    assert killed_at == 3, "the SIGKILL came after the step-6 checkpoint: the restart cannot stop at step 4"
    partial = root / "checkpoints" / ".last.ckpt.999.tmp"  # as a kill during a save leaves it
    partial.write_bytes(b"half a checkpoint")
    sigterm_at(root, 4)
    assert not partial.exists()
    sigterm_at(root, 7)
    finish(start(root), root)
    assert_same_run(root, synthetic_run.result())
    print(f"killed (SIGKILL) after the checkpoint of step {killed_at}")
    columns = next(csv.DictReader((synthetic_run.root / "csv/version_0/metrics.csv").open())).keys()
    assert {"train/loss", "train/lr", "train/grad_norm", "train/step_time", "train/frames_per_s",
            "val/loss"} <= set(columns)


def test_two_ddp_ranks_equal_one_process_accumulating_their_batches(tmp_path):
    """DDP on gloo: 2 ranks of batch 1 train the same weights, EMA included, as 1 process that accumulates 2
    batches of 1 (each rank reads every other sample of the same order, and every sample draws its own noise).
    The comparison is with accumulation, not with one batch of 2: the backbone's kernels round differently for
    a batch of 2, and Adam turns that into lr-sized steps where a gradient is near 0."""
    accumulated = Background(tmp_path / "accumulated", "data.batch_size=1", "trainer.accumulate_grad_batches=2")
    ddp = Background(tmp_path / "ddp", "trainer.devices=2", "trainer.strategy=ddp", "data.batch_size=1").result()
    a, b = (read_checkpoint(root / "checkpoints" / "last.ckpt") for root in (ddp, accumulated.result()))
    assert a["global_step"] == b["global_step"] == MAX_STEPS and len(a["rng_states"]) == 2
    torch.testing.assert_close(a["state_dict"], b["state_dict"])
    torch.testing.assert_close(a["ema"]["state_dict"], b["ema"]["state_dict"])


def test_preprocessed_data_sigkill_then_restart(hdtf, tmp_path):  # noqa: F811
    # batch 1 over the clip's 2 segments: 2 steps an epoch, so checkpoints fall mid-epoch and at epoch ends
    overrides = ["data=preprocessed", f"data.path={hdtf['output']}", "data.batch_size=1"]
    uninterrupted = Background(tmp_path / "uninterrupted", *overrides)
    root = tmp_path / "killed"
    kill_after(root, start(root, *overrides), 3)
    finish(start(root, *overrides), root)
    assert_same_run(root, uninterrupted.result())


def test_a_kill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    """SIGKILL a process while it writes a large checkpoint over last.ckpt: last.ckpt still loads (the old one).
    (The restart removes such partial files: see kill_and_resume.)"""
    last = tmp_path / "checkpoints" / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, last)
    script = ("import torch, sys; from emo_lightning.training.checkpoint_io import atomic_torch_save; "
              "atomic_torch_save({'state_dict': {'w': torch.zeros(200_000_000, dtype=torch.uint8)}, 'global_step': 2},"
              " sys.argv[1])")
    process = subprocess.Popen([sys.executable, "-c", script, str(last)], env=environment())
    deadline = time.monotonic() + 120
    while not list(last.parent.glob(".last.ckpt.*.tmp")):
        assert process.poll() is None and time.monotonic() < deadline, "the save ended before it could be killed"
        time.sleep(0.01)
    process.kill()
    process.wait()
    assert list(last.parent.glob(".last.ckpt.*.tmp"))  # the partial file of the killed save
    assert read_checkpoint(last)["global_step"] == 1
