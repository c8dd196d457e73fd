"""``report``: saved runs as an HTML site (issue #37).

Without a browser: the site's rows are ``compare --format json``'s numbers, a damaged run gets
compare's message on stderr and on the index, nothing in the results folder changes, the gate's
verdicts are `gate.regressions`'s. In a real browser (headless Chromium from the distribution,
driven by Selenium through /usr/bin/chromedriver; skipped, with the reason, where there is none):
no console errors, the rows and their numbers, sorting by a header, filtering, each figure drawn,
and a screenshot of the index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from synthetic_runs import compare_cli, save, synthetic

pytest.importorskip("jinja2", reason="the report extra is not installed (pip install '.[report]')")
pytest.importorskip("plotly", reason="the report extra is not installed (pip install '.[report]')")

from harness.cli.main import main  # noqa: E402
from harness.report import figures, model, site  # noqa: E402
from harness.results import (
    compare,  # noqa: E402
    gate,  # noqa: E402
    runs,  # noqa: E402
)

RESULTS = Path(__file__).parents[2] / "results"
TWO = ("20261126T152556Z_cpu_f2212804", "20261207T194959Z_gradbench_4027a747")
"""Two committed runs: one with cases at several orders and sizes, the GradBench profile's."""


def report_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["report", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def compare_json(capsys, run: str) -> list[dict]:
    code, out, err = compare_cli(capsys, "--results", RESULTS, run, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def fingerprint(folder: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Rows(HTMLParser):
    """The rows of a run page's tables: each ``tr[data-row]``'s cells by column (exact values)."""

    def __init__(self):
        super().__init__()
        self.rows: dict[tuple, dict] = {}
        self._row = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and "data-row" in attrs:
            self._row = self.rows.setdefault(tuple(json.loads(attrs["data-row"])), {})
        elif tag == "td" and self._row is not None and "data-key" in attrs:
            self._row[attrs["data-key"]] = json.loads(attrs["data-value"])

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None


def page_rows(path: Path) -> dict[tuple, dict]:
    parser = Rows()
    parser.feed(path.read_text())
    return parser.rows


def key_of(record: dict) -> tuple:
    return tuple(record[k] for k in ("group", "backend", "mode", "strategy", "dtype", "device"))


def assert_same_numbers(found: dict[tuple, dict], records: list[dict]) -> None:
    """Every record of ``compare --format json`` is a row with the same value in every column."""
    assert len(found) == len(records)
    for record in records:
        cells = found[key_of(record)]
        for header, key in site.columns():
            if key != "label":
                assert cells[key] == record[key], (header, key_of(record))


# --- Without a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The site of the committed runs, built once for the module."""
    out = tmp_path_factory.mktemp("site")
    assert main(["report", "--results", str(RESULTS), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("run", TWO)
def test_each_run_page_has_compares_rows_with_the_same_numbers(capsys, built, run):
    assert_same_numbers(page_rows(built / f"run-{run}.html"), compare_json(capsys, run))


def test_the_columns_are_compares(built):
    headers = [header for header, _ in site.columns()]
    assert headers == [c for c in compare.COLUMNS if c not in ("group", "run")]
    page = (built / f"run-{TWO[0]}.html").read_text()
    assert all(f">{h}</th>" in page for h in ("median", "x fastest", "x hand-written"))


def test_a_damaged_run_is_named_as_compare_names_it_and_nothing_is_changed(capsys, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    good = folder / f"{TWO[1]}.json"
    shutil.copy(RESULTS / good.name, good)
    truncated = folder / "truncated.json"
    truncated.write_text(good.read_text()[:5000])
    doc = json.loads(good.read_text())
    doc["benchmarks"][3]["stats"]["median"] = float("nan")
    nan = folder / "nan.json"
    nan.write_text(json.dumps(doc))
    before = fingerprint(folder)

    code, _, err = report_cli(capsys, "--results", folder, "-o", tmp_path / "site")
    _, _, compare_err = compare_cli(capsys, "--results", folder, truncated, nan, "--format", "json")

    assert code == 1
    messages = [line for line in compare_err.splitlines() if line.startswith("error: ")]
    assert len(messages) == 2 and all(m in err.splitlines() for m in messages), err
    index = (tmp_path / "site" / "index.html").read_text()
    assert "Left out" in index
    import html

    for message in messages:
        assert html.escape(message.removeprefix("error: ")) in index
    assert (tmp_path / "site" / f"run-{good.stem}.html").exists()
    assert not (tmp_path / "site" / "run-nan.html").exists()
    assert fingerprint(folder) == before


def test_the_report_is_not_written_among_the_runs(capsys, tmp_path):
    save(tmp_path, "one", synthetic(seed=1))
    code, _, err = report_cli(capsys, "--results", tmp_path, "-o", tmp_path)
    assert code == 2 and "folder of saved runs" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.json"]


def test_an_empty_folder_and_a_bad_rule_are_usage_errors(capsys, tmp_path):
    code, _, err = report_cli(capsys, "--results", tmp_path / "none", "-o", tmp_path / "site")
    assert code == 2 and "no saved run" in err
    save(tmp_path, "one", synthetic(seed=1))
    code, _, err = report_cli(capsys, "--results", tmp_path, "--fail-on", "mean:5", "-o", tmp_path / "site")
    assert code == 2 and "--fail-on takes STAT:N%" in err
    code, _, err = report_cli(capsys, "--results", tmp_path, "--fail-on", "", "-o", tmp_path / "site")
    assert code == 2 and "error: --fail-on is empty ('')" in err


@pytest.mark.parametrize(("slowdown", "verdict"), [(1.5, "regression"), (0.6, "improvement"), (1.0, "same")])
def test_verdicts_are_the_gates(capsys, tmp_path, slowdown, verdict):
    folder = tmp_path / "results"
    base = save(folder, "20260101T000000Z_base_00000000", synthetic(seed=1))
    new = save(folder, "20260102T000000Z_new_00000000", synthetic(seed=2, slowdown=slowdown))
    code, _, err = report_cli(capsys, "--results", folder, "-o", tmp_path / "site")
    assert code == 0, err
    page = (tmp_path / "site" / f"compare-{base.stem}--{new.stem}.html").read_text()
    found = [line for line in page.splitlines() if line.startswith("<tr data-backend")]
    assert found and all(f'data-verdict="{verdict}"' in line for line in found)
    slower = gate.regressions(runs.load(new), runs.load(base), "median", 0.10)
    assert len(slower) == (len(found) if verdict == "regression" else 0)
    assert "Mann-Whitney" in page  # 30 rounds a side: the test's rule, named on the page


def test_history_links_each_point_to_its_run(capsys, tmp_path):
    folder = tmp_path / "results"
    names = [f"2026010{i}T000000Z_run_0000000{i}" for i in (1, 2, 3)]
    for i, name in enumerate(names):
        save(folder, name, synthetic(seed=i, slowdown=1 + i / 10))
    assert report_cli(capsys, "--results", folder, "-o", tmp_path / "site")[0] == 0
    page = (tmp_path / "site" / "history.html").read_text()
    links = [line.count('<a href="run-') for line in page.splitlines() if line.startswith("<tr><th>")]
    assert links and all(n == 3 for n in links)  # a median per run, each a link to its run
    assert page.index(names[0]) < page.index(names[1]) < page.index(names[2])


def test_scaling_runs_get_time_and_efficiency_against_world_size():
    row = runs.load(RESULTS / f"{TWO[0]}.json")[0]
    rows = [
        dataclasses.replace(row, world=w, scaling="strong", size=(64, 3), median=1.0 / w**0.5)
        for w in (1, 2, 4)
    ]
    drawn = figures.by_world(rows)
    assert [title.split(":")[0] for title, _ in drawn] == ["strong scaling"] * 2
    efficiency = drawn[1][1].data[0].y
    assert efficiency == pytest.approx([1.0, 2**0.5 / 2, 2 / 4])


def test_the_verdicts_on_a_committed_pair_are_compares(capsys, built):
    base, new = "20261127T113843Z_cpu_40994b6e", TWO[1]
    page = (built / f"compare-{base}--{new}.html").read_text()
    _, _, err = compare_cli(capsys, "--results", RESULTS, new, "--baseline", base, "--format", "json")
    for verdict, word in (("regression", "REGRESSION "), ("inconclusive", "INCONCLUSIVE ")):
        said = sum(line.startswith(word) for line in err.splitlines())
        assert page.count(f'data-verdict="{verdict}"') == said, verdict


def test_flags_and_validation_say_why_on_hover(built):
    page = (built / f"run-{TWO[1]}.html").read_text()
    flagged = [line for line in page.splitlines() if 'class="num flagged"' in line]
    assert len(flagged) == sum(bool(r.flags) for r in runs.load(RESULTS / f"{TWO[1]}.json")) > 0
    assert all('title="C: its threads waited for CPUs other processes held' in line for line in flagged)
    assert page.count('title="agreed with its oracle before timing; max error') > 0


def test_the_machine_names_its_gpus_and_driver():
    run = model.Run("gpu", Path("gpu.json"), model.saved_at(RESULTS / f"{TWO[1]}.json"), [], {})
    run.machine = {"cpu_model": "EPYC", "cpu_count": 16, "gpus": [{"name": "H100", "driver": "580.1"}]}
    shown = site.machine(run)
    assert shown["GPUs"].startswith("H100 (driver 580.1") and shown["CPU"] == "EPYC, 16 cores"


# --- In a browser --------------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
"""The distribution's (Debian: apt-get install chromium chromium-driver), named explicitly: Selenium
Manager would otherwise download a browser and driver, and CI has no network for that."""


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install '.[report]')"
    )
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        pytest.skip(f"no browser: {', '.join(missing)} missing (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # Selenium Manager would download a browser: no network here
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, path: Path) -> None:
    browser.get(path.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


ROWS_JS = """
return Array.from(document.querySelectorAll('tr[data-row]')).map(tr => [
  JSON.parse(tr.dataset.row),
  Object.fromEntries(Array.from(tr.cells).map(td => [td.dataset.key, JSON.parse(td.dataset.value)])),
  tr.cells[1].textContent.trim()]);
"""


@pytest.mark.parametrize("run", TWO)
def test_browser_shows_every_row_of_compare_with_the_same_numbers(capsys, browser, built, run):
    open_page(browser, built / f"run-{run}.html")
    found = browser.execute_script(ROWS_JS)
    records = compare_json(capsys, run)
    assert_same_numbers({tuple(key): cells for key, cells, _ in found}, records)
    shown = {tuple(key): median for key, _, median in found}
    for record in records:  # the text as compare's table writes it
        assert shown[key_of(record)].startswith(compare.format_seconds(record["median"]))


def test_browser_sorts_a_column_by_clicking_its_header(browser, built):
    open_page(browser, built / f"run-{TWO[1]}.html")
    values_js = (
        "return Array.from(arguments[0].tBodies[0].rows)"
        ".map(r => JSON.parse(r.cells[arguments[1]].dataset.value));"
    )
    tables = browser.find_elements("css selector", "table.rows")
    column = [h for h, _ in site.columns()].index("first call")
    table = next(t for t in tables if (v := browser.execute_script(values_js, t, column)) != sorted(v))
    header = table.find_elements("css selector", "th")[column]
    header.click()
    ascending = browser.execute_script(values_js, table, column)
    assert ascending == sorted(ascending) and "asc" in header.get_attribute("class")
    header.click()
    assert browser.execute_script(values_js, table, column) == sorted(ascending, reverse=True)


def test_browser_filters_rows_by_backend(capsys, browser, built):
    open_page(browser, built / f"run-{TWO[1]}.html")
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("css selector", "select[data-filter=backend]")).select_by_visible_text(
        "torch"
    )
    visible = browser.execute_script(
        "return Array.from(document.querySelectorAll('tr[data-row]')).filter(r => !r.hidden)"
        ".map(r => JSON.parse(r.dataset.row)[1]);"
    )
    expected = [r for r in compare_json(capsys, TWO[1]) if r["backend"] == "torch"]
    assert visible == ["torch"] * len(expected) and expected


FIGURES_JS = """
return Array.from(document.querySelectorAll('figure.figure')).map(f => {
  const plot = f.querySelector('.js-plotly-plot');
  const box = plot ? plot.getBoundingClientRect() : {width: 0, height: 0};
  return {points: plot ? plot.data.reduce((n, t) => n + (t.y ? t.y.length : 0), 0) : 0,
          marks: f.querySelectorAll('.point, .bars path, .scatterlayer path.js-line').length,
          width: box.width, height: box.height,
          title: plot && plot.layout.title ? plot.layout.title.text : ''};
});
"""


@pytest.mark.parametrize(
    ("page", "kinds"),
    [
        (f"run-{TWO[0]}.html", ("derivative order", "N x D")),
        (f"run-{TWO[1]}.html", ("x value",)),
        ("history.html", ("across runs",)),
    ],
)
def test_browser_draws_each_figure(browser, built, page, kinds):
    open_page(browser, built / page)
    drawn = browser.execute_script(FIGURES_JS)
    assert drawn, "no figure on the page"
    for figure in drawn:
        assert figure["points"] > 0 and figure["marks"] > 0, figure
        assert figure["width"] > 100 and figure["height"] > 100, figure
    for kind in kinds:
        assert any(kind in f["title"] for f in drawn), (kind, [f["title"] for f in drawn])


def test_browser_opens_every_page_without_errors_and_screenshots_the_index(browser, built, tmp_path):
    for page in sorted(built.glob("*.html")):
        open_page(browser, page)
    open_page(browser, built / "index.html")
    links = browser.execute_script("return Array.from(document.links).map(a => a.getAttribute('href'));")
    assert all((built / link).exists() for link in links), links
    shot = tmp_path / "index.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_browser_opens_a_history_points_run_on_click(browser, built):
    open_page(browser, built / "history.html")
    page = browser.execute_script(
        "const plot = document.querySelector(\"[data-figure^='history'] .js-plotly-plot\");"
        "const trace = plot.data[0];"
        "plot.emit('plotly_click', {points: [{customdata: trace.customdata[0]}]});"
        "return trace.customdata[0][1];"
    )
    from selenium.webdriver.support.ui import WebDriverWait

    assert page.startswith("run-")
    WebDriverWait(browser, 10).until(lambda b: b.current_url == (built / page).as_uri())
