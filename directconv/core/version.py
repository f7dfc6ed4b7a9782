"""The toolkit's version: recorded in every persisted file's provenance."""

__version__ = "0.1.0"
