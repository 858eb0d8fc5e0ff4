"""Built-in components. Importing this package registers them (see :mod:`emo_lightning.registry`): it imports the
package of every kind in :data:`~emo_lightning.components.kinds.KINDS` (``emo_lightning/components/<kind>/``),
whose modules register with ``@register(kind, name)``."""

import importlib

from emo_lightning.components.kinds import KINDS

for _kind in KINDS:
    importlib.import_module(f"{__name__}.{_kind}")
