"""Every number in the prose is computed on its page, or cited.

For every markdown cell of every chapter page, and every figure's caption and
alt text, each number of three or more significant digits, each percentage
and each "N times" ratio must appear in
(or be rounded from) a number in a code cell or an output of the same
notebook, or be one of the cited external figures listed in
``references.md`` (the book's page of sources). Code (fenced or inline),
link targets and years are not prose numbers. A failure names the page, the
cell and the number that could not be traced.
"""

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from page_stats import unfence  # noqa: E402  (the fences, walked as the page table does)
NOTEBOOKS = sorted((ROOT / "chapters").rglob("*.ipynb"))
SCALE = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "million": 1e6, "billion": 1e9}
PROSE_NUMBER = re.compile(
    r"(?<![\w.$\\/-])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"   # 5,977,530 or 0.818
    r"(?:\s?([kKMG]|million|billion)(?![a-zA-Z]))?"          # 13.39M, 3.17 G
    r"(\s?%|\s+times\b|x(?![\w]))?")                          # 11%, 2.4 times, 2.4x
CODE_NUMBER = re.compile(r"(?<![\w])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def _is_prose(name, body):
    """A fenced block as prose: a directive's body (a note, a dropdown) is prose, a
    block of code or of math is not."""
    return name.startswith("{") and name not in ("{math}", "{code-cell}")


def prose(markdown):
    """The markdown without code, link targets, HTML tags and directive options."""
    text = unfence(markdown, _is_prose, pad=" ")
    text = re.sub(r"^[ \t]*:\w[\w-]*:.*$", " ", text, flags=re.M)  # directive options
    text = re.sub(r"`[^`\n]*`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return re.sub(r"<[^>]+>", " ", text)


def numbers(text):
    out = {float(m.group(1).replace(",", "")) for m in CODE_NUMBER.finditer(text)}
    out |= {float(m.group(0).replace("_", ""))  # Python literals: 5_977_530
            for m in re.finditer(r"\d+(?:_\d{3})+", text)}
    return out


def computed(nb):
    """Every number in the notebook's code and outputs."""
    found = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        found |= numbers("".join(cell["source"]))
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items()
                                             if k.startswith("text/")]
            for text in texts:
                found |= numbers("".join(text) if isinstance(text, list) else text)
    return found


def cited():
    """The figures in the first column of references.md's table of cited figures."""
    table = (ROOT / "references.md").read_text()
    return {float(m.group(1).replace(",", ""))
            for m in re.finditer(r"^\|\s*([\d,.]+)\s*\|", table, re.M)}


def significant_digits(raw):
    digits = raw.replace(",", "")
    if "." in digits:
        return len(digits.replace(".", "").lstrip("0"))
    return len(digits.strip("0")) and len(digits.rstrip("0"))


def traced(raw, suffix, kind, pool):
    value = float(raw.replace(",", ""))
    decimals = len(raw.split(".")[1]) if "." in raw else 0
    scale = SCALE[suffix or ""]
    for x in pool:
        if kind == "%" and (round(x, decimals) == value or round(100 * x, decimals) == value):
            return True
        if kind != "%" and round(x / scale, decimals) == value:
            return True
    return False


def shown_text(cell):
    """What a reader reads in a cell: a markdown cell's text, or a code cell's
    figure caption and alt text (MyST-NB's ``mystnb`` metadata)."""
    if cell["cell_type"] == "markdown":
        return "".join(cell["source"])
    figure = cell.get("metadata", {}).get("mystnb", {})
    return " ".join(filter(None, [figure.get("figure", {}).get("caption"),
                                  figure.get("image", {}).get("alt")]))


def untraced(nb, pool, every_decimal=False):
    """(cell, number) for each number of the prose that ``pool`` does not hold; with
    ``every_decimal``, decimals of one or two significant digits (0.07) count too."""
    for index, cell in enumerate(nb["cells"]):
        text = prose(shown_text(cell))
        for match in PROSE_NUMBER.finditer(text):
            raw, suffix, tail = match.group(1), match.group(2), (match.group(3) or "").strip()
            kind = "%" if tail == "%" else ("ratio" if tail else "")
            plain = raw.replace(",", "")
            if not kind and significant_digits(raw) < 3 and not (
                    every_decimal and "." in plain):
                continue
            if not kind and "." not in plain and 1900 <= int(plain) <= 2099:
                continue  # a year
            if not traced(raw, suffix, kind, pool):
                yield index, " ".join(match.group(0).split())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_number_in_the_prose_is_computed_or_cited(path):
    nb = json.loads(path.read_text())
    missing = list(untraced(nb, computed(nb) | cited()))
    assert not missing, (f"{path.relative_to(ROOT)}: numbers in the prose that no cell "
                         f"computes and references.md does not cite: "
                         + "; ".join(f"cell {i}: {n!r}" for i, n in missing))


def test_the_check_catches_an_untraced_number():
    nb = {"cells": [{"cell_type": "code", "source": ["x = 5_977_530 / 3"],
                     "outputs": [{"output_type": "stream", "text": ["0.8184 97.94%"]}]},
                    {"cell_type": "markdown",
                     "source": ["5,977,530 parameters, 5.98M of them; accuracy 0.818, "
                                "98% of it, `123,456` is code; 2.4 times faster and "
                                "0.913 in 2015"]},
                    {"cell_type": "code", "source": [], "outputs": [], "metadata": {
                        "mystnb": {"figure": {"caption": "accuracy 0.818"},
                                   "image": {"alt": "rising to 0.931"}}}}]}
    assert list(untraced(nb, computed(nb))) == [(1, "2.4 times"), (1, "0.913"),
                                                (2, "0.931")]


# Measured figures typed into the prose ---------------------------------------------
#
# A number that only an output marked ``nbval-ignore-output`` (an accuracy, a time)
# gives is a measured figure: typed into the markdown, it is true of one run and
# silently false after the next. The prose points to the printed line instead.
# Constants are not measured: a number that d2l_lite's source holds (a learning
# rate, a threshold) is one, and so are the two derived ones below.

DERIVED = {2.303: "ln 10, the loss of guessing among ten classes",
           91.0: "label smoothing 0.1: the true class gets 0.9 + 0.1 / 10"}


def library_numbers():
    return set().union(*(numbers(path.read_text())
                         for path in (ROOT / "d2l_lite").rglob("*.py")))


def measured_in_prose(nb, constants):
    """(cell, number) for each prose number that only volatile outputs give."""
    steady = {"cells": [dict(cell, outputs=[]) if "nbval-ignore-output" in
                        cell.get("metadata", {}).get("tags", []) else cell
                        for cell in nb["cells"]]}
    pool = constants | cited() | set(DERIVED)
    volatile = set(untraced(nb, computed(steady) | pool, every_decimal=True))
    return sorted(volatile - set(untraced(nb, computed(nb) | pool, every_decimal=True)))


def test_no_measured_figure_is_typed_into_the_prose():
    constants = library_numbers()
    typed = [f"{path.relative_to(ROOT)}: cell {i}: {n!r}" for path in NOTEBOOKS
             for i, n in measured_in_prose(json.loads(path.read_text()), constants)]
    assert not typed, ("figures of one run typed into the prose (point to the cell that "
                       "prints them instead):\n" + "\n".join(typed))


def test_the_measured_figure_check_tells_a_run_from_a_constant():
    run = {"cell_type": "code", "source": [], "metadata": {"tags": ["nbval-ignore-output"]},
           "outputs": [{"output_type": "stream", "text": ["spread 0.018, lr 0.002"]}]}
    nb = {"cells": [run, {"cell_type": "markdown", "source": [
        "A spread of 0.018 at a rate of 0.002, near 2.303."]}]}
    assert measured_in_prose(nb, {0.002}) == [(1, "0.018")]


# Claims without digits ------------------------------------------------------------
#
# A sentence of proportion, ranking or comparison ("two thirds", "the largest", "the widest",
# "faster", "every framework ...") carries a number without digits. It is backed by
# an HTML comment in its paragraph, which the book does not show:
#   <!-- checked: TEXT -->  TEXT is part of an `assert` in a code cell of the page;
#   <!-- cited: TEXT -->    TEXT is in references.md;
#   <!-- each-page: TEXT -->  each framework page of the chapter (pytorch, tensorflow,
#                           jax, mxnet) has an assert with TEXT (nbval runs them);
#   <!-- tested: tests/FILE.py::NAME -->  a test of the suite asserts it.
# Claims that no one has backed yet are listed in tests/prose_claims.txt: the list
# may only shrink (a claim it names must still be there, unbacked).

CLAIM = re.compile(
    r"\b(?:half|halves|two thirds|a third|a quarter|four fifths|most of|the bulk|"
    r"majority|largest|smallest|biggest|cheaper|costlier|more expensive|faster|"
    r"slower|fewer|twice|almost all|nearly all|every framework|all four|"
    r"each framework|fewest|highest|lowest|widest|narrowest|cheapest|costliest|"
    r"fastest|slowest|best|worst|longest|shortest)\b"
    r"|\b(?:smaller|larger|bigger|greater)(?:\s+[\w'$-]+){0,3}?\s+than\b"  # larger than
    r"|\b(?:more|fewer)(?:\s+[\w'$-]+){1,3}?\s+than\b"  # more steps than, not "more than 3"
    r"|\b(?:longer|shorter)(?:\s+[\w'$-]+){0,3}?\s+than\b"  # took longer eagerly than
    r"|\b(?:takes?|took|taking)\s+(?:far\s+|much\s+)?longer\b"  # a timing, in other words
    r"|\borders? of magnitude\b", re.I)
BACKING = re.compile(r"<!--\s*(checked|each-page|cited|tested):\s*(.*?)\s*-->", re.S)
FRAMEWORKS = ("pytorch", "tensorflow", "jax", "mxnet")
PENDING = ROOT / "tests" / "prose_claims.txt"


def claims(nb):
    """(cell, sentence, backings of its paragraph) for every claim sentence."""
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        for paragraph in re.split(r"\n\s*\n", "".join(cell["source"])):
            backings = BACKING.findall(paragraph)
            text = " ".join(prose(BACKING.sub(" ", paragraph)).split())
            for sentence in re.split(r"(?<=[.!?:])\s+(?=[A-Z*(])", text):
                if CLAIM.search(sentence) and not sentence.endswith("?"):  # a question
                    yield index, sentence, backings


def asserts_of(nb):
    """Every assert statement in the notebook's code, whitespace runs as one space."""
    found = []
    for cell in nb["cells"]:
        code = "".join(cell["source"]) if cell["cell_type"] == "code" else ""
        try:
            tree = ast.parse(code)
        except SyntaxError:  # an IPython magic: no assert of ours there
            continue
        found += [" ".join(ast.get_source_segment(code, node).split())
                  for node in ast.walk(tree) if isinstance(node, ast.Assert)]
    return found


def backed(nb, backings, sources, chapter=None):
    """True when every backing holds, and there is at least one."""
    def holds(kind, text):
        text = " ".join(text.split())
        if kind == "checked":
            return any(text in statement for statement in asserts_of(nb))
        if kind == "each-page":
            return chapter is not None and all(
                any(text in statement for statement in asserts_of(
                    json.loads((chapter / f"{fw}.ipynb").read_text())))
                for fw in FRAMEWORKS)
        if kind == "cited":
            return text in sources
        path, _, name = text.partition("::")
        return (ROOT / path).is_file() and f"def {name}(" in (ROOT / path).read_text()
    return bool(backings) and all(holds(kind, text) for kind, text in backings)


def unbacked():
    """``path :: sentence`` for every claim of the book that nothing backs."""
    sources = (ROOT / "references.md").read_text()
    for path in NOTEBOOKS:
        nb = json.loads(path.read_text())
        for _, sentence, backings in claims(nb):
            if not backed(nb, backings, sources, path.parent):
                yield f"{path.relative_to(ROOT)} :: {sentence[:90]}"


def test_every_claim_without_digits_is_checked_cited_or_pending():
    pending = {line for line in PENDING.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    found = set(unbacked())
    new, gone = sorted(found - pending), sorted(pending - found)
    assert not new, ("claims that no assert on the page and no source backs (add "
                     "<!-- checked: ... --> or <!-- cited: ... --> to the paragraph, "
                     "or rewrite them):\n" + "\n".join(new))
    assert not gone, ("tests/prose_claims.txt lists claims that are now backed or "
                      "gone: take them off the list:\n" + "\n".join(gone))


def test_the_claim_check_tells_backed_from_unbacked():
    nb = {"cells": [{"cell_type": "code", "source": ["assert share > 0.75\n"]},
                    {"cell_type": "markdown", "source": [
                        "It holds four fifths of them.\n<!-- checked: share > 0.75 -->"
                        "\n\nIt is faster. <!-- checked: share > 0.9 -->\n\n"
                        "Most of the blocks are wide, the paper says. <!-- cited: Szegedy -->"
                        "\n\nEvery framework page is faster. <!-- tested: "
                        "tests/test_prose.py::test_the_claim_check_tells_backed_from_unbacked"
                        " -->\n\nThe slower one. <!-- tested: tests/test_prose.py::nothing -->"
                        "\n\nTracing takes far longer. A step is shorter here than there."
                        ]}]}
    found = [(s, backed(nb, b, "Szegedy et al.")) for _, s, b in claims(nb)]
    assert found == [("It holds four fifths of them.", True), ("It is faster.", False),
                     ("Most of the blocks are wide, the paper says.", True),
                     ("Every framework page is faster.", True), ("The slower one.", False),
                     ("Tracing takes far longer.", False),
                     ("A step is shorter here than there.", False)]


def h200_benchmark(run: str, column: str) -> str:
    """A cell of the committed H200 benchmark table: ``run`` is "name | recipe"
    (its first two columns), ``column`` a header."""
    lines = (ROOT / "bench" / "results" / "2026-12-04-nvidia-h200.md").read_text().splitlines()
    cells = [[cell.strip() for cell in line.split("|")] for line in lines
             if line.startswith("|")]
    header = cells[0]
    row = next(row for row in cells if row[1:3] == run.split(" | "))
    return row[header.index(column)]


def test_the_cited_accuracy_of_d2ls_code_is_the_benchmarks():
    """The training pages compare with d2l's own code at its recipe: the figure
    they cite is the committed H200 benchmark's final accuracy for it."""
    figure = h200_benchmark("d2l (PyTorch) | d2l", "final acc")
    assert f"| {figure} |" in (ROOT / "references.md").read_text()
    for page in ("index", "pytorch", "tensorflow", "jax", "mxnet"):
        text = (ROOT / "chapters" / "training" / f"{page}.ipynb").read_text()
        assert f"reach {figure} test accuracy" in text or \
            f"reaches {figure} test accuracy" in text, page


@pytest.mark.parametrize("run, figure", [("PyTorch | classic", "14,743.7"),
                                         ("d2l (PyTorch) | d2l", "4,830.8")])
def test_the_cited_h200_steps_are_the_benchmarks_figures(run, figure):
    """The parallel chapter's cost model starts from the book's own step on one H200
    (and its exercise from d2l's, in the same run), cited in references.md from the
    committed benchmark table: they must agree."""
    assert h200_benchmark(run, "images/s") == figure
    assert f"| {figure} |" in (ROOT / "references.md").read_text()
    page = (ROOT / "chapters" / "parallel" / "index.ipynb").read_text()
    assert figure.replace(",", "_") in page


@pytest.mark.parametrize("framework", ["pytorch", "jax"])
def test_the_variants_figures_alt_text_names_the_committed_runs_leader(framework):
    """The comparison figure's alt text describes the committed run ("the batch
    norm line lies highest"): it must name the run whose final accuracy the
    committed table puts first, so that a re-run that changes the order fails
    here until the text is changed too."""
    nb = json.loads((ROOT / "chapters" / "variants" / f"{framework}.ipynb").read_text())
    table = next("".join(out.get("text", "")) for cell in nb["cells"]
                 if "comparison_table(" in "".join(cell["source"])
                 for out in cell.get("outputs", []) if out.get("text"))
    rows = [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()[2:]
            if line.strip()]
    leader = max(rows, key=lambda row: float(row[2]))[0]
    alts = [cell["metadata"]["mystnb"]["image"]["alt"] for cell in nb["cells"]
            if "lies highest" in cell.get("metadata", {}).get("mystnb", {})
            .get("image", {}).get("alt", "")]
    assert alts and all(f"the {leader} line lies highest" in alt for alt in alts), \
        (leader, alts)
