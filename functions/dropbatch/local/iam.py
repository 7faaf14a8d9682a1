"""The deployment's identities and grants on the local stack, read from infra/ itself (python-hcl2).

`compile_policy(infra, ...)` evaluates the Terraform's IAM resources (project members, custom roles,
bucket members with their IAM conditions, topic members) for the stack's project and bucket, the way
`terraform apply` would resolve them; nothing here repeats a grant. `Policy.check(principal,
permission, resource)` says whether a caller may, and a refusal reads as Google's does:

    HTTP 403, {"error": {"code": 403, "status": "PERMISSION_DENIED",
               "message": "Permission 'P' denied on resource 'R' (or it may not exist)."}}

(the shape of Vertex AI's and Pub/Sub's refusals: https://cloud.google.com/apis/design/errors,
google.rpc.Status; Cloud Storage words it "EMAIL does not have storage.objects.create access to the
Google Cloud Storage object. Permission 'storage.objects.create' denied on resource (or it may not
exist).", as in python-storage issues and
https://cloud.google.com/storage/docs/troubleshooting#http-403-forbidden).

Identities are service account key files (google.oauth2.service_account, `token_uri` on the stack).
A client sends either an access token from the stack's token endpoint (the JWT-bearer grant, RFC
7523, as google-auth makes it), which names its principal and carries an HMAC made with the stack's
secret, or a self-signed JWT (what Google's generated clients send a service account's key as,
`always_use_jwt_access`), verified with the principal's public key. Every part of the stack verifies
both without a call.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
from pathlib import Path

import orjson

from .terraform import PROJECT_NUMBER, Terraform, clean_hcl, load_terraform

# Who the CLI, the tests and `local env` act as: the project's owner (a service account key file,
# since google-auth always sends an `authorized_user` file's refresh to Google's own token endpoint)
OWNER = "serviceAccount:owner@dropbatch-local.iam.gserviceaccount.com"
TOKEN_PREFIX = "ya29.local."

# Permissions of the predefined roles infra/ grants, as listed in Google's IAM reference
# (https://cloud.google.com/iam/docs/roles-permissions/storage, /pubsub, /run, /logging,
# /artifactregistry); only the permissions the local stack can enforce are listed. roles/owner holds
# everything.
ROLE_PERMISSIONS = {
    "roles/owner": {"*"},
    "roles/storage.objectViewer": {"storage.objects.get", "storage.objects.list"},
    "roles/storage.objectCreator": {"storage.objects.create"},
    "roles/storage.objectUser": {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
        "storage.objects.restore",
        "storage.objects.update",
    },
    "roles/storage.objectAdmin": {
        "storage.objects.create",
        "storage.objects.delete",
        "storage.objects.get",
        "storage.objects.list",
        "storage.objects.restore",
        "storage.objects.update",
        "storage.objects.getIamPolicy",
        "storage.objects.setIamPolicy",
    },
    "roles/pubsub.publisher": {"pubsub.topics.publish"},
    "roles/pubsub.subscriber": {"pubsub.subscriptions.consume", "pubsub.topics.attachSubscription"},
    "roles/run.invoker": {"run.routes.invoke"},
    "roles/logging.logWriter": {"logging.logEntries.create"},
    "roles/artifactregistry.writer": {"artifactregistry.repositories.uploadArtifacts"},
}
# Google's public sample data (readable by allUsers), so that Google's samples run unchanged on the
# stack.
PUBLIC_BUCKETS = ("cloud-samples-data",)
IAM_RESOURCES = {
    "google_project_iam_member",
    "google_storage_bucket_iam_member",
    "google_pubsub_topic_iam_member",
    "google_pubsub_subscription_iam_member",
}


def vertex_agent() -> str:
    return f"serviceAccount:service-{PROJECT_NUMBER}@gcp-sa-aiplatform.iam.gserviceaccount.com"


class Denied(Exception):
    """A caller lacks a permission: the message names the principal, the permission and the
    resource."""

    def __init__(self, principal: str, permission: str, resource: str):
        self.principal, self.permission, self.resource = principal, permission, resource
        super().__init__(
            f"Permission '{permission}' denied on resource '{resource}' (or it may not exist)."
        )

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "code": 403,
                    "status": "PERMISSION_DENIED",
                    "message": str(self),
                    "errors": [
                        {
                            "reason": "forbidden",
                            "domain": "global",
                            "message": self.storage_message(),
                        }
                    ],
                }
            }
        )

    def storage_message(self) -> str:
        """Cloud Storage's wording of the same refusal."""
        who = self.principal.split(":", 1)[-1]
        return (
            f"{who} does not have {self.permission} access to the Google Cloud Storage "
            f"{'bucket' if '/objects/' not in self.resource else 'object'}. Permission "
            f"'{self.permission}' "
            f"denied on resource (or it may not exist)."
        )


# ---------------------------------------------------------------- tokens


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()[:32]


def issue(secret: bytes, principal: str) -> str:
    """An access token that names its principal, signed with the stack's secret."""
    name = base64.urlsafe_b64encode(principal.encode()).decode().rstrip("=")
    return f"{TOKEN_PREFIX}access.{name}.{_mac(secret, principal)}"


def principal_of(secret: bytes, token: str) -> str | None:
    """The principal an access token names, or None when it is not one of this stack's."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    try:
        kind, name, mac = token[len(TOKEN_PREFIX) :].split(".")
        principal = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except ValueError:
        return None
    if kind != "access" or not hmac.compare_digest(mac, _mac(secret, principal)):
        return None
    return principal


def new_key() -> tuple[str, str]:
    """An RSA key pair as PEM (private, public), as a service account key holds it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def key_file(principal: str, private_pem: str, key_id: str, project: str, token_uri: str) -> dict:
    """A service account key file (the JSON `gcloud iam service-accounts keys create` writes)."""
    email = principal.split(":", 1)[1]
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private_pem,
        "client_email": email,
        "client_id": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
        "auth_uri": token_uri,
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    }


def signed_by(certs: dict, assertion: str) -> str | None:
    """The principal whose key signed a JWT (its `iss`), or None when no key of the stack verifies
    it."""
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
            if b["member"] not in (principal, "allUsers") or not self.covers(
                b["resource"], resource
            ):
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
        """A grant on a project covers the project's resources, its buckets (every bucket of the
        stack is the project's, though Cloud Storage names them projects/_/buckets/B) among them; on
        a bucket, its objects."""
        if granted_on == f"projects/{self.project}" and resource.startswith("projects/_"):
            return True
        return resource == granted_on or resource.startswith(granted_on + "/")


def _condition(expression: str, resource: str, kind: str) -> bool:
    """An IAM condition (CEL) over the request's resource: name, type and service, as Cloud Storage
    passes them (https://cloud.google.com/iam/docs/conditions-resource-attributes#resource-name)."""
    import cel

    service = kind.split("/", 1)[0]
    context = {"resource": {"name": resource, "type": kind, "service": service}}
    return bool(cel.evaluate(expression, context))


def storage_resource(bucket: str, name: str | None = None) -> tuple[str, str]:
    """A Cloud Storage resource's IAM name and type (projects/_/buckets/B[/objects/O])."""
    if name is None:
        return f"projects/_/buckets/{bucket}", "storage.googleapis.com/Bucket"
    return f"projects/_/buckets/{bucket}/objects/{name}", "storage.googleapis.com/Object"


def compile_policy(
    infra: Path,
    project: str,
    bucket: str,
    results_bucket: str = "",
    location: str = "us-central1",
    enforce: bool = True,
) -> Policy:
    """The grants of infra/ (its root module) for this project and bucket, plus the owner's project
    role."""
    tf = load_terraform(infra)
    variables = {name: clean_hcl(body.get("default")) for name, body in tf["variable"].items()}
    variables.update(
        project_id=project, bucket_name=bucket, results_bucket_name=results_bucket, region=location
    )
    terraform = Terraform(tf, variables)
    roles = {}
    for name in tf["resource"].get("google_project_iam_custom_role", {}):
        role = terraform.resource("google_project_iam_custom_role", name)
        roles[role["name"]] = sorted(role["permissions"])
    bindings = [
        {
            "resource": f"projects/{project}",
            "role": "roles/owner",
            "member": OWNER,
            "condition": None,
            "source": "the project's owner (not Terraform's)",
        }
    ]
    bindings += [
        {
            "resource": storage_resource(name)[0],
            "role": "roles/storage.objectViewer",
            "member": "allUsers",
            "condition": None,
            "source": "a public Google bucket (not Terraform's)",
        }
        for name in PUBLIC_BUCKETS
    ]
    bindings += terraform_bindings(tf, terraform)
    accounts = {
        name: terraform.resource("google_service_account", name)["member"]
        for name in tf["resource"].get("google_service_account", {})
    }
    accounts["vertex_agent"] = vertex_agent()
    return Policy(
        project=project, roles=roles, bindings=bindings, accounts=accounts, enforce=enforce
    )


def terraform_bindings(tf: dict, terraform: Terraform) -> list[dict]:
    """Every IAM member resource of the module as a binding, each instance of a for_each or count
    its own, with where it came from."""
    bindings = []
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
                expression = (
                    terraform.value(condition[0]["expression"], grant.scope) if condition else None
                )
                address = f"{rtype}.{name}" + (f'["{key}"]' if key is not None else "")
                bindings.append(
                    {
                        "resource": resource,
                        "role": grant["role"],
                        "member": grant["member"],
                        "condition": expression,
                        "source": address,
                    }
                )
    return bindings


# ---------------------------------------------------------------- what every enforcing process
# reads


class Enforcer:
    """The stack's policy and secret, read from its iam/ folder and re-read when the policy file
    changes (a test may swap in the grants of another copy of infra/ while the stack runs)."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.secret = (self.folder / "secret").read_bytes()
        # key id -> public key PEM
        self.certs = orjson.loads((self.folder / "keys.json").read_bytes())
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
        return (
            principal_of(self.secret, token)
            if token.startswith(TOKEN_PREFIX)
            else signed_by(self.certs, token)
        )


def _certificate(subject, issuer, key, now):
    """A certificate builder for a year's certificate of `key` (x509), to be signed by `issuer`."""
    import datetime as dt

    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
    )


def tls_files(folder: Path, hosts: list[str]) -> None:
    """A certificate authority of the stack's and a certificate for Google's API host names, signed
    by it: `ca.pem` (the machine's and certifi's bundles with the stack's CA added, so that
    SSL_CERT_FILE breaks no other host), `host.pem` and `host.key` for the gateway's HTTPS proxy."""
    import datetime as dt

    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key, host_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dropbatch local stack CA")])

    ca = (
        _certificate(ca_name, ca_name, ca_key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    host = (
        _certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), ca_name, host_key, now
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    import ssl

    # the machine's own bundle (it may hold a site's CA)
    system = ssl.get_default_verify_paths().cafile
    bundles = [Path(f).read_bytes() for f in (system, certifi.where()) if f and Path(f).is_file()]
    (folder / "ca.pem").write_bytes(b"\n".join(bundles) + b"\n" + ca.public_bytes(pem))
    (folder / "host.pem").write_bytes(host.public_bytes(pem) + ca.public_bytes(pem))
    (folder / "host.key").write_bytes(
        host_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
