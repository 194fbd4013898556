"""Region endpoints: snapcopy's table is the official SDK's, and an unknown region is named."""

from __future__ import annotations

import pytest

from bot.dws.regions import ENDPOINTS, UnknownRegion, endpoint_for

DIFFERENT_DOMAINS = {
    "eu-west-101": "https://dws.eu-west-101.myhuaweicloud.eu",
    "cn-south-4": "https://dws.cn-south-4.myhuaweicloud.cn",
    "cn-north-12": "https://dws.cn-north-12.myhuaweicloud.cn",
    "cn-east-4": "https://dws.cn-east-4.myhuaweicloud.cn",
    "tr-west-1": "https://dws.tr-west-1.myhuaweicloud.cn",
    "ap-southeast-4": "https://dws.ap-southeast-4.myhuaweicloud.cn",
}


def test_the_table_is_the_official_sdks() -> None:
    # Fails when a new SDK release adds, drops or moves a region: copy its table again.
    sdk_region = pytest.importorskip("huaweicloudsdkdws.v2.region.dws_region")
    official = {
        name: region.endpoints[0] for name, region in sdk_region.DwsRegion.static_fields.items()
    }

    assert ENDPOINTS == official


@pytest.mark.parametrize(("region", "endpoint"), sorted(DIFFERENT_DOMAINS.items()))
def test_regions_outside_myhuaweicloud_com_get_their_own_domain(region: str, endpoint: str) -> None:
    assert endpoint_for(region, None) == endpoint


def test_an_unknown_region_is_named_with_the_known_ones() -> None:
    with pytest.raises(UnknownRegion) as caught:
        endpoint_for("mars-north-1", None)

    message = str(caught.value)
    assert "mars-north-1" in message
    assert "ap-southeast-1" in message and "eu-west-101" in message
    assert "DWS_ENDPOINT" in message


def test_an_explicit_endpoint_wins_even_for_an_unknown_region() -> None:
    assert endpoint_for("mars-north-1", "https://dws.example.internal/") == (
        "https://dws.example.internal"
    )
