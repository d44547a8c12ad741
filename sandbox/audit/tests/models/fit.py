#!/usr/bin/env python3
"""Cross-check helper: fit the audit's models with statsmodels (pinned in ops/requirements.txt).

Usage:  python3 fit.py INPUT.csv > fits.json

INPUT.csv has a header `district,month,kwh,gas`: one observation per row. Two fits, with the
reference level of each factor its first in label order (statsmodels' default, and the audit's):
  * ols:      kwh ~ C(district) + C(month)      (ordinary least squares)
  * logistic: gas ~ C(district)                 (binomial GLM, logit link, IRLS)
Output: {"ols": {term: [coefficient, standard error]}, "logistic": {...}, "n": rows}, with
statsmodels' term names mapped to the audit's: "Intercept" -> "intercept",
"C(district)[T.x]" -> "district=x".
"""

from __future__ import annotations

import json
import re
import sys
import warnings

warnings.filterwarnings("ignore")
import pandas as pd  # noqa: E402
import statsmodels.api as sm  # noqa: E402
import statsmodels.formula.api as smf  # noqa: E402


def names(params, errors):
    out = {}
    for term, value in params.items():
        if term == "Intercept":
            name = "intercept"
        else:
            m = re.fullmatch(r"C\((\w+)\)\[T\.(.*)\]", term)
            name = f"{m.group(1)}={m.group(2)}"
        out[name] = [float(value), float(errors[term])]
    return out


def main() -> None:
    data = pd.read_csv(sys.argv[1], dtype={"district": str, "month": str})
    ols = smf.ols("kwh ~ C(district) + C(month)", data=data).fit()
    logistic = smf.glm("gas ~ C(district)", data=data, family=sm.families.Binomial()).fit()
    json.dump(
        {"ols": names(ols.params, ols.bse), "logistic": names(logistic.params, logistic.bse), "n": len(data)},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
