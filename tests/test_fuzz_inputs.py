"""Generated bad inputs (``tests/fuzz_inputs.py``) for convert, evaluate and summarize: every one must end in a
clean refusal that names the culprit, or in a correct result, and nothing outside the output folder may change.

Seeded, so a failure can be replayed: ``M2S_FUZZ_SEED=<seed> pytest tests/test_fuzz_inputs.py``, or
``python tests/fuzz_inputs.py --seed <seed>`` for the table of outcomes. About 40 s for 240 cases on 2 cores.
"""

from __future__ import annotations

import os

from fuzz_inputs import BAD, counts, report, run_all

SEED = int(os.environ.get("M2S_FUZZ_SEED", "20251201"))
CASES = int(os.environ.get("M2S_FUZZ_CASES", "240"))


def test_generated_bad_inputs_end_cleanly(tmp_path):
    results = run_all(SEED, CASES, tmp_path)
    assert len(results) >= 200
    assert all(sum(row.values()) >= 40 for row in counts(results).values()), counts(results)
    assert len({r.case.kind for r in results}) >= 60  # varied: generators draw sub-kinds and parameters
    bad = [r for r in results if r.outcome in BAD]
    assert not bad, f"seed {SEED}:\n{report(results)}"
