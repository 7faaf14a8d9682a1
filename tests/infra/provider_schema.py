"""The google provider's resource schema, read offline from the npm package @cdktf/provider-google.

That package is generated from the provider's schema (its package.json names google 6.50.0): each
resource is a class whose `synthesizeAttributes()` lists its argument names, and each nested block a
`xxxToTerraform(struct)` function listing the block's names. This reads those, so every resource,
block and argument name in infra/ can be checked the way `terraform validate` would, without the
provider binary (which cannot be downloaded here).
"""

from __future__ import annotations

import re
import subprocess
import tarfile
from pathlib import Path

PACKAGE = "@cdktf/provider-google@16.12.1"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "provider-google"

_TYPE = re.compile(r'tfResourceType = "([a-z0-9_]+)"')
_FUNC = re.compile(r"^function (\w+)ToTerraform\(struct\) \{(.*?)^\}", re.S | re.M)
_SYNTH = re.compile(r"synthesizeAttributes\(\) \{\s*return \{(.*?)\n        \};", re.S)
_ENTRY = re.compile(r"^\s*(\w+): (.*?),?$", re.M)
_NESTED = re.compile(r"\b(?!cdktf\.)(\w+)ToTerraform\b")
_GETTER = re.compile(r"^    get (\w+)\(\)", re.M)


def fetch() -> Path | None:
    """The package's lib/ folder, fetched once with npm into .cache/ (None when npm is not
    there)."""
    lib = CACHE / "package" / "lib"
    if lib.is_dir():
        return lib
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        out = subprocess.run(
            ["npm", "pack", PACKAGE, "--silent"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    except (FileNotFoundError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    tgz = CACHE / out.stdout.strip().splitlines()[-1]
    with tarfile.open(tgz) as tar:
        tar.extractall(
            CACHE,
            members=[
                m
                for m in tar.getmembers()
                if m.name.endswith("/index.js") or m.name == "package/package.json"
            ],
            filter="data",
        )
    tgz.unlink()
    return lib


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _block(body: str, functions: dict, seen=()) -> dict:
    names = {}
    for key, expr in _ENTRY.findall(body):
        nested = [n for n in _NESTED.findall(expr) if n in functions and n not in seen]
        names[key] = _block(functions[nested[0]], functions, (*seen, nested[0])) if nested else None
    return names


def load(lib: Path) -> dict:
    """{"resource": {type: {name: nested-or-None}}, "data": {...}, "getters": {type: set of
    attributes}}."""
    schema: dict = {"resource": {}, "data": {}, "getters": {}}
    for index in sorted(lib.glob("*/index.js")):
        text = index.read_text()
        kind = _TYPE.search(text)
        synth = _SYNTH.search(text)
        if not kind or not synth:
            continue
        functions = dict(_FUNC.findall(text))
        section = "data" if index.parent.name.startswith("data-") else "resource"
        schema[section][kind.group(1)] = _block(synth.group(1), functions)
        schema["getters"][(section, kind.group(1))] = {_snake(g) for g in _GETTER.findall(text)}
    return schema
