"""Directory objects of the mock: users, app registrations and the demo defaults."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import Final

from .federation import FederatedCredential

DEFAULT_TENANT_ID: Final = "11111111-1111-4111-8111-111111111111"
OTHER_TENANT_ID: Final = "22222222-2222-4222-8222-222222222222"
# Entra's fixed tenant for personal Microsoft accounts (ENTRA.md §1).
CONSUMERS_TENANT_ID: Final = "9188040d-6c67-4c5b-b112-36a304b66dad"

DEFAULT_CLIENT_ID: Final = "00000000-0000-0000-0000-00000000c11e"
DEFAULT_CLIENT_SECRET: Final = "mock-secret"
# Two other app registrations in the default tenant that call the proxy's API: one holds
# the API's "Reader" app role (an admin assigned it), the other nothing. Entra issues
# client-credentials tokens for a tenant's APIs to both, which is why the proxy must choose.
CALLER_CLIENT_ID: Final = "c0000000-0000-4000-8000-0000000ca11e"
CALLER_CLIENT_SECRET: Final = "caller-secret"
STRANGER_CLIENT_ID: Final = "5a000000-0000-4000-8000-00000005a4e7"
STRANGER_CLIENT_SECRET: Final = "stranger-secret"
DEFAULT_REDIRECT_URIS: Final = (
    "http://127.0.0.1/callback/azuread",
    "http://localhost/callback/azuread",
)
DEFAULT_DOMAINS: Final = {
    "contoso.example": DEFAULT_TENANT_ID,
    "fabrikam.example": OTHER_TENANT_ID,
}

_GROUP_NAMESPACE: Final = uuid.UUID("5a0d4c8e-0b7e-4d55-9a53-6d6f636b2e67")
_SP_NAMESPACE: Final = uuid.UUID("5a0d4c8e-0b7e-4d55-9a53-6d6f636b2e68")


def group_id(name: str) -> str:
    """A stable group object id, so tests and the demo can name groups in config."""
    return str(uuid.uuid5(_GROUP_NAMESPACE, name))


ADMINS_GROUP_ID: Final = group_id("admins")
ENGINEERING_GROUP_ID: Final = group_id("engineering")
OVERAGE_GROUP_COUNT: Final = 250
# A big directory: transitiveMemberOf pages of at most 999 entries, mixed object types.
BIG_DIRECTORY_GROUP_COUNT: Final = 1000
# Carol (fabrikam) is invited into contoso: a B2B guest object with its own oid there.
CAROL_GUEST_OID: Final = "ca201000-0000-4000-8000-0000000000c5"


def sts_issuer(tid: str) -> str:
    """The v1 issuer form Entra writes in `idp` for a guest's home tenant."""
    return f"https://sts.windows.net/{tid}/"


@dataclass(frozen=True)
class GuestObject:
    """A B2B guest user object in a resource tenant: its own oid, groups and roles there."""

    oid: str
    groups: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()


@dataclass
class MockUser:
    """A directory user; `oid`/`tid` are the identity, the rest is display and policy."""

    username: str
    name: str
    oid: str
    tid: str
    email: str | None = None
    # Whether Entra has verified that the email's domain belongs to the user's tenant: the
    # `email` claim is whatever an admin typed, so another tenant's admin can give a user
    # alice@contoso.com (nOAuth). The `xms_edov` optional claim says which.
    email_domain_verified: bool = True
    groups: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    password: str = field(default="", repr=False)
    # transitiveMemberOf lists these too; they are not groups and must not count as such.
    directory_roles: list[str] = field(default_factory=list)
    admin_units: list[str] = field(default_factory=list)
    # Resource tenant GUID -> this person's guest object there (B2B collaboration).
    guest_in: dict[str, GuestObject] = field(default_factory=dict)
    # 0 = member, 1 = guest (the `acct` optional claim); `idp` = the home tenant's issuer.
    acct: int = 0
    idp: str | None = None
    # The user performs MFA at every interactive sign-in (per-user MFA, or a Conditional
    # Access policy for all apps): `amr` then holds "mfa" (authentication.py).
    mfa: bool = False

    def in_tenant(self, tid: str) -> MockUser:
        """The directory object that signs in on tenant `tid`: the guest object in a resource
        tenant, else the home account (organizations/common always give the home one)."""
        guest = self.guest_in.get(tid.lower())
        if guest is None:
            return self
        return dataclasses.replace(
            self, oid=guest.oid, tid=tid.lower(), groups=list(guest.groups),
            roles=list(guest.roles), guest_in={}, acct=1, idp=sts_issuer(self.tid),
        )


@dataclass
class MockClient:
    """An app registration (confidential web client)."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: list[str]
    # PEM certificate for private_key_jwt client assertions (ENTRA.md §5).
    certificate_pem: str | None = field(default=None, repr=False)
    # Optional ID-token claims configured on the registration (Token configuration). The
    # demo registration has `xms_edov`, as docs/azure-portal-setup.md tells admins to add.
    optional_claims: tuple[str, ...] = ("xms_edov",)
    # Claims mapping makes Entra sign this app's tokens with an app-specific key, published
    # only at the JWKS URI with `?appid=<client_id>`.
    app_signing_key: bool = False
    # "Expose an API": App ID URIs, delegated scopes, and the manifest's
    # api.requestedAccessTokenVersion (None, the default, and 1 give v1 tokens; 2 gives v2).
    identifier_uris: tuple[str, ...] = ()
    api_scopes: tuple[str, ...] = ()
    access_token_version: int | None = None
    # App roles granted to this app's service principal, by the API's client ID.
    app_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Delegated permissions this app holds on other APIs ("API permissions" with consent
    # granted), by the API's client ID: what `<api>/.default` stands for on a user's grant.
    delegated_grants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # A token lifetime policy on this API's service principal: its access tokens live this
    # many seconds (None: the mock's default, MockEntra.access_token_lifetime).
    access_token_lifetime: int | None = None
    home_tenant: str = DEFAULT_TENANT_ID
    # Federated identity credentials: outside tokens this app accepts as its client assertion.
    federated_credentials: list[FederatedCredential] = field(default_factory=list)
    # Enterprise app "Assignment required": only these users may sign in (None: anyone).
    assigned_users: tuple[str, ...] | None = None
    # The secret's end date has passed: the right secret gets AADSTS7000222, not a token.
    secret_expired: bool = False

    @property
    def service_principal_oid(self) -> str:
        """The object id of the app's service principal: an app-only token's `oid`/`sub`."""
        return str(uuid.uuid5(_SP_NAMESPACE, f"{self.home_tenant}/{self.client_id}"))


def default_users() -> list[MockUser]:
    """Fresh demo users: a new list each call, so mocks never share state."""
    return _contoso_users() + [
        MockUser(
            username="carol@fabrikam.example",
            name="Carol Fabrikam",
            oid="ca201000-0000-4000-8000-000000000003",
            tid=OTHER_TENANT_ID,
            email="carol@fabrikam.example",
            groups=[group_id("fabrikam-staff")],
            guest_in={DEFAULT_TENANT_ID: GuestObject(CAROL_GUEST_OID, (ENGINEERING_GROUP_ID,))},
        ),
        MockUser(
            username="erin@outlook.example",
            name="Erin Consumer",
            oid="e2170000-0000-4000-8000-000000000005",
            tid=CONSUMERS_TENANT_ID,
            email="erin@outlook.example",
        ),
    ]


def _contoso_users() -> list[MockUser]:
    # Dave has more groups than the JWT overage limit (200), to exercise Graph fallback.
    engineering_and_more = [ENGINEERING_GROUP_ID] + [
        group_id(f"overage-{n}") for n in range(1, OVERAGE_GROUP_COUNT)
    ]
    return [
        MockUser(
            username="alice@contoso.example",
            name="Alice Admin",
            oid="a11ce000-0000-4000-8000-000000000001",
            tid=DEFAULT_TENANT_ID,
            email="alice@contoso.example",
            groups=[ADMINS_GROUP_ID, ENGINEERING_GROUP_ID],
            roles=["Admin"],
        ),
        MockUser(
            username="bob@contoso.example",
            name="Bob Builder",
            oid="b0b00000-0000-4000-8000-000000000002",
            tid=DEFAULT_TENANT_ID,
        ),
        MockUser(
            username="dave@contoso.example",
            name="Dave Manygroups",
            oid="da7e0000-0000-4000-8000-000000000004",
            tid=DEFAULT_TENANT_ID,
            email="dave@contoso.example",
            groups=engineering_and_more,
        ),
        MockUser(
            username="gina@contoso.example",
            name="Gina Bigdirectory",
            oid="61aa0000-0000-4000-8000-000000000006",
            tid=DEFAULT_TENANT_ID,
            email="gina@contoso.example",
            groups=[group_id(f"big-{n}") for n in range(BIG_DIRECTORY_GROUP_COUNT)],
            directory_roles=[group_id("role-global-reader")],
            admin_units=[group_id("au-emea")],
        ),
    ]


def default_clients() -> list[MockClient]:
    """The demo app registration (which also exposes an API), with loopback redirect URIs
    (any port matches), and two apps that call that API."""
    return [
        MockClient(
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            redirect_uris=list(DEFAULT_REDIRECT_URIS),
            identifier_uris=(f"api://{DEFAULT_CLIENT_ID}",),
            api_scopes=("access_as_user",),
        ),
        MockClient(
            client_id=CALLER_CLIENT_ID,
            client_secret=CALLER_CLIENT_SECRET,
            redirect_uris=list(DEFAULT_REDIRECT_URIS),
            app_roles={DEFAULT_CLIENT_ID: ("Reader",)},
        ),
        MockClient(
            client_id=STRANGER_CLIENT_ID,
            client_secret=STRANGER_CLIENT_SECRET,
            redirect_uris=list(DEFAULT_REDIRECT_URIS),
        ),
    ]
