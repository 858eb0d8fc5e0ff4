"""The contract checks of one registered component, shared by the test suite (``tests/test_components.py``) and
``emo plugins check <kind>.<name>`` (for plugin authors).

Each check builds the component tiny (its ``tiny`` config plus the arguments EMO derives from the other
components), probes it and returns a one-line description of what it verified; a broken component raises
:class:`~emo_lightning.registry.PluginContractError` (or ``AssertionError``) with the reason, and a check that does
not apply raises :class:`NotApplicable`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from emo_lightning import registry
from emo_lightning.components.base import Component, FaceTool, Probe

PhotoWithFace = tuple[np.ndarray, tuple[int, int, int, int]]  # an RGB photo and the box (x0, y0, x1, y1) of its face


class NotApplicable(Exception):
    """The check does not apply to this component (e.g. no trainable parameters)."""


def _interface(entry: registry.Entry) -> Any:
    return registry.kinds()[entry.kind].interface


def _is(entry: registry.Entry, base: type) -> bool:
    """Whether ``entry``'s kind has an interface derived from ``base`` (:class:`Component`, :class:`FaceTool`)."""
    interface = _interface(entry)
    return isinstance(interface, type) and issubclass(interface, base)


def tiny_arguments(entry: registry.Entry) -> dict[str, Any]:
    """The tiny config: the component's ``tiny`` arguments plus those its kind derives from the other components."""
    return {**entry.tiny_config(), **registry.kinds()[entry.kind].derived}


def runtime_arguments(entry: registry.Entry) -> dict[str, Any]:
    """Derived arguments that are objects, not config (a backbone's ``temporal_block`` factory)."""
    runtime = registry.kinds()[entry.kind].runtime
    return runtime() if runtime else {}


def build_tiny(entry: registry.Entry) -> Any:
    """The component built from its tiny config; the interface's own probe runs as it is built."""
    return registry.build(entry.kind, entry.name, **tiny_arguments(entry), **runtime_arguments(entry))


def probe(entry: registry.Entry, component: Any) -> list[Probe]:
    """The outputs of the interface's probe (with gradients), each with the shape it must have."""
    if not _is(entry, Component):
        raise NotApplicable(f"{entry.kind} components are not modules with tensor outputs")
    return _interface(entry).probe(component)


def check_shapes_and_dtype(entry: registry.Entry) -> str:
    torch.manual_seed(0)
    component = build_tiny(entry)
    results = probe(entry, component)
    shapes, expected = [tuple(r.output.shape) for r in results], [r.shape for r in results]
    assert shapes == expected, f"outputs have shapes {shapes}, expected {expected}"
    for result in results:
        assert result.output.dtype == torch.float32, f"{result.call} is {result.output.dtype}, expected float32"
        assert torch.isfinite(result.output).all(), f"{result.call} holds NaN or inf"
    return f"outputs {', '.join(str(s) for s in shapes)}, float32, finite"


def check_gradients(entry: registry.Entry) -> str:
    torch.manual_seed(0)
    component = build_tiny(entry)
    if not isinstance(component, torch.nn.Module):
        raise NotApplicable("not an nn.Module")
    trainable = {n: p for n, p in component.named_parameters() if p.requires_grad}
    if not trainable:
        raise NotApplicable(f"{entry.kind} {entry.name} has no trainable parameters (frozen by design)")
    # zero-initialised output layers (identity at start) would hide the gradient of everything before them
    with torch.no_grad():
        for p in trainable.values():
            if p.abs().sum() == 0:
                p.normal_(0, 0.02)
    loss = sum(r.output.float().pow(2).mean() for r in probe(entry, component))
    assert loss.requires_grad, "no output depends on a trainable parameter (gradients are cut off)"
    loss.backward()
    missing = [n for n, p in trainable.items() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient reaches {missing}"
    assert sum(p.grad.abs().sum() for p in trainable.values()) > 0, "every gradient is zero"
    count = sum(p.numel() for p in trainable.values())
    return f"all {len(trainable)} trainable tensors ({count:,} parameters) receive a finite gradient"


def check_config_round_trip(entry: registry.Entry) -> str:
    """The tiny config survives YAML, and rebuilding from it gives the same module with the same seed."""
    config = tiny_arguments(entry)
    restored = OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(OmegaConf.create(config))))
    assert restored == config, f"the config changes through YAML: {config} -> {restored}"
    runtime = runtime_arguments(entry)
    torch.manual_seed(1)
    first = registry.build(entry.kind, entry.name, **config, **runtime)
    torch.manual_seed(1)
    second = registry.build(entry.kind, entry.name, **restored, **runtime)
    if not isinstance(first, torch.nn.Module):
        return "the config survives YAML and rebuilds"
    first, second = first.state_dict(), second.state_dict()
    assert first.keys() == second.keys(), "rebuilding from the YAML config gives other weights' names"
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different, f"rebuilding from the YAML config with the same seed gives other values for {different}"
    return f"the config survives YAML; rebuilt with the same seed: the same {len(first)} tensors"


def check_scheduler_denoises(entry: registry.Entry, prediction_type: str = "v_prediction") -> str:
    """With an oracle model (the true noise / velocity), sampling recovers the clean sample."""
    scheduler = registry.build(entry.kind, entry.name, prediction_type=prediction_type,
                               beta_schedule="squaredcos_cap_v2", timestep_spacing="trailing")
    return _interface(entry).check_denoises(scheduler, prediction_type)


def check_on_photo(entry: registry.Entry, image: np.ndarray, face_box: tuple[int, int, int, int]) -> str:
    """A face tool on a real photo of one face (``face_box``: x0, y0, x1, y1 around it)."""
    return _interface(entry).check_on_photo(build_tiny(entry), image, np.array(face_box, np.float32))


def checks(entry: registry.Entry, photo: PhotoWithFace | None = None) -> list[tuple[str, Callable[[], str]]]:
    """The checks that apply to ``entry``, by what its kind's interface offers: a tensor probe (shapes, gradients,
    config round trip), a photo check (face tools, when ``photo`` is given) or an oracle denoising run
    (schedulers). Each check returns what it verified."""
    if _is(entry, Component):
        return [("shapes and dtype", lambda: check_shapes_and_dtype(entry)),
                ("gradient flow", lambda: check_gradients(entry)),
                ("config round trip", lambda: check_config_round_trip(entry))]
    if _is(entry, FaceTool):
        return [("on a photo", lambda: check_on_photo(entry, *photo))] if photo is not None else []
    if hasattr(_interface(entry), "check_denoises"):
        return [(f"denoise ({p})", lambda p=p: check_scheduler_denoises(entry, p)) for p in ("epsilon", "v_prediction")]
    return []


@dataclass
class CheckResult:
    check: str
    status: str  # "ok", "n/a" or "FAILED"
    detail: str


def run_checks(entry: registry.Entry, photo: PhotoWithFace | None = None) -> list[CheckResult]:
    """Every check that applies to ``entry``'s kind; stops at a failed build (nothing else can run)."""
    results = []
    for name, check in [("build + interface probe", lambda: _built(entry)), *checks(entry, photo)]:
        try:
            results.append(CheckResult(name, "ok", check()))
        except NotApplicable as why:
            results.append(CheckResult(name, "n/a", str(why)))
        except Exception as failure:  # a broken contract, or the component's own code raised: a failed check
            expected = isinstance(failure, (AssertionError, registry.PluginContractError, registry.RegistryError))
            detail = str(failure) if expected and str(failure) else f"raised {type(failure).__name__}: {failure}"
            results.append(CheckResult(name, "FAILED", detail))
            if name.startswith("build"):
                break
    return results


def _built(entry: registry.Entry) -> str:
    component = build_tiny(entry)
    return f"{type(component).__name__} is a {_interface(entry).__name__}; its check_contract passes"


def check_report(target: str, image: str | None = None) -> tuple[bool, str]:
    """``emo plugins check <kind>.<name> [image=<photo of one face>]``: (all passed, the printed report)."""
    kind, _, name = target.partition(".")
    if not name:
        raise registry.RegistryError(f"name the component as <kind>.<name> (e.g. audio_encoder.mel), not {target!r}")
    entry = registry.entry(kind, name)
    photo = None
    if image is not None:
        photo = _photo_with_face(image)
    results = run_checks(entry, photo)
    width = max(len(r.check) for r in results)
    lines = [f"{kind}.{name}  ({entry.source})"]
    lines += [f"  {r.check:<{width}}  {r.status:<6}  {r.detail}" for r in results]
    if photo is None and _is(entry, FaceTool):
        lines.append("  (give image=<a photo of one face> to also run it on a real face)")
    ok = all(r.status != "FAILED" for r in results)
    lines.append("all checks passed" if ok else f"{sum(r.status == 'FAILED' for r in results)} check(s) FAILED")
    return ok, "\n".join(lines)


def _photo_with_face(path: str) -> PhotoWithFace:
    """The photo and its face box, found by the default face detector."""
    from emo_lightning.media.image import load_image

    image = load_image(path)
    faces = registry.build("face_detector", "opencv_haar").detect(image)
    if not len(faces):
        raise ValueError(f"{path}: the opencv_haar face detector finds no face to check against")
    x0, y0, x1, y1 = (int(v) for v in faces[0, :4])
    return image, (x0, y0, x1, y1)
