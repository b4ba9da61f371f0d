"""The import contracts of pyproject.toml ``[tool.importlinter]``, checked by import-linter."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_config(cfg: dict, path: Path) -> Path:
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in cfg.items() if k != "contracts"]
    for contract in cfg["contracts"]:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{k} = {_toml_value(v)}" for k, v in contract.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _assert_all_kept(result: subprocess.CompletedProcess[str], cfg: dict) -> None:
    out = " ".join((result.stdout + result.stderr).split())  # undo the report's line wrapping
    assert result.returncode == 0, out
    for contract in cfg["contracts"]:
        assert f"{contract['name']} KEPT" in out, out
    n = len(cfg["contracts"])
    assert f"Contracts: {n} kept, 0 broken." in out


def test_the_expected_contracts_are_configured() -> None:
    cfg = _config()
    kinds = {c["type"] for c in cfg["contracts"]}
    assert kinds == {"layers", "forbidden"}
    layers = next(c for c in cfg["contracts"] if c["type"] == "layers")["layers"]
    assert layers[0].startswith("portal.api") and layers[-1] == "portal.core"
    forbidden = next(c for c in cfg["contracts"] if c["type"] == "forbidden")
    assert forbidden["source_modules"] == ["portal.core"]
    assert {"flask", "rq", "redis", "pyghmi"} <= set(forbidden["forbidden_modules"])


def test_lint_imports_passes_with_the_pyproject_config() -> None:
    _assert_all_kept(_run(), _config())


def test_a_broken_contract_is_reported(tmp_path: Path) -> None:
    """The check can fail: the domain core does use SQLAlchemy, so forbidding it breaks."""
    cfg = {
        **{k: v for k, v in _config().items() if k != "contracts"},
        "include_external_packages": True,
        "contracts": [
            {
                "name": "core without sqlalchemy",
                "type": "forbidden",
                "source_modules": ["portal.core"],
                "forbidden_modules": ["sqlalchemy"],
            }
        ],
    }
    result = _run("--config", str(_write_config(cfg, tmp_path / "importlinter.toml")))
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "core without sqlalchemy BROKEN" in out and "0 kept, 1 broken" in out
