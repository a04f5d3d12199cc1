"""`python -m facetool` (also what `torchrun -m facetool` starts)."""

from facetool.cli.app import main

if __name__ == "__main__":
    main()
