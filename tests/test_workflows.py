"""The GitHub workflows (.github/workflows) are valid and free of known
security problems: the GitHub workflow schema (check-jsonschema's vendored
copy) and zizmor's offline audits at medium severity and above. Both tools
install from PyPI (requirements.txt); a test is skipped, saying so, where one
is missing."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def tool(name):
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (pip install {name})")
    return found


def test_there_are_a_publish_and_a_test_workflow():
    assert {p.name for p in WORKFLOWS} >= {"publish.yml", "test.yml"}
    publish = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    assert "make book" in publish and "actions/deploy-pages@" in publish
    assert "make test" in (ROOT / ".github" / "workflows" / "test.yml").read_text()


def test_workflows_match_the_github_schema():
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema",
                             "vendor.github-workflows", *map(str, WORKFLOWS)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_have_no_medium_or_high_zizmor_findings():
    result = subprocess.run([tool("zizmor"), "--offline", "--min-severity", "medium",
                             str(ROOT / ".github" / "workflows")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
