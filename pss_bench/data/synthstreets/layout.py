"""SynthStreets' scene layout: the camera, the street, and where each object stands and why.

A :class:`StreetLayout` draws a camera and a street cross-section from the
frame's generator, then :meth:`StreetLayout.populate` places vehicles,
persons, riders, bicycles, poles, signs and traffic lights on it, each for a
reason that becomes its hidden context label. Objects are flat coloured shapes
(:class:`Part`) standing upright at a ground position in metres.

What it must not do: draw pixels (that is :mod:`.render`), or use any
randomness other than the generator it is given.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np


def rgb(h: float, s: float, v: float) -> np.ndarray:
    """``(3,)`` float32 RGB in [0, 1] of an HSV colour; the hue wraps, saturation and value are clipped."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32)


@dataclass
class Part:
    """A coloured shape in an object's local metric frame (a: metres right, b: metres up)."""

    kind: str
    params: tuple
    color: np.ndarray

    def mask(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Boolean mask, of the shape of ``a`` and ``b``, of the points ``(a, b)`` inside the shape."""
        kind, p = self.kind, self.params
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


def _fix_rect(p: Part) -> Part:
    """Orders a rectangle's bounds (mirrored parts may give them reversed); other parts unchanged."""
    if p.kind == "rect":
        a0, a1, b0, b1 = p.params
        p.params = (min(a0, a1), max(a0, a1), min(b0, b1), max(b0, b1))
    return p


@dataclass(frozen=True)
class SideFace:
    """A vehicle's long side seen by the camera: a vertical plane at lateral ``xs`` from depth ``z0`` to ``z1``."""

    xs: float
    z0: float
    z1: float
    height: float
    color: np.ndarray
    window: np.ndarray
    tyre: np.ndarray
    bus: bool


@dataclass
class SceneObject:
    """A thing or stuff object standing on the ground at lateral ``x``, depth ``z`` (metres)."""

    label: str
    x: float
    z: float
    parts: list[Part]
    extent: tuple[float, float, float]  # a_min, a_max, b_max
    crowd: bool = False
    context: str | None = None
    side: SideFace | None = None  # vehicles only


@dataclass
class Footprint:
    """The ground rectangle an object takes, lateral ``x0..x1`` by depth ``z0..z1`` (metres)."""

    x0: float
    x1: float
    z0: float
    z1: float

    def hits(self, o: "Footprint", margin: float = 0.0) -> bool:
        """Whether the two rectangles overlap once ``margin`` metres apart are counted as touching."""
        return not (self.x1 + margin < o.x0 or o.x1 + margin < self.x0 or self.z1 + margin < o.z0 or o.z1 + margin < self.z0)


class StreetLayout:
    """The layout of one frame: camera, street cross-section, and the objects placed on it.

    Attributes:
        rng: the frame's generator; the constructor and :meth:`populate` draw from it.
        height, width: image size in pixels.
        f: focal length in pixels.
        yh, xv: the horizon's row and the vanishing point's column, in pixels.
        hc: camera height above the ground, in metres.
        objects: the placed objects, in placement order.
        footprints: the ground taken so far (see :meth:`place`).
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng = rng
        self.height, self.width = height, width
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
        self.objects: list[SceneObject] = []
        self.footprints: list[Footprint] = []

    # ----------------------------------------------------------------- geometry

    def lane_centres(self) -> list[float]:
        """Lateral position (metres) of each driving lane's centre, left to right."""
        return [-self.lanes_half + (k + 0.5) * self.lane_w for k in range(self.n_lanes)]

    def near_crosswalk(self, z0: float, z1: float, margin: float) -> bool:
        """Whether the depth range ``z0..z1`` comes within ``margin`` metres of the crosswalk, if any."""
        if self.crosswalk is None:
            return False
        c0, c1 = self.crosswalk
        return not (z1 < c0 - margin or z0 > c1 + margin)

    def place(self, fp: Footprint, margin: float = 0.2) -> bool:
        """Takes the ground ``fp`` and returns True, unless it hits ground already taken."""
        if any(fp.hits(o, margin) for o in self.footprints):
            return False
        self.footprints.append(fp)
        return True

    # ----------------------------------------------------------------- objects

    def _clothes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        r = self.rng
        shirt = rgb(r.random(), r.uniform(0.1, 0.9), r.uniform(0.15, 0.95))
        pants = rgb(r.choice([0.6, 0.62, 0.08, r.random()]), r.uniform(0.0, 0.6), r.uniform(0.1, 0.6))
        skin = rgb(r.uniform(0.03, 0.1), r.uniform(0.25, 0.6), r.uniform(0.35, 0.95))
        hair = rgb(r.uniform(0.05, 0.12), r.uniform(0.2, 0.8), r.uniform(0.05, 0.6))
        return shirt, pants, skin, hair

    def person(self, x: float, z: float, context: str | None, crowd: bool = False, stride: float = 0.0) -> SceneObject:
        r = self.rng
        hgt = r.uniform(1.5, 1.9)
        wid = hgt * r.uniform(0.24, 0.3)
        shirt, pants, skin, hair = self._clothes()
        leg_top = 0.48 * hgt
        sw = stride * hgt * 0.12
        parts = [
            Part("segment", ((-0.22 * wid - sw, 0.03), (-0.1 * wid, leg_top), 0.09 * wid + 0.02), pants),
            Part("segment", ((0.22 * wid + sw, 0.03), (0.1 * wid, leg_top), 0.09 * wid + 0.02), pants),
            Part("superellipse", (0.0, 0.63 * hgt, 0.5 * wid, 0.18 * hgt, 4.0), shirt),
            Part("segment", ((-0.48 * wid, 0.78 * hgt), (-0.55 * wid - sw * 0.5, 0.5 * hgt), 0.07 * wid + 0.015), shirt),
            Part("segment", ((0.48 * wid, 0.78 * hgt), (0.55 * wid + sw * 0.5, 0.5 * hgt), 0.07 * wid + 0.015), shirt),
            Part("ellipse", (0.0, 0.9 * hgt, 0.2 * wid, 0.065 * hgt), skin),
            Part("ellipse", (0.0, 0.945 * hgt, 0.21 * wid, 0.04 * hgt), hair),
        ]
        if r.random() < 0.3:  # a bag
            bag = rgb(r.random(), r.uniform(0.2, 0.8), r.uniform(0.1, 0.7))
            side = r.choice([-1.0, 1.0])
            parts.append(Part("rect", (side * 0.5 * wid, side * 0.5 * wid + side * 0.3 * wid, 0.4 * hgt, 0.58 * hgt), bag))
        parts = [_fix_rect(p) for p in parts]
        return SceneObject("person", x, z, parts, (-0.8 * wid, 0.8 * wid, hgt), crowd=crowd, context=context)

    def vehicle(self, label: str, x: float, z0: float, length: float, context: str, facing_us: bool) -> SceneObject:
        r = self.rng
        if label == "bus":
            wid, hgt = r.uniform(2.4, 2.6), r.uniform(3.0, 3.4)
            paint = rgb(r.choice([0.0, 0.1, 0.15, 0.55, 0.33, r.random()]), r.uniform(0.4, 0.9), r.uniform(0.4, 0.9))
        else:
            wid, hgt = r.uniform(1.65, 1.95), r.uniform(1.35, 1.65)
            paint = rgb(r.random(), r.uniform(0.0, 0.9) ** 1.5, r.uniform(0.1, 0.95))
        glass = rgb(r.uniform(0.5, 0.65), r.uniform(0.1, 0.4), r.uniform(0.08, 0.3))
        tyre = np.array([0.06, 0.06, 0.07], dtype=np.float32)
        hw = wid / 2
        if label == "bus":
            parts = [
                Part("rect", (-hw, hw, 0.3, hgt), paint),
                Part("rect", (-0.42 * wid, 0.42 * wid, 0.45 * hgt, 0.88 * hgt), glass),
                Part("rect", (-hw + 0.05, -hw + 0.45, 0.0, 0.45), tyre),
                Part("rect", (hw - 0.45, hw - 0.05, 0.0, 0.45), tyre),
            ]
        else:
            cab = r.uniform(0.3, 0.4)
            parts = [
                Part("rect", (-hw + 0.05, -hw + 0.4, 0.0, 0.35), tyre),
                Part("rect", (hw - 0.4, hw - 0.05, 0.0, 0.35), tyre),
                Part("superellipse", (0.0, 0.38 * hgt, hw, 0.24 * hgt, 6.0), paint),
                Part("trapezoid", (0.55 * hgt, hgt, -hw * 0.92, hw * 0.92, -hw * cab * 2, hw * cab * 2), paint),
                Part("trapezoid", (0.6 * hgt, 0.95 * hgt, -hw * 0.8, hw * 0.8, -hw * cab * 1.8, hw * cab * 1.8), glass),
            ]
        lamp = rgb(0.13, 0.2, 1.0) if facing_us else rgb(0.0, 0.9, 0.8)
        parts += [
            Part("rect", (-hw + 0.05, -hw + 0.35, 0.45 * hgt if label == "car" else 0.35, 0.5 * hgt if label == "car" else 0.45), lamp),
            Part("rect", (hw - 0.35, hw - 0.05, 0.45 * hgt if label == "car" else 0.35, 0.5 * hgt if label == "car" else 0.45), lamp),
            Part("rect", (-0.25, 0.25, 0.25, 0.36), np.array([0.9, 0.9, 0.85], dtype=np.float32)),
        ]
        # The side facing the camera's centre line is visible.
        xs = x - hw if x > 0 else x + hw
        side = None
        if abs(xs) > 0.3:
            side = SideFace(xs=xs, z0=z0, z1=z0 + length, height=hgt, color=paint * 0.85, window=glass,
                            tyre=tyre, bus=label == "bus")
        return SceneObject(label, x, z0, parts, (-hw, hw, hgt), context=context, side=side)

    def bicycle(self, x: float, z: float, context: str, facing: float) -> SceneObject:
        r = self.rng
        frame_c = rgb(r.random(), r.uniform(0.3, 1.0), r.uniform(0.2, 0.9))
        dark = np.array([0.08, 0.08, 0.08], dtype=np.float32)
        wr = r.uniform(0.3, 0.36)
        base = r.uniform(1.0, 1.15)
        ar, af = -facing * base / 2, facing * base / 2
        seat = (ar * 0.35, 0.95)
        bar = (af * 0.8, 1.0)
        crank = (0.0, wr)
        t = 0.025
        parts = [
            Part("ring", (ar, wr, wr, wr - 0.06), dark),
            Part("ring", (af, wr, wr, wr - 0.06), dark),
            Part("segment", ((ar, wr), crank, t), frame_c),
            Part("segment", (crank, seat, t), frame_c),
            Part("segment", (seat, bar, t), frame_c),
            Part("segment", (crank, bar, t), frame_c),
            Part("segment", ((af, wr), bar, t), frame_c),
        ]
        return SceneObject("bicycle", x, z, parts, (-base / 2 - wr, base / 2 + wr, 1.1), context=context)

    def rider(self, x: float, z: float, context: str) -> tuple[SceneObject, SceneObject]:
        facing = float(self.rng.choice([-1.0, 1.0]))
        bike = self.bicycle(x, z + 0.02, "ridden", facing)
        shirt, pants, skin, hair = self._clothes()
        helmet = rgb(self.rng.random(), 0.7, self.rng.uniform(0.3, 1.0))
        parts = [
            Part("segment", ((0.0, 0.45), (-facing * 0.15, 0.95), 0.08), pants),
            Part("segment", ((-facing * 0.15, 0.95), (facing * 0.05, 1.45), 0.16), shirt),
            Part("segment", ((facing * 0.05, 1.35), (facing * 0.45, 1.02), 0.05), shirt),
            Part("ellipse", (facing * 0.08, 1.6, 0.11, 0.13), skin),
            Part("ellipse", (facing * 0.08, 1.68, 0.13, 0.08), helmet),
        ]
        rider = SceneObject("rider", x, z, parts, (-0.7, 0.7, 1.8), context=context)
        return rider, bike

    def pole(self, x: float, z: float) -> list[SceneObject]:
        r = self.rng
        hgt = r.uniform(3.5, 6.0)
        grey = rgb(r.choice([0.0, 0.3, 0.6]), r.uniform(0.0, 0.3), r.uniform(0.25, 0.6))
        out = [SceneObject("pole", x, z, [Part("rect", (-0.07, 0.07, 0.0, hgt), grey)], (-0.1, 0.1, hgt))]
        kind = r.random()
        if kind < 0.5:
            face = [rgb(0.6, 0.9, 0.7), rgb(0.0, 0.9, 0.8), rgb(0.14, 0.9, 0.9), rgb(0.0, 0.0, 0.95)][int(r.integers(4))]
            shape = "ellipse" if r.random() < 0.5 else "superellipse"
            params = (0.0, hgt - 0.3, 0.32, 0.32) if shape == "ellipse" else (0.0, hgt - 0.3, 0.3, 0.3, 8.0)
            rim = np.array([0.9, 0.9, 0.9], dtype=np.float32) if face[2] < 0.9 else np.array([0.8, 0.1, 0.1], dtype=np.float32)
            rim_params = (params[0], params[1], params[2] + 0.05, params[3] + 0.05) + params[4:]
            out.append(SceneObject("traffic sign", x, z - 0.01, [Part(shape, rim_params, rim), Part(shape, params, face)],
                               (-0.4, 0.4, hgt)))
        return out

    def traffic_light(self, x: float, z: float) -> list[SceneObject]:
        r = self.rng
        hgt = r.uniform(3.0, 4.0)
        body = np.array([0.1, 0.1, 0.1], dtype=np.float32) * r.uniform(0.7, 2.0)
        on = int(r.integers(3))
        lamps = [rgb(0.0, 0.9, 1.0), rgb(0.12, 0.9, 1.0), rgb(0.35, 0.9, 1.0)]
        parts = [Part("rect", (-0.2, 0.2, hgt - 1.0, hgt), body)]
        for i, c in enumerate(lamps):
            parts.append(Part("ellipse", (0.0, hgt - 0.17 - 0.32 * i, 0.12, 0.12), c if i == on else c * 0.25))
        pole = self.pole(x, z + 0.01)[0]
        pole.parts[0].params = (-0.07, 0.07, 0.0, hgt - 1.0)
        pole.extent = (-0.1, 0.1, hgt)
        return [pole, SceneObject("traffic light", x, z, parts, (-0.25, 0.25, hgt))]

    # ----------------------------------------------------------------- placement

    def populate(self) -> None:
        """Places every object, appending to :attr:`objects`.

        The order of the steps (and so of the generator's draws) is part of the
        output: changing it changes every frame.
        """
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
                    if self.place(Footprint(x - 0.95, x + 0.95, z, z + length)):
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
                if z0 > 3.0 and self.place(Footprint(lx - 1.3, lx + 1.3, z0, z0 + length)):
                    self.objects.append(self.vehicle(label, lx, z0, length, "stopped at a crosswalk", facing_us=towards))
            for _ in range(int(r.choice([0, 1, 2, 3], p=[0.25, 0.35, 0.28, 0.12]))):
                label = "bus" if bus_budget and r.random() < 0.3 else "car"
                length = u(10.0, 12.0) if label == "bus" else u(3.8, 4.8)
                z0 = u(5.0, 65.0)
                if self.near_crosswalk(z0, z0 + length, 8.0):
                    continue
                x = lx + u(-0.35, 0.35)
                if self.place(Footprint(x - 1.3, x + 1.3, z0 - 3.0, z0 + length + 3.0)):
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
                if far_from_people(x, z, 0.7) and self.place(Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.05):
                    persons.append((x, z))
                    self.objects.append(self.person(x, z, "crossing on a crosswalk", stride=u(0.5, 1.0)))

        # Persons next to a parked car, on the sidewalk beside it.
        for side, _, z0, z1 in parked:
            if r.random() < 0.3:
                x = walk_x(side, 0.08, 0.25)
                z = u(z0 + 0.3, z1 - 0.3)
                if far_from_people(x, z, 0.8) and self.place(Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.05):
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
                    self.footprints.append(Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25))
                    self.objects.append(self.person(x, z, "in a group", stride=u(0.0, 0.3)))

        # Persons alone on a sidewalk: nobody within 4 m, no parked car beside them.
        for _ in range(int(r.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.3, 0.15]))):
            side = int(r.integers(2))
            x, z = walk_x(side, 0.2, 0.8), u(4.0, 28.0)
            if clear_of_parked(side, z, 2.0) and far_from_people(x, z, 4.0) \
                    and self.place(Footprint(x - 0.3, x + 0.3, z - 0.25, z + 0.25), 0.3):
                persons.append((x, z))
                self.objects.append(self.person(x, z, "alone on a sidewalk", stride=u(0.0, 0.9)))

        # Now and then a crowd, marked the Cityscapes way (one segment, instance id < 1000).
        if r.random() < 0.12:
            side = int(r.integers(2))
            cz = u(12.0, 40.0)
            cx = walk_x(side, 0.3, 0.7)
            if far_from_people(cx, cz, 5.0) and self.place(Footprint(cx - 1.0, cx + 1.0, cz - 1.0, cz + 1.0)):
                for _ in range(int(r.integers(5, 9))):
                    self.objects.append(self.person(cx + u(-0.9, 0.9), cz + u(-0.9, 0.9), None, crowd=True))

        # Riders: in traffic (a vehicle within 10 m in the same or next lane) or alone (none within 15 m).
        vehicles = [o for o in self.objects if o.label in ("car", "bus") and o.context != "parked at the curb"]
        if vehicles and r.random() < 0.45:
            v = vehicles[int(r.integers(len(vehicles)))]
            x = v.x + u(-1.2, 1.2)
            z = v.z - u(2.0, 6.0) if r.random() < 0.5 else v.z + u(6.0, 10.0)
            if z > 4.0 and abs(x) < self.lanes_half - 0.5 and self.place(Footprint(x - 0.7, x + 0.7, z - 0.3, z + 0.3)):
                self.objects.extend(self.rider(x, z, "in traffic"))
        if r.random() < 0.4:
            for _try in range(8):
                x = u(-self.lanes_half + 0.8, self.lanes_half - 0.8)
                z = u(5.0, 35.0)
                lonely = all(abs(o.z - z) > 12.0 or abs(o.x - x) > 4.0 for o in self.objects
                             if o.label in ("car", "bus"))
                if lonely and not self.near_crosswalk(z - 1, z + 1, 3.0) \
                        and self.place(Footprint(x - 0.7, x + 0.7, z - 0.3, z + 0.3)):
                    self.objects.extend(self.rider(x, z, "alone"))
                    break

        # Parked bicycles near the facades.
        if r.random() < 0.3:
            side = int(r.integers(2))
            z = u(6.0, 30.0)
            for i in range(int(r.integers(1, 4))):
                x = walk_x(side, 0.85, 0.93)
                zi = z + 0.7 * i
                if self.place(Footprint(x - 0.2, x + 0.2, zi - 0.3, zi + 0.3), 0.0):
                    self.objects.append(self.bicycle(x, zi, "parked on a sidewalk", float(r.choice([-1.0, 1.0]))))

        # Poles, signs and traffic lights on the sidewalks.
        for side in (0, 1):
            edge = self.road_l if side == 0 else self.road_r
            x = (-1.0 if side == 0 else 1.0) * (edge + 0.3)
            z = u(4.0, 15.0)
            while z < 60.0:
                if self.place(Footprint(x - 0.1, x + 0.1, z - 0.1, z + 0.1), 0.1):
                    self.objects.extend(self.pole(x, z))
                z += u(10.0, 25.0)
            if cw is not None and r.random() < 0.7:
                zl = cw[0] - 0.5
                if self.place(Footprint(x - 0.1, x + 0.1, zl - 0.1, zl + 0.1), 0.1):
                    self.objects.extend(self.traffic_light(x, zl))
