"""Workflow configuration: load YAML/JSON, validate against the schema, fill in defaults.

The schema is `workflow/schemas/config.schema.yaml` (shipped inside the package as
`srsim/config.schema.yaml`) and is the only place defaults are written. The Snakefile validates the whole
config at start-up (`validate_config`); each `srsim` subcommand receives only the sections it needs
(`--config '<json>'` or a YAML path), reads one with `section(args.config, name)` and puts its
command-line options over it with `apply_overrides`, so a change to one section reruns only the stages
that read it. Backends fill the options of a SimSpec with `validated("sims.<backend>", options)`.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from srsim.errors import SrsimError


@lru_cache(maxsize=1)
def schema() -> dict:
    """The config JSON-schema as a dict."""
    text = resources.files("srsim").joinpath("config.schema.yaml").read_text()
    return yaml.safe_load(text)


def _with_defaults(validator_class):
    """A validator class that also writes each property's `default` into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sch):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, sch)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _check(instance: Any, sch: dict, origin: str, prefix: tuple = ()) -> None:
    errors = sorted(_Validator(sch).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in (*prefix, *err.absolute_path)) or "<top level>"
        raise SrsimError(f"{origin}: invalid config at '{key}': {err.message}")


def validate_config(cfg: dict, origin: str = "config") -> dict:
    """Validate a whole config in place (defaults filled) and return it; SrsimError names the key."""
    _check(cfg, schema(), origin)
    _check_consistency(cfg, origin)
    return cfg


def validate_sections(cfg: dict, origin: str = "config") -> dict:
    """Validate only the top-level sections present in `cfg` (defaults filled) and return it."""
    props = schema()["properties"]
    for name, value in cfg.items():
        if name not in props:
            raise SrsimError(f"{origin}: unknown config section '{name}' (known: {', '.join(props)})")
        # validate {name: value} against a schema holding just that property, so defaults apply inside
        sub = {"type": "object", "properties": {name: props[name]}}
        _check({name: value}, sub, origin)
    _check_consistency(cfg, origin)
    return cfg


def _check_consistency(cfg: dict, origin: str) -> None:
    """Cross-key rules that JSON-schema cannot express."""
    suite = cfg.get("suite")
    if suite:
        n_lr, n_hr = suite["n_lr"], suite["n_hr"]
        ratio = n_hr // n_lr
        if n_hr % n_lr or ratio < 2 or ratio & (ratio - 1):
            raise SrsimError(
                f"{origin}: invalid config at 'suite.n_hr': n_hr / n_lr = {n_hr}/{n_lr} must be a power of 2 (>= 2)"
            )
        # a box used twice would make validation or the test score a measurement on training data
        seen = {}
        for key, label in (("train_seeds", "training"), ("val_seeds", "validation"), ("test_seeds", "test")):
            overlap = {s: seen[s] for s in suite.get(key, []) if s in seen}
            if overlap:
                others = " and ".join(sorted(set(overlap.values())))
                raise SrsimError(f"{origin}: invalid config at 'suite.{key}': seeds {sorted(overlap)} are also "
                                 f"{others} seeds (training, validation and test boxes must differ)")
            seen.update({s: label for s in suite.get(key, [])})
    model = cfg.get("model")
    if suite and model and "gen_widths" in model:
        levels = len(model["gen_widths"]) - 1
        if 2**levels != suite["n_hr"] // suite["n_lr"]:
            raise SrsimError(
                f"{origin}: invalid config at 'model.gen_widths': {levels + 1} widths give a {2**levels}x generator "
                f"but suite.n_hr / suite.n_lr = {suite['n_hr'] // suite['n_lr']}"
            )
    if suite and model and "crop" in model and suite["n_lr"] < model["crop"]:
        raise SrsimError(f"{origin}: invalid config at 'model.crop': crop {model['crop']} > suite.n_lr {suite['n_lr']}")
    zs = cfg.get("redshifts")
    bigbox = cfg.get("bigbox")
    if zs is not None and bigbox:
        extra = set(bigbox.get("redshifts", zs)) - set(zs)
        if extra:
            raise SrsimError(f"{origin}: invalid config at 'bigbox.redshifts': {sorted(extra)} not in 'redshifts' (no model for them)")
    if bigbox and bigbox.get("regions"):
        _check_regions(bigbox, origin)
    ana = cfg.get("analysis")
    if bigbox and ana and ana.get("fof_domains", 1) > 1 and "fof_ghost" in ana:
        # the domain FOF's geometry (srsim.analysis.domains), checked before any job runs: a domain of
        # box / n Mpc/h with ghost zones must fit in the box, and the partition needs ghost < domain
        n, ghost, box = ana["fof_domains"], ana["fof_ghost"], bigbox["box_size"]
        width = box / n
        if not (ghost < width and width + 2 * ghost < box):
            raise SrsimError(
                f"{origin}: invalid config at 'analysis.fof_ghost': {ghost} Mpc/h ghost zones around "
                f"{width:.4g} Mpc/h domains (analysis.fof_domains = {n}) need ghost < {min(width, (box - width) / 2):.4g} "
                f"Mpc/h to fit in the {box:g} Mpc/h big box; use fewer domains or a narrower ghost zone"
            )


def _check_regions(bigbox: dict, origin: str) -> None:
    """bigbox.regions: unique names, and each region's geometry (inside the box, positive size) as
    `srsim generate --region-centre` will plan it, so a bad region fails before any job runs."""
    from srsim.generate.plan import region_from_centre  # geometry only: does not import torch

    seen = set()
    for i, reg in enumerate(bigbox["regions"]):
        key = f"bigbox.regions[{i}]"
        if reg["name"] in seen:
            raise SrsimError(f"{origin}: invalid config at '{key}.name': region name {reg['name']!r} repeated")
        seen.add(reg["name"])
        try:
            region_from_centre(reg["centre"], reg["size"], bigbox["box_size"], bigbox["n_lr"])
        except SrsimError as err:
            raise SrsimError(f"{origin}: invalid config at '{key}' ({reg['name']}): {err}") from None


def load_config(source: str | Path, *, partial: bool = False) -> dict:
    """Read a config and return it validated, with the schema's defaults filled in.

    `source` is a YAML/JSON file path or a JSON object string (what the workflow passes a subcommand as
    `--config '<json>'`). By default the whole config is validated (the Snakefile's check; required
    sections must be present); with `partial` only the sections present are (a subcommand's `--config`,
    which carries just the sections its stage reads). A bad config raises SrsimError naming the key.
    """
    text = str(source).strip()
    if text.startswith("{"):
        try:
            cfg = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SrsimError(f"--config: not valid JSON: {exc}") from exc
        origin = "--config"
    else:
        path = Path(source)
        if not path.is_file():
            raise SrsimError(f"{path}: config file not found")
        try:
            cfg = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SrsimError(f"{path}: not valid YAML: {exc}") from exc
        origin = str(path)
    if not isinstance(cfg, dict):
        raise SrsimError(f"{origin}: config must be a mapping of sections")
    return validate_sections(cfg, origin) if partial else validate_config(cfg, origin)


def _subschema(path: str) -> dict:
    sch = schema()
    for part in path.split("."):
        sch = sch["properties"][part]
    return sch


def default(path: str):
    """The schema's default of the dotted key `path` (e.g. ``"z_init"``, ``"sims.softening"``), for a key a
    partial config may lack."""
    return copy.deepcopy(_subschema(path)["default"])


def validated(path: str, value: dict | None) -> dict:
    """A copy of `value` validated against the schema of the dotted section `path` (e.g. ``"analysis"``,
    ``"sims.pm"``), the schema's defaults filled in; None is the empty section (all defaults).

    Backends use it for the options they receive outside a whole config (a SimSpec's `options`).
    An unknown key raises SrsimError "unknown option(s)"; a bad value names the key.
    """
    parts = path.split(".")
    sch = _subschema(path)
    value = copy.deepcopy(value) if value is not None else {}
    known = sch.get("properties", {})
    unknown = set(value) - set(known) if sch.get("additionalProperties") is False else set()
    if unknown:
        raise SrsimError(f"{path}: unknown option(s) {sorted(unknown)} (known: {sorted(known)})")
    _check(value, sch, path, prefix=tuple(parts))
    return value


def section(arg: str | Path | None, name: str) -> dict:
    """Section `name` of a subcommand's `--config` value (see :func:`load_config`, partial), defaults filled;
    the schema's defaults when `arg` is None or has no such section."""
    cfg = load_config(arg, partial=True) if arg else {}
    return cfg[name] if name in cfg else validated(name, {})


def apply_overrides(section: dict, args, keys) -> dict:
    """A copy of a config `section` with the command-line values that were given (not None) in place.

    `keys`: attribute names of `args` that are also the section's keys, or a mapping
    {attribute of args: key of the section} where they differ (``{"mesh": "power_mesh"}``).
    """
    pairs = keys.items() if isinstance(keys, dict) else ((k, k) for k in keys)
    out = dict(section)
    for attr, key in pairs:
        value = getattr(args, attr)
        if value is not None:
            out[key] = value
    return out


def sections_json(cfg: dict, *names: str) -> str:
    """JSON of some top-level sections of a validated config (what the workflow passes to `--config`)."""
    return json.dumps({n: cfg[n] for n in names if n in cfg}, sort_keys=True, separators=(",", ":"))
