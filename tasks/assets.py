"""Every object, container and fixture of the task suite, built from MuJoCo primitives.

Each asset is data: a list of primitive `Part`s (plus, for fixtures, a moving drawer or door), a mass,
and the regions that success checks need (a container's interior, a tier, a fixture's inside). `to_mjcf`
turns one into an MJCF file that robosuite loads as a `MujocoXMLObject`, so nothing is downloaded and
collision shapes are exact (an object's bottom is where its geometry ends, so it does not drop at reset).
Sizes are in metres, masses in kilograms, and chosen to be plausible for a kitchen table.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, replace

import mujoco
import numpy as np

# Friction of everything the hands touch: sliding, torsional, rolling.
OBJECT_FRICTION = (1.2, 0.02, 0.001)
CONTAINER_FRICTION = (1.0, 0.01, 0.001)


@dataclass(frozen=True)
class Part:
    """One MuJoCo primitive: `size` as MJCF expects it for `kind` (half sizes, radius, half length)."""

    kind: str
    size: tuple[float, ...]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    quat: tuple[float, float, float, float] | None = None   # orientation (w, x, y, z)
    collide: bool = True

    def scaled(self, s: float) -> Part:
        return replace(self, size=tuple(v * s for v in self.size), pos=tuple(v * s for v in self.pos))

    def stretched(self, s) -> Part:
        """The part with its asset's frame stretched by `s` = (sx, sy, sz): its centre moves with the stretch and
        each of its own axes grows as much as the stretch lengthens it (a sphere stretched unequally becomes an
        ellipsoid; a round cross-section takes the geometric mean). Its lowest point is scaled like its centre, so a
        part that rests on the table still does, and the flat spot of round produce stays flat."""
        s = np.asarray(s, dtype=float)
        rotation = np.eye(3) if self.quat is None else _quat_mat(self.quat)
        axis_stretch = np.linalg.norm(s[:, None] * rotation, axis=0)  # how much each of the part's axes grows
        kind, sz = self.kind, np.asarray(self.size, dtype=float)
        if kind in ("box", "ellipsoid"):
            size = sz * axis_stretch
        elif kind == "sphere" and np.ptp(axis_stretch) < 1e-9:
            size = sz * axis_stretch[0]
        elif kind == "sphere":
            kind, size = "ellipsoid", sz[0] * axis_stretch
        else:  # cylinder or capsule: round across its z axis
            radius = sz[0] * math.sqrt(axis_stretch[0] * axis_stretch[1])
            half_length = sz[1] * axis_stretch[2]
            if kind == "capsule":  # the caps' length scales with the rest of it
                half_length = max((sz[1] + sz[0]) * axis_stretch[2] - radius, 1e-4)
            size = np.array([radius, half_length])
        pos = tuple(float(v) for v in np.asarray(self.pos) * s)
        out = replace(self, kind=kind, size=tuple(float(v) for v in size), pos=pos)
        bottom = (self.pos[2] - self.half_extents()[2]) * s[2]
        return replace(out, pos=(*out.pos[:2], float(bottom + out.half_extents()[2])))

    def volume(self) -> float:
        sz = self.size
        if self.kind == "box":
            return 8 * sz[0] * sz[1] * sz[2]
        if self.kind == "cylinder":
            return math.pi * sz[0] ** 2 * 2 * sz[1]
        if self.kind == "sphere":
            return 4 / 3 * math.pi * sz[0] ** 3
        if self.kind == "ellipsoid":
            return 4 / 3 * math.pi * sz[0] * sz[1] * sz[2]
        if self.kind == "capsule":
            return math.pi * sz[0] ** 2 * (2 * sz[1] + 4 / 3 * sz[0])
        raise ValueError(f"unknown primitive {self.kind!r}")

    def half_extents(self) -> np.ndarray:
        """Half extents of the part's axis-aligned bounding box in the asset frame."""
        sz = self.size
        if self.kind in ("box", "ellipsoid"):
            ext = sz[:3]
        elif self.kind == "cylinder":
            ext = (sz[0], sz[0], sz[1])
        elif self.kind == "capsule":
            ext = (sz[0], sz[0], sz[1] + sz[0])
        else:
            ext = (sz[0],) * 3
        ext = np.asarray(ext, dtype=float)
        if self.quat is None:
            return ext
        return np.abs(_quat_mat(self.quat)) @ ext


def _quat_mat(quat) -> np.ndarray:
    rotation = np.zeros(9)
    mujoco.mju_quat2Mat(rotation, np.asarray(quat, dtype=float))
    return rotation.reshape(3, 3)


def _rot(axis: str, angle: float, then: tuple | None = None) -> tuple:
    """Quaternion of a rotation by `angle` about `axis`, applied in the frame of `then` if given."""
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.eye(3)["xyz".index(axis)], angle)
    if then is not None:
        mujoco.mju_mulQuat(q, np.asarray(then, dtype=float), q.copy())
    return tuple(float(v) for v in q)


@dataclass(frozen=True)
class Region:
    """An axis-aligned box in an asset's (or moving part's) frame: centre and half sizes."""

    center: tuple[float, float, float]
    half: tuple[float, float, float]

    def scaled(self, s: float) -> Region:
        return Region(tuple(v * s for v in self.center), tuple(v * s for v in self.half))

    def contains(self, local_points: np.ndarray) -> np.ndarray:
        d = np.abs(np.atleast_2d(local_points) - np.asarray(self.center))
        return np.all(d <= np.asarray(self.half), axis=-1)


@dataclass(frozen=True)
class Joint:
    """The moving part of a fixture: a drawer on a slide or a door on a hinge."""

    kind: str                                 # "slide" | "hinge"
    pos: tuple[float, float, float]           # joint anchor in the fixture frame
    axis: tuple[float, float, float]          # positive motion opens
    open_value: float                         # joint value when fully open (m or rad)
    parts: tuple[Part, ...]                   # in the moving body's frame (anchor at the origin)
    damping: float = 2.0
    frictionloss: float = 0.3


@dataclass(frozen=True)
class Asset:
    name: str
    parts: tuple[Part, ...]
    mass: float = 0.0                      # 0 for fixtures (static)
    interior: Region | None = None         # containers and fixtures: where a placed object must be
    top_tier: Region | None = None         # tiered basket / shelf: the highest tier
    joint: Joint | None = None             # fixtures: the drawer or door
    interior_on_joint: bool = False        # the interior moves with the drawer
    kind: str = "object"                   # object | container | fixture

    def scaled(self, s: float) -> Asset:
        """The asset `s` times as large, its interior and top tier with it (a fixture's door is not scaled)."""
        if s == 1.0:
            return self
        if self.joint is not None:
            raise ValueError(f"{self.name}: a fixture is built at its size, not scaled")
        return replace(self, parts=tuple(p.scaled(s) for p in self.parts), mass=self.mass * s ** 3,
                       interior=self.interior and self.interior.scaled(s), top_tier=self.top_tier and self.top_tier.scaled(s))

    @property
    def bottom(self) -> float:
        """Height of the lowest point below the asset origin (negative)."""
        return min(p.pos[2] - p.half_extents()[2] for p in self.parts)

    @property
    def top(self) -> float:
        return max(p.pos[2] + p.half_extents()[2] for p in self.parts)

    @property
    def surface(self) -> float:
        """Height of what an object set on the asset's centre rests on (a tray's floor, not its rim)."""
        return max(p.pos[2] + p.half_extents()[2] for p in self.parts
                   if p.collide and np.all(np.abs(p.pos[:2]) <= p.half_extents()[:2]))

    @property
    def horizontal_radius(self) -> float:
        return max(math.hypot(abs(p.pos[0]) + p.half_extents()[0], abs(p.pos[1]) + p.half_extents()[1])
                   for p in self.parts)

    @property
    def center(self) -> np.ndarray:
        """The centre of the asset's bounding box, in its frame (the origin is at the asset's base)."""
        k = self.keypoints
        return (k.min(axis=0) + k.max(axis=0)) / 2

    @property
    def half(self) -> np.ndarray:
        """The half sizes of the asset's bounding box."""
        k = self.keypoints
        return (k.max(axis=0) - k.min(axis=0)) / 2

    @property
    def keypoints(self) -> np.ndarray:
        """The 8 corners of the asset's bounding box, in its frame."""
        lo = np.min([np.asarray(p.pos) - p.half_extents() for p in self.parts], axis=0)
        hi = np.max([np.asarray(p.pos) + p.half_extents() for p in self.parts], axis=0)
        return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])

    @property
    def eroded_keypoints(self) -> np.ndarray:
        """Upstream's 15 points of an object for the tier checks: the bounding box's corners, face centres and
        centre, each pulled 20% of the way to the centre."""
        centre, half = self.center, self.half
        faces = [centre + sign * half * axis for axis in np.eye(3) for sign in (-1, 1)]
        points = np.vstack([self.keypoints, faces, centre])
        return centre + 0.8 * (points - centre)


# ---------------------------------------------------------------- shapes used by several assets

def _rgba(r, g, b, a=1.0):
    return (r, g, b, a)


def _ring(radius, height, thickness, n, rgba, z0=0.0, flare=0.0):
    """A round wall made of `n` boxes (bowls, pots, pans, plate rims)."""
    parts = []
    seg = 2 * radius * math.tan(math.pi / n) * 0.55 + thickness / 2
    for i in range(n):
        a = 2 * math.pi * i / n
        parts.append(Part("box", (thickness / 2, seg, height / 2),
                          (radius * math.cos(a), radius * math.sin(a), z0 + height / 2), rgba,
                          quat=_rot("y", flare, then=_rot("z", a))))
    return parts


def _disc(radius, half_height, rgba, z=None):
    """A flat round base as three boxes turned 60 degrees apart (a twelve-sided slab). MuJoCo's libccd sinks a
    wide thin cylinder standing on the table and flings it off; box on box has an exact collider."""
    half_width = radius * math.tan(math.pi / 12)
    z = half_height if z is None else z
    return [Part("box", (radius, half_width * 2.0, half_height), (0, 0, z), rgba, quat=_rot("z", k * math.pi / 3))
            for k in range(3)]


def _walls(hx, hy, height, thickness, rgba, z0=0.0):
    """Four straight walls around a rectangle (baskets, boxes, trays)."""
    t = thickness / 2
    h = height / 2
    return [Part("box", (t, hy, h), (hx - t, 0, z0 + h), rgba), Part("box", (t, hy, h), (-hx + t, 0, z0 + h), rgba),
            Part("box", (hx, t, h), (0, hy - t, z0 + h), rgba), Part("box", (hx, t, h), (0, -hy + t, z0 + h), rgba)]


def _open_box(name, hx, hy, height, floor, thickness, rgba, mass):
    """A container with a floor and four walls; its interior is the space between them."""
    parts = [Part("box", (hx, hy, floor / 2), (0, 0, floor / 2), rgba)] + _walls(hx, hy, height - floor, thickness, rgba, z0=floor)
    interior = Region((0, 0, floor + (height - floor) / 2), (hx - thickness, hy - thickness, (height - floor) / 2))
    return Asset(name, tuple(parts), mass, interior=interior, kind="container")


def _round_container(name, radius, height, floor, rgba, mass, extra=(), n=14, flare=0.0):
    parts = _disc(radius * 0.85, floor / 2, rgba)
    # The wall starts above the floor's underside so only the floor rests on the table (fewer contacts).
    parts += _ring(radius, height - floor, 0.008, n, rgba, z0=floor + 0.004, flare=flare) + list(extra)
    interior = Region((0, 0, floor + (height - floor) / 2), (radius * 0.95, radius * 0.95, (height - floor) / 2))
    return Asset(name, tuple(parts), mass, interior=interior, kind="container")


# ---------------------------------------------------------------- the task objects

WHITE, STEEL, WOOD = _rgba(0.93, 0.93, 0.9), _rgba(0.62, 0.64, 0.66), _rgba(0.72, 0.52, 0.33)

OBJECTS: dict[str, Asset] = {a.name: a for a in [
    Asset("can", (Part("cylinder", (0.033, 0.061), (0, 0, 0.061), _rgba(0.8, 0.1, 0.1)),
                  Part("cylinder", (0.030, 0.002), (0, 0, 0.123), STEEL, collide=False)), 0.25),
    Asset("cup", (Part("cylinder", (0.036, 0.045), (0, 0, 0.045), WHITE),
                  Part("cylinder", (0.030, 0.002), (0, 0, 0.089), _rgba(0.35, 0.2, 0.1), collide=False),
                  Part("box", (0.008, 0.004, 0.025), (0, 0.043, 0.05), WHITE)), 0.2),
    Asset("bottled_water", (Part("cylinder", (0.032, 0.08), (0, 0, 0.08), _rgba(0.65, 0.85, 0.98, 0.75)),
                            Part("cylinder", (0.033, 0.025), (0, 0, 0.09), _rgba(0.1, 0.4, 0.85), collide=False),
                            Part("cylinder", (0.02, 0.02), (0, 0, 0.18), _rgba(0.65, 0.85, 0.98, 0.75)),
                            Part("cylinder", (0.013, 0.008), (0, 0, 0.208), _rgba(0.1, 0.3, 0.8))), 0.5),
    Asset("wine", (Part("cylinder", (0.036, 0.095), (0, 0, 0.095), _rgba(0.1, 0.25, 0.12)),
                   Part("cylinder", (0.037, 0.035), (0, 0, 0.09), _rgba(0.92, 0.88, 0.75), collide=False),
                   Part("cylinder", (0.014, 0.05), (0, 0, 0.24), _rgba(0.1, 0.25, 0.12)),
                   Part("cylinder", (0.015, 0.02), (0, 0, 0.28), _rgba(0.5, 0.05, 0.1))), 0.75),
    Asset("milk", (Part("box", (0.035, 0.035, 0.085), (0, 0, 0.085), WHITE),
                   Part("box", (0.0355, 0.0355, 0.03), (0, 0, 0.07), _rgba(0.15, 0.35, 0.8), collide=False),
                   Part("box", (0.035, 0.025, 0.015), (0, 0, 0.185), WHITE, quat=_rot("x", 0.6))), 0.6),
    Asset("potato", (Part("ellipsoid", (0.045, 0.032, 0.028), (0, 0, 0.028), _rgba(0.62, 0.45, 0.27)),), 0.2),
    Asset("sweet_potato", (Part("ellipsoid", (0.07, 0.03, 0.028), (0, 0, 0.028), _rgba(0.55, 0.25, 0.22)),), 0.25),
    Asset("lemon", (Part("ellipsoid", (0.042, 0.031, 0.031), (0, 0, 0.031), _rgba(0.98, 0.86, 0.1)),), 0.12),
    Asset("croissant", (Part("capsule", (0.026, 0.035), (0, 0, 0.026), _rgba(0.82, 0.55, 0.22), quat=_rot("x", math.pi / 2)),
                        Part("capsule", (0.018, 0.02), (0.02, 0.055, 0.018), _rgba(0.78, 0.5, 0.2), quat=_rot("x", math.pi / 2, then=_rot("z", 0.6))),
                        Part("capsule", (0.018, 0.02), (0.02, -0.055, 0.018), _rgba(0.78, 0.5, 0.2), quat=_rot("x", math.pi / 2, then=_rot("z", -0.6)))), 0.08),
    # Round produce gets a flat spot to stand on, as the real thing does: a ball would roll off its source.
    # (A pepper standing on the tip of its ellipsoid is balanced on a point: it tips over and rolls away.)
    Asset("bell_pepper", (Part("cylinder", (0.03, 0.006), (0, 0, 0.006), _rgba(0.85, 0.1, 0.05)),
                          Part("ellipsoid", (0.04, 0.04, 0.042), (0, 0, 0.042), _rgba(0.85, 0.1, 0.05)),
                          Part("cylinder", (0.006, 0.01), (0, 0, 0.09), _rgba(0.2, 0.5, 0.15))), 0.17),
    Asset("pear", (Part("cylinder", (0.026, 0.006), (0, 0, 0.006), _rgba(0.75, 0.8, 0.3)),
                   Part("sphere", (0.036,), (0, 0, 0.036), _rgba(0.75, 0.8, 0.3)),
                   Part("sphere", (0.024,), (0, 0, 0.076), _rgba(0.75, 0.8, 0.3)),
                   Part("cylinder", (0.003, 0.01), (0, 0, 0.105), _rgba(0.35, 0.25, 0.1), collide=False)), 0.18),
    Asset("squash", (Part("cylinder", (0.042, 0.025), (0, 0, 0.025), _rgba(0.92, 0.68, 0.35)),
                     Part("sphere", (0.045,), (0, 0, 0.045), _rgba(0.92, 0.68, 0.35)),
                     Part("capsule", (0.028, 0.04), (0, 0, 0.1), _rgba(0.92, 0.72, 0.4))), 0.4),
    Asset("cupcake", (Part("cylinder", (0.03, 0.02), (0, 0, 0.02), _rgba(0.9, 0.45, 0.6)),
                      Part("ellipsoid", (0.034, 0.034, 0.022), (0, 0, 0.045), _rgba(0.45, 0.25, 0.15))), 0.1),
    Asset("tomato", (Part("ellipsoid", (0.036, 0.036, 0.031), (0, 0, 0.031), _rgba(0.9, 0.15, 0.1)),
                     Part("cylinder", (0.01, 0.002), (0, 0, 0.062), _rgba(0.2, 0.5, 0.15), collide=False)), 0.12),
    Asset("eggplant", (Part("ellipsoid", (0.08, 0.035, 0.034), (0, 0, 0.034), _rgba(0.3, 0.1, 0.35)),
                       Part("cylinder", (0.014, 0.012), (0.08, 0, 0.034), _rgba(0.2, 0.45, 0.15), quat=_rot("y", math.pi / 2))), 0.3),
]}

# ---------------------------------------------------------------- instances of the novel objects

def _variant(asset: Asset, k: int, stretch=(1.0, 1.0, 1.0), colors: dict | None = None) -> Asset:
    """Instance `k` of an object category: `asset` stretched per axis, recoloured part by part (`colors` maps an
    old rgba to a new one) and given the mass of its new volume at the same density."""
    parts = tuple(replace(p.stretched(stretch), rgba=(colors or {}).get(p.rgba, p.rgba)) for p in asset.parts)
    mass = asset.mass * _solid_volume(parts) / _solid_volume(asset.parts)
    return replace(asset, name=f"{asset.name}_{k}", parts=parts, mass=mass)


def _solid_volume(parts) -> float:
    return sum(p.volume() for p in parts if p.collide)


# Each category's instances 1-3 as (stretch, recolouring) of instance 0, the category's asset in OBJECTS. A round
# object's vertical semi-axis stays its shortest, so it rests on its flattest side; footprints stay within 1.25x of
# instance 0's area and heights within 25%, so the hand grasps every instance as it grasps the first.
_RED, _PURPLE = _rgba(0.85, 0.1, 0.05), _rgba(0.3, 0.1, 0.35)
_WRAPPER, _FROSTING = _rgba(0.9, 0.45, 0.6), _rgba(0.45, 0.25, 0.15)
_INSTANCE_VARIATIONS: dict[str, tuple] = {
    "sweet_potato": (((1.15, 0.9, 0.85), {_rgba(0.55, 0.25, 0.22): _rgba(0.46, 0.17, 0.26)}),     # long, purple skin
                     ((0.85, 1.1, 1.05), {_rgba(0.55, 0.25, 0.22): _rgba(0.7, 0.38, 0.2)}),       # stubby, orange
                     ((1.05, 1.0, 0.92), {_rgba(0.55, 0.25, 0.22): _rgba(0.76, 0.6, 0.45)})),     # pale skin
    "bell_pepper": (((1.0, 1.0, 1.1), {_RED: _rgba(0.18, 0.5, 0.12)}),                             # green, tall
                    ((1.1, 1.1, 0.9), {_RED: _rgba(0.96, 0.8, 0.12)}),                             # yellow, squat
                    ((0.9, 0.9, 1.0), {_RED: _rgba(0.95, 0.5, 0.08)})),                            # orange, small
    "lemon": (((1.1, 0.95, 0.9), {_rgba(0.98, 0.86, 0.1): _rgba(0.96, 0.9, 0.4)}),                # long, pale
              ((0.9, 1.05, 0.98), {_rgba(0.98, 0.86, 0.1): _rgba(0.98, 0.76, 0.05)}),             # round, deep yellow
              ((1.1, 1.08, 1.0), {_rgba(0.98, 0.86, 0.1): _rgba(0.82, 0.84, 0.22)})),             # large, unripe
    "croissant": (((1.1, 1.1, 0.9), {_rgba(0.82, 0.55, 0.22): _rgba(0.7, 0.42, 0.15),            # flat, well baked
                                     _rgba(0.78, 0.5, 0.2): _rgba(0.66, 0.38, 0.13)}),
                  ((0.9, 0.9, 0.95), {_rgba(0.82, 0.55, 0.22): _rgba(0.9, 0.68, 0.38),            # small, pale
                                      _rgba(0.78, 0.5, 0.2): _rgba(0.86, 0.63, 0.34)}),
                  ((1.0, 1.2, 1.1), {_rgba(0.82, 0.55, 0.22): _rgba(0.86, 0.6, 0.27)})),          # wide horns
    "pear": (((0.9, 0.9, 1.15), {_rgba(0.75, 0.8, 0.3): _rgba(0.45, 0.68, 0.22)}),                # slim, green
             ((1.1, 1.1, 0.95), {_rgba(0.75, 0.8, 0.3): _rgba(0.92, 0.82, 0.32)}),                # plump, yellow
             ((1.0, 1.0, 1.05), {_rgba(0.75, 0.8, 0.3): _rgba(0.68, 0.22, 0.14)})),               # red
    "squash": (((1.0, 1.0, 1.1), {_rgba(0.92, 0.68, 0.35): _rgba(0.95, 0.82, 0.25),              # tall, yellow
                                  _rgba(0.92, 0.72, 0.4): _rgba(0.96, 0.85, 0.35)}),
               ((1.1, 1.1, 0.85), {_rgba(0.92, 0.68, 0.35): _rgba(0.3, 0.45, 0.2),                # squat, green
                                   _rgba(0.92, 0.72, 0.4): _rgba(0.35, 0.5, 0.24)}),
               ((0.9, 0.9, 1.0), {_rgba(0.92, 0.68, 0.35): _rgba(0.9, 0.5, 0.15),                 # slim, orange
                                  _rgba(0.92, 0.72, 0.4): _rgba(0.92, 0.56, 0.2)})),
    # The cupcakes' wrapper and frosting colours.
    "cupcake": (((1.1, 1.1, 0.9), {_WRAPPER: WHITE, _FROSTING: _rgba(0.95, 0.6, 0.72)}),
                ((0.9, 0.9, 1.1), {_WRAPPER: _rgba(0.3, 0.5, 0.85), _FROSTING: _rgba(0.96, 0.95, 0.9)}),
                ((1.05, 1.05, 1.15), {_WRAPPER: _rgba(0.95, 0.8, 0.3), _FROSTING: _rgba(0.3, 0.16, 0.1)})),
    "can": (((0.88, 0.88, 1.2), {_rgba(0.8, 0.1, 0.1): _rgba(0.1, 0.3, 0.8)}),                   # slim and tall, blue
            ((1.1, 1.1, 0.8), {_rgba(0.8, 0.1, 0.1): _rgba(0.15, 0.55, 0.2)}),                   # squat, green
            ((1.0, 1.0, 0.95), {_rgba(0.8, 0.1, 0.1): _rgba(0.95, 0.8, 0.15)})),                 # yellow
    "tomato": (((1.1, 1.1, 0.8), {_rgba(0.9, 0.15, 0.1): _rgba(0.75, 0.1, 0.08)}),               # flat beefsteak
               ((0.85, 0.85, 0.9), {_rgba(0.9, 0.15, 0.1): _rgba(0.95, 0.45, 0.1)}),             # small, orange
               ((1.0, 1.0, 1.05), {_rgba(0.9, 0.15, 0.1): _rgba(0.95, 0.8, 0.15)})),             # yellow
    "eggplant": (((1.12, 0.85, 0.8), {_PURPLE: _rgba(0.2, 0.06, 0.24)}),           # long, thin, dark
                 ((0.85, 1.15, 1.12), {_PURPLE: _rgba(0.5, 0.25, 0.55)}),          # short, plump, violet
                 ((1.0, 1.05, 1.0), {_PURPLE: _rgba(0.62, 0.42, 0.64)})),          # pale, graffiti
}

def _with_flat_spot(asset: Asset, radius: float, x: float = 0.0) -> Asset:
    """The asset with a flat spot under it, as real produce has a side it lies on (a box: on a box, MuJoCo's
    exact box-box collider holds it with several contacts where libccd gives a rounded part one)."""
    return replace(asset, parts=(Part("box", (radius, radius, 0.005), (x, 0, 0.005), asset.parts[0].rgba),) + asset.parts)


# Lying on a bare ellipsoid, produce rocks for seconds after it is set down (the eggplant's stem pulls its centre
# of mass off the bottom), and a sweet potato or lemon, nearly round across, rolls off its source and over:
# their instances get a flat spot under the centre, as the round produce has.
_INSTANCE_BASES = {**OBJECTS, "eggplant": _with_flat_spot(OBJECTS["eggplant"], 0.022, 0.003),
                   "sweet_potato": _with_flat_spot(OBJECTS["sweet_potato"], 0.018),
                   "lemon": _with_flat_spot(OBJECTS["lemon"], 0.014)}

OBJECT_INSTANCES: dict[str, tuple[Asset, ...]] = {
    category: (_variant(_INSTANCE_BASES[category], 0),) + tuple(_variant(_INSTANCE_BASES[category], k, stretch, colors)
                                                        for k, (stretch, colors) in enumerate(variations, start=1))
    for category, variations in _INSTANCE_VARIATIONS.items()}

INSTANCE_SPLITS = ("A", "B")


def validate_instances(split: str) -> str:
    if split not in INSTANCE_SPLITS:
        raise ValueError(f"instances must be one of {INSTANCE_SPLITS} (A: the 24 tasks' object instances; B: the "
                         f"held-out ones, as upstream's EvalPnPNovel...SplitB), got {split!r}")
    return split


def instance_split(category: str, split: str) -> tuple[Asset, ...]:
    """A category's instances in one split: "A" the first half (rounded up), "B" the rest, as upstream robocasa
    splits each category's sorted instances."""
    if category not in OBJECT_INSTANCES:
        raise ValueError(f"unknown category {category!r}: one of {sorted(OBJECT_INSTANCES)}")
    validate_instances(split)
    instances = OBJECT_INSTANCES[category]
    half = math.ceil(len(instances) / 2)
    return instances[:half] if split == "A" else instances[half:]


# ---------------------------------------------------------------- sources and targets

CONTAINERS: dict[str, Asset] = {
    "cutting_board": Asset("cutting_board", (Part("box", (0.15, 0.11, 0.01), (0, 0, 0.01), WOOD),), 0.8,
                           interior=Region((0, 0, 0.06), (0.15, 0.11, 0.04)), kind="container"),
    "placemat": Asset("placemat", (Part("box", (0.16, 0.12, 0.005), (0, 0, 0.005), _rgba(0.25, 0.45, 0.65)),), 0.15,
                      interior=Region((0, 0, 0.05), (0.16, 0.12, 0.045)), kind="container"),
    # A dinner plate, 24 cm across: wide enough that most of what stands within 5 cm of its centre
    # (upstream's placement) rests on its flat, not tilted against its rim.
    "plate": Asset("plate", tuple(_disc(0.105, 0.005, WHITE)
                                  + _ring(0.113, 0.012, 0.016, 18, WHITE, z0=0.01, flare=0.6)), 0.45,
                   interior=Region((0, 0, 0.05), (0.113, 0.113, 0.045)), kind="container"),
    "tray": Asset("tray", tuple([Part("box", (0.17, 0.125, 0.005), (0, 0, 0.005), _rgba(0.3, 0.3, 0.32))]
                                + _walls(0.17, 0.125, 0.02, 0.01, _rgba(0.3, 0.3, 0.32), z0=0.01)), 0.6,
                  interior=Region((0, 0, 0.05), (0.16, 0.115, 0.045)), kind="container"),
    "basket": _open_box("basket", 0.12, 0.095, 0.09, 0.008, 0.01, _rgba(0.66, 0.48, 0.26), 0.4),
    "cardboard_box": _open_box("cardboard_box", 0.13, 0.1, 0.12, 0.006, 0.006, _rgba(0.72, 0.56, 0.36), 0.45),
    "bowl": _round_container("bowl", 0.085, 0.055, 0.008, _rgba(0.85, 0.82, 0.7), 0.35, flare=0.35),
    # The handle runs out from the rim along +y, away from where the sources stand.
    "pan": _round_container("pan", 0.12, 0.03, 0.006, _rgba(0.18, 0.18, 0.2), 0.9, n=16,
                            extra=(Part("box", (0.012, 0.07, 0.006), (0.0, 0.19, 0.03), _rgba(0.1, 0.1, 0.1)),)),
    "pot": _round_container("pot", 0.1, 0.11, 0.008, STEEL, 1.2, n=16,
                            extra=(Part("box", (0.015, 0.03, 0.006), (0.115, 0, 0.1), STEEL),
                                   Part("box", (0.015, 0.03, 0.006), (-0.115, 0, 0.1), STEEL))),
}


def _tiered(name, rgba, mass, upper_walls):
    """Two tiers on four posts; `top_tier` is the space above the upper tier, where success wants the object."""
    lower = [Part("box", (0.14, 0.1, 0.005), (0, 0, 0.005), rgba)] + _walls(0.14, 0.1, 0.045, 0.008, rgba, z0=0.01)
    posts = [Part("cylinder", (0.008, 0.085), (sx * 0.125, sy * 0.085, 0.095), rgba) for sx in (-1, 1) for sy in (-1, 1)]
    top_z = 0.18
    upper = [Part("box", (0.13, 0.095, 0.005), (0, 0, top_z + 0.005), rgba)]
    if upper_walls:
        upper += _walls(0.13, 0.095, 0.05, 0.008, rgba, z0=top_z)
    # From inside the upper board (an object resting on it has its lowest keypoints on the board's surface)
    # to 20 cm above it: the top is open, and a squash stands 17 cm tall.
    region = Region((0, 0, top_z + 0.1), (0.125, 0.09, 0.1))
    return Asset(name, tuple(lower + posts + upper), mass, interior=region, top_tier=region, kind="container")


CONTAINERS["tiered_basket"] = _tiered("tiered_basket", _rgba(0.62, 0.45, 0.25), 0.9, upper_walls=True)
CONTAINERS["tiered_shelf"] = _tiered("tiered_shelf", _rgba(0.85, 0.85, 0.82), 1.1, upper_walls=False)

# ---------------------------------------------------------------- clutter along the table's back edge

def _plant_leaves(n, rgba):
    """`n` leaves around the stem, rising outwards, and one upright leaf on top."""
    leaves = []
    for i in range(n):
        a = 2 * math.pi * i / n + 0.4
        z = 0.17 + 0.02 * (i % 3)
        leaves.append(Part("ellipsoid", (0.05, 0.018, 0.003), (0.04 * math.cos(a), 0.04 * math.sin(a), z), rgba,
                           quat=_rot("y", -0.6, then=_rot("z", a))))
    return leaves + [Part("ellipsoid", (0.018, 0.003, 0.045), (0, 0, 0.255), rgba)]


# Sizes as width (y, across the robot's view) x depth (x, away from it) x height; each stands on a flat base.
_POT, _SOIL, _LEAF = _rgba(0.7, 0.38, 0.25), _rgba(0.22, 0.15, 0.1), _rgba(0.2, 0.55, 0.2)
BACK_EDGE: dict[str, Asset] = {a.name: a for a in [
    # 0.28 wide, 0.17 deep, 0.18 tall, with two bread slots in its top and a lever on its front.
    Asset("toaster", (Part("box", (0.085, 0.14, 0.09), (0, 0, 0.09), _rgba(0.75, 0.76, 0.78)),
                      Part("box", (0.015, 0.11, 0.0015), (-0.03, 0, 0.1792), _rgba(0.05, 0.05, 0.05), collide=False),
                      Part("box", (0.015, 0.11, 0.0015), (0.03, 0, 0.1792), _rgba(0.05, 0.05, 0.05), collide=False),
                      Part("box", (0.012, 0.012, 0.006), (-0.097, 0.1, 0.13), _rgba(0.1, 0.1, 0.1))), 1.5),
    # A pot 0.12 across with soil and leaves, 0.3 tall; the pot carries nearly all the mass.
    Asset("plant", tuple([Part("cylinder", (0.06, 0.055), (0, 0, 0.055), _POT),
                          Part("cylinder", (0.054, 0.002), (0, 0, 0.109), _SOIL, collide=False),
                          Part("capsule", (0.005, 0.07), (0, 0, 0.18), _rgba(0.25, 0.45, 0.18))]
                         + _plant_leaves(6, _LEAF)), 0.6),
    # A bag of chips standing up: 0.16 wide, 0.06 deep, 0.22 tall, with crimped seals top and bottom.
    Asset("chips", (Part("box", (0.03, 0.08, 0.1), (0, 0, 0.11), _rgba(0.95, 0.75, 0.1)),
                    Part("box", (0.012, 0.08, 0.01), (0, 0, 0.01), _rgba(0.85, 0.15, 0.1)),
                    Part("box", (0.012, 0.08, 0.01), (0, 0, 0.21), _rgba(0.85, 0.15, 0.1)),
                    Part("box", (0.0305, 0.05, 0.04), (0, 0, 0.11), _rgba(0.85, 0.15, 0.1), collide=False)), 0.1),
    # A cereal box: 0.19 wide, 0.07 deep, 0.28 tall, its label towards the robot.
    Asset("cereal", (Part("box", (0.035, 0.095, 0.14), (0, 0, 0.14), _rgba(0.9, 0.85, 0.2)),
                     Part("box", (0.0355, 0.07, 0.08), (0, 0, 0.16), _rgba(0.8, 0.2, 0.15), collide=False)), 0.4),
    # A book lying flat: 0.22 wide, 0.15 deep, 0.03 thick, its spine on the far side.
    Asset("book", (Part("box", (0.075, 0.11, 0.0015), (0, 0, 0.0015), _rgba(0.15, 0.25, 0.55)),
                   Part("box", (0.072, 0.107, 0.0135), (-0.002, 0, 0.015), WHITE),
                   Part("box", (0.075, 0.11, 0.0015), (0, 0, 0.0285), _rgba(0.15, 0.25, 0.55)),
                   Part("box", (0.0015, 0.11, 0.015), (0.0735, 0, 0.015), _rgba(0.15, 0.25, 0.55))), 0.4),
    # A candle in a glass: 0.035 radius, 0.09 tall.
    Asset("candle", (Part("cylinder", (0.035, 0.045), (0, 0, 0.045), _rgba(0.8, 0.9, 0.95, 0.35)),
                     Part("cylinder", (0.031, 0.033), (0, 0, 0.038), _rgba(0.95, 0.92, 0.82), collide=False),
                     Part("cylinder", (0.0015, 0.005), (0, 0, 0.076), _rgba(0.1, 0.1, 0.1), collide=False)), 0.3),
]}

# A paper towel holder: a base disc, a post and a roll 0.06 in radius, 0.35 tall in all.
PAPER_TOWEL = Asset("paper_towel", (*_disc(0.075, 0.006, STEEL),
                                    Part("cylinder", (0.06, 0.145), (0, 0, 0.157), WHITE),
                                    Part("cylinder", (0.008, 0.02), (0, 0, 0.322), STEEL),
                                    Part("sphere", (0.01,), (0, 0, 0.34), STEEL)), 0.5)


# ---------------------------------------------------------------- fixtures (static, on the table)


def _cabinet_body(name, hx, hy, height, t, rgba):
    """A box open towards -x (the robot): floor, roof, back and two sides."""
    return [Part("box", (hx, hy, t / 2), (0, 0, t / 2), rgba), Part("box", (hx, hy, t / 2), (0, 0, height - t / 2), rgba),
            Part("box", (t / 2, hy, height / 2), (hx - t / 2, 0, height / 2), rgba),
            Part("box", (hx, t / 2, height / 2), (0, hy - t / 2, height / 2), rgba),
            Part("box", (hx, t / 2, height / 2), (0, -hy + t / 2, height / 2), rgba)]


def _door(width, height, t, rgba, handle_rgba, sign):
    """A door hinged at the fixture's front edge; `sign` +1 puts the hinge on the -y edge, -1 on +y."""
    axis = (0, 0, sign)  # positive angle swings the free edge towards the robot (-x)
    parts = (Part("box", (t / 2, width / 2, height / 2), (-t / 2, sign * width / 2, height / 2), rgba),
             Part("box", (0.012, 0.01, 0.05), (-t - 0.012, sign * (width - 0.03), height / 2), handle_rgba))
    return axis, parts


def _drawer_chest():
    hx, hy, height, t = 0.15, 0.225, 0.25, 0.015   # 0.45 wide (y), 0.30 deep (x), 0.25 tall
    rgba, front = _rgba(0.78, 0.74, 0.68), _rgba(0.6, 0.45, 0.3)
    body = [Part("box", (hx, hy, t / 2), (0, 0, height - t / 2), rgba),
            Part("box", (t / 2, hy, height / 2), (hx - t / 2, 0, height / 2), rgba),
            Part("box", (hx, t / 2, height / 2), (0, hy - t / 2, height / 2), rgba),
            Part("box", (hx, t / 2, height / 2), (0, -hy + t / 2, height / 2), rgba),
            Part("box", (hx, hy, t / 2), (0, 0, t / 2), rgba)]
    # Drawer: a tray sliding along -x; its frame's origin is at the chest's front, mid-height of the drawer.
    dx, dy, dz = hx - t, hy - t - 0.004, (height - 2 * t - 0.02) / 2   # half sizes of the drawer box
    drawer = (Part("box", (dx, dy, 0.005), (dx, 0, -dz + 0.005), front),
              Part("box", (0.005, dy, dz), (2 * dx - 0.005, 0, 0), front),
              Part("box", (dx, 0.005, dz), (dx, dy - 0.005, 0), front),
              Part("box", (dx, 0.005, dz), (dx, -dy + 0.005, 0), front),
              Part("box", (0.008, hy, dz + 0.01), (-0.008, 0, 0), front),
              Part("box", (0.012, 0.05, 0.01), (-0.028, 0, 0.03), STEEL))
    z_mid = t + 0.006 + dz
    # It opens as far as upstream's: 0.55 of the chest's depth.
    joint = Joint("slide", (-hx, 0, z_mid), (-1, 0, 0), 0.55 * 2 * hx, drawer, damping=8.0, frictionloss=1.0)
    interior = Region((dx, 0, 0.005), (dx - 0.01, dy - 0.01, dz - 0.005))
    return Asset("drawer", tuple(body), interior=interior, joint=joint, interior_on_joint=True, kind="fixture")


DOOR_GAP = 0.002


def _hinged_fixture(name, hx, hy, height, rgba, door_rgba, hinge_side, panel=0.0):
    """A cabinet or microwave: a box open to the robot, closed by one door hinged on `hinge_side` (+1: -y edge)."""
    t = 0.015
    parts = _cabinet_body(name, hx, hy, height, t, rgba)
    if panel:  # microwave control panel beside the door
        parts.append(Part("box", (0.01, panel / 2, height / 2 - t), (-hx + 0.01, hinge_side * (hy - panel / 2), height / 2), _rgba(0.1, 0.1, 0.1)))
    width = 2 * hy - panel
    hinge_y = -hinge_side * hy
    axis, door = _door(width, height - 2 * t, 0.018, door_rgba, _rgba(0.15, 0.15, 0.15), hinge_side)
    # The shut door stands 2 mm proud of the walls' front edges; its stop is the hinge's range. Touching them
    # face to face, the nearly coplanar boxes made MuJoCo's box-box test report a 3 cm overlap as the door
    # shut, which flung it open again.
    joint = Joint("hinge", (-hx - DOOR_GAP, hinge_y, t), axis, math.pi / 2, door, damping=0.5, frictionloss=0.05)
    inner_y0 = -hy + t if hinge_side > 0 else -hy + t + panel
    inner_y1 = hy - t - (panel if hinge_side > 0 else 0.0)
    interior = Region((0.0, (inner_y0 + inner_y1) / 2, height / 2), (hx - t, (inner_y1 - inner_y0) / 2, height / 2 - t))
    return Asset(name, tuple(parts), interior=interior, joint=joint, kind="fixture")


# Upstream's layout sizes: drawer chest 0.45 wide (y) x 0.30 deep (x) x 0.25 tall, cabinet 0.30 x 0.30 x 0.80,
# microwave 0.35 x 0.40 x 0.30.
FIXTURES: dict[str, Asset] = {
    "drawer": _drawer_chest(),
    # A tall left-hand cabinet, one shelf-less interior: hinge on its -y edge (towards the
    # table centre).
    "cabinet": _hinged_fixture("cabinet", 0.15, 0.15, 0.8, _rgba(0.55, 0.4, 0.28), _rgba(0.62, 0.46, 0.32), +1),
    # Right-hand microwave on the robot's right: hinge on its +y edge, control panel on the -y side.
    "microwave": _hinged_fixture("microwave", 0.2, 0.175, 0.3, _rgba(0.2, 0.2, 0.22), _rgba(0.12, 0.12, 0.14, 0.95), -1,
                                 panel=0.09),
}


# ---------------------------------------------------------------- MJCF

def _geom_xml(p: Part, friction, density, name=None) -> str:
    attrs = [f'type="{p.kind}"', f'size="{_f(p.size)}"', f'pos="{_f(p.pos)}"', f'rgba="{_f(p.rgba)}"']
    if name:
        attrs.append(f'name="{name}"')
    if p.quat is not None:
        attrs.append(f'quat="{_f(p.quat)}"')
    if p.collide:
        attrs += [f'friction="{_f(friction)}"', 'condim="4"', f'density="{density:.6g}"', 'group="0"',
                  'solref="0.004 1"', 'solimp="0.95 0.99 0.001"']
    else:
        attrs += ['contype="0"', 'conaffinity="0"', 'density="0"', 'group="1"']
    return f"<geom {' '.join(attrs)}/>"


def _f(values) -> str:
    return " ".join(f"{v:.6g}" for v in values)


def to_mjcf(a: Asset) -> str:
    """The MJCF of one asset, in the layout robosuite's `MujocoXMLObject` expects."""
    density = a.mass / _solid_volume(a.parts) if a.mass else 500.0
    friction = OBJECT_FRICTION if a.kind == "object" else CONTAINER_FRICTION
    geoms = [_geom_xml(p, friction, density, name=f"g{i}") for i, p in enumerate(a.parts)]
    moving = ""
    if a.joint is not None:
        j = a.joint
        rng = f"0 {j.open_value:.6g}"
        jgeoms = "".join(_geom_xml(p, CONTAINER_FRICTION, 400.0, name=f"m{i}") for i, p in enumerate(j.parts))
        moving = (f'<body name="moving" pos="{_f(j.pos)}">'
                  f'<joint name="joint" type="{j.kind}" axis="{_f(j.axis)}" range="{rng}" limited="true" '
                  f'damping="{j.damping}" frictionloss="{j.frictionloss}" armature="0.01"/>'
                  f"{jgeoms}</body>")
    r = a.horizontal_radius
    # Movable assets compile with gravity compensation on, so that MuJoCo keeps computing it: the scene
    # switches it off for the instances in play and leaves it on for the ones it parks.
    gravcomp = "" if a.kind == "fixture" else ' gravcomp="1"'
    return (f'<mujoco model="{a.name}"><worldbody><body><body name="object"{gravcomp}>{"".join(geoms)}{moving}</body>'
            f'<site rgba="0 0 0 0" size="0.005" pos="0 0 {a.bottom:.6g}" name="bottom_site"/>'
            f'<site rgba="0 0 0 0" size="0.005" pos="0 0 {a.top:.6g}" name="top_site"/>'
            f'<site rgba="0 0 0 0" size="0.005" pos="{r:.6g} {r:.6g} 0" name="horizontal_radius_site"/>'
            f"</body></worldbody></mujoco>")


_ASSET_DIR: str | None = None


def mjcf_file(a: Asset) -> str:
    """Write the asset's MJCF once per process and return its path (robosuite loads objects from files)."""
    global _ASSET_DIR
    if _ASSET_DIR is None:
        _ASSET_DIR = tempfile.mkdtemp(prefix="lda_bench_assets_")
    text = to_mjcf(a)
    path = os.path.join(_ASSET_DIR, f"{a.name}_{hashlib.sha1(text.encode()).hexdigest()[:12]}.xml")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(text)
    return path
