"""The documentation's generated parts, built from the project's own files, never copied by hand.

MkDocs runs this file as a hook (`mkdocs.yml`, `hooks:`): a page that holds a line
`<!-- generated: NAME -->` gets that line replaced by `GENERATED[NAME]()` at build time:

- `claims`: the report's claims, grouped, from `docs/report/report.json`;
- `quality_bar`: the default model's error against the tuned baselines for every n, same file;
- `zoo`: every shipped model, from `icl_interp/zoo/index.json` and each model's `config.json`;
- `recipes`: the gallery, one entry per `recipes/*.py` with its docstring and how to run it;
- `benchmarks`: `benchmarks/README.md`, its headings moved one level down.

The README's claims table is the one in `docs/report/report.md`: after the report is
regenerated, `python docs/hooks/pages.py readme` (or `make claims-table`) copies it
between the README's markers; `tests/test_docs.py` checks that the two are equal.
Only json, ast and the standard library are used: nothing here imports torch.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "report"
ZOO = ROOT / "icl_interp" / "zoo"
RECIPES = ROOT / "recipes"
BENCHMARKS = ROOT / "benchmarks" / "README.md"
README = ROOT / "README.md"

MARKER = re.compile(r"^<!-- generated: ([a-z_]+) -->$", flags=re.M)
README_START = "<!-- claims table: generated from docs/report/report.md; refresh with `make claims-table` -->"
README_END = "<!-- end of the claims table -->"


# -- the report ------------------------------------------------------------------------------------------------


def claims_table(report_md: str) -> str:
    """The claims table of a report.md (header row to the last row), as text."""
    lines = report_md.split("\n")
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("| id | claim |"))
    except StopIteration:
        raise ValueError("report.md has no claims table (no line starting '| id | claim |')") from None
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return "\n".join(lines[start:end])


def _claim_group(claim_id: str) -> str:
    for prefix, group in (("concat_", "With concatenated [x; y] tokens (`default-concat`)"),
                          ("linear_", "The trained linear-attention model (`linear-concat`)"),
                          ("seed2_", "The second seed (Cui et al. 2024), one-layer softmax attention")):
        if claim_id.startswith(prefix):
            return group
    if claim_id in ("multihead_beats_single", "noise_pruning", "noise_single_head", "head_count_order"):
        return "Comparisons across the zoo: head counts and noise levels"
    return "The seed's single-model claims (Chen, Zhao, Zou 2024), on the default model"


def _num(value) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.3f}"


def _interval(interval) -> str:
    return "point" if not interval else f"[{interval[0]:.3f}, {interval[1]:.3f}]"


def claims(report_json: Path = REPORT / "report.json") -> str:
    """The report's claims as Markdown: a verdict count, then one table per group, from report.json."""
    report = json.loads(report_json.read_text())
    rows = report["claims"]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    out = [f"The shipped report on `{report['model']}` decides {len(rows)} claims: "
           + ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items(), key=lambda kv: -kv[1]))
           + " (generated from `docs/report/report.json`; the whole report: [report.md](../report/report.md)).", ""]
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(_claim_group(row["id"]), []).append(row)
    for group, members in groups.items():
        out += [f"### {group}", "", "| id | verdict | value | 5-95% interval | seeds | prompts | the number that decides |",
                "|---|---|---|---|---|---|---|"]
        out += [f"| `{r['id']}` | **{r['verdict']}** | {_num(r.get('value'))} | {_interval(r.get('interval'))} | {r.get('seeds', 1)} | "
                f"{r.get('n_prompts') or '-'} | {r['number']} |" for r in members]
        out.append("")
    if report.get("skipped"):
        out += ["Skipped in this report:", ""] + [f"- `{k}`: {v}" for k, v in report["skipped"].items()] + [""]
    return "\n".join(out)


def quality_bar(report_json: Path = REPORT / "report.json") -> str:
    """The default model's error and the tuned baselines' at every n, and the bar's verdicts, from report.json."""
    q = json.loads(report_json.read_text())["quality_bar"]
    out = [f"At n = {q['n_largest']}: **{q['ratio_to_best_ridge_at_largest_n']:.3f}x the best ridge's error** "
           f"(bar: at most 0.85x; {'met' if q['within_ridge_ratio'] else 'missed'}) and "
           f"**{q['ratio_to_best_lasso_at_largest_n']:.3f}x the best Lasso's** (bar: at most 1.15x; "
           f"{'met' if q['within_lasso_ratio'] else 'missed'}); below ridge for every n >= d/2: "
           f"{'yes' if q['below_ridge_for_all_n_ge_d_half'] else 'no'}; below OLS for every n < d: "
           f"{'yes' if q['below_ols_for_all_n_lt_d'] else 'no'} (generated from `docs/report/report.json`, key `quality_bar`).",
           "", "| n examples | model error | best ridge | best Lasso | OLS |", "|---|---|---|---|---|"]
    out += [f"| {r['n']} | {r['model']:.3f} | {r['ridge']:.3f} | {r['lasso']:.3f} | {r['ols']:.3f} |" for r in q["per_n"]]
    return "\n".join(out) + "\n"


# -- the zoo ---------------------------------------------------------------------------------------------------


def _task_text(task: dict) -> str:
    name = {"sparse_linear_regression": "sparse", "linear_regression": "dense"}.get(task.get("name"), task.get("name"))
    parts = [f"d = {task['d']}"] + ([f"s = {task['s']}"] if "s" in task else []) + [f"noise {task['noise_std']:g}"]
    return f"{name}, " + ", ".join(parts)


def _model_text(m: dict) -> str:
    kind = "attention only" if m.get("attn_only") else "MLPs"
    attention = "linear" if m.get("attention") == "linear" else "softmax"
    if m.get("attention_dir") == "bidirectional":
        attention += ", bidirectional"
    return f"{m['n_layers']} x {m['n_heads']}, d_model {m['d_model']}, {attention}, {m['encoding']}, {kind}"


def zoo(index_json: Path = ZOO / "index.json") -> str:
    """One row per shipped model: its architecture, task, training and role, from index.json and config.json."""
    index = json.loads(index_json.read_text())
    anchors = set(index.get("siblings", {}))
    seeds = index.get("seeds", {})
    out = ["Generated from `icl_interp/zoo/index.json` and each model's `config.json`. *Legacy*: the first zoo (`-v1`) "
           "and the 3-layer set (`-v2`), kept to reproduce `docs/report-v1/` and `docs/report-v2/`; the 4-layer set "
           "is the current one. Minutes: the wall time recorded at the end of training (on whatever machine trained it).",
           "", "| name | layers x heads, width, kind | task | steps | minutes | error at the largest n | snapshots | notes |",
           "|---|---|---|---|---|---|---|---|"]
    for folder in sorted(p.parent for p in ZOO.glob("*/config.json")):
        cfg = json.loads((folder / "config.json").read_text())
        model, training = cfg["model"], cfg.get("training") or {}
        final = training.get("final") or {}
        tc = training.get("train_config") or {}
        snaps = len(list((folder / "snapshots").glob("step_*"))) if (folder / "snapshots").is_dir() else 0
        notes = []
        if "construction" in cfg:
            notes.append("hand-built, not trained")
        if re.search(r"-v[12](-|$)", folder.name):
            notes.append("legacy")
        if folder.name in anchors:
            notes.append("anchor: " + ", ".join(f"`{role}`" for role in index["siblings"][folder.name]))
        if folder.name in seeds:
            twins = seeds[folder.name]
            notes.append("other training seeds: " + ", ".join(f"`{s}`" for s in (twins.values() if isinstance(twins, dict) else twins)))
        minutes = f"{final['time'] / 60:.0f}" if "time" in final else ""
        error = f"{final['eval_error_last']:.3f}" if "eval_error_last" in final else ""
        out.append(f"| `{folder.name}` | {_model_text(model)} | {_task_text(model['task'])} | {tc.get('steps', '')} | "
                   f"{minutes} | {error} | {snaps or ''} | {'; '.join(notes)} |")
    roles = index.get("roles", {})
    if roles:
        out += ["", "The roles an anchor declares (`ii.zoo.siblings(name)`):", ""]
        out += [f"- `{role}`: {text}" for role, text in roles.items()]
    return "\n".join(out) + "\n"


# -- recipes and benchmarks -------------------------------------------------------------------------------------


def recipes(folder: Path = RECIPES) -> str:
    """The recipe gallery: each script's docstring, its run line and the figure the shipped report holds."""
    out = []
    for path in sorted(folder.glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        if not doc:
            raise ValueError(f"recipe {path.name} has no docstring; the gallery shows each recipe's docstring")
        title, _, rest = doc.partition("\n")
        out += [f"## `{path.stem}`: {title.strip()}", "", "```text", rest.strip(), "```", ""]
        for png in re.findall(r"DIR/(\w+\.png)", doc):
            if (REPORT / png).exists():
                out += [f"![{path.stem}: {png}](report/{png})", ""]
    return "\n".join(out)


def benchmarks(readme: Path = BENCHMARKS) -> str:
    """benchmarks/README.md, its headings one level down and its title dropped, so it sits under a page's heading."""
    text = readme.read_text()
    text = re.sub(r"\A# .*\n", "", text)
    lines, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
        lines.append("#" + line if not fenced and re.match(r"^#+ ", line) else line)
    return "\n".join(lines)


GENERATED = {"claims": claims, "quality_bar": quality_bar, "zoo": zoo, "recipes": recipes, "benchmarks": benchmarks}


def expand(markdown: str) -> str:
    """Replace every `<!-- generated: NAME -->` line; an unknown NAME is an error."""
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATED:
            raise ValueError(f"unknown generated section {name!r}; expected one of {sorted(GENERATED)}")
        return GENERATED[name]()
    return MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:  # MkDocs hook
    return expand(markdown)


# -- the README's claims table ----------------------------------------------------------------------------------


def readme_claims_table(readme: str) -> str:
    """The table between the README's claims-table markers."""
    if README_START not in readme or README_END not in readme:
        raise ValueError(f"README.md lacks the claims-table markers {README_START!r} ... {README_END!r}")
    return readme.split(README_START, 1)[1].split(README_END, 1)[0].strip("\n")


def refresh_readme(readme_path: Path = README, report_md: Path = REPORT / "report.md") -> bool:
    """Copy report.md's claims table into the README between the markers; True when the README changed."""
    text = readme_path.read_text()
    old = readme_claims_table(text)
    new = claims_table(report_md.read_text())
    if old == new:
        return False
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    tmp = readme_path.with_name(readme_path.name + ".tmp")
    tmp.write_text(f"{head}{README_START}\n{new}\n{README_END}{tail}")
    os.replace(tmp, readme_path)  # one unit: a failed write leaves the old README
    return True


if __name__ == "__main__":
    if sys.argv[1:] != ["readme"]:
        sys.exit("usage: python docs/hooks/pages.py readme   (copies docs/report/report.md's claims table into README.md)")
    print("README.md's claims table " + ("refreshed" if refresh_readme() else "already matches docs/report/report.md"))
