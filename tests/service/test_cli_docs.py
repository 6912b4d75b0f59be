"""The README and the example sweeps stay true to the code: the Quickstart is two commands, every
setting the service reads is in the configuration table, every `flowsweep ...` line the README shows
is accepted by the real CLI parser, and every example file is a valid sweep (SPEC §3) whose points
pass core's validation — with the parameters issue 4 lists for the paper's experiments."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from matplotlib.image import imread

from flowsweep.service import cli
from flowsweep.service.client import load_sweeps
from flowsweep.service.expand import expand
from flowsweep.service.schemas import SweepSpec
from flowsweep.service.settings import Settings

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()
EXAMPLES = sorted((REPO / "examples").glob("*.json"))


def code_blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert m, f"README has no section {title!r}"
    return m.group(1)


def test_quickstart_is_exactly_two_commands():
    block = code_blocks(section("Quickstart"))[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["make run", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_configuration_table_lists_every_setting():
    table = section("Configuration")
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    prefix = Settings.model_config["env_prefix"]
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env = alias.choices[0] if alias is not None and hasattr(alias, "choices") else prefix + name.upper()
        assert env in documented, f"README's configuration table misses {env}"
    assert {"FLOWSWEEP_URL", "FLOWSWEEP_API_TOKEN", "RAY_ADDRESS", "RAY_AUTH_MODE"} <= documented


def _readme_flowsweep_commands() -> list[list[str]]:
    out = []
    for block in code_blocks(README):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            for part in line.split("&&"):
                words = shlex.split(part.strip()) if part.strip() else []
                while words and "=" in words[0] and not words[0].startswith("-"):
                    words = words[1:]  # leading VAR=value assignments
                if words and words[0] == "flowsweep":
                    out.append(words[1:])
    return out


def test_every_cli_command_in_the_readme_parses():
    commands = _readme_flowsweep_commands()
    seen = {argv[0] for argv in commands}
    # every sub-command of the CLI is shown at least once
    assert seen >= {"serve", "db", "submit", "list", "status", "cancel", "results", "summary", "plot"}
    for argv in commands:
        args = cli.parse_args(argv)  # exits (fails the test) on anything it does not accept
        assert callable(args.func), argv
        if args.command == "plot":
            assert args.kind in cli.PLOT_KINDS


def test_readme_figure_is_committed_and_decodes():
    m = re.search(r"!\[[^\]]*\]\((docs/[^)]+\.png)\)", README)
    assert m, "README shows no figure from docs/"
    img = imread(REPO / m.group(1))
    assert img.shape[0] > 200 and img.shape[1] > 400


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_sweep_and_its_points_validate(path):
    assert f"examples/{path.name}" in README
    from flowsweep import core

    sweeps = load_sweeps(path)
    for body in sweeps:
        spec = SweepSpec.model_validate(body, context={"max_points": 100_000, "max_steps": 10_000_000})
        points = expand(spec)
        assert 1 <= len(points) <= 100, "keep examples small enough for 2 cores"
        for p in points:
            core.validate_config(p)


def _single(name: str) -> list[dict]:
    return load_sweeps(REPO / "examples" / name)


def test_examples_match_the_papers_experiments():
    (fig1,) = _single("fig1.json")
    assert (fig1["model"], fig1["init"], fig1["integrator"], fig1["m"], fig1["n"]) == (
        "asymmetric",
        "gaussian",
        "gd",
        5,
        10,
    )
    assert (fig1["eta"], fig1["steps"]) == (1e-3, 4000)
    assert fig1["axes"]["init_scale"] == [0.01, 0.1, 1.0] and fig1["axes"]["k"] == [50]

    (fig2,) = _single("fig2.json")
    assert fig2["axes"]["init_scale"] == [1.0] and fig2["axes"]["k"] == [50, 100, 200]
    assert fig2["eta"] == 1e-5 and fig2["fit_lambda0"] is True

    fig3 = _single("fig3.json")
    assert sorted(s["init"] for s in fig3) == ["balanced", "gaussian"]
    for s in fig3:
        assert (s["model"], s["m"], s["n"], s["n_samples"], s["axes"]["k"]) == ("sigmoid", 10, 10, 1000, [100])

    table2 = _single("table2.json")
    assert all(s["init"] == "spectral" for s in table2)
    assert all({0.0}.issubset(s["axes"]["lambda0"]) and max(s["axes"]["lambda0"]) > 1 for s in table2)
    # small σ: a square Gaussian Y has a small σ_min; large σ: a wide Y has σ_min ≈ √n − √m > 1/2
    shapes = sorted((s["m"], s["n"]) for s in table2)
    assert shapes[0][0] == shapes[0][1] and shapes[1][1] >= 4 * shapes[1][0]
    assert json.loads(json.dumps(table2)) == table2
