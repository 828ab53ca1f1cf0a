"""The View record: points from depth, and which of one view's points another view sees."""
import dataclasses

import numpy as np

from fast3r.data.synthetic import render_scene
from fast3r.data.views import View, visible_share


def turned_around(view: View) -> View:
    flip = np.diag([-1.0, 1.0, -1.0, 1.0])  # half a turn about the camera's y axis
    return dataclasses.replace(view, c2w=view.c2w @ flip)


def test_a_view_sees_all_its_own_points_and_none_behind_it():
    view = render_scene(seed=2, num_views=1, height=30, width=40, trajectory="walk")[0]
    assert visible_share(view, view) == 1.0
    assert visible_share(view, turned_around(view)) == 0.0


def test_points_behind_a_nearer_surface_are_hidden():
    view = render_scene(seed=2, num_views=1, height=30, width=40, trajectory="walk")[0]
    occluded = dataclasses.replace(view, depth=view.depth * 0.5)
    assert visible_share(view, occluded) == 0.0
    partly = view.depth.copy()
    partly[:, :20] *= 0.5  # the left half of the image hidden
    share = visible_share(view, dataclasses.replace(view, depth=partly))
    assert abs(share - view.valid[:, 20:].sum() / view.valid.sum()) < 1e-9
