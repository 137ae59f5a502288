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
