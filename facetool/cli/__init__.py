"""The command-line layer: parse, validate through facetool.config, call the library, render with rich."""
