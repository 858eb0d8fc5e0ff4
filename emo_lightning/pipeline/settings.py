"""The generation controls and their defaults, defined once: the model's hyper-parameters, ``emo predict``, job
files and the demo all read them from :class:`GenerationSettings`."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emo_lightning.pipeline.fast_sampling import GuidanceInterval, StepCache, precision_dtype


@dataclass
class Guidance:
    """pred = u + reference·(r − u) + audio·(f − r), with u: no reference, no audio; r: reference only;
    f: reference and audio. 1.0 for both is plain conditional sampling (one backbone pass per step)."""

    reference: float = 1.0
    audio: float = 1.0

    def branches(self) -> list[tuple[bool, bool, float]]:
        """(use reference, use audio, weight) for every branch with a non-zero weight."""
        weights = [(False, False, 1.0 - self.reference), (True, False, self.reference - self.audio),
                   (True, True, self.audio)]
        return [b for b in weights if abs(b[2]) > 1e-8]


def control(default: Any, help: str) -> Any:
    """A generation control's field: its default and the one line of help that ``emo predict``, job files and the
    demo show."""
    return dataclasses.field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class GenerationSettings:
    """How a video is sampled: every generation control's name, type, default and help, declared once. A checkpoint
    carries its own values (the model's hyper-parameters, see :meth:`from_hparams`); ``emo predict`` (through
    :class:`GenerationOverrides`), job files and the demo override them one by one."""

    steps: int = control(40, "denoising steps per clip (the paper's DDIM: 40)")
    sampler: str = control("ddim", "a registered scheduler by name: ddim | dpmsolver++ | unipc | euler")
    guidance_reference: float = control(1.0, "classifier-free guidance scale of the reference (see Guidance)")
    guidance_audio: float = control(1.0, "classifier-free guidance scale of the audio (see Guidance)")
    speed: float = control(1.0, "head-motion speed, degrees per frame: 0.1-1 talking, 1-1.3 singing (stage-3 models)")
    seed: int = control(0, "same seed, same video")
    fps: float = control(25.0, "output frame rate")
    # fast sampling (see emo_lightning/pipeline/fast_sampling.py and docs/guides/generation.md)
    guidance_max_noise: float = control(1.0, "guidance branches run only at noise levels t/T in "
                                        "[guidance_min_noise, guidance_max_noise]; other steps run the fully "
                                        "conditioned branch alone")
    guidance_min_noise: float = control(0.0, "lower end of the guidance noise interval (see guidance_max_noise)")
    cache_threshold: float = control(0.0, "> 0: reuse the last prediction until the input has moved this much "
                                     "(relative L1)")
    precision: str = control("32", "autocast: 32 | bf16 | fp16")
    channels_last: bool = control(False, "the backbone's weights and activations in channels-last memory format")
    compile: bool = control(False, "torch.compile the backbone (the first clip pays the compile time)")

    @property
    def guidance(self) -> Guidance:
        return Guidance(self.guidance_reference, self.guidance_audio)

    def override(self, **controls: Any) -> GenerationSettings:
        """These settings with every control that is not None replaced (and checked)."""
        unknown = sorted(set(controls) - set(CONTROLS))
        if unknown:
            raise ValueError(f"unknown generation controls {unknown}; controls are {list(CONTROLS)}")
        given = {k: CONTROL_TYPES[k](v) for k, v in controls.items() if v is not None}
        settings = dataclasses.replace(self, **given)
        settings.check()
        return settings

    def check(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        GuidanceInterval(self.guidance_max_noise, self.guidance_min_noise)
        StepCache(self.cache_threshold)
        precision_dtype(self.precision)

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> GenerationSettings:
        """A model's own settings from its hyper-parameters (``num_inference_steps``, ``guidance_reference``,
        ``guidance_audio``, ``speed``, ``fps``, the ``sample_scheduler``'s name and any control in ``generation``);
        absent ones take the defaults above."""
        scheduler = hparams.get("sample_scheduler") or {}
        own = {k: hparams.get(k) for k in ("guidance_reference", "guidance_audio", "speed", "fps")}
        return cls().override(**{"steps": hparams.get(MODEL_HPARAMS["steps"]), "sampler": scheduler.get("name"),
                                 **own, **(hparams.get("generation") or {})})


def switch(value: Any) -> bool:
    """A boolean control from a bool or a string (``true``/``false``, ``1``/``0``, ``yes``/``no``, ``on``/``off``)."""
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ValueError(f"expected true or false, got {value!r}")
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


CONTROLS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GenerationSettings))
"""The generation controls' names, in declaration order."""
CONTROL_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in dataclasses.fields(GenerationSettings)}
CONTROL_TYPES: dict[str, Any] = {k: switch if v is bool else v
                                 for k, v in typing.get_type_hints(GenerationSettings).items()}
"""Control → a function that reads a value of it (a string from a job file included)."""
GenerationOverrides = dataclasses.make_dataclass(
    "GenerationOverrides",
    [(f.name, typing.get_type_hints(GenerationSettings)[f.name] | None,
      dataclasses.field(default=None, metadata=f.metadata)) for f in dataclasses.fields(GenerationSettings)],
    namespace={"__doc__": "The generation controls of one ``emo predict`` run, each None (the model's own) or a "
                          "value (see :class:`GenerationSettings`): conf/predict.yaml's controls and "
                          ":class:`~emo_lightning.pipeline.predict.PredictDataModule`'s ``generation`` are typed by "
                          "it."})
GenerationOverrides.__module__ = __name__
MODEL_HPARAMS = {"steps": "num_inference_steps"}
"""Controls whose model hyper-parameter has another name."""
DEFAULTS = GenerationSettings()
