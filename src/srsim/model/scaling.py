"""What the networks see: the normalisation of displacements and of the critic's density channels.

Why these choices:

* Displacements grow with the linear growth factor (D(4) / D(0) = 0.26 in WMAP9), so one fixed
  unit in Mpc/h would hand the networks inputs of very different size at z = 4 and z = 0. Dividing by ``disp_unit * D(z)`` (D(0) = 1; the authors' map2map runs use 6 Mpc/h) keeps the
  input, the output and the gradient penalty O(1) at every redshift with one setting.
* The critic's CIC density of a crop spans 0 to several hundred times the mean at z = 0 (rho - 1 has
  std 3.5-4.7 and maxima near 500 on real HR crops), next to displacement channels of order 1. Painting
  ``log((1 + rho) / 2)``, with rho in units of the mean density, is zero at the mean, -0.69 in empty cells
  and about 5.5 at rho = 500, so voids and halo cores both stay O(1); it is smooth and differentiable
  where rho = 0, unlike log(rho). ``linear`` (rho - 1) is the earlier behaviour.
* Six-channel models (``model.channels: 6``) also see the peculiar velocity v (km/s). Linear theory ties it
  to the displacement, v = 100 a E(a) f(a) psi (``Cosmology.linear_velocity``), and the growth rate f and
  a E(a) change with redshift as D does not. Dividing v by ``disp_scale * 100 a E(a) f(a)`` (``vel_scale``,
  km/s per network unit; disp_scale already holds D(z)) gives a linear-theory velocity exactly the
  normalised amplitude of its displacement, so the velocity channels are O(1) at every redshift and on the
  same footing as the displacement channels in the L2 loss and the critic.

A checkpoint records its scaling (``meta["scaling"]``, see ``Scaling.to_dict``) so that generation divides
and multiplies by exactly the numbers training used; ``Scaling.from_meta`` reads it back, and reads a
checkpoint written before scalings were recorded with the behaviour it was trained with (a fixed
``disp_scale`` in Mpc/h, linear density), saying so on stderr. A record without ``channels`` (every
checkpoint before six-channel models) is a 3-channel, displacement-only model.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import torch

from srsim.errors import SrsimError

__all__ = ["Scaling", "DENSITY_KINDS", "CHANNELS", "density_channel"]

DENSITY_KINDS = ("log1p", "linear")
#: channel counts of a model: 3 = displacement (the paper), 6 = displacement + peculiar velocity
CHANNELS = (3, 6)
_LOG2 = math.log(2.0)


def density_channel(rho: torch.Tensor, kind: str) -> torch.Tensor:
    """The critic's density channel from rho (B, 1, m, m, m), density in units of the crop's mean.

    ``log1p``: log((1 + rho) / 2); ``linear``: rho - 1 (see the module docstring for why).
    """
    if kind == "log1p":
        return torch.log1p(rho) - _LOG2
    if kind == "linear":
        return rho - 1.0
    raise SrsimError(f"model.density: unknown density channel {kind!r} (one of {', '.join(DENSITY_KINDS)})")


@dataclass(frozen=True)
class Scaling:
    """The normalisation of one model (one redshift).

    disp_unit: Mpc/h at z = 0 (``model.disp_scale``); growth: D(z) / D(0) of the training data's cosmology;
    density: the critic density channel (``DENSITY_KINDS``); redshift: of the training data (None for
    records that did not keep it); channels: 3 (displacement) or 6 (displacement, then velocity);
    velocity_factor: 100 a E(a) f(a), km/s per Mpc/h of linear-theory displacement at that redshift (six
    channels only, None otherwise).
    """

    disp_unit: float
    growth: float
    density: str = "log1p"
    redshift: float | None = None
    channels: int = 3
    velocity_factor: float | None = None

    def __post_init__(self):
        for key in ("disp_unit", "growth"):
            v = getattr(self, key)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise SrsimError(f"scaling: {key} must be a positive finite number, got {v!r}")
        if self.density not in DENSITY_KINDS:
            raise SrsimError(f"scaling: density must be one of {', '.join(DENSITY_KINDS)}, got {self.density!r}")
        if self.channels not in CHANNELS:
            raise SrsimError(f"scaling: channels must be one of {CHANNELS}, got {self.channels!r}")
        v = self.velocity_factor
        if self.channels == 6 and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise SrsimError(f"scaling: a 6-channel model needs a positive finite velocity_factor, got {v!r}")
        if self.channels == 3 and v is not None:
            raise SrsimError("scaling: a 3-channel (displacement-only) model has no velocity_factor")

    @classmethod
    def for_data(cls, model_cfg: dict, cosmology: dict, redshift: float) -> "Scaling":
        """The scaling of a model trained at ``redshift`` on data of ``cosmology`` (config-style dict)."""
        from srsim.cosmology import Cosmology

        cosmo = Cosmology.from_config(cosmology)
        growth = float(cosmo.growth(float(redshift)))
        channels = int(model_cfg.get("channels", cls.channels))  # records and callers before six channels: 3
        factor = None
        if channels == 6:
            factor = float(cosmo.linear_velocity(1.0, 1.0 / (1.0 + float(redshift))))
        return cls(float(model_cfg["disp_scale"]), growth, str(model_cfg["density"]), float(redshift),
                   channels, factor)

    @classmethod
    def from_meta(cls, meta: dict, where: str = "checkpoint") -> "Scaling":
        """The scaling recorded in a checkpoint's meta; a pre-scaling checkpoint keeps its fixed disp_scale."""
        rec = meta.get("scaling")
        if rec is None:
            print(f"srsim: {where} records no scaling (written before srsim recorded them); using its "
                  f"fixed disp_scale = {float(meta.get('disp_scale', 1.0)):g} Mpc/h and linear density, "
                  "as it was trained", file=sys.stderr)
            return cls(float(meta.get("disp_scale", 1.0)), 1.0, "linear", meta.get("redshift"))
        try:
            return cls(float(rec["disp_unit"]), float(rec["growth"]), str(rec["density"]),
                       None if rec.get("redshift") is None else float(rec["redshift"]),
                       int(rec.get("channels", cls.channels)),
                       None if rec.get("velocity_factor") is None else float(rec["velocity_factor"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SrsimError(f"{where}: malformed scaling record {rec!r}: {exc}") from exc

    def to_dict(self) -> dict:
        d = dict(asdict(self), disp_scale=self.disp_scale)
        if self.channels == 3:  # the record of a displacement-only model stays what it was
            del d["channels"], d["velocity_factor"]
        else:
            d["vel_scale"] = self.vel_scale
        return d

    @property
    def vel_scale(self) -> float | None:
        """km/s per network velocity unit: disp_scale * 100 a E(a) f(a) (six channels; None for three)."""
        return None if self.velocity_factor is None else self.disp_scale * self.velocity_factor

    def channel_scales(self) -> tuple[float, ...]:
        """Physical units per network unit of each channel: (disp_scale,) * 3 [+ (vel_scale,) * 3]."""
        return (self.disp_scale,) * 3 + ((self.vel_scale,) * 3 if self.channels == 6 else ())

    def normalise_velocity(self, vel):
        """Peculiar velocity in km/s -> network units (array or tensor, any shape; six channels only)."""
        if self.vel_scale is None:
            raise SrsimError("scaling: a 3-channel model has no velocity channels")
        return vel * (1.0 / self.vel_scale)

    def denormalise_velocity(self, x):
        """Network units -> peculiar velocity in km/s (inverse of ``normalise_velocity``)."""
        if self.vel_scale is None:
            raise SrsimError("scaling: a 3-channel model has no velocity channels")
        return x * self.vel_scale

    @property
    def disp_scale(self) -> float:
        """Mpc/h per network displacement unit at this redshift: disp_unit * D(z)."""
        return self.disp_unit * self.growth

    def normalise(self, disp):
        """Displacement in Mpc/h -> network units (array or tensor, any shape)."""
        return disp * (1.0 / self.disp_scale)

    def denormalise(self, x):
        """Network units -> displacement in Mpc/h (inverse of ``normalise``)."""
        return x * self.disp_scale

    def check_matches(self, other: "Scaling", where: str, tol: float = 1e-3) -> None:
        """SrsimError naming both values when ``other`` (e.g. the data's) differs from this scaling."""
        diffs = []
        if abs(self.disp_unit / other.disp_unit - 1) > tol:
            diffs.append(f"disp_unit {self.disp_unit:g} vs {other.disp_unit:g} Mpc/h")
        if abs(self.growth / other.growth - 1) > tol:
            diffs.append(f"growth D(z) {self.growth:.6g} vs {other.growth:.6g}"
                         + ("" if self.redshift is None or other.redshift is None
                            else f" (z = {self.redshift:g} vs {other.redshift:g})"))
        if self.density != other.density:
            diffs.append(f"density channel {self.density} vs {other.density}")
        if self.channels != other.channels:
            diffs.append(f"channels {self.channels} vs {other.channels}")
        elif self.channels == 6 and abs(self.velocity_factor / other.velocity_factor - 1) > tol:
            diffs.append(f"velocity factor 100 a E f {self.velocity_factor:.6g} vs {other.velocity_factor:.6g} km/s "
                         "per Mpc/h")
        if diffs:
            raise SrsimError(f"{where}: the model's scaling does not match the data: {'; '.join(diffs)} "
                             "(model vs data)")
