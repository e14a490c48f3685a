"""Pytest fixtures for flows built on prefect-runway.

Enable them in your own ``conftest.py``::

    pytest_plugins = ["prefect_runway.testing.fixtures"]

and write tests against the emulator, with no API key and no credits spent::

    async def test_my_flow(runway_emulator, segmind_credentials):
        result = await my_flow(credentials=segmind_credentials)
        assert runway_emulator.stats()["segmind"]["submissions"]
"""
