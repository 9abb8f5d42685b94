"""SynthStreets' renderer: a laid-out street to an RGB image, label ids, instance ids and context labels.

Placement is decided in :mod:`.layout`; here only appearance (sky, facades,
ground texture, object shading, lighting and sensor noise) is drawn, from the
same generator, continued after the layout. :func:`render_frame` ties the two
together and is a function of ``(seed, split, index, height, width)`` only.

What it must not do: move or add objects, write files, or use any randomness
other than the per-frame ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pss_bench.data.synthstreets.labels import CONTEXTS, LABEL_ID
from pss_bench.data.synthstreets.layout import SceneObject, StreetLayout, rgb

#: Split codes mixed into the per-frame seed, and into the image id's sequence number.
SPLIT_CODES = {"train": 0, "val": 1}


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
    layout = StreetLayout(rng, height, width)
    layout.populate()
    return render_layout(layout, rng)


def render_layout(layout: StreetLayout, rng: np.random.Generator) -> SynthFrame:
    """Draws ``layout`` with the appearance (sky, facades, ground, lighting, noise) drawn from ``rng``.

    Args:
        layout: a populated layout.
        rng: the generator that drew the layout, continued from where the layout left it.

    Returns:
        The :class:`SynthFrame`; objects are painted far to near, so nearer ones occlude.
    """
    r = rng
    h, w = layout.height, layout.width
    f, yh, xv, hc = layout.f, layout.yh, layout.xv, layout.hc
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    dy = np.broadcast_to(ys - yh, (h, w))
    dx = np.broadcast_to(xs - xv, (h, w))

    n_low = _smooth_noise(r, h, w, 24)
    n_mid = _smooth_noise(r, h, w, 5)

    label = np.full((h, w), LABEL_ID["sky"], dtype=np.uint8)
    img = np.empty((h, w, 3), dtype=np.float32)

    # Sky: vertical gradient with clouds.
    overcast = r.random() < 0.35
    hue = r.uniform(0.55, 0.63)
    top = rgb(hue, 0.05 if overcast else r.uniform(0.3, 0.7), r.uniform(0.55, 0.95))
    bottom = rgb(hue, 0.02 if overcast else r.uniform(0.05, 0.3), r.uniform(0.8, 1.0))
    t = np.clip(ys / max(yh, 1.0), 0, 1)[..., None]
    img[:] = top * (1 - t) + bottom * t
    img += (0.06 * n_low)[..., None]

    with np.errstate(divide="ignore", invalid="ignore"):
        zg = np.where(dy > 0, f * hc / dy, np.inf)  # depth of the ground point seen at each pixel
        xg = dx * zg / f
        wall_x = np.where(dx < 0, -(layout.road_l + layout.walk[0]), layout.road_r + layout.walk[1])
        zw = np.where(np.abs(dx) > 1e-3, f * wall_x / dx, np.inf)  # depth where the ray meets a facade
    zw = np.where(zw > 0, zw, np.inf)
    ground = (zg < zw) & (zg < layout.z_far)
    facade = ~ground & (zw < layout.z_far)
    far = ~ground & ~facade
    hw_ = hc - dy * np.where(np.isfinite(zw), zw, 0) / f  # height where the ray meets the facade

    # Facade blocks along depth, independently per side.
    for side in (0, 1):
        bounds = np.cumsum(r.uniform(6.0, 22.0, size=16))
        kinds = r.random(16) < 0.72  # True: building, False: vegetation
        heights = np.where(kinds, r.uniform(6.0, 24.0, 16), r.uniform(3.0, 9.0, 16))
        colors = np.stack([rgb(r.random(), r.uniform(0.03, 0.45), r.uniform(0.3, 0.85)) for _ in range(16)])
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
        lab = np.where(inside, np.where(is_b, LABEL_ID["building"], LABEL_ID["vegetation"]), LABEL_ID["sky"]).astype(np.uint8)
        label[sel] = lab
        col = colors[k]
        # Windows on buildings: a grid in (depth, height) on the facade.
        pw, ph = wins[0][k], wins[1][k]
        win = is_b & ((zz / pw) % 1.0 < 0.5) & ((hh / ph) % 1.0 > 0.35) & (hh > 3.0) & (hh < top_h - 1.0)
        col = np.where(win[:, None], col * 0.35 + np.float32(0.08) * rgb(0.6, 0.5, 1.0), col)
        veg = rgb(r.uniform(0.18, 0.33), r.uniform(0.4, 0.8), r.uniform(0.25, 0.5))
        col = np.where(is_b[:, None], col, veg * (1.0 + 0.45 * n_mid[sel])[:, None])
        shade = 1.0 if side == 0 else r.uniform(0.75, 0.95)
        cur = img[sel]
        img[sel] = np.where(inside[:, None], col * shade * (1.0 + 0.05 * n_low[sel])[:, None], cur)

    # Far facade across the street.
    if far.any():
        far_h = r.uniform(8.0, 25.0)
        hf = hc - dy[far] * layout.z_far / f
        inside = hf <= far_h
        label[far] = np.where(inside, LABEL_ID["building"], LABEL_ID["sky"]).astype(np.uint8)
        fc = rgb(r.random(), r.uniform(0.0, 0.3), r.uniform(0.4, 0.8))
        img[far] = np.where(inside[:, None], fc, img[far])

    # Ground: road with lane marks and crosswalk, curbs, tiled sidewalks.
    zz, xx = zg[ground], xg[ground]
    on_road = (xx > -layout.road_l) & (xx < layout.road_r)
    label[ground] = np.where(on_road, LABEL_ID["road"], LABEL_ID["sidewalk"]).astype(np.uint8)
    asphalt = rgb(r.uniform(0.0, 1.0), r.uniform(0.0, 0.12), r.uniform(0.25, 0.45))
    paving = rgb(r.choice([0.05, 0.08, 0.0, r.random()]), r.uniform(0.05, 0.4), r.uniform(0.45, 0.75))
    paint = rgb(0.15, r.uniform(0.0, 0.15), r.uniform(0.75, 0.95))
    col = np.where(on_road[:, None], asphalt, paving)
    col = col * (1.0 + 0.08 * n_low[ground] + 0.06 * n_mid[ground])[:, None]
    tile = r.uniform(0.4, 0.8)
    grout = ~on_road & (((xx / tile) % 1.0 < 0.07) | ((zz / tile) % 1.0 < 0.07))
    col = np.where(grout[:, None], col * 0.75, col)
    curb = ~on_road & ((xx < -layout.road_l + 0.0) & (xx > -layout.road_l - 0.2) | (xx > layout.road_r) & (xx < layout.road_r + 0.2))
    col = np.where(curb[:, None], np.float32(0.85) * paving + 0.15, col)
    marks = np.zeros(zz.shape, dtype=bool)
    for k in range(1, layout.n_lanes):
        bx = -layout.lanes_half + k * layout.lane_w
        solid = abs(bx) < 0.1
        marks |= (np.abs(xx - bx) < 0.08) & (solid | ((zz / 9.0) % 1.0 < 0.45))
    for edge in (-layout.lanes_half, layout.lanes_half):
        marks |= np.abs(xx - edge) < 0.07
    if layout.crosswalk is not None:
        c0, c1 = layout.crosswalk
        marks |= on_road & (zz > c0) & (zz < c1) & (((xx + layout.road_l) / 1.0) % 1.0 < 0.5)
    marks &= on_road
    col = np.where(marks[:, None], paint * (1.0 + 0.1 * n_mid[ground])[:, None], col)
    img[ground] = col

    # Objects, far to near; each a painter's layer over labels, instances and colours.
    # Thing instances are numbered per category in drawing order; stuff and crowd get their label id.
    inst = label.astype(np.uint16)
    objects = layout.objects
    instance = [0] * len(objects)
    counters: dict[str, int] = {}
    order = sorted(range(len(objects)), key=lambda i: (-objects[i].z, i))
    for i in order:
        o = objects[i]
        if o.label in CONTEXTS and not o.crowd:
            instance[i] = LABEL_ID[o.label] * 1000 + counters.get(o.label, 0)
            counters[o.label] = counters.get(o.label, 0) + 1
        else:
            instance[i] = LABEL_ID[o.label]
        if o.label in ("car", "bus"):  # shadow on the ground, colour only
            _shadow(layout, img, o, ground, zg, xg)
        if o.side is not None:
            _draw_side(layout, img, label, inst, o, instance[i])
        _draw_billboard(layout, img, label, inst, o, instance[i])

    # Lighting: gain, colour cast and a horizontal gradient; sensor noise.
    gain = r.uniform(0.7, 1.2)
    cast = r.uniform(0.9, 1.1, 3).astype(np.float32)
    grad = 1.0 + r.uniform(-0.2, 0.2) * (xs / w - 0.5)
    img *= (gain * cast)[None, None, :]
    img *= grad[..., None]
    img += r.standard_normal(img.shape, dtype=np.float32) * np.float32(0.025)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)

    present = set(np.unique(inst).tolist())
    context = {k: o.context for k, o in zip(instance, objects)
               if o.context is not None and not o.crowd and k in present}
    return SynthFrame(image=out, label_ids=label, instance_ids=inst, context=context)


def _box(layout: StreetLayout, o: SceneObject) -> tuple[int, int, int, int] | None:
    """``(r0, r1, c0, c1)``: the pixel box, clipped to the image, of ``o``'s upright extent; None if off-image."""
    a0, a1, bmax = o.extent
    x0 = layout.xv + layout.f * (o.x + a0) / o.z
    x1 = layout.xv + layout.f * (o.x + a1) / o.z
    y0 = layout.yh + layout.f * (layout.hc - bmax) / o.z
    y1 = layout.yh + layout.f * layout.hc / o.z
    c0, c1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, layout.width)
    r0, r1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, layout.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _draw_billboard(layout: StreetLayout, img: np.ndarray, label: np.ndarray, inst: np.ndarray, o: SceneObject,
                    instance: int) -> None:
    """Paints ``o``'s parts, as a flat upright board at depth ``o.z``, into the image and both id maps."""
    box = _box(layout, o)
    if box is None:
        return
    r0, r1, c0, c1 = box
    ys = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    scale = o.z / layout.f
    a = np.broadcast_to((xs - layout.xv) * scale - o.x, (r1 - r0, c1 - c0))
    b = np.broadcast_to(layout.hc - (ys - layout.yh) * scale, (r1 - r0, c1 - c0))
    height = o.extent[2]
    shade = (0.8 + 0.3 * np.clip(b / height, 0, 1))[..., None]
    sub_img, sub_lab, sub_inst = img[r0:r1, c0:c1], label[r0:r1, c0:c1], inst[r0:r1, c0:c1]
    lab_id = LABEL_ID[o.label]
    for p in o.parts:
        m = p.mask(a, b)
        if not m.any():
            continue
        sub_img[m] = (p.color * shade)[m]
        sub_lab[m] = lab_id
        sub_inst[m] = instance


def _draw_side(layout: StreetLayout, img: np.ndarray, label: np.ndarray, inst: np.ndarray, o: SceneObject,
               instance: int) -> None:
    """Paints a vehicle's visible side face (a plane along depth, so each column has its own depth)."""
    s = o.side
    xs_, z0, z1, hgt = s.xs, s.z0, s.z1, s.height
    xa = layout.xv + layout.f * xs_ / z0
    xb = layout.xv + layout.f * xs_ / z1
    c0, c1 = max(int(np.floor(min(xa, xb))), 0), min(int(np.ceil(max(xa, xb))) + 1, layout.width)
    if c0 >= c1:
        return
    y_top = layout.yh + layout.f * (layout.hc - hgt) / z0
    y_bot = layout.yh + layout.f * layout.hc / z0
    r0, r1 = max(int(np.floor(min(y_top, layout.yh))), 0), min(int(np.ceil(y_bot)) + 1, layout.height)
    if r0 >= r1:
        return
    ys = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        zc = layout.f * xs_ / (xs - layout.xv)  # depth along the side face at each column
    zc = np.where(np.isfinite(zc) & (zc > 0), zc, -1.0)
    b = layout.hc - (ys - layout.yh) * zc / layout.f
    rel = (zc - z0) / (z1 - z0)
    if s.bus:
        top = np.full_like(rel, hgt)
    else:
        top = np.where((rel > 0.22) & (rel < 0.78), hgt, 0.62 * hgt)
    m = (zc >= z0) & (zc <= z1) & (b >= 0.0) & (b <= top)
    if not m.any():
        return
    col = np.broadcast_to(s.color, m.shape + (3,)).copy()
    if s.bus:
        win = (b > 0.45 * hgt) & (b < 0.88 * hgt) & (((zc - z0) / 1.6) % 1.0 < 0.8)
    else:
        win = (b > 0.66 * hgt) & (b < 0.93 * hgt) & (rel > 0.26) & (rel < 0.74)
    col[win] = s.window
    length = z1 - z0
    for zw in (z0 + 0.16 * length, z0 + 0.84 * length):
        rw = 0.45 if s.bus else 0.33
        wheel = ((zc - zw) / rw) ** 2 + ((b - rw) / rw) ** 2 <= 1.0
        col[wheel] = s.tyre
    col *= (0.8 + 0.3 * np.clip(b / hgt, 0, 1))[..., None]
    sub_img, sub_lab, sub_inst = img[r0:r1, c0:c1], label[r0:r1, c0:c1], inst[r0:r1, c0:c1]
    sub_img[m] = col[m]
    sub_lab[m] = LABEL_ID[o.label]
    sub_inst[m] = instance


def _shadow(layout: StreetLayout, img: np.ndarray, o: SceneObject, ground: np.ndarray, zg: np.ndarray,
            xg: np.ndarray) -> None:
    """Darkens the ground under and behind a vehicle; labels are untouched."""
    box = _box(layout, o)
    if box is None:
        return
    r0, r1, c0, c1 = box
    r0 = max(r0, int(layout.yh + layout.f * layout.hc / o.z) - 3)
    r1 = min(layout.height, r1 + 6)
    if r0 >= r1:
        return
    a0, a1, _ = o.extent
    zs, xs_ = zg[r0:r1, c0:c1], xg[r0:r1, c0:c1]
    zlen = o.side.z1 - o.side.z0 if o.side is not None else 4.0
    m = ground[r0:r1, c0:c1] & (xs_ > o.x + a0 - 0.1) & (xs_ < o.x + a1 + 0.1) & (zs > o.z - 0.3) & (zs < o.z + zlen)
    img[r0:r1, c0:c1][m] *= 0.55


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """``(h, w)`` float32 zero-mean noise, bilinear-upsampled from a random grid of ``cell`` px."""
    from PIL import Image

    gh, gw = h // cell + 2, w // cell + 2
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    up = Image.fromarray(g, mode="F").resize((gw * cell, gh * cell), Image.BILINEAR)
    return np.asarray(up)[:h, :w]
