"""The desktop catalog (bundles → launch settings) and the guardrails a request must pass."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vdi.ec2 import DisposeAction
from vdi.request import DesktopRequest
from vdi.settings import load
from vdi.userdata import installable_display_protocols

DEFAULT_CATALOG_PATH = Path(__file__).resolve().parents[2] / "include" / "catalog.yaml"


class RequestRejected(ValueError):
    """The request is valid but outside the guardrails; the message is what the requester reads."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RootVolume(_Strict):
    size_gb: int = Field(ge=8, le=16384)
    type: str = "gp3"


class LeostreamSettings(_Strict):
    display_protocol: str = "rdp"  # installed on the desktop by its bootstrap (vdi_display_protocol)
    offer_quantity: int = Field(default=1, ge=1)


class Bundle(_Strict):
    description: str = ""
    instance_type: str
    default_os: str
    images: dict[str, dict[str, str]]  # os -> region -> AMI id
    subnet_id: str | None = None
    security_group_ids: list[str] = []
    instance_profile: str | None = None
    root_volume: RootVolume
    leostream: LeostreamSettings = LeostreamSettings()
    # What becomes of a failed request's instance: terminate it, stop it (its disk is kept), or keep it running
    # for debugging.
    on_failure: DisposeAction = "terminate"
    # Whether removing the desktop keeps a snapshot of its root volume (taken once it is stopped, before it is
    # terminated).
    snapshot_on_removal: bool = False

    @model_validator(mode="after")
    def _default_os_has_images(self) -> "Bundle":
        if self.default_os not in self.images:
            raise ValueError(f"default_os {self.default_os!r} has no images")
        return self

    @model_validator(mode="after")
    def _bootstrap_installs_the_display_protocol(self) -> "Bundle":
        protocol = self.leostream.display_protocol
        for os_family in sorted(self.images):
            installable = installable_display_protocols(os_family)
            if protocol not in installable:
                raise ValueError(f"display_protocol {protocol!r} cannot be installed on {os_family} by the desktop "
                                 f"bootstrap (it can: {', '.join(sorted(installable))}); see docs/bootstrap.md")
        return self

    def image_for(self, os_family: str, region: str) -> str:
        try:
            return self.images[os_family][region]
        except KeyError:
            raise RequestRejected(f"no {os_family} image for region {region}") from None


class ProjectRules(_Strict):
    bundles: list[str]


class Limits(_Strict):
    desktops_per_user: int = Field(ge=1)
    requests_in_flight: int = Field(ge=1)


class Catalog(_Strict):
    region: str
    bundles: dict[str, Bundle]
    projects: dict[str, ProjectRules]
    limits: Limits

    @model_validator(mode="after")
    def _projects_name_known_bundles(self) -> "Catalog":
        for project, rules in self.projects.items():
            unknown = sorted(set(rules.bundles) - set(self.bundles))
            if unknown:
                raise ValueError(f"project {project} allows unknown bundles {unknown}")
        return self

    def resolve_os(self, request: DesktopRequest) -> str:
        bundle = self.bundles[request.bundle]
        os_family = (request.os or bundle.default_os).lower()
        if os_family not in bundle.images:
            raise RequestRejected(
                f"bundle {request.bundle!r} offers {', '.join(sorted(bundle.images))}, not {os_family!r}")
        return os_family

    def check(self, request: DesktopRequest, *, user_desktops: int, in_flight: int) -> Bundle:
        """The request's bundle, or ``RequestRejected`` with a reason the requester can act on.

        ``user_desktops``: the user's other desktops in progress or ready; ``in_flight``: other requests in progress.
        """
        rules = self.projects.get(request.project_key)
        if rules is None:
            raise RequestRejected(f"project {request.project_key} may not request desktops")
        if request.bundle not in rules.bundles:
            raise RequestRejected(f"bundle {request.bundle!r} is not offered to project {request.project_key}; "
                                  f"choose one of: {', '.join(rules.bundles)}")
        if user_desktops >= self.limits.desktops_per_user:
            raise RequestRejected(f"{request.user.login} already has {user_desktops} desktop(s), "
                                  f"the limit is {self.limits.desktops_per_user}")
        if in_flight >= self.limits.requests_in_flight:
            raise RequestRejected(f"{in_flight} requests are already in progress (limit "
                                  f"{self.limits.requests_in_flight}); file again later")
        self.resolve_os(request)
        return self.bundles[request.bundle]


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Read and validate a catalog file (default: ``VDI_CATALOG_PATH`` or ``include/catalog.yaml``)."""
    path = Path(path or load().catalog_path or DEFAULT_CATALOG_PATH)
    return _load(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load(path: Path, _mtime: int) -> Catalog:
    with open(path) as handle:
        return Catalog.model_validate(yaml.safe_load(handle))
