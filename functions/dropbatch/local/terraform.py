"""Reading infra/'s Terraform as `terraform apply` would resolve it, for the grants the local stack
enforces.

python-hcl2 parses the files; `Terraform` evaluates the subset of expressions infra/ uses
(references to variables, locals, resources with for_each or count, modules and data sources; string
templates; map and list literals; `cond ? a : b`, `==`/`!=`, `&&`/`||`, `*`; `toset()`,
`tostring()`), computing the attributes Google fills in (a service account's email and member, a
custom role's name, service agents' emails) for a local project. What it cannot evaluate raises
ValueError, so a grant is never silently dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson

# the local project's number (service agents' emails are made from it)
PROJECT_NUMBER = "123456789012"
# Google-created accounts that the Terraform names through a resource or data source.
AGENT_DOMAINS = {
    "aiplatform.googleapis.com": "gcp-sa-aiplatform",
    "pubsub.googleapis.com": "gcp-sa-pubsub",
}


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def clean_hcl(node):
    """python-hcl2's output without its quoting and its markers (__is_block__, __comments__,
    ...)."""
    if isinstance(node, dict):
        return {_unquote(k): clean_hcl(v) for k, v in node.items() if not k.startswith("__")}
    if isinstance(node, list):
        return [clean_hcl(v) for v in node]
    return _unquote(node)


def load_terraform(folder: Path) -> dict:
    """Every *.tf file of a folder merged: resources, data sources, variables, locals, modules."""
    import hcl2

    merged: dict = {"resource": {}, "data": {}, "variable": {}, "locals": {}, "module": {}}
    for path in sorted(Path(folder).glob("*.tf")):
        with path.open() as f:
            doc = clean_hcl(hcl2.load(f))
        for kind in ("resource", "data"):
            for entry in doc.get(kind, []):
                for rtype, named in entry.items():
                    for name, body in named.items():
                        merged[kind].setdefault(rtype, {})[name] = body
        for kind in ("variable", "module"):
            for entry in doc.get(kind, []):
                merged[kind].update(entry)
        for entry in doc.get("locals", []):
            merged["locals"].update(entry)
    return merged


_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>\d+)|(?P<name>[A-Za-z_][\w-]*)'
    r"|(?P<op>==|!=|&&|\|\||[?:.,=\[\]{}()*]))"
)


class Terraform:
    """Evaluates the subset of Terraform expressions infra/ uses for its grants: references to
    variables, locals, resources (with for_each or count), modules and data sources, string
    templates, map and list literals, `cond ? a : b`, `==`/`!=`, `toset()` and `tostring()`. What it
    cannot evaluate raises ValueError."""

    def __init__(self, tf: dict, variables: dict):
        self.tf, self.vars = tf, variables

    # -- templates and expressions
    def value(self, raw, scope: dict | None = None):
        scope = scope or {}
        if isinstance(raw, dict):  # dynamic blocks stay as written (none of them makes a grant)
            return {k: v if k == "dynamic" else self.value(v, scope) for k, v in raw.items()}
        if isinstance(raw, list):
            return [self.value(v, scope) for v in raw]
        if not isinstance(raw, str):
            return raw
        raw = raw.replace('\\"', '"')
        if raw.startswith("${") and raw.endswith("}") and _matching(raw, 1) == len(raw) - 1:
            return self.expr(raw[2:-1], scope)
        out, i = [], 0
        while i < len(raw):
            start = raw.find("${", i)
            if start < 0:
                out.append(raw[i:])
                break
            end = _matching(raw, start + 1)
            out.append(raw[i:start])
            out.append(str(self.expr(raw[start + 2 : end], scope)))
            i = end + 1
        return "".join(out)

    def expr(self, text: str, scope: dict):
        tokens = [m for m in _TOKEN.finditer(text) if m.group().strip()]
        parser = _Parser(self, [(m.lastgroup, m.group(m.lastgroup)) for m in tokens], scope)
        result = parser.ternary()
        if parser.pos != len(parser.tokens):
            raise ValueError(f"cannot evaluate {text!r}")
        return result

    # -- references
    def reference(self, path: list, scope: dict):
        head = path[0]
        if head == "var":
            return self.vars[path[1]], path[2:]
        if head == "local":
            return self.value(self.tf["locals"][path[1]], scope), path[2:]
        if head in ("each", "count"):
            return scope[head][path[1]], path[2:]
        if head == "module":
            return self.module(path[1]), path[2:]
        if head == "data":
            return self.data(path[1], path[2]), path[3:]
        return self.resource(head, path[1]), path[2:]

    def module(self, name: str) -> dict:
        body = self.tf["module"][name]
        count = int(self.value(body.get("count", 1)))
        outputs = {"name": self.value(body["name"])}
        return [outputs] * count if "count" in body else outputs

    def data(self, rtype: str, name: str) -> dict:
        if rtype == "google_project":
            return {"number": PROJECT_NUMBER, "project_id": self.vars["project_id"]}
        if rtype == "google_storage_project_service_account":
            return {
                "email_address": f"service-{PROJECT_NUMBER}@gs-project-accounts"
                ".iam.gserviceaccount.com"
            }
        raise ValueError(f"data.{rtype}.{name} is not modelled")

    def instances(self, rtype: str, name: str) -> dict:
        """A resource's instances: {key: attributes}, key None when it has no for_each."""
        body = self.tf["resource"][rtype][name]
        if "count" in body:
            return {
                i: self.attributes(rtype, body, {"count": {"index": i}})
                for i in range(int(self.value(body["count"])))
            }
        if "for_each" not in body:
            return {None: self.attributes(rtype, body, {})}
        each = self.value(body["for_each"])
        items = each.items() if isinstance(each, dict) else ((v, v) for v in each)
        return {k: self.attributes(rtype, body, {"each": {"key": k, "value": v}}) for k, v in items}

    def resource(self, rtype: str, name: str):
        instances = self.instances(rtype, name)
        if "count" in self.tf["resource"][rtype][name]:
            return [instances[i] for i in sorted(instances)]
        return instances[None] if list(instances) == [None] else instances

    def attributes(self, rtype: str, body: dict, scope: dict) -> dict:
        lazy = _Lazy(self, body, scope)
        project = self.vars["project_id"]
        if rtype == "google_service_account":
            email = f"{lazy['account_id']}@{project}.iam.gserviceaccount.com"
            lazy.computed.update(email=email, member=f"serviceAccount:{email}")
        elif rtype == "google_project_iam_custom_role":
            lazy.computed["name"] = f"projects/{project}/roles/{lazy['role_id']}"
        elif rtype == "google_project_service_identity":
            lazy.computed["email"] = (
                f"service-{PROJECT_NUMBER}@{AGENT_DOMAINS[lazy['service']]}.iam.gserviceaccount.com"
            )
        elif rtype in ("google_pubsub_topic", "google_pubsub_subscription"):
            kind = "topics" if rtype == "google_pubsub_topic" else "subscriptions"
            lazy.computed["id"] = lambda: f"projects/{project}/{kind}/{lazy['name']}"
        return lazy


def _matching(text: str, open_at: int) -> int:
    """The index of the brace that closes the one at `open_at` (strings inside are skipped)."""
    depth, i, quoted = 0, open_at, False
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced braces in {text!r}")


class _Lazy(dict):
    """A resource instance's attributes, each evaluated when read (so unmodelled ones cost
    nothing)."""

    def __init__(self, tf: Terraform, body: dict, scope: dict):
        super().__init__()
        self.tf, self.body, self.scope, self.computed = tf, body, scope, {}

    def __missing__(self, key):
        if key in self.computed:
            value = self.computed[key]
            return value() if callable(value) else value
        if key in self.body:
            return self.tf.value(self.body[key], self.scope)
        raise ValueError(f"attribute {key!r} is not modelled")


class _Parser:
    def __init__(self, tf: Terraform, tokens: list, scope: dict):
        self.tf, self.tokens, self.scope, self.pos = tf, tokens, scope, 0
        # > 0 while parsing the branch a condition did not choose: parsed, not evaluated
        self.skip = 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def take(self, value=None):
        kind, got = self.peek()
        if value is not None and got != value:
            raise ValueError(f"expected {value!r}, found {got!r}")
        self.pos += 1
        return kind, got

    def ternary(self):
        cond = self.logic()
        if self.peek()[1] == "?":
            self.take("?")
            yes = self.branch(bool(cond))
            self.take(":")
            no = self.branch(not cond)
            return yes if cond else no
        return cond

    def branch(self, chosen: bool):
        self.skip += not chosen
        try:
            return self.ternary()
        finally:
            self.skip -= not chosen

    def logic(self):
        left = self.compare()
        while self.peek()[1] in ("&&", "||"):
            op = self.take()[1]
            right = self.compare()
            left = (left and right) if op == "&&" else (left or right)
        return left

    def compare(self):
        left = self.product()
        if self.peek()[1] in ("==", "!="):
            op = self.take()[1]
            right = self.product()
            return (left == right) if op == "==" else (left != right)
        return left

    def product(self):
        left = self.postfix()
        while self.peek()[1] == "*":
            self.take()
            left = left * self.postfix()
        return left

    def postfix(self):
        kind, tok = self.peek()
        if (
            kind == "name"
            and tok not in ("true", "false", "null")
            and self.tokens[self.pos + 1 : self.pos + 2] != [("op", "(")]
        ):
            return self.path()
        value = self.primary()
        return self.tail(value)

    def tail(self, value):
        while self.peek()[1] in (".", "["):
            if self.take()[1] == ".":
                name = self.take()[1]
                value = None if self.skip else value[name]
            else:
                index = self.ternary()
                self.take("]")
                value = None if self.skip else value[index]
        return value

    def path(self):
        names = [self.take()[1]]
        while self.peek()[1] == "." and len(names) < 3:
            self.take(".")
            names.append(self.take()[1])
        if (
            names[0] not in ("var", "local", "each", "count", "module", "data")
            and self.peek()[1] == "["
        ):
            self.take("[")  # a resource instance by key: type.name["key"]
            key = self.ternary()
            self.take("]")
            return self.tail(None if self.skip else self.tf.instances(names[0], names[1])[key])
        if names[0] == "data" and self.peek()[1] == ".":
            self.take(".")
            names.append(self.take()[1])
        if self.skip:
            return self.tail(None)
        value, rest = self.tf.reference(names, self.scope)
        for name in rest:
            value = value[name]
        return self.tail(value)

    def primary(self):
        kind, tok = self.take()
        if kind == "str":
            return (
                self.tf.value(orjson.loads(tok), self.scope) if "${" in tok else orjson.loads(tok)
            )
        if kind == "num":
            return int(tok)
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "null":
            return None
        if tok == "(":
            value = self.ternary()
            self.take(")")
            return value
        if tok == "[":
            return self.tuple_()
        if tok == "{":
            return self.object_()
        if kind == "name" and self.peek()[1] == "(":
            return self.call(tok)
        raise ValueError(f"unexpected {tok!r}")

    def tuple_(self) -> list:
        items = []
        while self.peek()[1] != "]":
            items.append(self.ternary())
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return items

    def object_(self) -> dict:
        items = {}
        while self.peek()[1] != "}":
            key = self.take()[1]
            key = orjson.loads(key) if key.startswith('"') else key
            self.take("=")
            items[key] = self.ternary()
            if self.peek()[1] == ",":
                self.take(",")
        self.take("}")
        return items

    def call(self, name: str):
        """One of the few Terraform functions infra/ calls: toset, tostring, split."""
        self.take("(")
        args = [self.ternary()]
        while self.peek()[1] == ",":
            self.take(",")
            args.append(self.ternary())
        self.take(")")
        if self.skip:
            return self.tail(None)
        if name == "toset":
            return self.tail(sorted(set(args[0])))
        if name == "tostring":
            return self.tail(str(args[0]))
        if name == "split":
            return self.tail(args[1].split(args[0]))
        raise ValueError(f"function {name}() is not modelled")
