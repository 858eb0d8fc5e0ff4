"""The contract of every registered component of every kind — a new plugin is tested once it registers.

For each component: build it tiny (its ``tiny`` config), then check output shapes and dtype, that
gradients reach every trainable parameter, and that its config survives a YAML round trip and rebuilds
the same module. The probes live in :mod:`emo_lightning.contract`, which ``emo plugins check`` runs too.
"""

from __future__ import annotations

import pytest
from skimage.data import astronaut

from emo_lightning import contract, registry

ENTRIES = registry.entries()
ASTRONAUT_FACE = (172, 60, 278, 166)  # x0, y0, x1, y1 around the face of skimage's astronaut, by eye


def ids(entries: list[registry.Entry]) -> list[str]:
    return [f"{e.kind}-{e.name}" for e in entries]


def run(check, *args) -> str:
    try:
        return check(*args)
    except contract.NotApplicable as why:
        pytest.skip(str(why))


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


PREPROCESSING = [e for e in ENTRIES if e.kind in contract.PREPROCESSING_KINDS]


@pytest.mark.parametrize("entry", PREPROCESSING, ids=ids(PREPROCESSING))
def test_preprocessing_component_on_a_photo(entry):
    """Face detectors find the face, sorted by score; pose estimators give ~0 still and > 0.5 deg after a move;
    landmark models put their points on the face; embedders give unit vectors."""
    try:
        contract.build_tiny(entry)
    except (FileNotFoundError, ImportError) as err:  # pretrained models (or their package) absent here
        pytest.skip(f"{entry.kind} {entry.name} cannot be built here: {err}")
    run(contract.check_on_photo, entry, astronaut(), ASTRONAUT_FACE)
