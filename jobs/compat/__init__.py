"""Compatibility APIs: the originals' endpoints, so their clients work unchanged."""
