"""The simulation suite of a config: names, seeds and per-run specifications.

Names: `train00`, `train01`, ..., `val00`, ... and `test00`, ... for the LR/HR pairs (their seeds from
`suite.train_seeds` / `suite.val_seeds` / `suite.test_seeds`), `bigbox` for the optional large LR box. Kinds: `lr`, `hr`.
LR and HR of a pair share the seed and the white-noise grid (`noise_grid` = n_hr), so they share
their large-scale initial modes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from srsim.errors import SrsimError


@dataclass(frozen=True)
class SimSpec:
    """Everything a backend needs to run one simulation."""

    name: str
    kind: str  #: "lr" or "hr"
    box_size: float  #: Mpc/h
    n_grid: int  #: particles per side
    seed: int
    noise_grid: int  #: white-noise grid (n_hr for the pairs; the big box's SR grid, bigbox.n_lr x n_hr / n_lr)
    redshifts: tuple  #: output redshifts, descending
    z_init: float
    cosmology: dict = field(hash=False)
    softening: float = 1 / 30  #: fraction of the mean particle spacing
    backend: str = "pm"
    options: dict = field(default_factory=dict, hash=False)  #: the config's sims.<backend> section
    #: initial Fourier amplitudes, "rayleigh" or "fixed" (sims.amplitudes; both backends honour it)
    amplitudes: str = field(default_factory=lambda: _schema_default("sims.amplitudes"))


def _schema_default(path: str):
    from srsim.config import default

    return default(path)


def fixed_amplitudes(spec: SimSpec) -> bool:
    """Whether `spec` asks for fixed initial amplitudes (sims.amplitudes: fixed) rather than Rayleigh ones."""
    if spec.amplitudes not in ("rayleigh", "fixed"):
        raise SrsimError(f"sims.amplitudes must be rayleigh or fixed, got {spec.amplitudes!r}")
    return spec.amplitudes == "fixed"


def zstr(z: float) -> str:
    """Redshift as used in paths: 4 -> '4', 0.5 -> '0.5'."""
    return f"{float(z):g}"


def simulation_names(config: dict) -> dict[str, list[str]]:
    """{"train": [...], "val": [...] (maybe empty), "test": [...], "bigbox": ["bigbox"] or []}."""
    suite = config["suite"]
    return {
        "train": [f"train{i:02d}" for i in range(len(suite["train_seeds"]))],
        "val": [f"val{i:02d}" for i in range(len(suite.get("val_seeds", [])))],
        "test": [f"test{i:02d}" for i in range(len(suite["test_seeds"]))],
        "bigbox": ["bigbox"] if config.get("bigbox") else [],
    }


def spec_for(config: dict, sim: str, kind: str) -> SimSpec:
    """The SimSpec of simulation `sim` (a name from `simulation_names`) at resolution `kind`."""
    from srsim.config import default

    suite = config["suite"]
    sims = config["sims"]
    backend = sims["backend"]
    common = dict(
        z_init=float(config["z_init"] if "z_init" in config else default("z_init")),
        cosmology=dict(config["cosmology"]),
        softening=float(sims["softening"] if "softening" in sims else default("sims.softening")),
        backend=backend,
        options=dict(sims.get(backend, {})),
        amplitudes=str(sims["amplitudes"] if "amplitudes" in sims else default("sims.amplitudes")),
    )
    if kind not in ("lr", "hr"):
        raise SrsimError(f"unknown simulation kind '{kind}' (expected lr or hr)")
    if sim == "bigbox":
        big = config.get("bigbox")
        if not big:
            raise SrsimError("simulation 'bigbox' requested but the config has no 'bigbox' section")
        if kind != "lr":
            raise SrsimError("the big box is LR only")
        zs = big.get("redshifts", config["redshifts"])
        # the white noise of the HR grid the big box is super-resolved to, as for the LR training boxes: the LR
        # run then zeroes its Nyquist planes like every LR box the model saw (with noise_grid = n_lr it would
        # keep them, and its grid-scale power would exceed the training LR's)
        noise = big["n_lr"] * (suite["n_hr"] // suite["n_lr"])
        return SimSpec(name=sim, kind=kind, box_size=float(big["box_size"]), n_grid=big["n_lr"], seed=big["seed"],
                       noise_grid=noise, redshifts=tuple(sorted(map(float, zs), reverse=True)), **common)
    for prefix, key in (("train", "train_seeds"), ("val", "val_seeds"), ("test", "test_seeds")):
        if sim.startswith(prefix) and sim[len(prefix):].isdigit():
            index = int(sim[len(prefix):])
            seeds = suite.get(key, [])
            if index >= len(seeds):
                raise SrsimError(f"simulation '{sim}' does not exist: suite.{key} has {len(seeds)} seeds")
            n = suite["n_lr"] if kind == "lr" else suite["n_hr"]
            return SimSpec(name=sim, kind=kind, box_size=float(suite["box_size"]), n_grid=n, seed=seeds[index],
                           noise_grid=suite["n_hr"], redshifts=tuple(sorted(map(float, config["redshifts"]), reverse=True)),
                           **common)
    raise SrsimError(f"unknown simulation '{sim}' (expected trainNN, valNN, testNN or bigbox)")
