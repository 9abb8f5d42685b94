"""SynthStreets: generated street scenes in the Cityscapes layout, with hidden context labels.

A frame is a pinhole view down a straight street: sky, building and vegetation
blocks on both sides, sidewalks, a road with lane marks and sometimes a zebra
crosswalk (labelled road, as in Cityscapes), poles with signs and traffic
lights, and instances of car, bus, person, rider and bicycle whose size
follows depth and which occlude each other in depth order. Every instance is
placed *for a reason* (a person crossing on the crosswalk, a car stopped in
front of it, ...) and that reason is its hidden **context label**.

This module is pure compute plus file writing; :func:`render_frame` is a
function of ``(seed, split, index, height, width)`` only, so the output does
not depend on the number of worker processes. Label ids, train ids and colours
all come from ``cityscapesscripts.helpers.labels``.

What it must not do: print, or use any randomness other than the per-frame
``numpy.random.Generator``.
"""

from __future__ import annotations

import colorsys
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from cityscapesscripts.helpers.labels import labels as _CS_LABELS
from cityscapesscripts.helpers.labels import name2label

from pss_bench.data.limits import MAX_FRAMES, MAX_SIDE
from pss_bench.errors import PssBenchError

log = logging.getLogger(__name__)

#: Split codes mixed into the per-frame seed, and into the image id's sequence number.
SPLIT_CODES = {"train": 0, "val": 1}
CITY = "synth"
GENERATOR_VERSION = 1

#: The hidden context labels each thing category can get. Crowd segments get none.
CONTEXTS: dict[str, tuple[str, ...]] = {
    "person": ("crossing on a crosswalk", "alone on a sidewalk", "in a group", "next to a parked car"),
    "car": ("parked at the curb", "driving in a lane", "stopped at a crosswalk"),
    "bus": ("driving in a lane", "stopped at a crosswalk"),
    "rider": ("in traffic", "alone"),
    "bicycle": ("ridden", "parked on a sidewalk"),
}

_ID = {name: name2label[name].id for name in (
    "road", "sidewalk", "building", "pole", "traffic light", "traffic sign", "vegetation", "sky",
    "person", "rider", "car", "bus", "bicycle",
)}

# Lookup tables label id -> train id / colour, from cityscapesscripts.
_TRAIN_LUT = np.full(256, 255, dtype=np.uint8)
_COLOR_LUT = np.zeros((256, 4), dtype=np.uint8)
for _l in _CS_LABELS:
    if 0 <= _l.id < 256:
        _TRAIN_LUT[_l.id] = _l.trainId if 0 <= _l.trainId < 255 else 255
        _COLOR_LUT[_l.id] = (*_l.color, 255)


def image_id_for(split: str, index: int) -> str:
    """Cityscapes-style image id: ``synth_{split code:06d}_{index:06d}``."""
    return f"{CITY}_{SPLIT_CODES[split]:06d}_{index:06d}"


@dataclass
class SynthFrame:
    """One rendered frame.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        label_ids: ``(H, W)`` uint8 Cityscapes label ids.
        instance_ids: ``(H, W)`` uint16 Cityscapes instance ids: ``labelId * 1000 + k``
            on thing instances, the label id on stuff and crowd pixels.
        context: instance id (= panoptic segment id) -> context label, for every
            non-crowd instance with at least one visible pixel.
    """

    image: np.ndarray
    label_ids: np.ndarray
    instance_ids: np.ndarray
    context: dict[int, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- helpers


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """``(h, w)`` float32 zero-mean noise, bilinear-upsampled from a random grid of ``cell`` px."""
    from PIL import Image

    gh, gw = h // cell + 2, w // cell + 2
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    up = Image.fromarray(g, mode="F").resize((gw * cell, gh * cell), Image.BILINEAR)
    return np.asarray(up)[:h, :w]


@dataclass
class _Part:
    """A coloured shape in an object's local metric frame (a: metres right, b: metres up)."""

    kind: str
    params: tuple
    color: np.ndarray


def _part_mask(kind: str, p: tuple, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if kind == "rect":
        a0, a1, b0, b1 = p
        return (a >= a0) & (a <= a1) & (b >= b0) & (b <= b1)
    if kind == "ellipse":
        ac, bc, ra, rb = p
        return ((a - ac) / ra) ** 2 + ((b - bc) / rb) ** 2 <= 1.0
    if kind == "superellipse":
        ac, bc, ra, rb, n = p
        return np.abs((a - ac) / ra) ** n + np.abs((b - bc) / rb) ** n <= 1.0
    if kind == "ring":
        ac, bc, r_out, r_in = p
        d2 = (a - ac) ** 2 + (b - bc) ** 2
        return (d2 <= r_out**2) & (d2 >= r_in**2)
    if kind == "segment":
        (a0, b0), (a1, b1), t = p
        da, db = a1 - a0, b1 - b0
        s = np.clip(((a - a0) * da + (b - b0) * db) / (da * da + db * db + 1e-9), 0.0, 1.0)
        return (a - a0 - s * da) ** 2 + (b - b0 - s * db) ** 2 <= t * t
    if kind == "trapezoid":
        b0, b1, lo0, hi0, lo1, hi1 = p  # a-range [lo0, hi0] at b0, [lo1, hi1] at b1
        s = (b - b0) / (b1 - b0)
        lo = lo0 + s * (lo1 - lo0)
        hi = hi0 + s * (hi1 - hi0)
        return (b >= b0) & (b <= b1) & (a >= lo) & (a <= hi)
    raise ValueError(kind)


@dataclass
class _Object:
    """A thing or stuff object standing on the ground at lateral ``x``, depth ``z`` (metres)."""

    label: str
    x: float
    z: float
    parts: list[_Part]
    extent: tuple[float, float, float]  # a_min, a_max, b_max
    crowd: bool = False
    context: str | None = None
    side: dict | None = None  # vehicle side face: {"xs", "z0", "z1", "height", "color", "window"}
    instance: int = 0  # filled at render time


@dataclass
class _Footprint:
    x0: float
    x1: float
    z0: float
    z1: float

    def hits(self, o: "_Footprint", margin: float = 0.0) -> bool:
        return not (self.x1 + margin < o.x0 or o.x1 + margin < self.x0 or self.z1 + margin < o.z0 or o.z1 + margin < self.z0)


# --------------------------------------------------------------------------- scene


class _Scene:
    """Samples the layout of one frame and renders it."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng = rng
        self.h, self.w = height, width
        u = rng.uniform
        self.f = width * u(0.72, 0.92)
        self.yh = height * u(0.36, 0.46)
        self.xv = width * (0.5 + u(-0.06, 0.06))
        self.hc = u(1.3, 1.7)
        # Street cross-section (metres): [park_l][lanes...][park_r], then sidewalks, then facades.
        self.n_lanes = int(rng.choice([2, 3, 4], p=[0.45, 0.35, 0.2]))
        self.lane_w = u(3.0, 3.6)
        self.park = [rng.random() < 0.65, rng.random() < 0.65]  # left, right
        half = self.n_lanes * self.lane_w / 2
        self.lanes_half = half
        self.road_l = half + (2.3 if self.park[0] else 0.0)
        self.road_r = half + (2.3 if self.park[1] else 0.0)
        self.walk = [u(2.2, 4.5), u(2.2, 4.5)]
        self.z_far = u(70.0, 130.0)
        self.crosswalk: tuple[float, float] | None = None
        if rng.random() < 0.55:
            z0 = u(7.0, 15.0)
            self.crosswalk = (z0, z0 + u(3.0, 4.5))
        self.objects: list[_Object] = []
        self.footprints: list[_Footprint] = []

    # ----------------------------------------------------------------- geometry

    def lane_centres(self) -> list[float]:
        return [-self.lanes_half + (k + 0.5) * self.lane_w for k in range(self.n_lanes)]

    def near_crosswalk(self, z0: float, z1: float, margin: float) -> bool:
        if self.crosswalk is None:
            return False
        c0, c1 = self.crosswalk
        return not (z1 < c0 - margin or z0 > c1 + margin)

    def place(self, fp: _Footprint, margin: float = 0.2) -> bool:
        if any(fp.hits(o, margin) for o in self.footprints):
            return False
        self.footprints.append(fp)
        return True

    # ----------------------------------------------------------------- objects

    def _clothes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r = self.rng
        shirt = _rgb(r.random(), r.uniform(0.1, 0.9), r.uniform(0.15, 0.95))
        pants = _rgb(r.choice([0.6, 0.62, 0.08, r.random()]), r.uniform(0.0, 0.6), r.uniform(0.1, 0.6))
        skin = _rgb(r.uniform(0.03, 0.1), r.uniform(0.25, 0.6), r.uniform(0.35, 0.95))
        hair = _rgb(r.uniform(0.05, 0.12), r.uniform(0.2, 0.8), r.uniform(0.05, 0.6))
        return shirt, pants, skin, hair

    def person(self, x: float, z: float, context: str | None, crowd: bool = False, stride: float = 0.0) -> _Object:
        r = self.rng
        hgt = r.uniform(1.5, 1.9)
        wid = hgt * r.uniform(0.24, 0.3)
        shirt, pants, skin, hair = self._clothes()
        leg_top = 0.48 * hgt
        sw = stride * hgt * 0.12
        parts = [
            _Part("segment", ((-0.22 * wid - sw, 0.03), (-0.1 * wid, leg_top), 0.09 * wid + 0.02), pants),
            _Part("segment", ((0.22 * wid + sw, 0.03), (0.1 * wid, leg_top), 0.09 * wid + 0.02), pants),
            _Part("superellipse", (0.0, 0.63 * hgt, 0.5 * wid, 0.18 * hgt, 4.0), shirt),
            _Part("segment", ((-0.48 * wid, 0.78 * hgt), (-0.55 * wid - sw * 0.5, 0.5 * hgt), 0.07 * wid + 0.015), shirt),
            _Part("segment", ((0.48 * wid, 0.78 * hgt), (0.55 * wid + sw * 0.5, 0.5 * hgt), 0.07 * wid + 0.015), shirt),
            _Part("ellipse", (0.0, 0.9 * hgt, 0.2 * wid, 0.065 * hgt), skin),
            _Part("ellipse", (0.0, 0.945 * hgt, 0.21 * wid, 0.04 * hgt), hair),
        ]
        if r.random() < 0.3:  # a bag
            bag = _rgb(r.random(), r.uniform(0.2, 0.8), r.uniform(0.1, 0.7))
            side = r.choice([-1.0, 1.0])
            parts.append(_Part("rect", (side * 0.5 * wid, side * 0.5 * wid + side * 0.3 * wid, 0.4 * hgt, 0.58 * hgt), bag))
        parts = [_fix_rect(p) for p in parts]
        return _Object("person", x, z, parts, (-0.8 * wid, 0.8 * wid, hgt), crowd=crowd, context=context)

    def vehicle(self, label: str, x: float, z0: float, length: float, context: str, facing_us: bool) -> _Object:
        r = self.rng
        if label == "bus":
            wid, hgt = r.uniform(2.4, 2.6), r.uniform(3.0, 3.4)
            paint = _rgb(r.choice([0.0, 0.1, 0.15, 0.55, 0.33, r.random()]), r.uniform(0.4, 0.9), r.uniform(0.4, 0.9))
        else:
            wid, hgt = r.uniform(1.65, 1.95), r.uniform(1.35, 1.65)
            paint = _rgb(r.random(), r.uniform(0.0, 0.9) ** 1.5, r.uniform(0.1, 0.95))
        glass = _rgb(r.uniform(0.5, 0.65), r.uniform(0.1, 0.4), r.uniform(0.08, 0.3))
        tyre = np.array([0.06, 0.06, 0.07], dtype=np.float32)
        hw = wid / 2
        if label == "bus":
            parts = [
                _Part("rect", (-hw, hw, 0.3, hgt), paint),
                _Part("rect", (-0.42 * wid, 0.42 * wid, 0.45 * hgt, 0.88 * hgt), glass),
                _Part("rect", (-hw + 0.05, -hw + 0.45, 0.0, 0.45), tyre),
                _Part("rect", (hw - 0.45, hw - 0.05, 0.0, 0.45), tyre),
            ]
        else:
            cab = r.uniform(0.3, 0.4)
            parts = [
                _Part("rect", (-hw + 0.05, -hw + 0.4, 0.0, 0.35), tyre),
                _Part("rect", (hw - 0.4, hw - 0.05, 0.0, 0.35), tyre),
                _Part("superellipse", (0.0, 0.38 * hgt, hw, 0.24 * hgt, 6.0), paint),
                _Part("trapezoid", (0.55 * hgt, hgt, -hw * 0.92, hw * 0.92, -hw * cab * 2, hw * cab * 2), paint),
                _Part("trapezoid", (0.6 * hgt, 0.95 * hgt, -hw * 0.8, hw * 0.8, -hw * cab * 1.8, hw * cab * 1.8), glass),
            ]
        lamp = _rgb(0.13, 0.2, 1.0) if facing_us else _rgb(0.0, 0.9, 0.8)
        parts += [
            _Part("rect", (-hw + 0.05, -hw + 0.35, 0.45 * hgt if label == "car" else 0.35, 0.5 * hgt if label == "car" else 0.45), lamp),
            _Part("rect", (hw - 0.35, hw - 0.05, 0.45 * hgt if label == "car" else 0.35, 0.5 * hgt if label == "car" else 0.45), lamp),
            _Part("rect", (-0.25, 0.25, 0.25, 0.36), np.array([0.9, 0.9, 0.85], dtype=np.float32)),
        ]
        # The side facing the camera's centre line is visible.
        xs = x - hw if x > 0 else x + hw
        side = None
        if abs(xs) > 0.3:
            side = {"xs": xs, "z0": z0, "z1": z0 + length, "height": hgt, "color": paint * 0.85, "window": glass,
                    "tyre": tyre, "bus": label == "bus"}
        return _Object(label, x, z0, parts, (-hw, hw, hgt), context=context, side=side)

    def bicycle(self, x: float, z: float, context: str, facing: float) -> _Object:
        r = self.rng
        frame_c = _rgb(r.random(), r.uniform(0.3, 1.0), r.uniform(0.2, 0.9))
        dark = np.array([0.08, 0.08, 0.08], dtype=np.float32)
        wr = r.uniform(0.3, 0.36)
        base = r.uniform(1.0, 1.15)
        ar, af = -facing * base / 2, facing * base / 2
        seat = (ar * 0.35, 0.95)
        bar = (af * 0.8, 1.0)
        crank = (0.0, wr)
        t = 0.025
        parts = [
            _Part("ring", (ar, wr, wr, wr - 0.06), dark),
            _Part("ring", (af, wr, wr, wr - 0.06), dark),
            _Part("segment", ((ar, wr), crank, t), frame_c),
            _Part("segment", (crank, seat, t), frame_c),
            _Part("segment", (seat, bar, t), frame_c),
            _Part("segment", (crank, bar, t), frame_c),
            _Part("segment", ((af, wr), bar, t), frame_c),
        ]
        return _Object("bicycle", x, z, parts, (-base / 2 - wr, base / 2 + wr, 1.1), context=context)

    def rider(self, x: float, z: float, context: str) -> tuple[_Object, _Object]:
        facing = float(self.rng.choice([-1.0, 1.0]))
        bike = self.bicycle(x, z + 0.02, "ridden", facing)
        shirt, pants, skin, hair = self._clothes()
        helmet = _rgb(self.rng.random(), 0.7, self.rng.uniform(0.3, 1.0))
        parts = [
            _Part("segment", ((0.0, 0.45), (-facing * 0.15, 0.95), 0.08), pants),
            _Part("segment", ((-facing * 0.15, 0.95), (facing * 0.05, 1.45), 0.16), shirt),
            _Part("segment", ((facing * 0.05, 1.35), (facing * 0.45, 1.02), 0.05), shirt),
            _Part("ellipse", (facing * 0.08, 1.6, 0.11, 0.13), skin),
            _Part("ellipse", (facing * 0.08, 1.68, 0.13, 0.08), helmet),
        ]
        rider = _Object("rider", x, z, parts, (-0.7, 0.7, 1.8), context=context)
        return rider, bike

    def pole(self, x: float, z: float) -> list[_Object]:
        r = self.rng
        hgt = r.uniform(3.5, 6.0)
        grey = _rgb(r.choice([0.0, 0.3, 0.6]), r.uniform(0.0, 0.3), r.uniform(0.25, 0.6))
        out = [_Object("pole", x, z, [_Part("rect", (-0.07, 0.07, 0.0, hgt), grey)], (-0.1, 0.1, hgt))]
        kind = r.random()
        if kind < 0.5:
            face = [_rgb(0.6, 0.9, 0.7), _rgb(0.0, 0.9, 0.8), _rgb(0.14, 0.9, 0.9), _rgb(0.0, 0.0, 0.95)][int(r.integers(4))]
            shape = "ellipse" if r.random() < 0.5 else "superellipse"
            params = (0.0, hgt - 0.3, 0.32, 0.32) if shape == "ellipse" else (0.0, hgt - 0.3, 0.3, 0.3, 8.0)
            rim = np.array([0.9, 0.9, 0.9], dtype=np.float32) if face[2] < 0.9 else np.array([0.8, 0.1, 0.1], dtype=np.float32)
            rim_params = (params[0], params[1], params[2] + 0.05, params[3] + 0.05) + params[4:]
            out.append(_Object("traffic sign", x, z - 0.01, [_Part(shape, rim_params, rim), _Part(shape, params, face)],
                               (-0.4, 0.4, hgt)))
        return out

    def traffic_light(self, x: float, z: float) -> list[_Object]:
        r = self.rng
        hgt = r.uniform(3.0, 4.0)
        body = np.array([0.1, 0.1, 0.1], dtype=np.float32) * r.uniform(0.7, 2.0)
        on = int(r.integers(3))
        lamps = [_rgb(0.0, 0.9, 1.0), _rgb(0.12, 0.9, 1.0), _rgb(0.35, 0.9, 1.0)]
        parts = [_Part("rect", (-0.2, 0.2, hgt - 1.0, hgt), body)]
        for i, c in enumerate(lamps):
            parts.append(_Part("ellipse", (0.0, hgt - 0.17 - 0.32 * i, 0.12, 0.12), c if i == on else c * 0.25))
        pole = self.pole(x, z + 0.01)[0]
        pole.parts[0].params = (-0.07, 0.07, 0.0, hgt - 1.0)
        pole.extent = (-0.1, 0.1, hgt)
        return [pole, _Object("traffic light", x, z, parts, (-0.25, 0.25, hgt))]

    # ----------------------------------------------------------------- layout

    def populate(self) -> None:
        r = self.rng
        u = r.uniform
        cw = self.crosswalk
        lanes = self.lane_centres()
        parked: list[tuple[int, float, float, float]] = []  # side, x, z0, z1

        # Vehicles parked at the curb.
        for side, on in enumerate(self.park):
            if not on:
                continue
            sgn = -1.0 if side == 0 else 1.0
            x = sgn * (self.lanes_half + 1.15)
            z = u(3.0, 8.0)
            while z < 45.0:
                length = u(3.8, 4.8)
                if not self.near_crosswalk(z, z + length, 1.5) and r.random() < 0.55:
                    if self.place(_Footprint(x - 0.95, x + 0.95, z, z + length)):
                        self.objects.append(self.vehicle("car", x, z, length, "parked at the curb", facing_us=r.random() < 0.5))
                        parked.append((side, x, z, z + length))
                z += length + u(0.6, 6.0)

        # Vehicles in the driving lanes. Left lanes drive towards the camera.
        bus_budget = 1 if r.random() < 0.3 else 0
        for lx in lanes:
            towards = lx < 0
            if cw is not None and r.random() < 0.75:
                label = "bus" if bus_budget and r.random() < 0.4 else "car"
                bus_budget -= label == "bus"
                length = u(10.0, 12.0) if label == "bus" else u(3.8, 4.8)
                gap = u(0.6, 2.0)
                z0 = cw[1] + gap if towards else cw[0] - gap - length
                if z0 > 3.0 and self.place(_Footprint(lx - 1.3, lx + 1.3, z0, z0 + length)):
                    self.objects.append(self.vehicle(label, lx, z0, length, "stopped at a crosswalk", facing_us=towards))
            for _ in range(int(r.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.28, 0.12]))):
                label = "bus" if bus_budget and r.random() < 0.3 else "car"
                length = u(10.0, 12.0) if label == "bus" else u(3.8, 4.8)
                z0 = u(5.0, 65.0)
                if self.near_crosswalk(z0, z0 + length, 8.0):
                    continue
                x = lx + u(-0.35, 0.35)
                if self.place(_Footprint(x - 1.3, x + 1.3, z0 - 3.0, z0 + length + 3.0)):
                    bus_budget -= label == "bus"
                    self.objects.append(self.vehicle(label, x, z0, length, "driving in a lane", facing_us=towards))

        def walk_x(side: int, lo: float, hi: float) -> float:
            edge = self.road_l if side == 0 else self.road_r
            sgn = -1.0 if side == 0 else 1.0
            return sgn * (edge + u(lo, hi) * self.walk[side])

        persons: list[tuple[float, float]] = []

        def far_from_people(x: float, z: float, d: float) -> bool:
            return all((x - px) ** 2 + (z - pz) ** 2 > d * d for px, pz in persons)

        # Persons crossing on the crosswalk.
        if cw is not None:
            for _ in range(int(r.choice([0, 1, 2, 3, 4], p=[0.1, 0.3, 0.3, 0.2, 0.1]))):
                x = u(-self.road_l + 0.4, self.road_r - 0.4)
                z = u(cw[0] + 0.4, cw[1] - 0.4)
                if far_from_people(x, z, 0.7) and self.place(_Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.05):
                    persons.append((x, z))
                    self.objects.append(self.person(x, z, "crossing on a crosswalk", stride=u(0.5, 1.0)))

        # Persons next to a parked car, on the sidewalk beside it.
        for side, _, z0, z1 in parked:
            if r.random() < 0.3:
                x = walk_x(side, 0.08, 0.25)
                z = u(z0 + 0.3, z1 - 0.3)
                if far_from_people(x, z, 0.8) and self.place(_Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.05):
                    persons.append((x, z))
                    self.objects.append(self.person(x, z, "next to a parked car", stride=u(0.0, 0.4)))

        def clear_of_parked(side: int, z: float, d: float) -> bool:
            return all(not (s == side and z0 - d < z < z1 + d) for s, _, z0, z1 in parked)

        # Groups of 2-4 persons on a sidewalk, away from parked cars.
        for _ in range(int(r.choice([0, 1, 2], p=[0.45, 0.38, 0.17]))):
            side = int(r.integers(2))
            cz = u(5.0, 25.0)
            cx = walk_x(side, 0.35, 0.65)
            if not clear_of_parked(side, cz, 1.5) or not far_from_people(cx, cz, 3.0):
                continue
            members = []
            for _ in range(int(r.integers(2, 5))):
                for _try in range(6):
                    x, z = cx + u(-0.7, 0.7), cz + u(-0.9, 0.9)
                    if far_from_people(x, z, 0.45) and all((x - a) ** 2 + (z - b) ** 2 > 0.2 for a, b in members):
                        members.append((x, z))
                        break
            if len(members) >= 2:
                for x, z in members:
                    persons.append((x, z))
                    self.footprints.append(_Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25))
                    self.objects.append(self.person(x, z, "in a group", stride=u(0.0, 0.3)))

        # Persons alone on a sidewalk: nobody within 4 m, no parked car beside them.
        for _ in range(int(r.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))):
            side = int(r.integers(2))
            x, z = walk_x(side, 0.2, 0.8), u(4.0, 28.0)
            if clear_of_parked(side, z, 2.0) and far_from_people(x, z, 4.0) \
                    and self.place(_Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.3):
                persons.append((x, z))
                self.objects.append(self.person(x, z, "alone on a sidewalk", stride=u(0.0, 0.9)))

        # Now and then a crowd, marked the Cityscapes way (one segment, instance id < 1000).
        if r.random() < 0.12:
            side = int(r.integers(2))
            cz = u(12.0, 40.0)
            cx = walk_x(side, 0.3, 0.7)
            if far_from_people(cx, cz, 5.0) and self.place(_Footprint(cx - 1.0, cx + 1.0, cz - 1.0, cz + 1.0)):
                for _ in range(int(r.integers(5, 9))):
                    self.objects.append(self.person(cx + u(-0.9, 0.9), cz + u(-0.9, 0.9), None, crowd=True))

        # Riders: in traffic (a vehicle within 10 m in the same or next lane) or alone (none within 15 m).
        vehicles = [o for o in self.objects if o.label in ("car", "bus") and o.context != "parked at the curb"]
        if vehicles and r.random() < 0.45:
            v = vehicles[int(r.integers(len(vehicles)))]
            x = v.x + u(-1.2, 1.2)
            z = v.z - u(2.0, 6.0) if r.random() < 0.5 else v.z + u(6.0, 10.0)
            if z > 4.0 and abs(x) < self.lanes_half - 0.5 and self.place(_Footprint(x - 0.7, x + 0.7, z - 0.3, z + 0.3)):
                self.objects.extend(self.rider(x, z, "in traffic"))
        if r.random() < 0.4:
            for _try in range(8):
                x = u(-self.lanes_half + 0.8, self.lanes_half - 0.8)
                z = u(5.0, 35.0)
                lonely = all(abs(o.z - z) > 12.0 or abs(o.x - x) > 4.0 for o in self.objects
                             if o.label in ("car", "bus"))
                if lonely and not self.near_crosswalk(z - 1, z + 1, 3.0) \
                        and self.place(_Footprint(x - 0.7, x + 0.7, z - 0.3, z + 0.3)):
                    self.objects.extend(self.rider(x, z, "alone"))
                    break

        # Parked bicycles near the facades.
        if r.random() < 0.3:
            side = int(r.integers(2))
            z = u(6.0, 30.0)
            for i in range(int(r.integers(1, 4))):
                x = walk_x(side, 0.85, 0.93)
                zi = z + 0.7 * i
                if self.place(_Footprint(x - 0.2, x + 0.2, zi - 0.3, zi + 0.3), 0.0):
                    self.objects.append(self.bicycle(x, zi, "parked on a sidewalk", float(r.choice([-1.0, 1.0]))))

        # Poles, signs and traffic lights on the sidewalks.
        for side in (0, 1):
            edge = self.road_l if side == 0 else self.road_r
            x = (-1.0 if side == 0 else 1.0) * (edge + 0.3)
            z = u(4.0, 15.0)
            while z < 60.0:
                if self.place(_Footprint(x - 0.1, x + 0.1, z - 0.1, z + 0.1), 0.1):
                    self.objects.extend(self.pole(x, z))
                z += u(10.0, 25.0)
            if cw is not None and r.random() < 0.7:
                zl = cw[0] - 0.5
                if self.place(_Footprint(x - 0.1, x + 0.1, zl - 0.1, zl + 0.1), 0.1):
                    self.objects.extend(self.traffic_light(x, zl))

    # ----------------------------------------------------------------- rendering

    def render(self) -> SynthFrame:
        r = self.rng
        h, w = self.h, self.w
        f, yh, xv, hc = self.f, self.yh, self.xv, self.hc
        ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
        dy = np.broadcast_to(ys - yh, (h, w))
        dx = np.broadcast_to(xs - xv, (h, w))

        n_low = _smooth_noise(r, h, w, 24)
        n_mid = _smooth_noise(r, h, w, 5)

        label = np.full((h, w), _ID["sky"], dtype=np.uint8)
        img = np.empty((h, w, 3), dtype=np.float32)

        # Sky: vertical gradient with clouds.
        overcast = r.random() < 0.35
        hue = r.uniform(0.55, 0.63)
        top = _rgb(hue, 0.05 if overcast else r.uniform(0.3, 0.7), r.uniform(0.55, 0.95))
        bottom = _rgb(hue, 0.02 if overcast else r.uniform(0.05, 0.3), r.uniform(0.8, 1.0))
        t = np.clip(ys / max(yh, 1.0), 0, 1)[..., None]
        img[:] = top * (1 - t) + bottom * t
        img += (0.06 * n_low)[..., None]

        with np.errstate(divide="ignore", invalid="ignore"):
            zg = np.where(dy > 0, f * hc / dy, np.inf)  # depth of the ground point seen at each pixel
            xg = dx * zg / f
            wall_x = np.where(dx < 0, -(self.road_l + self.walk[0]), self.road_r + self.walk[1])
            zw = np.where(np.abs(dx) > 1e-3, f * wall_x / dx, np.inf)  # depth where the ray meets a facade
        zw = np.where(zw > 0, zw, np.inf)
        ground = (zg < zw) & (zg < self.z_far)
        facade = ~ground & (zw < self.z_far)
        far = ~ground & ~facade
        hw_ = hc - dy * np.where(np.isfinite(zw), zw, 0) / f  # height where the ray meets the facade

        # Facade blocks along depth, independently per side.
        for side in (0, 1):
            bounds = np.cumsum(r.uniform(6.0, 22.0, size=16))
            kinds = r.random(16) < 0.72  # True: building, False: vegetation
            heights = np.where(kinds, r.uniform(6.0, 24.0, 16), r.uniform(3.0, 9.0, 16))
            colors = np.stack([_rgb(r.random(), r.uniform(0.03, 0.45), r.uniform(0.3, 0.85)) for _ in range(16)])
            wins = r.uniform(2.5, 4.0, 16), r.uniform(2.8, 3.6, 16)
            sel = facade & ((dx < 0) if side == 0 else (dx >= 0))
            if not sel.any():
                continue
            zz, hh = zw[sel], hw_[sel]
            k = np.minimum(np.searchsorted(bounds, zz), 15)
            is_b = kinds[k]
            wobble = 1.0 + 0.12 * np.sin(zz * 1.7 + k) + 0.06 * np.sin(zz * 5.3)
            top_h = np.where(is_b, heights[k], heights[k] * wobble)
            inside = hh <= top_h
            lab = np.where(inside, np.where(is_b, _ID["building"], _ID["vegetation"]), _ID["sky"]).astype(np.uint8)
            label[sel] = lab
            col = colors[k]
            # Windows on buildings: a grid in (depth, height) on the facade.
            pw, ph = wins[0][k], wins[1][k]
            win = is_b & ((zz / pw) % 1.0 < 0.5) & ((hh / ph) % 1.0 > 0.35) & (hh > 3.0) & (hh < top_h - 1.0)
            col = np.where(win[:, None], col * 0.35 + np.float32(0.08) * _rgb(0.6, 0.5, 1.0), col)
            veg = _rgb(r.uniform(0.18, 0.33), r.uniform(0.4, 0.8), r.uniform(0.25, 0.5))
            col = np.where(is_b[:, None], col, veg * (1.0 + 0.45 * n_mid[sel])[:, None])
            shade = 1.0 if side == 0 else r.uniform(0.75, 0.95)
            cur = img[sel]
            img[sel] = np.where(inside[:, None], col * shade * (1.0 + 0.05 * n_low[sel])[:, None], cur)

        # Far facade across the street.
        if far.any():
            far_h = r.uniform(8.0, 25.0)
            hf = hc - dy[far] * self.z_far / f
            inside = hf <= far_h
            label[far] = np.where(inside, _ID["building"], _ID["sky"]).astype(np.uint8)
            fc = _rgb(r.random(), r.uniform(0.0, 0.3), r.uniform(0.4, 0.8))
            img[far] = np.where(inside[:, None], fc, img[far])

        # Ground: road with lane marks and crosswalk, curbs, tiled sidewalks.
        zz, xx = zg[ground], xg[ground]
        on_road = (xx > -self.road_l) & (xx < self.road_r)
        label[ground] = np.where(on_road, _ID["road"], _ID["sidewalk"]).astype(np.uint8)
        asphalt = _rgb(r.uniform(0.0, 1.0), r.uniform(0.0, 0.12), r.uniform(0.25, 0.45))
        paving = _rgb(r.choice([0.05, 0.08, 0.0, r.random()]), r.uniform(0.05, 0.4), r.uniform(0.45, 0.75))
        paint = _rgb(0.15, r.uniform(0.0, 0.15), r.uniform(0.75, 0.95))
        col = np.where(on_road[:, None], asphalt, paving)
        col = col * (1.0 + 0.08 * n_low[ground] + 0.06 * n_mid[ground])[:, None]
        tile = r.uniform(0.4, 0.8)
        grout = ~on_road & (((xx / tile) % 1.0 < 0.07) | ((zz / tile) % 1.0 < 0.07))
        col = np.where(grout[:, None], col * 0.75, col)
        curb = ~on_road & ((xx < -self.road_l + 0.0) & (xx > -self.road_l - 0.2) | (xx > self.road_r) & (xx < self.road_r + 0.2))
        col = np.where(curb[:, None], np.float32(0.85) * paving + 0.15, col)
        marks = np.zeros(zz.shape, dtype=bool)
        for k in range(1, self.n_lanes):
            bx = -self.lanes_half + k * self.lane_w
            solid = abs(bx) < 0.1
            marks |= (np.abs(xx - bx) < 0.08) & (solid | ((zz / 9.0) % 1.0 < 0.45))
        for edge in (-self.lanes_half, self.lanes_half):
            marks |= np.abs(xx - edge) < 0.07
        if self.crosswalk is not None:
            c0, c1 = self.crosswalk
            marks |= on_road & (zz > c0) & (zz < c1) & (((xx + self.road_l) / 1.0) % 1.0 < 0.5)
        marks &= on_road
        col = np.where(marks[:, None], paint * (1.0 + 0.1 * n_mid[ground])[:, None], col)
        img[ground] = col

        # Objects, far to near; each a painter's layer over labels, instances and colours.
        inst = label.astype(np.uint16)
        counters: dict[str, int] = {}
        order = sorted(range(len(self.objects)), key=lambda i: (-self.objects[i].z, i))
        for i in order:
            o = self.objects[i]
            if o.label in CONTEXTS and not o.crowd:
                o.instance = _ID[o.label] * 1000 + counters.get(o.label, 0)
                counters[o.label] = counters.get(o.label, 0) + 1
            else:
                o.instance = _ID[o.label]
            if o.label in ("car", "bus"):  # shadow on the ground, colour only
                self._shadow(img, o, ground, zg, xg)
            if o.side is not None:
                self._draw_side(img, label, inst, o)
            self._draw_billboard(img, label, inst, o)

        # Lighting: gain, colour cast and a horizontal gradient; sensor noise.
        gain = r.uniform(0.7, 1.2)
        cast = r.uniform(0.9, 1.1, 3).astype(np.float32)
        grad = 1.0 + r.uniform(-0.2, 0.2) * (xs / w - 0.5)
        img *= (gain * cast)[None, None, :]
        img *= grad[..., None]
        img += r.standard_normal(img.shape, dtype=np.float32) * np.float32(0.025)
        out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

        present = set(np.unique(inst).tolist())
        context = {o.instance: o.context for o in self.objects
                   if o.context is not None and not o.crowd and o.instance in present}
        return SynthFrame(image=out, label_ids=label, instance_ids=inst, context=context)

    def _box(self, o: _Object) -> tuple[int, int, int, int] | None:
        a0, a1, bmax = o.extent
        x0 = self.xv + self.f * (o.x + a0) / o.z
        x1 = self.xv + self.f * (o.x + a1) / o.z
        y0 = self.yh + self.f * (self.hc - bmax) / o.z
        y1 = self.yh + self.f * self.hc / o.z
        c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, self.w)
        r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, self.h)
        if c0 >= c1 or r0 >= r1:
            return None
        return r0, r1, c0, c1

    def _draw_billboard(self, img, label, inst, o: _Object) -> None:
        box = self._box(o)
        if box is None:
            return
        r0, r1, c0, c1 = box
        ys = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
        scale = o.z / self.f
        a = np.broadcast_to((xs - self.xv) * scale - o.x, (r1 - r0, c1 - c0))
        b = np.broadcast_to(self.hc - (ys - self.yh) * scale, (r1 - r0, c1 - c0))
        height = o.extent[2]
        shade = (0.8 + 0.3 * np.clip(b / height, 0, 1))[..., None]
        sub_img, sub_lab, sub_inst = img[r0:r1, c0:c1], label[r0:r1, c0:c1], inst[r0:r1, c0:c1]
        lab_id = _ID[o.label]
        for p in o.parts:
            m = _part_mask(p.kind, p.params, a, b)
            if not m.any():
                continue
            sub_img[m] = (p.color * shade)[m]
            sub_lab[m] = lab_id
            sub_inst[m] = o.instance

    def _draw_side(self, img, label, inst, o: _Object) -> None:
        s = o.side
        xs_, z0, z1, hgt = s["xs"], s["z0"], s["z1"], s["height"]
        xa = self.xv + self.f * xs_ / z0
        xb = self.xv + self.f * xs_ / z1
        c0, c1 = max(int(np.floor(min(xa, xb))), 0), min(int(np.ceil(max(xa, xb))) + 1, self.w)
        if c0 >= c1:
            return
        y_top = self.yh + self.f * (self.hc - hgt) / z0
        y_bot = self.yh + self.f * self.hc / z0
        r0, r1 = max(int(np.floor(min(y_top, self.yh))), 0), min(int(np.ceil(y_bot)) + 1, self.h)
        if r0 >= r1:
            return
        ys = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            zc = self.f * xs_ / (xs - self.xv)  # depth along the side face at each column
        zc = np.where(np.isfinite(zc) & (zc > 0), zc, -1.0)
        b = self.hc - (ys - self.yh) * zc / self.f
        rel = (zc - z0) / (z1 - z0)
        if s["bus"]:
            top = np.full_like(rel, hgt)
        else:
            top = np.where((rel > 0.22) & (rel < 0.78), hgt, 0.62 * hgt)
        m = (zc >= z0) & (zc <= z1) & (b >= 0.0) & (b <= top)
        if not m.any():
            return
        col = np.broadcast_to(s["color"], m.shape + (3,)).copy()
        if s["bus"]:
            win = (b > 0.45 * hgt) & (b < 0.88 * hgt) & (((zc - z0) / 1.6) % 1.0 < 0.8)
        else:
            win = (b > 0.66 * hgt) & (b < 0.93 * hgt) & (rel > 0.26) & (rel < 0.74)
        col[win] = s["window"]
        length = z1 - z0
        for zw in (z0 + 0.16 * length, z0 + 0.84 * length):
            rw = 0.45 if s["bus"] else 0.33
            wheel = ((zc - zw) / rw) ** 2 + ((b - rw) / rw) ** 2 <= 1.0
            col[wheel] = s["tyre"]
        col *= (0.8 + 0.3 * np.clip(b / hgt, 0, 1))[..., None]
        sub_img, sub_lab, sub_inst = img[r0:r1, c0:c1], label[r0:r1, c0:c1], inst[r0:r1, c0:c1]
        sub_img[m] = col[m]
        sub_lab[m] = _ID[o.label]
        sub_inst[m] = o.instance

    def _shadow(self, img, o: _Object, ground, zg, xg) -> None:
        box = self._box(o)
        if box is None:
            return
        r0, r1, c0, c1 = box
        r0 = max(r0, int(self.yh + self.f * self.hc / o.z) - 3)
        r1 = min(self.h, r1 + 6)
        if r0 >= r1:
            return
        a0, a1, _ = o.extent
        zs, xs_ = zg[r0:r1, c0:c1], xg[r0:r1, c0:c1]
        zlen = o.side["z1"] - o.side["z0"] if o.side else 4.0
        m = ground[r0:r1, c0:c1] & (xs_ > o.x + a0 - 0.1) & (xs_ < o.x + a1 + 0.1) & (zs > o.z - 0.3) & (zs < o.z + zlen)
        img[r0:r1, c0:c1][m] *= 0.55


def _fix_rect(p: _Part) -> _Part:
    if p.kind == "rect":
        a0, a1, b0, b1 = p.params
        p.params = (min(a0, a1), max(a0, a1), min(b0, b1), max(b0, b1))
    return p


def render_frame(seed: int, split: str, index: int, height: int = 256, width: int = 512) -> SynthFrame:
    """Renders frame ``index`` of ``split``: a pure function of its arguments.

    Args:
        seed: the dataset seed (non-negative).
        split: ``"train"`` or ``"val"``.
        index: the frame's index within its split.
        height, width: image size in pixels.

    Returns:
        The :class:`SynthFrame`.
    """
    rng = np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])
    scene = _Scene(rng, height, width)
    scene.populate()
    return scene.render()


# --------------------------------------------------------------------------- files


def frame_paths(root: Path, split: str, image_id: str) -> dict[str, Path]:
    """Where a frame's files go, in the Cityscapes layout."""
    img_dir = root / "leftImg8bit" / split / CITY
    gt_dir = root / "gtFine" / split / CITY
    return {
        "image": img_dir / f"{image_id}_leftImg8bit.png",
        "instanceIds": gt_dir / f"{image_id}_gtFine_instanceIds.png",
        "labelIds": gt_dir / f"{image_id}_gtFine_labelIds.png",
        "labelTrainIds": gt_dir / f"{image_id}_gtFine_labelTrainIds.png",
        "color": gt_dir / f"{image_id}_gtFine_color.png",
    }


def write_frame(frame: SynthFrame, root: Path, split: str, image_id: str) -> None:
    """Writes the image and the four gtFine PNGs (instanceIds 16-bit, as Cityscapes)."""
    from PIL import Image

    paths = frame_paths(root, split, image_id)
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame.image, mode="RGB").save(paths["image"], compress_level=1)
    Image.fromarray(frame.instance_ids.astype(np.uint16)).save(paths["instanceIds"])
    Image.fromarray(frame.label_ids, mode="L").save(paths["labelIds"])
    Image.fromarray(_TRAIN_LUT[frame.label_ids], mode="L").save(paths["labelTrainIds"])
    Image.fromarray(_COLOR_LUT[frame.label_ids], mode="RGBA").save(paths["color"])


def _make_one(task: tuple[Path, int, str, int, int, int]) -> tuple[str, dict[int, str]]:
    root, seed, split, index, height, width = task
    frame = render_frame(seed, split, index, height, width)
    image_id = image_id_for(split, index)
    write_frame(frame, root, split, image_id)
    return image_id, frame.context


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`generate` wrote."""

    root: Path
    frames: dict[str, int]
    instances: int
    context_counts: dict[str, dict[str, int]]

    def to_dict(self) -> dict:
        return {"root": str(self.root), "frames": self.frames, "instances": self.instances,
                "context_counts": self.context_counts}


def generate(
    out: str | os.PathLike,
    train: int,
    val: int,
    seed: int = 0,
    height: int = 256,
    width: int = 512,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> SynthSummary:
    """Writes a SynthStreets dataset in the Cityscapes layout, atomically.

    The dataset is built in a hidden sibling folder and renamed onto ``out`` at
    the end, so a failure leaves nothing behind. The panoptic ground truth is
    made by cityscapesscripts' converter, exactly as for real Cityscapes.

    Args:
        out: the dataset root to create (must not exist, or be empty).
        train, val: number of frames per split.
        seed: non-negative seed; the same seed gives byte-identical files.
        height, width: image size (at least 64 x 128).
        workers: processes rendering frames, at most one per frame (does not change the output).
        progress: called as ``progress(done, total)`` after each frame.

    Returns:
        A :class:`SynthSummary`.

    Raises:
        PssBenchError: ``out`` is not empty, or the sizes are out of range.
    """
    from pss_bench.data.cityscapes import build_panoptic_gt
    from pss_bench.io.atomic import write_json_atomic

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PssBenchError(f"{out}: output folder exists and is not empty")
    if train < 0 or val < 0 or train + val == 0:
        raise PssBenchError(f"{out}: need at least one frame (got --train {train}, --val {val})")
    if max(train, val) > MAX_FRAMES:
        raise PssBenchError(f"{out}: at most {MAX_FRAMES} frames per split (got --train {train}, --val {val})")
    if height < 64 or width < 128:
        raise PssBenchError(f"{out}: image size {height}x{width} is too small (at least 64x128)")
    if max(height, width) > MAX_SIDE:
        raise PssBenchError(f"{out}: image size {height}x{width} is too large (at most {MAX_SIDE} a side)")
    if not 0 <= seed < 2**63:
        raise PssBenchError(f"{out}: seed must be in [0, 2**63), got {seed}")
    from pss_bench.io.atomic import staged_dir

    # published onto a missing or empty folder; the staging folders of killed runs are removed first
    with staged_dir(out) as tmp:
        tasks = [(tmp, seed, split, i, height, width) for split, n in (("train", train), ("val", val)) for i in range(n)]
        contexts: dict[str, dict[str, str]] = {}
        total = len(tasks)
        # Never more processes than frames, and chunks small enough to use them all.
        workers = max(1, min(workers, total))
        chunksize = max(1, min(8, total // workers))
        if workers <= 1:
            results = map(_make_one, tasks)
            for done, (image_id, ctx) in enumerate(results, 1):
                contexts[image_id] = {str(k): v for k, v in sorted(ctx.items())}
                if progress:
                    progress(done, total)
        else:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                for done, (image_id, ctx) in enumerate(ex.map(_make_one, tasks, chunksize=chunksize), 1):
                    contexts[image_id] = {str(k): v for k, v in sorted(ctx.items())}
                    if progress:
                        progress(done, total)
        for split, n in (("train", train), ("val", val)):
            if n:
                log.info("building the %s panoptic GT with cityscapesscripts (%d frames)", split, n)
                build_panoptic_gt(tmp / "gtFine", split)
        write_json_atomic(tmp / "context.json", contexts, indent=None)
        counts: dict[str, dict[str, int]] = {}
        n_inst = 0
        for ctx in contexts.values():
            for sid, lab in ctx.items():
                name = _label_name(int(sid) // 1000)
                counts.setdefault(name, {}).setdefault(lab, 0)
                counts[name][lab] += 1
                n_inst += 1
        counts = {k: dict(sorted(v.items())) for k, v in sorted(counts.items())}
        write_json_atomic(tmp / "synthstreets.json", {
            "generator_version": GENERATOR_VERSION, "seed": seed, "height": height, "width": width,
            "frames": {"train": train, "val": val}, "contexts": {k: list(v) for k, v in CONTEXTS.items()},
            "context_counts": counts,
        })
    return SynthSummary(root=out, frames={"train": train, "val": val}, instances=n_inst, context_counts=counts)


def _label_name(label_id: int) -> str:
    from cityscapesscripts.helpers.labels import id2label

    return id2label[label_id].name
