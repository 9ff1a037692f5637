"""Binomial GLM with five predictors on the 3-node demo (penguins): wall time of one ``analysis.glm``.

Run: ``python -m benchmarks.glm [--runs 5] [--runtime process|docker]``.

One fit is ``analysis.glm(client, "sex", [bill_length_mm, bill_depth_mm, flipper_length_mm,
body_mass_g, species], family="binomial", success="male")``: the central task, its describe
subtask and one subtask per IRLS iteration at the three nodes, waited for and read back as a
DataFrame. The result is checked against statsmodels on the pooled data (1e-6) when it is
installed. Target: under 5 s with the process runtime.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import load_note, machine

OUTCOME = "sex"
PREDICTORS = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "species"]


def check(table, pooled) -> str:
    """Whether the fit equals statsmodels on the pooled data (or why it was not checked)."""
    try:
        import statsmodels.api as sm
        import statsmodels.formula.api as smf
    except ImportError:
        return "not checked (statsmodels is not installed)"
    data = pooled[[OUTCOME, *PREDICTORS]].dropna().assign(male=lambda d: d[OUTCOME] == "male")
    data["male"] = data["male"].astype(int)
    ref = smf.glm(
        "male ~ " + " + ".join(PREDICTORS), data=data, family=sm.families.Binomial()
    ).fit()
    worst = max(
        abs(table.loc[t, "coef"] / ref.params[t] - 1)
        + abs(table.loc[t, "std_err"] / ref.bse[t] - 1)
        for t in table.index
    )
    same = table.attrs["iterations"] == ref.fit_history["iteration"]
    return f"max relative difference to statsmodels {worst:.1e}, same iterations: {same}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtime", default="process", choices=["process", "docker"])
    parser.add_argument(
        "--process-warm",
        default="on",
        choices=["on", "off"],
        help="process runtime: fork each run from a warm zygote (process_warm), or not",
    )
    args = parser.parse_args()

    import pandas as pd

    from vantage6nb import analysis, demo

    with demo.start(
        nodes=3, runtime=args.runtime, node_settings={"process_warm": args.process_warm == "on"}
    ) as net:
        client = net.client()
        pooled = pd.concat([pd.read_csv(path) for path in net.datasets.values()])
        analysis.glm(client, OUTCOME, PREDICTORS, family="binomial", success="male")  # warm-up
        times, table = [], None
        for _ in range(args.runs):
            t0 = time.perf_counter()
            table = analysis.glm(client, OUTCOME, PREDICTORS, family="binomial", success="male")
            times.append(time.perf_counter() - t0)
        assert table is not None
        print(f"machine: {machine()}; {load_note()}")
        print(
            f"binomial GLM, 5 predictors ({len(table)} terms), 3 nodes, {args.runtime} runtime, "
            f"{table.attrs['nobs']} records, {table.attrs['iterations']} IRLS iterations "
            f"({table.attrs['iterations'] + 2} subtasks incl. describe)"
        )
        print(
            f"wall time over {args.runs} runs: median {statistics.median(times):.2f} s, "
            f"min {min(times):.2f} s, max {max(times):.2f} s"
        )
        print(check(table, pooled))


if __name__ == "__main__":
    main()
