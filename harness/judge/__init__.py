"""The pairwise judge: a multimodal model compares two decoders' outputs of the same case.

    config.py     the suite's [judge] table (schema, defaults)
    prompts.py    criteria, prompt template and its version, answer schema and parsing
    media.py      stored PNG → resized, encoded image the judge sees
    protocol.py   the backend protocol, its errors, the API key, redaction of secrets
    backends.py   starting the backend a [judge] table names
    gemini.py     Google Gemini through google-genai
    local_vlm.py  a local open-weights VLM through transformers
    budget.py     request and estimated-cost caps, cost estimates
    retry.py      one request to its end: back-off, one retry of a malformed answer
    cache.py      on-disk verdicts, so nothing is paid twice
    scheduler.py  concurrency, cache look-ups, stopping after a fatal error
    aggregate.py  win/tie/loss with Wilson intervals, Bradley–Terry with bootstrap CIs
    phase.py      the run phase: plan the requests of a run, record them, write judge.json

The `decoderbench judge RUN_DIR` verb lives in harness/cli/judge.py.
"""
