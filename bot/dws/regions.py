"""Where DWS answers, region by region: the official SDK's endpoint table, as data.

Most regions are `https://dws.{region}.myhuaweicloud.com`, but not all (eu-west-101 is on
`.myhuaweicloud.eu`, a few on `.myhuaweicloud.cn`), so the table is copied whole from the SDK
(`huaweicloudsdkdws/v2/region/dws_region.py`, 3.1.219) rather than derived. A test compares it
with the installed SDK, so a new SDK release shows any drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ENDPOINTS: dict[str, str] = {
    "eu-west-101": "https://dws.eu-west-101.myhuaweicloud.eu",
    "cn-north-9": "https://dws.cn-north-9.myhuaweicloud.com",
    "cn-east-3": "https://dws.cn-east-3.myhuaweicloud.com",
    "cn-east-2": "https://dws.cn-east-2.myhuaweicloud.com",
    "cn-north-1": "https://dws.cn-north-1.myhuaweicloud.com",
    "cn-north-4": "https://dws.cn-north-4.myhuaweicloud.com",
    "cn-southwest-2": "https://dws.cn-southwest-2.myhuaweicloud.com",
    "cn-north-2": "https://dws.cn-north-2.myhuaweicloud.com",
    "cn-south-1": "https://dws.cn-south-1.myhuaweicloud.com",
    "cn-south-4": "https://dws.cn-south-4.myhuaweicloud.cn",
    "cn-north-12": "https://dws.cn-north-12.myhuaweicloud.cn",
    "cn-east-4": "https://dws.cn-east-4.myhuaweicloud.cn",
    "ap-southeast-1": "https://dws.ap-southeast-1.myhuaweicloud.com",
    "ap-southeast-2": "https://dws.ap-southeast-2.myhuaweicloud.com",
    "ap-southeast-3": "https://dws.ap-southeast-3.myhuaweicloud.com",
    "af-south-1": "https://dws.af-south-1.myhuaweicloud.com",
    "la-south-2": "https://dws.la-south-2.myhuaweicloud.com",
    "sa-brazil-1": "https://dws.sa-brazil-1.myhuaweicloud.com",
    "na-mexico-1": "https://dws.na-mexico-1.myhuaweicloud.com",
    "la-north-2": "https://dws.la-north-2.myhuaweicloud.com",
    "tr-west-1": "https://dws.tr-west-1.myhuaweicloud.cn",
    "ap-southeast-4": "https://dws.ap-southeast-4.myhuaweicloud.cn",
    "cn-east-5": "https://dws.cn-east-5.myhuaweicloud.com",
    "af-north-1": "https://dws.af-north-1.myhuaweicloud.com",
    "ru-moscow-1": "https://dws.ru-moscow-1.myhuaweicloud.com",
    "ae-ad-1": "https://dws.ae-ad-1.myhuaweicloud.com",
    "my-kualalumpur-1": "https://dws.my-kualalumpur-1.myhuaweicloud.com",
    "cn-north-11": "https://dws.cn-north-11.myhuaweicloud.com",
    "cn-southwest-3": "https://dws.cn-southwest-3.myhuaweicloud.com",
    "ap-southeast-5": "https://dws.ap-southeast-5.myhuaweicloud.com",
    "me-east-1": "https://dws.me-east-1.myhuaweicloud.com",
}


class UnknownRegion(ValueError):
    def __init__(self, region: str) -> None:
        self.region = region
        super().__init__(
            f"DWS_REGION '{region}' is not a DWS region snapcopy knows; known: "
            f"{', '.join(sorted(ENDPOINTS))} (or set DWS_ENDPOINT to the endpoint's URL)."
        )


def endpoint_for(region: str | None, endpoint: str | None) -> str:
    """The API base URL: an explicit endpoint wins, else the region's, from the table."""
    if endpoint and endpoint.strip():
        return endpoint.strip().rstrip("/")
    if region and region.strip():
        known = ENDPOINTS.get(region.strip().lower())
        if known is None:
            raise UnknownRegion(region.strip())
        return known
    raise ValueError("Set DWS_REGION (for example cn-north-4) or DWS_ENDPOINT to reach DWS.")


class RegionsSyntaxError(ValueError):
    pass


@dataclass(frozen=True)
class DwsTarget:
    """One region (or project) the bot works in: where to call, and for which project."""

    region: str  # "" for a bot configured by DWS_ENDPOINT alone
    project_id: str
    endpoint: str


def parse_regions(text: str) -> list[tuple[str, str, str | None]]:
    """`DWS_REGIONS`: "region=project_id[@endpoint],…" into (region, project_id, endpoint).

    The optional `@endpoint` serves regions reached some other way (a VPC endpoint, a
    gateway, a test stand-in).
    """
    entries: list[tuple[str, str, str | None]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        region, equals, rest = item.partition("=")
        project_id, _, endpoint = rest.partition("@")
        region, project_id, endpoint = region.strip().lower(), project_id.strip(), endpoint.strip()
        if not equals or not _REGION.fullmatch(region) or not _PROJECT.fullmatch(project_id):
            raise RegionsSyntaxError(
                f"DWS_REGIONS entry '{item}' is not region=project_id (for example "
                "ap-southeast-1=0f1e2d3c4b5a69788796a5b4c3d2e1f0)."
            )
        if endpoint and not re.match(r"https?://[^/\s]+", endpoint):
            raise RegionsSyntaxError(f"DWS_REGIONS entry '{item}': the part after @ must be a URL.")
        if any(region == seen for seen, _, _ in entries):
            raise RegionsSyntaxError(f"DWS_REGIONS names {region} twice.")
        entries.append((region, project_id, endpoint or None))
    if not entries:
        raise RegionsSyntaxError("DWS_REGIONS is set but names no region.")
    return entries


_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
_PROJECT = re.compile(r"[A-Za-z0-9_-]{1,64}")
