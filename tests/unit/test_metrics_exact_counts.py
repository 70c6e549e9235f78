"""The judge's exact-count query, evaluated by Prometheus's own engine (``promtool test rules``).

The query is PromQL that only a Prometheus can give meaning to: checking its text proves nothing about
counter resets.  promtool comes with Debian's ``prometheus`` package, which ``./dev`` installs.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import pytest
import yaml

from metrics import count_queries

pytestmark = pytest.mark.unit

START, END = 65, 125  # the window, in seconds; samples every 15 s from 0: the start's sample is the one at 60
SERIES = {
    "steady": "0 100 200 300 400 500 600 700 800 900",  # 400 at 60, 800 at 120: 400
    "reset_before_first": "600 700 800 900 1000 5 20 35 50 65",  # restarted between 60 and 75: 50
    "reset_inside": "600 700 800 900 1000 1100 5 20 35 50",  # 1000 at 60, 1100 at 75, restarted, 35: 135
    "new_pod": "_ _ _ _ _ _ 3 6 9 12",  # first seen at 90: 9
    "gone_before": "0 100 200 _ _ _ _ _ _ _",  # stale before the window: nothing
    # One failed scrape at 60 (a staleness marker): the start is 300 at 45, so the window counts 800 - 300
    # and the window before it counted up to 300; never the counter's whole life (issue 23's review).
    "failed_scrape_at_start": "0 100 200 300 stale 500 600 700 800 900",
    "failed_scrape_inside": "0 100 200 300 400 500 stale 700 800 900",  # 400 at 60, 800 at 120: 400
}
EXPECTED = {"steady": 400, "reset_before_first": 50, "reset_inside": 135, "new_pod": 9,
            "failed_scrape_at_start": 500, "failed_scrape_inside": 400}


def rendered(selector: str) -> str:
    return (count_queries.exact_count(selector).replace("{{ interval }}", f"{(END - START) * 1000}ms")
            .replace("{{ variables.start }}", str(START)).replace("{{ variables.end }}", str(END)))


def test_each_series_counts_what_its_counter_gained_in_the_window_resets_included(tmp_path: pathlib.Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `apt-get install prometheus` (./dev installs it)"

    def summed(selector: str, value: float) -> dict[str, object]:
        return {"expr": f"sum({rendered(selector)})", "eval_time": "3m",
                "exp_samples": [{"labels": "{}", "value": value}]}

    tests = [summed('c{pod="' + pod + '"}', value) for pod, value in EXPECTED.items()]
    tests.append(summed('c{pod=~"steady|reset_before_first"}', 450))
    tests.append({"expr": rendered('c{pod="gone_before"}'), "eval_time": "3m", "exp_samples": []})
    spec = {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [{"series": f'c{{pod="{pod}"}}', "values": values} for pod, values in SERIES.items()],
        "promql_expr_test": tests}]}
    path = tmp_path / "counts.yml"
    path.write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
