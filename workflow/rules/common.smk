# Shared names and helpers for every stage. No science here: paths, wildcards, config plumbing.
import shlex

from srsim.config import sections_json, validate_config
from srsim.sims.suite import simulation_names, zstr

# cross-key checks (n_hr / n_lr a power of two, model depth, seeds) beyond the JSON schema
validate_config(config, "config")

R = config["results"]
ZS = [zstr(z) for z in config["redshifts"]]
_names = simulation_names(config)
TRAIN = _names["train"]
TEST = _names["test"]
PAIRS = TRAIN + TEST
BIGBOX = bool(_names["bigbox"])
BIGBOX_ZS = [zstr(z) for z in (config["bigbox"].get("redshifts", config["redshifts"]) if BIGBOX else [])]


wildcard_constraints:
    sim=r"(train|test)\d+|bigbox",
    pair=r"(train|test)\d+",
    kind=r"lr|hr|sr\d*",
    z=r"\d+(\.\d+)?",


def cfg_json(*sections):
    """Shell-quoted JSON of some config sections, for a subcommand's `--config`.

    Passing only the sections a stage reads means editing one section reruns only those stages.
    Returned as a function so that braces in config values are not taken for wildcards.
    """
    text = shlex.quote(sections_json(config, *sections))
    return lambda wildcards: text


def log_path(rule, name):
    return f"{R}/logs/{rule}/{name}.log"


# Each stage registers a function z -> list of its final targets at redshift z (z=None: all).
TARGETS = {}


def all_targets(z=None):
    return [path for stage in TARGETS.values() for path in stage(z)]


def _select(zs, z):
    return zs if z is None else [zz for zz in zs if zz == z]
