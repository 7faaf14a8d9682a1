"""The deployment's identities and grants on the local stack, read from infra/ itself (python-hcl2).

`compile_policy(infra, ...)` evaluates the Terraform's IAM resources (project members, custom roles, bucket
members with their IAM conditions, topic members) for the stack's project and bucket, the way `terraform
apply` would resolve them; nothing here repeats a grant. `Policy.check(principal, permission, resource)` says
whether a caller may, and a refusal reads as Google's does:

    HTTP 403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
               "message": "Permission 'P' denied on resource 'R' (or it may not exist)."}}

(the shape of Vertex AI's and Pub/Sub's refusals: https://cloud.google.com/apis/design/errors, google.rpc.Status;
Cloud Storage words it "EMAIL does not have storage.objects.create access to the Google Cloud Storage
object. Permission 'storage.objects.create' denied on resource (or it may not exist).", as in python-storage
issues and https://cloud.google.com/storage/docs/troubleshooting#http-403-forbidden).

Identities are service account key files (google.oauth2.service_account, `token_uri` on the stack). A
client sends either an access token from the stack's token endpoint (the JWT-bearer grant, RFC 7523, as
google-auth makes it), which names its principal and carries an HMAC made with the stack's secret, or a
self-signed JWT (what Google's generated clients send a service account's key as, `always_use_jwt_access`),
verified with the principal's public key. Every part of the stack verifies both without a call.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
import re
from pathlib import Path

import orjson

PROJECT_NUMBER = "123456789012"  # the local project's number (service agents' emails are made from it)
# Who the CLI, the tests and `local env` act as: the project's owner (a service account key file, since
# google-auth always sends an `authorized_user` file's refresh to Google's own token endpoint)
OWNER = "serviceAccount:owner@dropbatch-local.iam.gserviceaccount.com"
TOKEN_PREFIX = "ya29.local."

# Permissions of the predefined roles infra/ grants, as listed in Google's IAM reference
# (https://cloud.google.com/iam/docs/roles-permissions/storage, /pubsub, /run, /logging, /artifactregistry);
# only the permissions the local stack can enforce are listed. roles/owner holds everything.
ROLE_PERMISSIONS = {
    "roles/owner": {"*"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectUser": {"storage.objects.create", "storage.objects.delete", "storage.objects.get",
                                 "storage.objects.list", "storage.objects.restore", "storage.objects.update"},
    "roles/storage.objectAdmin": {"storage.objects.create", "storage.objects.delete", "storage.objects.get",
                                  "storage.objects.list", "storage.objects.restore", "storage.objects.update",
                                  "storage.objects.getIamPolicy", "storage.objects.setIamPolicy"},
    "roles/pubsub.publisher": {"pubsub.topics.publish"},
    "roles/pubsub.subscriber": {"pubsub.subscriptions.consume", "pubsub.topics.attachSubscription"},
    "roles/run.invoker": {"run.routes.invoke"},
    "roles/logging.logWriter": {"logging.logEntries.create"},
    "roles/artifactregistry.writer": {"artifactregistry.repositories.uploadArtifacts"},
}
# Google's public sample data (readable by allUsers), so that Google's samples run unchanged on the stack.
PUBLIC_BUCKETS = ("cloud-samples-data",)
IAM_RESOURCES = {"google_project_iam_member", "google_storage_bucket_iam_member", "google_pubsub_topic_iam_member",
                 "google_pubsub_subscription_iam_member"}
# Google-created accounts that the Terraform names through a resource or data source.
AGENT_DOMAINS = {"aiplatform.googleapis.com": "gcp-sa-aiplatform", "pubsub.googleapis.com": "gcp-sa-pubsub"}


def vertex_agent() -> str:
    return f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"


class Denied(Exception):
    """A caller lacks a permission: the message names the principal, the permission and the resource."""

    def __init__(self, principal: str, permission: str, resource: str):
        self.principal, self.permission, self.resource = principal, permission, resource
        super().__init__(f"Permission '{permission}' denied on resource '{resource}' (or it may not exist).")

    def body(self) -> bytes:
        return orjson.dumps({"error": {"code": 403, "status": "PERMISSION_DENIED", "message": str(self),
                                       "errors": [{"reason": "forbidden", "domain": "global",
                                                   "message": self.storage_message()}]}})

    def storage_message(self) -> str:
        """Cloud Storage's wording of the same refusal."""
        who = self.principal.split(":", 1)[-1]
        return (f"{who} does not have {self.permission} access to the Google Cloud Storage "
                f"{'bucket' if '/objects/' not in self.resource else 'object'}. Permission '{self.permission}' "
                f"denied on resource (or it may not exist).")


# ---------------------------------------------------------------- tokens

def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:32]


def issue(secret: bytes, principal: str, kind: str = "access") -> str:
    """A token (access or refresh) that names its principal, signed with the stack's secret."""
    name = base64.urlsafe_b64encode(principal.encode()).decode().rstrip("=")
    return f"{TOKEN_PREFIX}{kind}.{name}.{_mac(secret, kind + principal)}"


def principal_of(secret: bytes, token: str, kind: str = "access") -> str | None:
    """The principal a token names, or None when it is not one of this stack's tokens of that kind."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        got_kind, name, mac = token[len(TOKEN_PREFIX):].split(".")
        principal = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except ValueError:
        return None
    if got_kind != kind or not hmac.compare_digest(mac, _mac(secret, kind + principal)):
        return None
    return principal


def new_key() -> tuple[str, str]:
    """An RSA key pair as PEM (private, public), as a service account key holds it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def key_file(principal: str, private_pem: str, key_id: str, project: str, token_uri: str) -> dict:
    """A service account key file (the JSON `gcloud iam service-accounts keys create` writes)."""
    email = principal.split(":", 1)[1]
    return {"type": "service_account", "project_id": project, "private_key_id": key_id, "private_key": private_pem,
            "client_email": email, "client_id": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
            "auth_uri": token_uri, "token_uri": token_uri, "universe_domain": "googleapis.com"}


def signed_by(certs: dict, assertion: str) -> str | None:
    """The principal whose key signed a JWT (its `iss`), or None when no key of the stack verifies it."""
    from google.auth import exceptions, jwt

    try:
        claims = jwt.decode(assertion, certs=certs, verify=True)
    except (exceptions.GoogleAuthError, ValueError, KeyError, TypeError):
        return None
    return f"serviceAccount:{claims.get('iss')}"


def bearer(headers) -> str | None:
    value = headers.get("Authorization") or headers.get("authorization") or ""
    return value[7:].strip() if value[:7].lower() == "bearer " else None


# ---------------------------------------------------------------- the policy

@dataclasses.dataclass
class Policy:
    """Bindings as (resource, role, member, condition); `enforce` False lets everything through."""
    project: str
    roles: dict
    bindings: list
    accounts: dict
    enforce: bool = True

    def permissions(self, role: str) -> set:
        return set(self.roles.get(role, ())) | ROLE_PERMISSIONS.get(role, set())

    def allowed(self, principal: str, permission: str, resource: str, kind: str = "") -> bool:
        if not self.enforce:
            return True
        for b in self.bindings:
            if b["member"] not in (principal, "allUsers") or not self.covers(b["resource"], resource):
                continue
            perms = self.permissions(b["role"])
            if permission not in perms and "*" not in perms:
                continue
            if b.get("condition") and not _condition(b["condition"], resource, kind):
                continue
            return True
        return False

    def check(self, principal: str, permission: str, resource: str, kind: str = "") -> None:
        if not self.allowed(principal, permission, resource, kind):
            raise Denied(principal, permission, resource)

    def dump(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self), option=orjson.OPT_INDENT_2)


    def covers(self, granted_on: str, resource: str) -> bool:
        """A grant on a project covers the project's resources, its buckets (every bucket of the stack is the
        project's, though Cloud Storage names them projects/_/buckets/B) among them; on a bucket, its objects."""
        if granted_on == f"projects/{self.project}" and resource.startswith("projects/_"):
            return True
        return resource == granted_on or resource.startswith(granted_on + "/")


def _condition(expression: str, resource: str, kind: str) -> bool:
    """An IAM condition (CEL) over the request's resource: name, type and service, as Cloud Storage passes
    them (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name)."""
    import cel

    service = kind.split("/", 1)[0]
    context = {"resource": {"name": resource, "type": kind, "service": service}}
    return bool(cel.evaluate(expression, context))


def storage_resource(bucket: str, name: str | None = None) -> tuple[str, str]:
    """A Cloud Storage resource's IAM name and type (projects/_/buckets/B[/objects/O])."""
    if name is None:
        return f"projects/_/buckets/{bucket}", "storage.googleapis.com/Bucket"
    return f"projects/_/buckets/{bucket}/objects/{name}", "storage.googleapis.com/Object"


# ---------------------------------------------------------------- reading the Terraform

def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def clean_hcl(node):
    """python-hcl2's output without its quoting and its markers (__is_block__, __comments__, ...)."""
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


_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>\d+)|(?P<name>[A-Za-z_][\w-]*)'
                    r'|(?P<op>==|!=|&&|\|\||[?:.,=\[\]{}()*]))')


class Terraform:
    """Evaluates the subset of Terraform expressions infra/ uses for its grants: references to variables,
    locals, resources (with for_each or count), modules and data sources, string templates, map and list literals,
    `cond ? a : b`, `==`/`!=`, `toset()` and `tostring()`. What it cannot evaluate raises ValueError."""

    def __init__(self, tf: dict, variables: dict):
        self.tf, self.vars = tf, variables

    # -- templates and expressions
    def value(self, raw, scope: dict | None = None):
        scope = scope or {}
        if isinstance(raw, dict):
            return {k: self.value(v, scope) for k, v in raw.items()}
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
            out.append(str(self.expr(raw[start + 2:end], scope)))
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
            return {"email_address": f"service-{PROJECT_NUMBER}@gs-project-accounts.iam.gserviceaccount.com"}
        raise ValueError(f"data.{rtype}.{name} is not modelled")

    def instances(self, rtype: str, name: str) -> dict:
        """A resource's instances: {key: attributes}, key None when it has no for_each."""
        body = self.tf["resource"][rtype][name]
        if "count" in body:
            return {i: self.attributes(rtype, body, {"count": {"index": i}})
                    for i in range(int(self.value(body["count"])))}
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
            lazy.computed["email"] = (f"service-{PROJECT_NUMBER}@{AGENT_DOMAINS[lazy['service']]}"
                                      ".iam.gserviceaccount.com")
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
    """A resource instance's attributes, each evaluated when read (so unmodelled ones cost nothing)."""

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
        self.skip = 0  # > 0 while parsing the branch a condition did not choose: parsed, not evaluated

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
        if kind == "name" and tok not in ("true", "false", "null") and self.tokens[self.pos + 1:self.pos + 2] != [
                ("op", "(")]:
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
        if names[0] not in ("var", "local", "each", "count", "module", "data") and self.peek()[1] == "[":
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
            return self.tf.value(orjson.loads(tok), self.scope) if "${" in tok else orjson.loads(tok)
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
            items = []
            while self.peek()[1] != "]":
                items.append(self.ternary())
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("]")
            return items
        if tok == "{":
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
        if kind == "name" and self.peek()[1] == "(":
            self.take("(")
            arg = self.ternary()
            self.take(")")
            if self.skip:
                return None
            if tok == "toset":
                return sorted(set(arg))
            if tok == "tostring":
                return str(arg)
            raise ValueError(f"function {tok}() is not modelled")
        raise ValueError(f"unexpected {tok!r}")


def compile_policy(infra: Path, project: str, bucket: str, results_bucket: str = "", location: str = "us-central1",
                   enforce: bool = True) -> Policy:
    """The grants of infra/ (its root module) for this project and bucket, plus the owner's project role."""
    tf = load_terraform(infra)
    variables = {name: clean_hcl(body.get("default")) for name, body in tf["variable"].items()}
    variables.update(project_id=project, bucket_name=bucket, results_bucket_name=results_bucket, region=location)
    terraform = Terraform(tf, variables)
    roles = {}
    for name in tf["resource"].get("google_project_iam_custom_role", {}):
        role = terraform.resource("google_project_iam_custom_role", name)
        roles[role["name"]] = sorted(role["permissions"])
    bindings = [{"resource": f"projects/{project}", "role": "roles/owner", "member": OWNER, "condition": None,
                 "source": "the project's owner (not Terraform's)"}]
    bindings += [{"resource": storage_resource(name)[0], "role": "roles/storage.objectViewer", "member": "allUsers",
                  "condition": None, "source": "a public Google bucket (not Terraform's)"} for name in PUBLIC_BUCKETS]
    for rtype in sorted(IAM_RESOURCES & set(tf["resource"])):
        for name in tf["resource"][rtype]:
            for key, grant in terraform.instances(rtype, name).items():
                if rtype == "google_project_iam_member":
                    resource = f"projects/{grant['project']}"
                elif rtype == "google_storage_bucket_iam_member":
                    resource = storage_resource(grant["bucket"])[0]
                elif rtype == "google_pubsub_topic_iam_member":
                    resource = f"projects/{grant['project']}/topics/{grant['topic']}"
                else:
                    resource = f"projects/{grant['project']}/subscriptions/{grant['subscription']}"
                condition = grant.body.get("condition")
                expression = terraform.value(condition[0]["expression"], grant.scope) if condition else None
                address = f"{rtype}.{name}" + (f'["{key}"]' if key is not None else "")
                bindings.append({"resource": resource, "role": grant["role"], "member": grant["member"],
                                 "condition": expression, "source": address})
    accounts = {name: terraform.resource("google_service_account", name)["member"]
                for name in tf["resource"].get("google_service_account", {})}
    accounts["vertex_agent"] = vertex_agent()
    return Policy(project=project, roles=roles, bindings=bindings, accounts=accounts, enforce=enforce)


# ---------------------------------------------------------------- what every enforcing process reads

class Enforcer:
    """The stack's policy and secret, read from its iam/ folder and re-read when the policy file changes (a
    test may swap in the grants of another copy of infra/ while the stack runs)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.secret = (self.folder / "secret").read_bytes()
        self.certs = orjson.loads((self.folder / "keys.json").read_bytes())  # key id -> public key PEM
        self._policy, self._stamp = None, None

    @property
    def policy(self) -> Policy:
        path = self.folder / "policy.json"
        stamp = os.stat(path).st_mtime_ns
        if stamp != self._stamp:
            self._policy, self._stamp = Policy(**orjson.loads(path.read_bytes())), stamp
        return self._policy

    def principal(self, headers) -> str | None:
        token = bearer(headers)
        if not token:
            return None
        return principal_of(self.secret, token) if token.startswith(TOKEN_PREFIX) else signed_by(self.certs, token)


def tls_files(folder: Path, hosts: list[str]) -> None:
    """A certificate authority of the stack's and a certificate for Google's API host names, signed by it:
    `ca.pem` (the machine's and certifi's bundles with the stack's CA added, so that SSL_CERT_FILE breaks no
    other host),
    `host.pem` and `host.key` for the gateway's HTTPS proxy."""
    import datetime as dt

    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, host_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dropbatch local stack CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    host = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca_name).public_key(host_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    import ssl

    system = ssl.get_default_verify_paths().cafile  # the machine's own bundle (it may hold a site's CA)
    bundles = [Path(f).read_bytes() for f in (system, certifi.where()) if f and Path(f).is_file()]
    (folder / "ca.pem").write_bytes(b"\n".join(bundles) + b"\n" + ca.public_bytes(pem))
    (folder / "host.pem").write_bytes(host.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "host.key").write_bytes(host_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
