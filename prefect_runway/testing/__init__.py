"""Pytest fixtures for flows built on prefect-runway (``prefect_runway.testing.fixtures``)."""
