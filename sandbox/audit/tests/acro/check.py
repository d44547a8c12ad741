#!/usr/bin/env python3
"""Cross-check helper: run ACRO (AI-SDC/ACRO, pinned in ops/requirements.txt) on per-unit rows.

Usage:  python3 check.py INPUT.csv > verdicts.json

INPUT.csv has a header `table,d1,d2,value`; one row per privacy-unit contribution
to a cell. `d2` empty for every row of a table => one-dimensional table.
`value` empty => missing (NaN).

For each table ACRO is run with its *default* config (acro/default.yaml) and no
mitigation (ACRO(suppress=False)); aggfunc="sum":
  * 2-D: acro.crosstab(d1, d2, values=value, aggfunc="sum")
  * 1-D: acro.pivot_table(df, values="value", index="d1", aggfunc="sum")
    (acro 1.0.2 crosstab() raises with columns=None; pivot_table has the
    dedicated no-columns path in TableModelDetails.get_count_table/get_table_newagg)
The per-cell outcome table is Records.get_index(-1).outcome, a DataFrame of
strings: "ok" or a concatenation of "<CheckName>; " (e.g. "NKCheck; PPercentCheck; ").

Semantics of acro 1.0.2 with default config (sdcchecks.py):
  MinimumThresholdCheck: flagged iff row_count < 10           (strict <)
  NKCheck:               flagged iff (top-2 sum)/sum >= 0.90   (non-strict >=)
  PPercentCheck:         flagged iff (sum - top1 - top2)/top1 < 0.10 (strict <);
                         if top1 == 0 the ratio is (sum - top2sum) itself (bug vs comment),
                         so all-zero cells are flagged; NaN (empty cell) -> not flagged.
  Any negative value anywhere in a table => NK and P checks are NOT evaluated for
  that table; instead only cells containing a negative are labelled
  "NKCheck; PPercentCheck; " (table status "review").

Output (stdout): JSON list sorted by (table, d1, d2) of
  {"table","d1","d2","verdict","reasons","n","notes"}
verdict = "pass" iff ACRO's cell outcome is "ok", else "suppressed" (ACRO's own
suppression, get_queries_from_collated_risk, redacts every non-"ok" cell).
reasons = ACRO's check names for the cell, verbatim.  n = input rows in the cell
(empty d1 x d2 combinations are reported with n=0). ACRO's own count is the same
except for rows with a missing value: the 2-D crosstab path counts them, the 1-D
pivot_table path (get_count_table: pivot_table(..., aggfunc="count")) does not.
notes   = derived, not ACRO output: "negative-values" when the cell has a negative
value and ACRO reported "Dominance not defined when negative value are present".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import warnings

# Configure root logging *before* importing acro: acro.py calls
# logging.basicConfig(level=INFO), which is a no-op once the root has a handler.
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
warnings.simplefilter("ignore")
os.environ.setdefault("MPLBACKEND", "Agg")

with contextlib.redirect_stdout(sys.stderr):
    import acro  # noqa: E402
    import pandas as pd  # noqa: E402

logging.getLogger("acro").setLevel(logging.ERROR)

SUPPRESSING = {
    # acro >= 1.0 (ontology check names)
    "MinimumThresholdCheck",
    "NKCheck",
    "PPercentCheck",
    # acro < 1.0 per-cell strings, kept for robustness
    "threshold",
    "p-ratio",
    "nk-rule",
}
NEG_MSG = "Dominance not defined when negative value are present"


def parse_value(text: str) -> float:
    text = text.strip()
    return float("nan") if text == "" else float(text)


def split_outcome(cell: str) -> list[str]:
    cell = str(cell).strip()
    if cell == "ok":
        return []
    return [part.strip() for part in cell.split(";") if part.strip()]


def run_table(session, name: str, sub: pd.DataFrame) -> list[dict]:
    sub = sub.reset_index(drop=True)
    one_dim = bool((sub["d2"] == "").all())
    with contextlib.redirect_stdout(sys.stderr):
        if one_dim:
            session.pivot_table(sub, values="value", index="d1", aggfunc="sum")
        else:
            session.crosstab(sub["d1"], sub["d2"], values=sub["value"], aggfunc="sum")
    record = session.results.get_index(-1)
    outcome: pd.DataFrame = record.outcome
    negatives_unchecked = NEG_MSG in (record.summary or "")

    counts = sub.groupby(["d1", "d2"]).size().to_dict()
    has_neg = (sub["value"] < 0).groupby([sub["d1"], sub["d2"]]).any().to_dict()

    rows = []
    for d1 in outcome.index:
        for col in outcome.columns:
            d2 = "" if one_dim else str(col)
            key = (str(d1), d2)
            reasons = split_outcome(outcome.loc[d1, col])
            notes = []
            if negatives_unchecked and has_neg.get(key, False):
                notes.append("negative-values")
            rows.append(
                {
                    "table": name,
                    "d1": str(d1),
                    "d2": d2,
                    "verdict": "pass" if not reasons else "suppressed",
                    "reasons": reasons,
                    "n": int(counts.get(key, 0)),
                    "notes": notes,
                }
            )
            unknown = [r for r in reasons if r not in SUPPRESSING]
            if unknown:
                print(f"check.py: {name}/{key}: non-rule reasons {unknown}", file=sys.stderr)
    return rows


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: check.py INPUT.csv", file=sys.stderr)
        return 2
    df = pd.read_csv(argv[1], dtype=str, keep_default_na=False)
    missing = {"table", "d1", "d2", "value"} - set(df.columns)
    if missing:
        print(f"check.py: missing columns {sorted(missing)}", file=sys.stderr)
        return 2
    df = df[["table", "d1", "d2", "value"]].copy()
    df["value"] = df["value"].map(parse_value).astype(float)

    session = acro.ACRO(suppress=False)  # default.yaml parameters
    out: list[dict] = []
    for name in sorted(df["table"].unique()):
        out.extend(run_table(session, name, df[df["table"] == name]))
    out.sort(key=lambda r: (r["table"], r["d1"], r["d2"]))
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
