"""README, CITATION.cff and LICENSE say what the code does: commands parse, the example is the real one."""
from __future__ import annotations

import re
import shlex
import warnings
from pathlib import Path

import pytest
import yaml

import connectome
from connectome.cli import build_parser

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def bash_blocks(text: str) -> list[str]:
    """The contents of ```bash fenced blocks."""
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def readme_commands() -> list[str]:
    """Every `connectome ...` command in the README's bash blocks, continuation lines joined."""
    commands = []
    for block in bash_blocks(README):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            line = re.sub(r"^(\w+=\S+ )+", "", line)  # leading VAR=value assignments
            line = re.split(r" [>|] ", line)[0]  # redirections and pipes
            if line.startswith("connectome ") and "..." not in line:
                commands.append(line)
    return commands


def test_quickstart_is_two_commands():
    quickstart = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    lines = [line.split("#")[0].strip() for line in bash_blocks(quickstart)[0].splitlines()]
    assert [line for line in lines if line] == ["make demo", "make test"]


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses(command):
    argv = shlex.split(command)[1:]
    if argv == ["--version"]:
        with pytest.raises(SystemExit, match="0"):
            build_parser().parse_args(argv)
        return
    assert callable(build_parser().parse_args(argv).func)


def test_readme_commands_were_found():
    assert len(readme_commands()) >= 20
    assert any(" stop " in c for c in readme_commands()) and any("--block" in c for c in readme_commands())


def first_screen() -> str:
    """The README up to its table of contents: what a newcomer reads first."""
    return README.split("\n## Contents", 1)[0]


def test_the_first_screen_is_the_path_demo_report_test_then_two_tours():
    top = first_screen()
    assert len(top.splitlines()) <= 50
    order = ["make demo", "make test", "open `results/partial_vs_dense/report.html`", "```python",
             "```bash\nconnectome"]
    positions = [top.find(marker) for marker in order]
    assert -1 not in positions and positions == sorted(positions), dict(zip(order, positions))
    python = re.findall(r"```python\n(.*?)```", top, flags=re.S)[0]
    cli = bash_blocks(top)[1]
    assert len(python.strip().splitlines()) <= 11 and len(cli.strip().splitlines()) <= 10
    assert "report.html" in top and "docs/reproductions.md" in top


def test_the_python_tour_runs_on_a_study_s_results(tmp_path, monkeypatch):
    from analysis.fake_results import make_results_dir

    results = make_results_dir(tmp_path, with_models=False)
    tour = re.findall(r"```python\n(.*?)```", first_screen(), flags=re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(tour.replace("results/partial_vs_dense", str(results)), "README tour", "exec"), {})
    assert (tmp_path / "error_vs_params.png").is_file()


def test_every_command_is_in_the_readme():
    commands = build_parser()._subparsers._group_actions[0].choices
    shown = {shlex.split(c)[1] for c in readme_commands()}
    assert set(commands) <= shown, f"missing from the README: {sorted(set(commands) - shown)}"
    table = README.split("## The command line", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{name}`" in table for name in commands)


def test_every_section_is_in_the_table_of_contents():
    contents = README.split("\n## Contents", 1)[1].split("\n## ", 1)[0]
    for heading in re.findall(r"^##+ (.+)$", README, flags=re.M):
        if heading in ("Quickstart", "Contents"):
            continue
        anchor = re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        assert f"(#{anchor})" in contents, heading


def test_the_graph_file_example_exports_before_it_reads_back():
    lines = [line for block in bash_blocks(README) for line in block.splitlines()]
    written = [i for i, line in enumerate(lines) if re.search(r"> *my_block\.graphml", line)]
    read = [i for i, line in enumerate(lines) if "path=my_block.graphml" in line]
    assert written and read and written[0] < read[0]


def test_the_readme_names_the_v1_authors_of_citation_cff():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    authors = [a["family-names"] for a in citation["references"][0]["authors"]]
    named = re.search(r'DenseNet: (.+?),\s+"Densely Connected', README, flags=re.S)[1]
    assert re.split(r",\s+|\s+and\s+", named) == authors


def test_the_analysis_section_makes_a_figure_and_a_pareto_front_of_configurations():
    analysis = README.split("\n## Analysis", 1)[1].split("\n## ", 1)[0]
    assert "pareto_configs(" in analysis and "save_figure(" in analysis and "plot_" in analysis


def test_readme_pattern_example_is_the_tested_plugin():
    example = (REPO / "examples" / "pairs_pattern.py").read_text()
    assert f"```python\n{example}```" in README


def test_citation_names_this_version_and_the_papers_v1():
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["version"] == connectome.__version__
    paper = citation["references"][0]
    assert paper["year"] == 2016 and "1608.06993v1" in paper["url"]
    assert [a["family-names"] for a in paper["authors"]] == ["Huang", "Liu", "Weinberger"]


def test_license_is_the_one_the_package_declares():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert citation_license() == "MIT"


def citation_license() -> str:
    return yaml.safe_load((REPO / "CITATION.cff").read_text())["license"]


def test_a_deprecation_in_connectome_code_fails_the_tests():
    """pyproject's filterwarnings: raised from a connectome module it is an error, elsewhere only reported."""
    with pytest.raises(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, "connectome/spec.py", 1, module="connectome.spec")
    with pytest.warns(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, "site-packages/other.py", 1, module="other")
