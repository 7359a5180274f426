"""`make bench`: the whole path (browser HTTP -> web -> broker -> worker -> upstream -> page)
measured against the simulated upstream's own time, on a stack started for the run.

`python -m bench --mode full` writes docs/benchmarks.md; `--mode smoke` is the
small run `tests/site/test_bench.py` keeps alive. Modules: `stack` (start/stop the
processes), `load` and `people` (virtual people in browsers), `meters` (CPU, memory and
the machine's speed from /proc), `phases` (the measured phases), `targets` and `report`
(the targets, the table and the Markdown page with its history).
"""
