"""Configs validate against the schema; a bad config names the offending key."""

import json

import pytest
import yaml

from srsim.config import load_config, sections_json
from srsim.errors import SrsimError
from srsim.sims.suite import simulation_names, spec_for, zstr


@pytest.mark.parametrize("name", ["config/config.yaml", "config/paper.yaml", ".test/config/config.yaml"])
def test_shipped_configs_validate(repo_root, name):
    cfg = load_config(repo_root / name)
    assert cfg["analysis"]["fof_b"] == 0.2  # defaults filled
    assert cfg["train"]["betas"] == [0.0, 0.99]


def test_paper_config_is_the_paper(repo_root):
    cfg = load_config(repo_root / "config/paper.yaml")
    assert cfg["suite"]["box_size"] == 100.0
    assert (cfg["suite"]["n_lr"], cfg["suite"]["n_hr"]) == (64, 512)
    assert len(cfg["suite"]["train_seeds"]) == 16 and len(cfg["suite"]["test_seeds"]) == 1
    assert cfg["redshifts"] == [4, 2, 0]
    assert (cfg["bigbox"]["box_size"], cfg["bigbox"]["n_lr"]) == (1000.0, 640)
    assert cfg["sims"]["softening"] == pytest.approx(1 / 30)
    assert cfg["cosmology"] == {"Omega_m": 0.2814, "Omega_b": 0.0464, "Omega_L": 0.7186, "h": 0.697,
                                "sigma8": 0.82, "n_s": 0.971, "T_cmb": 2.7255}
    assert (cfg["model"]["crop"], cfg["model"]["pad"]) == (14, 3)
    assert cfg["train"]["lr"] == 1e-5 and cfg["train"]["supervised_epochs"] == 5
    assert cfg["analysis"]["power_mesh"] == 512 and cfg["analysis"]["fof_min_members"] == 32


def _bad(tmp_path, repo_root, edit):
    cfg = yaml.safe_load((repo_root / "config/config.yaml").read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda c: c["suite"].update(n_lr="sixteen"), "suite.n_lr"),
        (lambda c: c["cosmology"].pop("sigma8"), "cosmology"),
        (lambda c: c["sims"].update(backend="gadget2"), "sims.backend"),
        (lambda c: c["suite"].update(n_hr=48), "suite.n_hr"),
        (lambda c: c["model"].update(gen_widths=[8, 8]), "model.gen_widths"),
        (lambda c: c["suite"].update(test_seeds=[1001]), "suite.test_seeds"),
        (lambda c: c["suite"].update(val_seeds=[1002]), "suite.val_seeds"),
        (lambda c: c["suite"].update(test_seeds=[3001]), "suite.test_seeds"),
        (lambda c: c["suite"].update(val_seeds=[7, 7]), "suite.val_seeds"),
        (lambda c: c["analysis"].update(fof_bee=0.2), "analysis"),
        # the domain FOF of a big box: 12.5 Mpc/h domains with (default) 10 Mpc/h ghosts do not fit in 25 Mpc/h
        (lambda c: c.update(bigbox={"box_size": 25.0, "n_lr": 16, "seed": 1})
         or c["analysis"].update(fof_domains=2, fof_ghost=10.0), "analysis.fof_ghost"),
        # big-box sub-regions: outside the box, of zero size, a repeated name, a malformed entry
        (lambda c: c.update(bigbox={"box_size": 50.0, "n_lr": 32, "seed": 1,
                                    "regions": [{"name": "a", "centre": [51, 0, 0], "size": 5}]}), "bigbox.regions[0]"),
        (lambda c: c.update(bigbox={"box_size": 50.0, "n_lr": 32, "seed": 1,
                                    "regions": [{"name": "a", "centre": [1, 0, 0], "size": 0}]}), "bigbox.regions[0]"),
        (lambda c: c.update(bigbox={"box_size": 50.0, "n_lr": 32, "seed": 1,
                                    "regions": [{"name": "a", "centre": [1, 0, 0], "size": 5}] * 2}),
         "bigbox.regions[1].name"),
        (lambda c: c.update(bigbox={"box_size": 50.0, "n_lr": 32, "seed": 1,
                                    "regions": [{"name": "a/b", "centre": [1, 0, 0], "size": 5}]}), "bigbox"),
    ],
)
def test_bad_config_names_the_key(tmp_path, repo_root, edit, key):
    path = _bad(tmp_path, repo_root, edit)
    with pytest.raises(SrsimError) as err:
        load_config(path)
    assert f"'{key}'" in str(err.value) and "bad.yaml" in str(err.value)


def test_sections_round_trip(repo_root):
    cfg = load_config(repo_root / "config/config.yaml")
    text = sections_json(cfg, "analysis", "figures")
    assert set(json.loads(text)) == {"analysis", "figures"}
    assert load_config(text, partial=True)["analysis"] == cfg["analysis"]
    with pytest.raises(SrsimError, match="unknown config section 'analyses'"):
        load_config('{"analyses": {}}', partial=True)


def test_suite_specs(repo_root):
    cfg = load_config(repo_root / "config/paper.yaml")
    names = simulation_names(cfg)
    assert len(names["train"]) == 16 and names["test"] == ["test00"] and names["bigbox"] == ["bigbox"]
    lr, hr = spec_for(cfg, "train03", "lr"), spec_for(cfg, "train03", "hr")
    assert lr.seed == hr.seed == 104 and lr.noise_grid == hr.noise_grid == 512
    assert (lr.n_grid, hr.n_grid) == (64, 512) and lr.redshifts == (4.0, 2.0, 0.0)
    big = spec_for(cfg, "bigbox", "lr")
    # the white noise of its 5120^3 SR grid, as the LR training boxes use their HR grid's (Nyquist planes zeroed)
    assert (big.box_size, big.n_grid, big.noise_grid) == (1000.0, 640, 5120)
    with pytest.raises(SrsimError, match="train16"):
        spec_for(cfg, "train16", "lr")
    # the validation pair: a box like the training ones, from suite.val_seeds
    assert names["val"] == ["val00"]
    val = spec_for(cfg, "val00", "hr")
    assert (val.seed, val.n_grid, val.box_size) == (cfg["suite"]["val_seeds"][0], 512, 100.0)
    assert val.seed not in cfg["suite"]["train_seeds"] + cfg["suite"]["test_seeds"]
    with pytest.raises(SrsimError, match="val_seeds"):
        spec_for(cfg, "val01", "lr")
    assert [zstr(z) for z in (4, 0.5, 0.0)] == ["4", "0.5", "0"]


def test_validation_is_optional(tmp_path, repo_root):
    path = _bad(tmp_path, repo_root, lambda c: (c["suite"].pop("val_seeds"), c["train"].pop("val_every")))
    cfg = load_config(path)
    assert cfg["suite"]["val_seeds"] == [] and cfg["train"]["val_every"] == 1000
    assert simulation_names(cfg)["val"] == []
