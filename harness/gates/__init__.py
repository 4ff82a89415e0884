"""Phase 7 — regression gates: a run against a committed baseline → pass/fail for CI.

    spec.py       the [[gate]] schema of suite files
    checks.py     evaluating gates: t-bound mean deltas, bounded distance fractions, budgets, environment
    baselines.py  saving and loading baselines/NAME.json
    calibrate.py  tolerances proposed from measured run-to-run noise
    report.py     the gate table, JUnit XML and the Markdown summary
"""
