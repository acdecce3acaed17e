"""The registry: every explanation method the viewer and the command line offer, by name.

Each method is one file ending in its :class:`~explain.method.Method` record; adding one is a
line here. Everything else (the command line's options, the viewer's forms, the colour bar's
units, the exports) is read from the records.
"""

from __future__ import annotations

from explain import grad_cam, integrated_gradients, lime, occlusion, perturbation
from explain.method import Method

METHODS: dict[str, Method] = {method.name: method for method in (
    occlusion.METHOD,
    integrated_gradients.METHOD,
    lime.METHOD,
    perturbation.METHOD,
    grad_cam.METHOD,
    grad_cam.PLUS_PLUS,
)}
