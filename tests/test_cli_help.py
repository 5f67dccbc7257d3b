"""The CLI a newcomer reads: every option of every subcommand has help; --preset and recipe list their names;
--threads and --device with the same defaults wherever they apply; evaluate prints a summary; --steps scales the warmup."""

import argparse

import pytest

from icl_interp.analysis.recipes import RECIPES
from icl_interp.cli import build_parser, main
from icl_interp.training.presets import PRESETS, get_preset

pytestmark = pytest.mark.tl3


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_subcommand_has_help_text():
    for name, parser in _subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            assert action.help and len(action.help) > 10, (name, action.option_strings or action.dest)
        parser.format_help()   # renders (a stray % in a help text would raise here)


def test_names_are_listed_and_computing_commands_share_their_flags():
    cmds = _subcommands()
    preset = next(a for a in cmds["train"]._actions if "--preset" in a.option_strings)
    assert all(name in preset.help for name in PRESETS)
    recipe = next(a for a in cmds["recipe"]._actions if a.dest == "name")
    assert all(name in recipe.help for name in RECIPES) and list(recipe.choices) == list(RECIPES)
    for name in ("train", "evaluate", "recipe", "report", "sweep"):
        flags = {a.dest: a for a in cmds[name]._actions}
        assert "threads" in flags, name
        if "device" in flags:
            assert flags["device"].default == "auto", name
    assert {"device"} <= {a.dest for a in cmds["evaluate"]._actions} and {"device"} <= {a.dest for a in cmds["train"]._actions}


def test_evaluate_prints_a_summary_table_and_writes_the_json_on_request(tmp_path, capsys):
    out = tmp_path / "new" / "eval.json"
    assert main(["evaluate", "softmax-p8-h1", "--n-prompts", "64", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "error by number of in-context examples" in text and "mean" in text and len(text.splitlines()) < 12
    assert out.is_file() and '"error"' in out.read_text()


def test_steps_with_a_preset_scales_its_warmup_and_says_so(tmp_path, capsys):
    preset = get_preset("tiny")["train"]
    assert main(["train", "--preset", "tiny", "--steps", "12", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    err = capsys.readouterr().out
    scaled = round(preset["warmup_steps"] * 12 / preset["steps"])
    assert f"warmup of {preset['warmup_steps']} of {preset['steps']} steps scaled to {scaled}" in err
    import json

    cfg = json.loads((tmp_path / "r" / "model" / "config.json").read_text())["training"]["train_config"]
    assert cfg["warmup_steps"] == scaled and cfg["steps"] == 12
