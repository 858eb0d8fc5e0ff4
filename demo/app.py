"""Gradio demo: a portrait and a voice (or song) in, a talking video out, from any emo-lightning checkpoint.

    python demo/app.py --ckpt runs/t/checkpoints/last.ckpt      # one checkpoint
    python demo/app.py --ckpt runs/ --port 7860                 # every *.ckpt under a folder (a dropdown)

Binds to 127.0.0.1 unless ``--host`` is given. One generation runs at a time; at most ``--queue`` wait.
Checkpoints load without unpickling code and stay cached after first use.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from emo_lightning import registry
from emo_lightning.interrupt import Interrupted, stop_handlers
from emo_lightning.media import MediaError, load_audio
from emo_lightning.model.checkpoint import CheckpointError, read_checkpoint
from emo_lightning.pipeline import GenerationSettings
from emo_lightning.pipeline.examples import SYNTHETIC_ONLY, Example, image_key, synthetic_examples, trained_on_synthetic
from emo_lightning.pipeline.landmarks import DEFAULT_LANDMARKS, job_landmarks
from emo_lightning.pipeline.loading import PipelineCache
from emo_lightning.pipeline.portrait import DEFAULT_DETECTOR, NO_DETECTOR, load_portrait
from emo_lightning.pipeline.settings import CONTROL_HELP

SAMPLERS = ["ddim", "dpmsolver++", "unipc"]
# The generation controls the page shows, each with its label and its widget's range; name, type, default and help
# come from GenerationSettings (emo_lightning/pipeline/settings.py). Up to 20 for guidance: an under-trained model
# can need strong audio guidance.
SETTINGS = {"steps": ("Denoising steps", (1, 100, 1)), "sampler": ("Sampler", SAMPLERS),
            "guidance_reference": ("Reference guidance", (0, 20, 0.1)),
            "guidance_audio": ("Audio guidance", (0, 20, 0.1)), "speed": ("Head-motion speed", (0, 2, 0.05)),
            "seed": ("Seed", None)}
FAST_SETTINGS = {"precision": ("Precision", ["32", "bf16", "fp16"]),
                 "guidance_min_noise": ("Guidance only above this noise level", (0, 1, 0.05)),
                 "cache_threshold": ("Step caching threshold", (0, 0.5, 0.01))}
PRESET = ("steps", "guidance_reference", "guidance_audio", "speed")
"""The controls the checkpoint's own values preset when it is chosen."""
INPUTS = (*SETTINGS, "face_detector", *FAST_SETTINGS)
"""The /generate API's arguments after portrait, audio and checkpoint, in order."""


def find_checkpoints(path: Path) -> dict[str, Path]:
    """Label → file: ``path`` itself, or every ``*.ckpt`` under the folder ``path`` (labels relative to it); LoRA
    adapters (applied to their base model) are labelled as such."""
    if path.is_file():
        return {_label(path, path.name): path}
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))
        if found:
            return {_label(p, str(p.relative_to(path))): p for p in found}
    raise SystemExit(f"demo: no checkpoint at {path} (give a .ckpt file or a folder holding some)")


def _label(path: Path, name: str) -> str:
    try:
        hparams = read_checkpoint(path).get("hyper_parameters") or {}
    except CheckpointError:
        return name  # the error shows when generating
    return f"{name} (LoRA adapter on {Path(hparams.get('init_from') or '?').name})" if hparams.get("lora") else name


def model_defaults(path: Path) -> GenerationSettings:
    """The generation settings a checkpoint was trained with (to preset the sliders)."""
    try:
        hparams = read_checkpoint(path).get("hyper_parameters") or {}
    except CheckpointError:
        hparams = {}  # the error shows when generating
    return GenerationSettings.from_hparams(hparams)


def synthetic_checkpoints(checkpoints: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Label → model hyper-parameters (with the data's ``seed``) of the checkpoints trained on synthetic faces."""
    found = {}
    for label, path in checkpoints.items():
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError:
            continue  # the error shows when generating
        if trained_on_synthetic(checkpoint):
            data_seed = (checkpoint.get("datamodule_hyper_parameters") or {}).get("seed")
            found[label] = {**(checkpoint.get("hyper_parameters") or {}), "seed": data_seed or 0}
    return found


def notice(label: str, synthetic: dict[str, dict[str, Any]]) -> str:
    """What the page says about a checkpoint's inputs."""
    return f"**{label}** {SYNTHETIC_ONLY}" if label in synthetic else ""


class Generator:
    """The demo's one action: checks the inputs, loads the checkpoint (cached) and writes the video."""

    def __init__(self, checkpoints: dict[str, Path], max_audio_seconds: float, output_dir: Path,
                 synthetic: dict[str, dict[str, Any]], examples: list[Example]):
        self.checkpoints, self.max_audio_seconds, self.output_dir = checkpoints, max_audio_seconds, output_dir
        self.synthetic, self.examples = synthetic, {image_key(e.portrait): e for e in examples}
        self.pipelines = PipelineCache(device="cuda" if torch.cuda.is_available() else "cpu")
        self.last_output: Path | None = None

    def __call__(self, portrait: str | None, audio: str | None, checkpoint: str,
                 progress: gr.Progress = gr.Progress(), *values: Any) -> str:
        """``values``: the controls of :data:`INPUTS`, in order."""
        controls = dict(zip(INPUTS, values, strict=True))
        face_detector = controls.pop("face_detector")
        if not portrait:
            raise gr.Error("Upload a portrait first.")
        if not audio:
            raise gr.Error("Upload or record a voice first.")
        if checkpoint not in self.checkpoints:
            raise gr.Error(f"Unknown checkpoint {checkpoint!r}.")
        progress(0, desc="loading the checkpoint")
        try:
            pipeline = self.pipelines.get(self.checkpoints[checkpoint])
        except (CheckpointError, LookupError, OSError) as err:
            raise gr.Error(f"Cannot use checkpoint {checkpoint}: {err}") from err
        rate = pipeline.sample_rate
        progress(0, desc="reading the portrait and the audio")
        try:
            waveform = load_audio(audio, rate)
            if len(waveform) > self.max_audio_seconds * rate:
                raise gr.Error(f"The audio is {len(waveform) / rate:.1f} s long; this demo takes up to "
                               f"{self.max_audio_seconds:g} s.")
            image, mask = self._portrait(portrait, checkpoint, pipeline.layout.resolution, face_detector)
            landmarks = None  # a face locator that draws landmarks follows the portrait's
            if pipeline.model.face_locator.landmark_style is not None:
                landmarks = job_landmarks(portrait, pipeline.layout.resolution, face_detector, DEFAULT_LANDMARKS)
        except MediaError as err:
            raise gr.Error(_readable(err, portrait, audio)) from err
        output = self._new_output(f"{Path(portrait).stem}_talking.mp4")

        def report(p: Any) -> None:
            progress((p.step, p.total), desc=f"clip {p.clip}/{p.clips}", unit="steps")

        try:
            pipeline.write_video(output, image, torch.from_numpy(waveform), mask, on_step=report, landmarks=landmarks,
                                 **controls)  # read with the controls' declared types
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return str(output)

    def _portrait(self, portrait: str, checkpoint: str, resolution: int, face_detector: str
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """An example's own portrait and face mask (as the synthetic data draws them), else the upload's face."""
        example = self.examples.get(image_key(portrait))
        if example is not None and example.image.shape[-1] == resolution:
            return example.image, example.mask
        if checkpoint in self.synthetic:
            gr.Warning(notice(checkpoint, self.synthetic))
        return load_portrait(portrait, resolution, face_detector)

    def _new_output(self, name: str) -> Path:
        """A path in a new folder. The previous video is deleted: Gradio has copied it into its own cache by
        now (one generation runs at a time), and a demo left running must not fill the disk."""
        if self.last_output is not None:
            shutil.rmtree(self.last_output.parent, ignore_errors=True)
        self.last_output = Path(tempfile.mkdtemp(dir=self.output_dir)) / name
        return self.last_output


def _readable(err: Exception, *uploads: str) -> str:
    """The error with upload paths (Gradio's temporary folders) shortened to the file names."""
    message = str(err)
    for upload in uploads:
        message = message.replace(str(upload), Path(upload).name)
    return message


def control_widget(name: str, label: str, choices: tuple[float, float, float] | list[str] | None,
                   defaults: GenerationSettings) -> gr.Component:
    """The widget of generation control ``name``: a slider over ``choices`` = (low, high, step), radio buttons over a
    list of choices, or a number; its value is the checkpoint's own (``defaults``), its help the declared one."""
    value, info = getattr(defaults, name), CONTROL_HELP[name]
    if isinstance(choices, list):
        return gr.Radio(choices if value in choices else [*choices, value], value=value, label=label, info=info,
                        elem_id=name)
    if choices is None:
        return gr.Number(value, precision=0 if isinstance(value, int) else None, label=label, info=info,
                         elem_id=name)
    low, high, step = choices
    return gr.Slider(low, high, value=value, step=step, label=label, info=info, elem_id=name)


def build_app(checkpoints: dict[str, Path], max_audio_seconds: float, output_dir: Path) -> gr.Blocks:
    synthetic = synthetic_checkpoints(checkpoints)
    examples = []
    if synthetic:  # held-out synthetic faces at the first such checkpoint's resolution
        hparams = next(iter(synthetic.values()))
        examples = synthetic_examples(output_dir / "examples", hparams["resolution"], hparams["fps"], hparams["seed"])
    generate = Generator(checkpoints, max_audio_seconds, output_dir, synthetic, examples)
    first = next(iter(checkpoints))
    defaults = model_defaults(checkpoints[first])
    detectors = [NO_DETECTOR, *(e.name for e in registry.entries("face_detector"))]
    # no calls to the outside; uploads and videos are deleted from Gradio's cache after an hour
    with gr.Blocks(title="emo-lightning", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("# emo-lightning\nA portrait and a voice or song in, a talking video out "
                    "([EMO](https://arxiv.org/abs/2402.17485)-style audio-driven diffusion).")
        with gr.Row():
            with gr.Column():
                portrait = gr.Image(type="filepath", image_mode=None, label="Portrait",  # the file as uploaded
                                    sources=["upload", "clipboard"], elem_id="portrait")
                audio = gr.Audio(type="filepath", sources=["upload", "microphone"], elem_id="audio",
                                 label=f"Voice or song (up to {max_audio_seconds:g} s)")
                checkpoint = gr.Dropdown(list(checkpoints), value=first, label="Checkpoint",
                                         interactive=len(checkpoints) > 1, elem_id="checkpoint")
                about = gr.Markdown(notice(first, synthetic), elem_id="notice")
                if examples:
                    gr.Examples([[str(e.portrait), str(e.audio)] for e in examples], [portrait, audio],
                                label="Held-out synthetic faces and speech (never seen in training)")
                with gr.Accordion("Settings", open=True):
                    widgets = {name: control_widget(name, label, choices, defaults)
                               for name, (label, choices) in SETTINGS.items()}
                    widgets["face_detector"] = gr.Dropdown(
                        detectors, value=DEFAULT_DETECTOR if DEFAULT_DETECTOR in detectors else NO_DETECTOR,
                        label="Face detection", info="none: take the centre of the image (drawings, cartoons)")
                with gr.Accordion("Fast generation", open=False):
                    widgets.update({name: control_widget(name, label, choices, defaults)
                                    for name, (label, choices) in FAST_SETTINGS.items()})
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column():
                video = gr.Video(label="Talking video", buttons=["download"], interactive=False, elem_id="video")
        checkpoint.change(lambda label: [getattr(model_defaults(checkpoints[label]), k) for k in PRESET],
                          checkpoint, [widgets[k] for k in PRESET])
        checkpoint.change(lambda label: notice(label, synthetic), checkpoint, about, api_name="notice")
        run.click(generate, [portrait, audio, checkpoint, *(widgets[k] for k in INPUTS)], video, api_name="generate")
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="a checkpoint, or a folder of checkpoints")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    parser.add_argument("--max-audio-seconds", type=float, default=60.0)
    parser.add_argument("--max-upload-mb", type=float, default=20.0)
    parser.add_argument("--queue", type=int, default=8, help="most requests waiting while one runs")
    args = parser.parse_args(argv)
    checkpoints = find_checkpoints(args.ckpt)
    output_dir = Path(tempfile.mkdtemp(prefix="emo-demo-"))
    app = build_app(checkpoints, args.max_audio_seconds, output_dir)
    app.queue(default_concurrency_limit=1, max_size=args.queue)
    restore_signals = stop_handlers()  # SIGINT/SIGTERM: close the server, delete the videos made, exit 130/143
    try:
        app.launch(server_name=args.host, server_port=args.port, max_file_size=f"{args.max_upload_mb:g}mb",
                   ssr_mode=False, allowed_paths=[str(output_dir)])
    except Interrupted as stop:
        app.close()
        print(f"demo: {stop}; server closed", file=sys.stderr)
        raise SystemExit(stop.exit_code) from None
    finally:
        restore_signals()
        shutil.rmtree(output_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
