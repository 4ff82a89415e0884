"""Phase 7 — regression gates: a run against a committed baseline → pass/fail for CI.

    spec.py       the [[gate]] schema of suite files
    checks.py     evaluating gates: t-bound mean deltas, bounded distance fractions, hash equality
    costs.py      the latency, memory and energy ratios, like with like, and the environment
    outcomes.py   pass / fail / skip / undecided: checks, the report, the signals statistics raise
    baselines.py  saving and loading baselines/NAME.json
    calibrate.py  tolerances proposed from measured run-to-run noise
    report.py     the gate table, JUnit XML and the Markdown summary
"""
