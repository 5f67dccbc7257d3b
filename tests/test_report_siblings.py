"""The zoo index (icl_interp/zoo/index.json) and siblings(): which models the report compares with which."""

import json

import pytest

import icl_interp as ii
from icl_interp.checkpoint import zoo_names
from icl_interp.zoo import INDEX, Siblings, siblings

INDEXED = json.loads(INDEX.read_text())["siblings"]


def test_every_declared_model_is_shipped_and_roles_agree():
    shipped = set(zoo_names())
    for anchor, roles in INDEXED.items():
        names = {anchor, roles["single_head"], roles["concat_twin"], *roles["head_counts"], *roles["second_seed"]}
        names |= {n for pair in roles["noise_sweep"] for n in pair}
        assert names <= shipped, names - shipped
        assert anchor in roles["head_counts"] and [anchor, roles["single_head"]] in roles["noise_sweep"]


def test_default_siblings_in_the_shipped_zoo():
    got = siblings("default")
    assert got.head_counts == ("default", "default-h1", "default-h2", "default-h8")
    assert got.single_head == "default-h1" and got.concat_twin == "default-concat"
    assert ("noise0.1-h4", "noise0.1-h1") in got.noise_sweep and len(got.noise_sweep) == 3
    assert len(got.second_seed) == 4 and ii.siblings is siblings


@pytest.mark.parametrize("name", ["default-h1", "no-such-model", None, 3])
def test_models_that_are_no_anchor_have_no_siblings(name):
    assert siblings(name) == Siblings()


def test_only_models_of_the_zoo_in_use_count(tmp_path):
    for name in ("default", "default-h2", "noise0.1-h4", "softmax-p8-h1"):
        ii.save_model(ii.load_model(name), tmp_path / name)
    with ii.use_zoo(tmp_path):
        got = siblings("default")
    assert got.head_counts == ("default", "default-h2") and got.single_head is None and got.concat_twin is None
    assert got.noise_sweep == (("noise0.1-h4", None), ("default", None))   # the pairs present, singles absent
    assert got.second_seed == ()               # a partial second-seed set is no set
