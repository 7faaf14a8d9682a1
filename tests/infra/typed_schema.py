"""What `terraform validate` would say about infra/, offline: required arguments, enum values,
attributes read through nested blocks, module outputs. Read from the type declarations (index.d.ts)
of the npm package @cdktf/provider-google, generated from the google provider 6.50 schema: each
resource's config interface (`readonly topic: string;` is required, `readonly x?:` optional,
"Possible values: [...]" in its doc), each nested block's interface, and each class's getters (the
attributes one may read).
"""

from __future__ import annotations

import fcntl
import re
import subprocess
import tarfile
from pathlib import Path

import hcl2
from provider_schema import CACHE, PACKAGE

_CLASS = re.compile(
    r"export declare class (\w+) extends cdktf\.Terraform(?:Resource|DataSource) \{\s*"
    r"static readonly tfResourceType = \"([a-z0-9_]+)\""
)
_INTERFACE = re.compile(r"^export interface (\w+)(?: extends [^{]+)? \{\n(.*?)^\}", re.S | re.M)
_PROP = re.compile(r"/\*\*((?:(?!\*/).)*)\*/\s*readonly (\w+)(\?)?: ([^;]+);", re.S)
_DECL = re.compile(r"^export declare class (\w+) extends [^{]+\{\n(.*?)^\}", re.S | re.M)
_GETTER = re.compile(r"^\s+get (\w+)\(\)", re.M)
_ENUM = re.compile(r"Possible values: \[([^\]]*)\]|One of ((?:\"[A-Z0-9_]+\"(?:,? or |, )?)+)")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def fetch_types() -> Path | None:
    """The package's lib/ with its index.d.ts files, fetched once with npm (None when npm is not
    there)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    # pytest-xdist workers fetch at once on a fresh clone: one fetches, the others wait for it
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fetch_types()


def _fetch_types() -> Path | None:
    lib = CACHE / "package" / "lib"
    if (lib / "pubsub-subscription" / "index.d.ts").exists():
        return lib
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
                if m.name.endswith(("/index.js", "/index.d.ts")) or m.name == "package/package.json"
            ],
            filter="data",
        )
    tgz.unlink()
    return lib


def _node(name: str, interfaces: dict, classes: dict, attrs_of: str, seen=()) -> dict:
    args = {}
    for doc, prop, optional, kind in _PROP.findall(interfaces.get(name, "")):
        nested = next(
            (t for t in re.findall(r"\w+", kind) if t in interfaces and t not in seen), None
        )
        enum = _ENUM.search(doc)
        args[snake(prop)] = {
            "required": not optional,
            "enum": set(re.findall(r'"([^"]*)"', enum.group(1) or enum.group(2))) if enum else None,
            "block": _node(nested, interfaces, classes, nested + "OutputReference", (*seen, nested))
            if nested
            else None,
        }
    return {"args": args, "attrs": {snake(g) for g in _GETTER.findall(classes.get(attrs_of, ""))}}


def load_types(lib: Path) -> dict:
    """{"resource" | "data": {type: node}}, node = {"args": {name: {required, enum, block}},
    "attrs": {...}}."""
    schema: dict = {"resource": {}, "data": {}}
    for decl in sorted(lib.glob("*/index.d.ts")):
        text = decl.read_text()
        found = _CLASS.search(text)
        if not found:
            continue
        cls, rtype = found.groups()
        interfaces = dict(_INTERFACE.findall(text))
        classes = dict(_DECL.findall(text))
        section = "data" if decl.parent.name.startswith("data-") else "resource"
        schema[section][rtype] = _node(f"{cls}Config", interfaces, classes, cls)
    return schema


META = {"count", "for_each", "depends_on", "lifecycle", "provider", "dynamic"}


def _check_body(where: str, body: dict, node: dict, problems: list) -> None:
    present = set(body) | {name for dyn in body.get("dynamic", []) for name in dyn}
    for name, spec in node["args"].items():
        if spec["required"] and name not in present and name not in META:
            problems.append(f"{where}: the required argument {name!r} is missing")
    for key, value in body.items():
        spec = node["args"].get(key)
        if spec is None:
            continue
        if (
            spec["enum"]
            and isinstance(value, str)
            and "${" not in value
            and value not in spec["enum"]
        ):
            problems.append(f"{where}.{key}: {value!r} is not one of {sorted(spec['enum'])}")
        if spec["block"] and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _check_body(f"{where}.{key}", item, spec["block"], problems)
    for dyn in body.get("dynamic", []):
        for name, content in dyn.items():
            spec = node["args"].get(name)
            if spec and spec["block"]:
                _check_body(f"{where}.{name}", content["content"][0], spec["block"], problems)


_REF = re.compile(
    r"(\bdata\.)?\b(google_[a-z0-9_]+)\.[a-z0-9_]+(?:\[[^\]]+\])?((?:\.[a-z0-9_]+(?:\[\d+\])?)+)"
)


def problems(folder: Path, schema: dict, skip) -> list[str]:
    """Everything the typed schema finds wrong in a Terraform folder (and its local modules)."""
    from test_terraform import clean

    found: list[str] = []
    texts = {}
    for path in sorted(folder.rglob("*.tf")):
        texts[path] = path.read_text()
        doc = clean(hcl2.loads(texts[path]))
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    if skip(rtype) or rtype not in schema[kind]:
                        continue
                    for name, body in named.items():
                        _check_body(f"{kind}.{rtype}.{name}", body, schema[kind][rtype], found)
    used = {rtype for text in texts.values() for _, rtype, _ in _REF.findall(text)} | {
        rtype
        for text in texts.values()
        for rtype in re.findall(r'^(?:resource|data) "(google_[a-z0-9_]+)"', text, re.M)
    }
    for path, text in texts.items():
        # BLOCK[0].ATTR through locals and each.value: ATTR must exist on that block of a type this
        # folder uses
        for block, attr in re.findall(r"\.([a-z0-9_]+)\[0\]\.([a-z0-9_]+)", text):
            nodes = [
                n["args"][block]["block"]
                for kind in ("resource", "data")
                for rtype, n in schema[kind].items()
                if rtype in used and block in n["args"] and n["args"][block]["block"]
            ]
            if nodes and not any(attr in n["attrs"] or attr in n["args"] for n in nodes):
                found.append(f"{path.name}: no {block}[0].{attr} on the types used here")
        for data, rtype, chain in _REF.findall(text):
            kind = "data" if data else "resource"
            node = schema[kind].get(rtype)
            if node is None or skip(rtype):
                continue
            for step in re.findall(r"\.([a-z0-9_]+)", chain):
                spec = node["args"].get(step)
                if step not in node["attrs"] and spec is None:
                    found.append(
                        f"{path.name}: {kind} {rtype} has no attribute {step!r} here ({chain})"
                    )
                    break
                if not (spec and spec["block"]):
                    break
                node = spec["block"]
        # module.NAME.OUTPUT reads an output the module declares
        for module, output in re.findall(r"\bmodule\.([a-z0-9_]+)\.([a-z0-9_]+)", text):
            source = _module_source(folder, module)
            if source is not None and output not in _outputs(source):
                found.append(f"{path.name}: module {module} has no output {output!r}")
    return found


def _module_source(folder: Path, module: str) -> Path | None:
    for path in folder.glob("*.tf"):
        match = re.search(
            'module "' + re.escape(module) + r'" \{[^}]*?source\s*=\s*"(\./[^"]+)"',
            path.read_text(),
            re.S,
        )
        if match:
            return (folder / match.group(1)).resolve()
    return None


def _outputs(source: Path) -> set[str]:
    return {
        name
        for path in source.glob("*.tf")
        for name in re.findall(r'^output "(\w+)"', path.read_text(), re.M)
    }
