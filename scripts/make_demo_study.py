"""Write the bundled demo study: one synthetic PA chest radiograph with a pleural effusion.

Usage::

    python scripts/make_demo_study.py --out resources/demo [--seed 0]

The viewer opens this study when it is started without a path, so it has to look like a chest
X-ray to a radiologist and it has to be reproducible without any patient data. The picture is
built the way a radiograph is made: the anatomy is a set of thickness maps (soft tissue, air in
the lungs and airways, bone) in millimetres; X-rays are attenuated through them (Beer-Lambert),
scattered and counted with quantum noise; the log of the detected signal is then processed as a
modern detector does (dynamic range compression and edge enhancement) and stored in 12 bits.

The demo shows the case of the reference article: fluid in the right pleural space blunts the
right costophrenic angle. The true extent of the fluid is written beside the image as
``chest-pa.mask.png``, so an explanation of the demo model can be checked against it.

The same renderer makes the training phantoms (``make_phantoms.py``): a :class:`Patient` says
how one body differs from the demo's (size, build, heart, diaphragm, ribs, exposure) and an
:class:`Effusion` describes fluid in one pleural space.

Geometry is in millimetres of anatomy: ``x`` runs to the right of the image, which is the
patient's left in a PA view, and ``y`` runs down from the top edge. A :class:`Pose` places that
anatomy on the detector, scaled, turned and shifted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)
from pydicom.valuerep import DSfloat
from scipy import ndimage
from scipy.interpolate import CubicSpline
from skimage.draw import line as draw_line

ROWS, COLUMNS = 1024, 880
SPACING_MM = 0.35
BITS_STORED = 12
FILE_NAME = "chest-pa.dcm"
MASK_SUFFIX = ".mask.png"

# Linear attenuation at an effective energy of about 60 keV, per millimetre.
MU_SOFT = 0.020
MU_BONE = 0.055
LUNG_AIR_FRACTION = 0.8  # inflated lung is about a fifth tissue, four fifths air
RIB_DENSITY = 0.8  # ribs are flattened: thinner front to back than their projected width
# The drawn tree holds only the larger arteries; this gain stands in for the veins and small
# vessels that run beside them, so the markings are as conspicuous as on a real film.
VESSEL_GAIN = 3.0
# Unattenuated photons reaching a square millimetre of detector at the standard dose: 12000
# in a 0.35 mm pixel. Tying noise to area keeps it the same in millimetres at any matrix size.
PHOTONS_PER_MM2 = 12000.0 / 0.35**2
COMPRESSION_SCALE_MM = 60.0  # width of the blurred copy that dynamic range compression removes
CHEST_CENTRE_Y = 180.0  # the point (0, 180) mm is what a pose scales and turns about
# A pixel belongs to an effusion where fluid has taken at least a tenth of the lung's air (the
# meniscus included, where the opacity starts) and there was lung (at least this much air, mm)
# to take it from.
MASK_FLUID_FRACTION = 0.1
MASK_MIN_AIR_MM = 10.0
# The meniscus lies this much (mm) lower medially beyond its share of the height, so that a small
# effusion blunts the lateral angle without pooling in the cardiophrenic angle as well.
MENISCUS_EXTRA_DROP = 15.0
MENISCUS_WIDTH = 25.0  # mm from the chest wall over which the meniscus falls most of its way


# --------------------------------------------------------------------------------------------
# The patient: what differs from one film to the next
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pose:
    """How the patient's anatomy lies on the detector.

    ``scale_x`` is the build (broad or slender), ``scale_y`` the height of the chest; the
    rotation (degrees, clockwise on the image) and shift (mm) are the positioning of the day.
    """

    scale_x: float = 1.0
    scale_y: float = 1.0
    rotation: float = 0.0
    shift_x: float = 0.0
    shift_y: float = 0.0


@dataclass(frozen=True)
class Patient:
    """One body and one exposure; the defaults are the demo patient.

    Diaphragm heights are the tops of the domes (mm from the top edge); the heart is scaled
    about where it rests on the diaphragm and follows the diaphragm up or down. ``depth`` scales
    the body's front-to-back thickness, ``dose`` the photons, ``gastric_air`` the stomach
    bubble; ``scatter``, ``compression`` and ``sharpening`` are the detector's processing.
    """

    pose: Pose = field(default_factory=Pose)
    diaphragm_right: float = 262.0
    diaphragm_left: float = 276.0
    heart_scale: float = 1.0
    heart_shift: float = 0.0
    rib_spacing: float = 21.0
    depth: float = 1.0
    gastric_air: float = 1.0
    dose: float = 1.0
    scatter: float = 0.5
    compression: float = 0.7
    sharpening: float = 0.7

    @property
    def diaphragm_drop(self) -> float:
        """How far (mm) the diaphragm lies below the demo's, on average: the heart sits on it."""
        return (self.diaphragm_right - 262.0 + self.diaphragm_left - 276.0) / 2


SIDES = {"right": -1, "left": 1}  # the patient's right is on the image's left in a PA view


@dataclass(frozen=True)
class Effusion:
    """Fluid in one pleural space, lying in its lowest part in an erect patient.

    ``height`` is how far (mm) the fluid rises above the costophrenic angle at the chest wall.
    Its surface is a meniscus: lower medially by ``meniscus`` times the height (and a little
    more, so that a small effusion only blunts the angle), climbing steeply along the chest
    wall. Below the surface the fluid thickens over ``softness`` mm until it has taken
    ``fullness`` of the lung's air.
    """

    side: str
    height: float
    meniscus: float = 0.45
    softness: float = 16.0
    fullness: float = 0.95

    @property
    def sign(self) -> int:
        """-1 for the patient's right (image left), +1 for the left."""
        return SIDES[self.side]


DEMO_PATIENT = Patient()
# The reference article's case: a right effusion large enough to blunt the angle and hide the
# lateral half of the dome, small enough to leave the rest of the lung clear.
DEMO_EFFUSION = Effusion(side="right", height=95.0, meniscus=0.45, softness=20.0, fullness=0.97)


# --------------------------------------------------------------------------------------------
# The detector grid
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """The anatomical position (mm) of every pixel, and the way back from anatomy to pixels.

    ``spacing`` is the size of a pixel in millimetres of anatomy; ``origin`` is where this
    grid's first pixel lies on the whole detector, so a crop still maps anatomy to its pixels.
    """

    x: np.ndarray
    y: np.ndarray
    spacing: float
    pose: Pose
    detector_spacing: float
    centre_column: float
    origin: tuple[int, int] = (0, 0)

    @classmethod
    def make(cls, rows: int, cols: int, spacing: float, pose: Pose = Pose()) -> Grid:
        """Return the grid of a ``rows`` x ``cols`` detector of ``spacing`` mm square pixels."""
        v, u = np.mgrid[0:rows, 0:cols].astype(np.float32)
        u = (u - (cols - 1) / 2) * spacing - pose.shift_x
        v = v * spacing - CHEST_CENTRE_Y - pose.shift_y
        c, s = np.cos(np.deg2rad(pose.rotation)), np.sin(np.deg2rad(pose.rotation))
        x = (c * u + s * v) / pose.scale_x
        y = (-s * u + c * v) / pose.scale_y + CHEST_CENTRE_Y
        anatomical = spacing / np.sqrt(pose.scale_x * pose.scale_y)
        return cls(x=x.astype(np.float32), y=y.astype(np.float32), spacing=float(anatomical),
                   pose=pose, detector_spacing=spacing, centre_column=(cols - 1) / 2)

    @property
    def shape(self) -> tuple[int, int]:
        return self.x.shape

    def to_pixels(self, x_mm: np.ndarray, y_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (row, column) indices, as floats, of anatomical points given in millimetres."""
        pose = self.pose
        dx, dy = x_mm * pose.scale_x, (y_mm - CHEST_CENTRE_Y) * pose.scale_y
        c, s = np.cos(np.deg2rad(pose.rotation)), np.sin(np.deg2rad(pose.rotation))
        u = c * dx - s * dy + pose.shift_x
        v = s * dx + c * dy + CHEST_CENTRE_Y + pose.shift_y
        row = v / self.detector_spacing - self.origin[0]
        column = u / self.detector_spacing + self.centre_column - self.origin[1]
        return row, column

    def crop(self, x0: float, x1: float, y0: float, y1: float) -> tuple[tuple[slice, slice], Grid]:
        """The pixels covering an anatomical box, as slices and as a grid of their own.

        Structures much smaller than the image (a vertebra) are drawn on their crop only.
        """
        rows, cols = self.to_pixels(np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
        r0, r1 = max(int(rows.min()) - 1, 0), min(int(np.ceil(rows.max())) + 2, self.shape[0])
        c0, c1 = max(int(cols.min()) - 1, 0), min(int(np.ceil(cols.max())) + 2, self.shape[1])
        window = (slice(r0, max(r0, r1)), slice(c0, max(c0, c1)))
        origin = (self.origin[0] + r0, self.origin[1] + c0)
        return window, Grid(self.x[window], self.y[window], self.spacing, self.pose,
                            self.detector_spacing, self.centre_column, origin)

    def blur(self, image: np.ndarray, sigma_mm: float) -> np.ndarray:
        """Gaussian blur with a width given in millimetres.

        Wide blurs (scatter, dynamic range compression) are three passes of a box filter,
        which is as smooth for those purposes and costs the same at any width.
        """
        sigma = sigma_mm / self.spacing
        if sigma < 12:
            return ndimage.gaussian_filter(image, sigma, mode="nearest")
        width = int(round(np.sqrt(4 * sigma * sigma + 1)))
        for _ in range(3):
            image = ndimage.uniform_filter(image, width, mode="nearest")
        return image


def _profile(y: np.ndarray, points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Interpolate a smooth width profile through (y, value) control points."""
    ys, values = zip(*points, strict=True)
    return CubicSpline(ys, values, bc_type="natural")(np.clip(y, ys[0], ys[-1]))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, and a smooth S between: soft edges without ringing."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _ellipse(
    grid: Grid, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> np.ndarray:
    """Return the normalised radius of a rotated ellipse: below 1 inside, 1 on its edge."""
    c, s = np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))
    dx, dy = grid.x - cx, grid.y - cy
    u = (c * dx + s * dy) / a
    v = (-s * dx + c * dy) / b
    return np.sqrt(u * u + v * v)


# --------------------------------------------------------------------------------------------
# Soft tissue and air
# --------------------------------------------------------------------------------------------


def rib_cage_halfwidth(y: np.ndarray) -> np.ndarray:
    """Half the inner width of the rib cage at height ``y``: narrow apex, widest at the bases."""
    return _profile(y, [(20, 40), (40, 78), (70, 104), (110, 118), (170, 125), (240, 127),
                        (300, 124), (358, 118)])


def body_halfwidth(y: np.ndarray) -> np.ndarray:
    """Half the width of the body: the neck at the top, shoulders beyond the field, chest wall."""
    return _profile(y, [(0, 78), (20, 135), (45, 180), (75, 170), (110, 140), (170, 139),
                        (240, 141), (300, 139), (358, 134)])


def body_thickness(grid: Grid, patient: Patient) -> np.ndarray:
    """Front-to-back soft tissue path length (mm) through a flattened oval at every height.

    The chest is boxier than an ellipse, so the path stays long close to the skin: the lateral
    chest wall then shows as a grey band outside the lungs, not as a dark rim.
    """
    depth = _profile(grid.y, [(0, 120), (60, 170), (140, 205), (250, 215), (358, 225)])
    u = np.abs(grid.x) / body_halfwidth(grid.y)
    return patient.depth * depth * np.clip(1 - u**3, 0, None) ** (1 / 3)


def mediastinum(grid: Grid, patient: Patient) -> np.ndarray:
    """Fraction (0 to 1) of the lung that the heart, great vessels and aorta displace.

    The cardiac silhouette is the union of the left ventricle (a tilted ellipsoid whose apex
    points to the patient's left and down), the right atrium (a gentle bulge right of the
    spine), the pulmonary trunk and the aortic knob on the upper left border. Each is an
    ellipsoid, so it displaces most lung at its centre and its edge against the lung stays
    sharp; a little lung is always left in front of and behind the heart. Above the heart the
    upper mediastinum is a vertical band: trachea, great vessels, the superior vena cava on the
    right. The descending aorta runs down the left side of the spine behind the heart.

    The heart grows or shrinks about the point where it rests on the diaphragm, moves with
    the diaphragm and may lie a little to either side.
    """
    def heart(cx: float, cy: float, a: float, b: float, angle: float = 0.0) -> np.ndarray:
        k = patient.heart_scale
        rest_x, rest_y = 12.0, 300.0
        return _ellipsoid(grid, rest_x + k * (cx - rest_x) + patient.heart_shift,
                          rest_y + k * (cy - rest_y) + patient.diaphragm_drop, k * a, k * b, angle)

    parts = [
        0.85 * heart(34, 236, 64, 46, 35),  # left ventricle, apex down and out
        0.80 * heart(-7, 243, 34, 46, 8),  # right atrium
        0.85 * heart(12, 282, 40, 24),  # where the heart rests on the diaphragm
        0.80 * _ellipsoid(grid, 20, 166, 14, 16),  # pulmonary trunk
        0.80 * heart(24, 196, 17, 22),  # left atrial appendage: trunk to ventricle
        0.90 * _ellipsoid(grid, 23, 110, 14, 19, -20),  # aortic knob
    ]
    right_edge = _profile(grid.y, [(0, 17), (60, 19), (100, 23), (140, 27), (170, 26), (230, 27)])
    left_edge = _profile(grid.y, [(0, 17), (50, 20), (90, 25), (140, 21), (230, 21)])
    edge = np.where(grid.x < 0, right_edge, left_edge)
    upper = 1 - _smoothstep((grid.y - 190) / 40)
    band = (1 - _smoothstep((np.abs(grid.x) - edge) / 2.5)) * upper
    aorta = 0.5 * (1 - _smoothstep((np.abs(grid.x - 18) - 9) / 2.0)) * (grid.y > 114)
    return np.maximum.reduce([*parts, band, aorta])


def _ellipsoid(
    grid: Grid, cx: float, cy: float, a: float, b: float, angle: float = 0.0
) -> np.ndarray:
    """Relative thickness (0 to 1) of an ellipsoid seen from the front: round, with a sharp rim."""
    r = _ellipse(grid, cx, cy, a, b, angle)
    return np.sqrt(np.clip(1 - r * r, 0, None)) ** 0.5


def hemidiaphragm(x: np.ndarray, patient: Patient) -> np.ndarray:
    """Height (mm) of the diaphragm at ``x``: two domes, the right one usually higher (liver)."""
    peak = np.where(x < 0, patient.diaphragm_right, patient.diaphragm_left)
    return peak + 0.0105 * (np.abs(x) - 62) ** 2


def lung_masks(grid: Grid, patient: Patient) -> np.ndarray:
    """Boolean map of both lungs: inside the rib cage, above the diaphragm, below the apex."""
    return _thoracic_cavity(grid) & (grid.y < hemidiaphragm(grid.x, patient))


def _thoracic_cavity(grid: Grid) -> np.ndarray:
    """The lungs before the diaphragm cuts them: inside the rib cage, below the apices."""
    inside_cage = np.abs(grid.x) < rib_cage_halfwidth(grid.y) - 3
    below_apex = grid.y > 28 + 0.011 * (np.abs(grid.x) - 48) ** 2
    return inside_cage & below_apex & (np.abs(grid.x) > 14)


def lung_air(grid: Grid, patient: Patient) -> np.ndarray:
    """Air path length through the lungs (mm).

    Depth rises like a circle's chord from the ribs and apices, so those edges are crisp where
    the pleura is tangential to the beam; the bases are deeper than the apices. The domes of
    the diaphragm cut the lungs sharply, and below them the posterior recesses keep a thin
    layer of lung behind the liver and spleen, laterally.
    """
    cavity = _thoracic_cavity(grid)
    inside = ndimage.distance_transform_edt(cavity) * grid.spacing
    rounded = np.sqrt(np.clip(1 - (1 - np.minimum(inside / 45.0, 1)) ** 2, 0, None))
    full_depth = _profile(grid.y, [(20, 70), (80, 120), (160, 150), (260, 165)])
    below_dome = grid.y - hemidiaphragm(grid.x, patient)
    above = 1 - _smoothstep(below_dome / 1.5 + 0.5)
    recess = 22 * np.exp(-np.clip(below_dome, 0, None) / 10.0) * (below_dome > 0)
    recess *= _smoothstep((np.abs(grid.x) - 70) / 30)
    air = full_depth * rounded * above + grid.blur(recess * cavity, 3.0)
    return grid.blur(air, 0.5) * (1 - mediastinum(grid, patient))


def airways(grid: Grid) -> np.ndarray:
    """Air path length through the trachea and main bronchi (mm): the lucent midline band."""
    carina = np.array([3.0, 148.0])
    paths = [
        np.array([[0.0, 0.0], [0.0, 70.0], [-2.0, 110.0], carina]),  # trachea, nudged by the aorta
        np.array([carina, [-16.0, 163.0], [-28.0, 176.0]]),  # right main bronchus, steeper
        np.array([carina, [20.0, 160.0], [36.0, 172.0]]),  # left main bronchus, longer
    ]
    radii = [9.5, 7.0, 6.0]
    air = np.zeros(grid.shape, np.float32)
    for path, radius in zip(paths, radii, strict=True):
        distance = _distance_to_polyline(grid, path)
        air = np.maximum(air, 2 * radius * np.sqrt(np.clip(1 - (distance / radius) ** 2, 0, None)))
    return 1.5 * air  # the airways are a little deeper front to back than wide


def gastric_bubble(grid: Grid, patient: Patient) -> np.ndarray:
    """Air in the stomach fundus under the left dome, above a flat fluid level (mm of air)."""
    level = float(hemidiaphragm(np.array(72.0), patient)) + 24
    r = _ellipse(grid, 72, level, 26, 13)
    air = 32 * patient.gastric_air * np.sqrt(np.clip(1 - r * r, 0, None))
    return grid.blur(np.where(grid.y < level, air, 0.0), 0.8)


def _distance_to_polyline(grid: Grid, points: np.ndarray) -> np.ndarray:
    """Distance (mm) from every pixel to the nearest point of a polyline."""
    best = np.full(grid.shape, np.inf, np.float32)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((grid.x - x0) * dx + (grid.y - y0) * dy) / (dx * dx + dy * dy), 0, 1)
        best = np.minimum(best, np.hypot(grid.x - x0 - t * dx, grid.y - y0 - t * dy))
    return best


# --------------------------------------------------------------------------------------------
# Pleural effusion
# --------------------------------------------------------------------------------------------


def costophrenic_angle(sign: int, patient: Patient) -> tuple[float, float]:
    """Where (mm) the dome of one side meets the lateral chest wall: the costophrenic angle.

    The wall narrows so slowly at the base that a few fixed-point steps find the meeting point.
    """
    y = 300.0
    for _ in range(6):
        x = sign * (float(rib_cage_halfwidth(np.array(y))) - 3)
        y = float(hemidiaphragm(np.array(x), patient))
    return x, y


def fluid_fraction(grid: Grid, patient: Patient, effusion: Effusion) -> np.ndarray:
    """Fraction (0 to 1) of the lung's air that the fluid of one effusion has taken.

    Fluid gathers at the base and climbs the chest wall, so its upper surface is a meniscus:
    concave upward, lowest medially, rising steeply along the wall (Damoiseau's curve). Below the
    surface the layer thickens, so the opacity fades in softly from above.
    """
    angle_x, angle_y = costophrenic_angle(effusion.sign, patient)
    from_wall = np.clip(abs(angle_x) - np.abs(grid.x), 0, None)
    drop = effusion.meniscus * effusion.height + MENISCUS_EXTRA_DROP
    surface = angle_y - effusion.height + drop * (1 - np.exp(-from_wall / MENISCUS_WIDTH))
    depth = _smoothstep((grid.y - surface) / effusion.softness)
    # Medially the layer is thin and seen face on: the heart border and the cardiophrenic
    # angle stay clear unless the effusion is large.
    lateral = _smoothstep((np.abs(grid.x) - 14) / 40)
    return effusion.fullness * depth * lateral * (effusion.sign * grid.x > 0)


def pleural_fluid(grid: Grid, patient: Patient, effusions: Sequence[Effusion]) -> np.ndarray:
    """Fraction of lung air replaced by fluid, over every effusion (zero when there is none)."""
    fluid = np.zeros(grid.shape, np.float32)
    for effusion in effusions:
        fluid = np.maximum(fluid, fluid_fraction(grid, patient, effusion))
    return fluid


def effusion_mask(fluid: np.ndarray, air: np.ndarray) -> np.ndarray:
    """The true lesion: wherever fluid has taken a visible share of what was aerated lung."""
    return (fluid >= MASK_FLUID_FRACTION) & (air >= MASK_MIN_AIR_MM)


# --------------------------------------------------------------------------------------------
# Pulmonary vessels and parenchyma
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vessel:
    """One straight vessel segment (mm) with its radius."""

    start: tuple[float, float]
    end: tuple[float, float]
    radius: float


def vessel_tree(lungs: np.ndarray, grid: Grid, rng: np.random.Generator) -> list[Vessel]:
    """Grow branching pulmonary arteries from both hila into the lungs.

    Each branch runs a little way with a gentle random curve, then forks: one daughter carries
    on nearly straight and almost as thick, the other leaves at a wider angle, thinner. Growth
    stops where a vessel becomes too thin to see or leaves the lung. The lower-lobe trunks are
    the widest, as blood flow is greatest at the bases in an erect patient, and the left hilum
    sits higher than the right.
    """
    hila = {-1: (-36.0, 165.0), 1: (36.0, 152.0)}
    # (angle from the lateral direction, downward positive; radius): upper lobe to lower lobe
    trunks = [(-100, 3.4), (-70, 3.6), (-40, 3.2), (-10, 3.0), (20, 3.6), (50, 4.6), (75, 5.4),
              (100, 4.2)]
    vessels: list[Vessel] = []
    for side, (hx, hy) in hila.items():
        for angle, radius in trunks:
            a = np.deg2rad(angle + rng.normal(0, 6))
            heading = np.array([side * np.cos(a), np.sin(a)])
            start = (hx + side * rng.uniform(0, 8), hy + 0.25 * angle + rng.normal(0, 3))
            _grow(vessels, start, heading, radius * rng.uniform(0.9, 1.1), lungs, grid, rng)
    return vessels


def _rotate(vector: np.ndarray, angle: float) -> np.ndarray:
    """Rotate a 2-vector by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _grow(
    vessels: list[Vessel],
    start: tuple[float, float],
    heading: np.ndarray,
    radius: float,
    lungs: np.ndarray,
    grid: Grid,
    rng: np.random.Generator,
) -> None:
    """Add one curved branch in a few straight steps, then recurse into its two daughters."""
    if radius < 0.5:
        return
    length = 6 + 5 * radius
    point = start
    for _ in range(3):
        heading = _rotate(heading, rng.normal(0, 0.12))
        end = (point[0] + heading[0] * length / 3, point[1] + heading[1] * length / 3)
        row, col = grid.to_pixels(np.array(end[0]), np.array(end[1]))
        r, c = int(round(float(row))), int(round(float(col)))
        if not (0 <= r < grid.shape[0] and 0 <= c < grid.shape[1]) or not lungs[r, c]:
            return
        vessels.append(Vessel(point, end, radius))
        point = end
    side = rng.choice([-1, 1])
    _grow(vessels, point, _rotate(heading, side * np.deg2rad(rng.uniform(5, 18))),
          radius * rng.uniform(0.8, 0.88), lungs, grid, rng)
    _grow(vessels, point, _rotate(heading, -side * np.deg2rad(rng.uniform(30, 55))),
          radius * rng.uniform(0.5, 0.68), lungs, grid, rng)


def vessel_thickness(vessels: list[Vessel], grid: Grid) -> np.ndarray:
    """Projected blood path length (mm): each vessel as a Gaussian tube of its own width.

    Segments are drawn as one-pixel lines into a few radius bins and each bin is blurred once,
    which is far cheaper than drawing every tube exactly and looks the same at this scale.
    """
    bins = np.array([0.6, 0.85, 1.2, 1.7, 2.4, 3.4, 4.8])
    layers = np.zeros((len(bins), *grid.shape), np.float32)
    ends = np.array([[*vessel.start, *vessel.end] for vessel in vessels]).reshape(-1, 4)
    r0, c0 = (v.astype(int) for v in grid.to_pixels(ends[:, 0], ends[:, 1]))
    r1, c1 = (v.astype(int) for v in grid.to_pixels(ends[:, 2], ends[:, 3]))
    for vessel, *line in zip(vessels, r0, c0, r1, c1, strict=True):
        k = int(np.argmin(np.abs(bins - vessel.radius)))
        rr, cc = draw_line(*line)
        keep = (rr >= 0) & (rr < grid.shape[0]) & (cc >= 0) & (cc < grid.shape[1])
        layers[k, rr[keep], cc[keep]] = np.maximum(layers[k, rr[keep], cc[keep]], vessel.radius)
    total = np.zeros(grid.shape, np.float32)
    for k, radius in enumerate(bins):
        sigma = 0.6 * radius
        # A line blurred by a Gaussian peaks at 1 / (sqrt(2 pi) sigma); scale it to the diameter.
        total += grid.blur(layers[k], sigma) * 2 * np.sqrt(2 * np.pi) * sigma / grid.spacing
    return total


def parenchyma(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Faint mottled lung texture (relative, zero mean): small vessels and alveolar walls."""
    fine = grid.blur(rng.normal(0, 1, grid.shape).astype(np.float32), 1.2)
    coarse = grid.blur(rng.normal(0, 1, grid.shape).astype(np.float32), 5.0)
    return fine / fine.std() * 0.7 + coarse / coarse.std() * 0.3


# --------------------------------------------------------------------------------------------
# Bone
# --------------------------------------------------------------------------------------------


def _tube(distance: np.ndarray, half_width: np.ndarray | float, wall: float = 0.3,
          marrow: float = 0.35) -> np.ndarray:
    """Path length through a bone of round cross-section with a dense cortex (in half-widths).

    The cortex is crossed tangentially at the edges, so a long bone's projection has bright
    margins and a greyer middle, as ribs and clavicles show.
    """
    u = distance / half_width
    outer = np.sqrt(np.clip(1 - u * u, 0, None))
    inner_r = 1 - wall
    inner = np.sqrt(np.clip(inner_r**2 - u * u, 0, None))
    return 2 * half_width * (outer - (1 - marrow) * inner)


def _curve(points: Sequence[tuple[float, float]], samples: int = 300) -> np.ndarray:
    """Sample a smooth curve (mm) through control points, by arc-length-like parameter."""
    pts = np.asarray(points, dtype=np.float64)
    t = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    spline = CubicSpline(t, pts, bc_type="natural")
    return spline(np.linspace(0, t[-1], samples))


def _stroke(
    grid: Grid,
    curve: np.ndarray,
    half_width: np.ndarray,
    density: np.ndarray,
    wall: float = 0.3,
) -> np.ndarray:
    """Render a bone along a sampled centreline with a width and density at every sample.

    The centreline is rasterised into a small window around it; a distance transform then
    finds, for each pixel, its nearest centreline sample, whose width and density it takes.
    """
    rows, cols = grid.to_pixels(curve[:, 0], curve[:, 1])
    margin = int(np.ceil(half_width.max() / grid.spacing)) + 2
    r0 = max(int(rows.min()) - margin, 0)
    r1 = min(int(rows.max()) + margin + 1, grid.shape[0])
    c0 = max(int(cols.min()) - margin, 0)
    c1 = min(int(cols.max()) + margin + 1, grid.shape[1])
    out = np.zeros(grid.shape, np.float32)
    if r0 >= r1 or c0 >= c1:
        return out
    label = np.zeros((r1 - r0, c1 - c0), np.int32)
    rr = np.clip(np.round(rows).astype(int) - r0, 0, r1 - r0 - 1)
    cc = np.clip(np.round(cols).astype(int) - c0, 0, c1 - c0 - 1)
    inside = (rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)
    label[rr[inside], cc[inside]] = np.flatnonzero(inside) + 1
    distance, (ir, ic) = ndimage.distance_transform_edt(label == 0, return_indices=True)
    nearest = label[ir, ic] - 1
    out[r0:r1, c0:c1] = _tube(distance * grid.spacing, half_width[nearest], wall) * density[nearest]
    return out


def ribs(grid: Grid, rng: np.random.Generator, patient: Patient) -> tuple[np.ndarray, np.ndarray]:
    """Return (posterior, anterior) rib bone thickness (mm).

    A posterior rib leaves the spine, rises a little, then sweeps out and down to the lateral
    chest wall; there it turns into the anterior rib, which runs down and in, fainter and wider,
    and fades where it becomes costal cartilage. The anterior end lies about three
    interspaces below the posterior one, which gives the familiar criss-cross.
    """
    posterior = np.zeros(grid.shape, np.float32)
    anterior = np.zeros(grid.shape, np.float32)
    for k in range(12):
        drop = 62 + 3 * k
        for side in (-1, 1):
            y0 = 48 + patient.rib_spacing * k + 0.25 * k * k + rng.normal(0, 1.5)
            lateral = float(rib_cage_halfwidth(np.array(y0 + 30))) + rng.normal(0, 1.5)
            back = _curve([
                (side * 22, y0), (side * 40, y0 - 5), (side * 70, y0 - 1),
                (side * (lateral - 12), y0 + 14), (side * (lateral + 3), y0 + 36),
            ])
            t = np.linspace(0, 1, len(back))
            half = (3.2 + 1.4 * t + 0.08 * k) * rng.uniform(0.92, 1.08)
            density = 0.5 + 0.5 * _smoothstep(t * 3)
            posterior += _stroke(grid, back, half, density, wall=0.22)
            if k < 10:
                front = _curve([
                    (side * (lateral + 3), y0 + 36), (side * (lateral - 6), y0 + 36 + 0.25 * drop),
                    (side * 0.65 * lateral, y0 + 36 + 0.7 * drop),
                    (side * 0.32 * lateral, y0 + 36 + drop),
                ])
                t = np.linspace(0, 1, len(front))
                half = 4.6 + 1.6 * t
                density = 0.55 * (1 - _smoothstep((t - 0.5) / 0.45))
                anterior += _stroke(grid, front, half, density, wall=0.2)
    return posterior, anterior


def clavicles(grid: Grid) -> np.ndarray:
    """Clavicle bone thickness (mm): an S-shaped bar from the sternum out past the field."""
    bone = np.zeros(grid.shape, np.float32)
    for side in (-1, 1):
        curve = _curve([(side * 16, 82), (side * 45, 78), (side * 80, 70), (side * 110, 58),
                        (side * 135, 47), (side * 165, 42)])
        t = np.linspace(0, 1, len(curve))
        half = 7.5 - 1.5 * np.sin(np.pi * t) + 2.0 * _smoothstep((t - 0.75) / 0.25)
        bone += _stroke(grid, curve, half, np.full_like(t, 1.2), wall=0.4)
    return bone


def shoulders(grid: Grid) -> np.ndarray:
    """Humeral heads and scapulae at the upper corners (mm of bone)."""
    bone = np.zeros(grid.shape, np.float32)
    for side in (-1, 1):
        r = _ellipse(grid, side * 172, 70, 30, 32)
        bone += 22 * np.sqrt(np.clip(1 - r * r, 0, None)) * 0.5
        bone += 6 * np.exp(-(((r - 1) / 0.04) ** 2)) * (r > 0.9)
        # The scapula: a thin plate lateral to a medial border that runs down and out.
        border = side * (92 + 0.12 * (grid.y - 70))
        plate = _smoothstep((side * (grid.x - border)) / 3.0)
        height = _smoothstep((grid.y - 62) / 8) * (1 - _smoothstep((grid.y - 190) / 25))
        bone += 3.0 * plate * height * (np.abs(grid.x) < 160)
    return bone


def spine(grid: Grid) -> np.ndarray:
    """Vertebrae (mm of bone): bodies with cortical end-plates, pedicles, spinous processes.

    Vertebrae grow a little taller and wider down the spine. Behind the mediastinum they are
    only faintly seen, as on a real PA film; the physics below takes care of that.
    """
    bone = np.zeros(grid.shape, np.float32)
    y = -8.0
    while y < grid.y.max() + 30:
        height = 19 + 0.028 * y
        width = 34 + 0.05 * y
        window, local = grid.crop(-width / 2 - 20, width / 2 + 20, y - 2, y + height + 2)
        bone[window] += vertebra(local, y + height / 2, width, height)
        y += height / 0.84  # body plus disc
    return bone


def vertebra(grid: Grid, yc: float, width: float, height: float) -> np.ndarray:
    """One vertebra centred at height ``yc`` (mm of bone), on a grid that just covers it."""
    dx, dy = np.abs(grid.x) / (width / 2), np.abs(grid.y - yc) / (height / 2)
    u = (dx**3 + dy**3) ** (1 / 3)
    body = np.sqrt(np.clip(1 - u**3, 0, None))
    plates = np.exp(-(((1 - u) / 0.06) ** 2)) * (u < 1.05)
    bone = 4.0 * body + 1.5 * plates
    for side in (-1, 1):
        r = _ellipse(grid, side * width * 0.36, yc - 0.12 * height, 3.8, 5.5)
        bone += 3.0 * np.exp(-(((r - 0.85) / 0.25) ** 2))
        r = _ellipse(grid, side * (width * 0.5 + 7), yc - 0.2 * height, 9, 3.5, side * 12)
        bone += 1.5 * np.sqrt(np.clip(1 - r * r, 0, None))
    r = _ellipse(grid, 0, yc + 0.35 * height, 3.5, 6)
    return bone + 2.0 * np.sqrt(np.clip(1 - r * r, 0, None))


def side_marker(grid: Grid) -> np.ndarray:
    """A lead "L" on the patient's left, top corner of the image (mm of lead-equivalent bone)."""
    x0, y0 = 112.0, 14.0
    stem = (grid.x > x0) & (grid.x < x0 + 3) & (grid.y > y0) & (grid.y < y0 + 16)
    foot = (grid.x > x0) & (grid.x < x0 + 11) & (grid.y > y0 + 13) & (grid.y < y0 + 16)
    return grid.blur((stem | foot).astype(np.float32) * 200, 0.3)


# --------------------------------------------------------------------------------------------
# Physics and processing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attenuation:
    """The line integral of attenuation at every pixel, and the true extent of any effusion."""

    line_integral: np.ndarray
    lesion: np.ndarray


def attenuation(
    grid: Grid, patient: Patient, effusions: Sequence[Effusion], rng: np.random.Generator
) -> Attenuation:
    """Trace the beam through the body; pleural fluid takes the place of lung air.

    Fluid is about as dense as soft tissue, so where it fills the pleural space the lung's air
    is simply gone from the path: the base turns white, the costophrenic angle and the dome
    under the fluid lose their edges, and the vessels there lose the air that showed them.
    The random draws do not depend on the fluid, so a film with and without it differ only
    where the fluid is.
    """
    lungs = lung_masks(grid, patient)
    anatomical_air = lung_air(grid, patient)
    fluid = pleural_fluid(grid, patient, effusions)
    lung = anatomical_air * (1 - fluid)
    aerated = np.clip(lung / 40.0, 0, 1)  # vessels only show against enough air around them
    blood = VESSEL_GAIN * vessel_thickness(vessel_tree(lungs, grid, rng), grid)
    body = body_thickness(grid, patient)
    soft = (
        body
        # Where a bronchus runs into the lung, its air is the lung's own, not extra.
        - np.maximum(LUNG_AIR_FRACTION * lung, airways(grid))
        - gastric_bubble(grid, patient)
        + (blood + 1.2 * parenchyma(grid, rng)) * aerated
    )
    posterior, anterior = ribs(grid, rng, patient)
    rib_cage = RIB_DENSITY * (posterior + grid.blur(anterior, 0.9))  # anterior ribs: far, blurred
    bone = (rib_cage + clavicles(grid) + shoulders(grid) + spine(grid)) * (body > 0)
    line_integral = MU_SOFT * np.clip(soft, 0, None) + MU_BONE * (bone + side_marker(grid))
    return Attenuation(line_integral, effusion_mask(fluid, anatomical_air))


def expose(line_integral: np.ndarray, grid: Grid, patient: Patient,
           rng: np.random.Generator) -> np.ndarray:
    """Return the log of the detected signal: scatter, quantum noise and detector blur.

    Scatter is a broad haze added to the primary beam; it is strongest, relative to the primary,
    behind the dense mediastinum and so lowers contrast there. Quantum noise follows Poisson
    statistics of the photons each unattenuated pixel would receive, which makes dense regions
    grainier. Even the densest pixel counts hundreds of photons, where Poisson noise is
    Gaussian; drawing it as one standard normal field scaled by the square root of the counts
    keeps the grain of a film the same whatever lies in it, a lesion included.
    """
    photons = PHOTONS_PER_MM2 * patient.dose * grid.detector_spacing**2
    primary = np.exp(-grid.blur(line_integral, 0.35))  # focal spot and motion unsharpness
    scatter = patient.scatter * grid.blur(primary, 50.0)
    expected = grid.blur(primary + scatter, 0.25) * photons
    grain = rng.standard_normal(grid.shape, dtype=np.float32)
    counts = (expected + np.sqrt(expected) * grain).astype(np.float32)
    counts = grid.blur(counts, 0.2)  # scintillator light spread
    return -np.log(np.maximum(counts, 0.5) / photons)


def process(log_signal: np.ndarray, body: np.ndarray, grid: Grid, patient: Patient) -> np.ndarray:
    """Detector-style processing: compress the dynamic range, sharpen edges, map to 12 bits.

    Subtracting part of a broadly blurred copy lets lung and mediastinum share one window, as
    every commercial chest processing does; a small unsharp mask brings out vessels and rib
    margins. Air outside the body stays black. The broad scale is wide, as in multiscale
    processing, so that a dense lesion darkens the lung around it only faintly: its footprint
    on the image stays where the lesion is.
    """
    broad = grid.blur(log_signal, COMPRESSION_SCALE_MM)
    compressed = log_signal - patient.compression * broad
    sharpened = compressed + patient.sharpening * (compressed - grid.blur(compressed, 1.8))
    inside = sharpened[body]
    low, high = np.percentile(inside, [0.5, 99.8])
    unit = (sharpened - low) / (high - low)
    unit = 0.08 + 0.84 * unit
    unit = np.where(body, unit, np.minimum(unit, 0.05 + 0.3 * np.clip(unit, 0, None)))
    return np.clip(np.round(unit * (2**BITS_STORED - 1)), 0, 2**BITS_STORED - 1).astype(np.uint16)


@dataclass(frozen=True)
class Radiograph:
    """Stored pixel values (uint16, 12 bits) and the true lesion (bool, empty without one)."""

    pixels: np.ndarray
    lesion: np.ndarray
    spacing: float


def chest_radiograph(
    rows: int = ROWS,
    cols: int = COLUMNS,
    spacing: float = SPACING_MM,
    seed: int | np.random.SeedSequence = 0,
    patient: Patient = DEMO_PATIENT,
    effusions: Sequence[Effusion] = (),
) -> Radiograph:
    """Expose a synthetic PA chest radiograph of ``patient`` with any ``effusions``.

    ``seed`` drives everything random in one film: the vessel tree, the lung texture, the
    ribs' small irregularities and the quantum noise.
    """
    rng = np.random.default_rng(seed)
    grid = Grid.make(rows, cols, spacing, patient.pose)
    traced = attenuation(grid, patient, effusions, rng)
    log_signal = expose(traced.line_integral, grid, patient, rng)
    body = grid.blur((body_thickness(grid, patient) > 0).astype(np.float32), 2.0) > 0.5
    return Radiograph(process(log_signal, body, grid, patient), traced.lesion, spacing)


# --------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """What a file says about whose film it is: all invented, so no patient's data ships.

    Every UID derives from ``uid_source``, so rewriting a file gives the same bytes.
    """

    patient_id: str = "LIGHTBOX-DEMO"
    patient_name: str = "Demo^Phantom"
    accession: str = "DEMO0001"
    study: str = "Chest X-ray (synthetic demo)"
    uid_source: str = "lightbox-demo-study"


def display_window(pixels: np.ndarray) -> tuple[float, float]:
    """Return (center, width) spanning the body from its darkest lung to its densest bone."""
    body = pixels[pixels > 0.07 * (2**BITS_STORED - 1)]
    low, high = np.percentile(body, [0.5, 99.7])
    return round(float(low + high) / 2), round(float(high - low))


def chest_dataset(pixels: np.ndarray, *, spacing: float = SPACING_MM,
                  identity: Identity = Identity()) -> Dataset:
    """Wrap the pixels in a DX For Presentation dataset with the tags a PACS would expect."""
    def uid(name: str) -> str:
        return generate_uid(entropy_srcs=[identity.uid_source, name])

    center, width = display_window(pixels)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = uid("instance")
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = identity.accession
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.Manufacturer = "Lightbox"
    ds.InstitutionName = "Lightbox demo"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = identity.study
    ds.SeriesDescription = "PA chest (synthetic)"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PatientOrientation = ["L", "F"]  # rows run to the patient's left, columns to the feet
    ds.ImageLaterality = "U"
    ds.KVP = DSfloat(120)
    ds.DistanceSourceToDetector = DSfloat(1800)
    ds.StudyInstanceUID = uid("study")
    ds.SeriesInstanceUID = uid("series")
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.ImagerPixelSpacing = [DSfloat(spacing, auto_format=True), DSfloat(spacing, auto_format=True)]

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = DSfloat(0)
    ds.RescaleSlope = DSfloat(1)
    ds.RescaleType = "US"
    ds.WindowCenter = DSfloat(center)
    ds.WindowWidth = DSfloat(width)
    ds.WindowCenterWidthExplanation = "CHEST"
    ds.VOILUTFunction = "LINEAR"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = pixels.astype("<u2").tobytes()
    return ds


def mask_path(dicom_path: Path) -> Path:
    """The lesion mask lies beside its image: ``NAME.dcm`` has ``NAME.mask.png``."""
    return dicom_path.with_suffix(MASK_SUFFIX)


def write_radiograph(radiograph: Radiograph, path: Path, identity: Identity) -> Path:
    """Write the film as DICOM and its lesion as an 8-bit PNG (255 inside) beside it."""
    dataset = chest_dataset(radiograph.pixels, spacing=radiograph.spacing, identity=identity)
    dataset.save_as(path, enforce_file_format=True)
    lesion = radiograph.lesion.astype(np.uint8) * 255
    Image.fromarray(lesion).save(mask_path(path))  # uint8, so 8-bit grey
    return path


def write_demo_study(out: Path, seed: int = 0) -> Path:
    """Render the demo film and write ``out/chest-pa.dcm`` with its mask; return the path."""
    radiograph = chest_radiograph(seed=seed, effusions=(DEMO_EFFUSION,))
    out.mkdir(parents=True, exist_ok=True)
    identity = Identity(uid_source=f"lightbox-demo-study-{seed}")
    return write_radiograph(radiograph, out / FILE_NAME, identity)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write chest-pa.dcm into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise and vessel tree")
    args = parser.parse_args(argv)
    print(write_demo_study(args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
