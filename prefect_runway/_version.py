"""The package's one version number (the user agent and ``prefect_runway.__version__``)."""

__version__ = "0.1.0"
