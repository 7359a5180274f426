"""`make bench`: the whole path (browser HTTP -> web -> broker -> worker -> upstream -> page)
measured against the simulated upstream's own time, on a stack started for the run.

`python -m bench --mode full` writes docs/benchmarks.md; `--mode smoke` is the
small run `tests/site/test_bench.py` keeps alive. Modules: `stack` (start/stop the
processes), `load` (virtual people in browsers), `figures` (the measured phases),
`report` (the table and the Markdown page).
"""
