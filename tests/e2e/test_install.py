"""The distribution as a hospital installs it: a non-editable wheel that puts
one import namespace (``medchain``) into site-packages and runs from there.

The wheel is built from a copy of the source tree (nothing is written into the
checkout) and installed into a fresh virtualenv that borrows only the
third-party dependencies of the test environment.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("node", "consensus", "contracts", "storage", "cli", "client", "localnet", "testing")
GENERIC = {*FOLDERS, "benchmarks", "tests", "configs"}

pytestmark = pytest.mark.e2e


def test_links_mirror_the_package_dir_mapping() -> None:
    """medchain/ links each folder the wheel maps, so the source tree imports as installed."""
    mapping = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    assert mapping.pop("medchain") == "medchain"
    assert mapping == {f"medchain.{f}": f for f in FOLDERS}
    links = {p.name: os.readlink(p) for p in (ROOT / "medchain").iterdir() if p.is_symlink()}
    assert links == {**{f: f"../{f}" for f in FOLDERS}, "configs": "../configs"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in (*FOLDERS, "configs", "medchain"):
        shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(out), str(src)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    (whl,) = out.glob("medchain-*.whl")
    return whl


def test_wheel_holds_only_the_medchain_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"medchain", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    for part in (*FOLDERS, "node/web/static", "configs/synthea-providers.toml"):
        assert any(n.startswith(f"medchain/{part}") for n in names), part
    # Not installed: the test suite and the benchmarks that `medchain bench` does not use.
    assert not [n for n in names if "/tests/" in n or "benchmarks" in n]


def test_nothing_installed_imports_a_generic_top_level_name(wheel: Path) -> None:
    bad = []
    with zipfile.ZipFile(wheel) as z:
        for name in (n for n in z.namelist() if n.endswith(".py")):
            for node in ast.walk(ast.parse(z.read(name))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    roots = [node.module]
                elif isinstance(node, ast.Import):
                    roots = [a.name for a in node.names]
                else:
                    continue
                bad += [f"{name}: {r}" for r in roots if r.split(".")[0] in GENERIC]
    assert bad == []


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # Third-party dependencies from the test environment; a plain path line does not run
    # that directory's .pth files, so the checkout's editable finder stays out.
    paths = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "zz-test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(paths)))
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")),
            *("install", "-q", "--no-deps", "--no-index", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return venv


def test_fresh_install_lists_only_medchain(installed: Path) -> None:
    site = next((installed / "lib").glob("python3*/site-packages"))
    ours = sorted(p.name for p in site.iterdir() if p.name != "zz-test-deps.pth")
    assert ours and all(n.startswith("medchain") for n in ours), ours


def run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed / 'bin'}:{env.get('PATH', '')}"
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_copy_runs_a_consortium(installed: Path, tmp_path: Path) -> None:
    """From another working directory, README's relative `--dir net`, the installed code."""
    where = run(
        installed, tmp_path, "python", "-c", "import medchain.node.daemon as d; print(d.__file__)"
    )
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr
    assert run(installed, tmp_path, "medchain", "--help").returncode == 0
    orgs = ["--org", "Hospital A:hospital", "--org", "Hospital B:hospital"]
    orgs += ["--org", "Insurer:insurer", "--org", "Regulator:regulator"]
    init = run(installed, tmp_path, "medchain", "consortium", "init", "--dir", "net", *orgs)
    assert init.returncode == 0, init.stderr
    try:
        up = run(installed, tmp_path, "medchain", "net", "up", "--dir", "net")
        assert up.returncode == 0, up.stdout + up.stderr
        sent = run(
            installed,
            tmp_path,
            "medchain",
            "tx",
            "send",
            "--config",
            "net/hospital-a/node.toml",
            "--key",
            "net/hospital-a/admin.key",
            "--contract",
            "kv",
            "--method",
            "put",
            "--args",
            '{"key": "hello", "value": "world"}',
        )
        assert sent.returncode == 0 and "committed" in sent.stdout, sent.stdout + sent.stderr
    finally:
        down = run(installed, tmp_path, "medchain", "net", "down", "--dir", "net")
    assert down.returncode == 0, down.stdout + down.stderr
