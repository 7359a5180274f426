"""The measured phases of a benchmark run, one module each (see bench/__main__.py)."""
