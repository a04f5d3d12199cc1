"""Placeholder for commands whose issue has not landed yet."""

from facetool.errors import FacetoolError


def not_yet(name: str) -> None:
    raise FacetoolError(f"`facetool {name}` is not yet available in this version")
