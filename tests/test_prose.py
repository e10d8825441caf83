"""Every number in the prose is computed on its page, or cited.

For every markdown cell of every chapter page, each number of three or more
significant digits, each percentage and each "N times" ratio must appear in
(or be rounded from) a number in a code cell or an output of the same
notebook, or be one of the cited external figures listed in
``references.md`` (the book's page of sources). Code (fenced or inline),
link targets and years are not prose numbers. A failure names the page, the
cell and the number that could not be traced.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "chapters").rglob("*.ipynb"))
SCALE = {"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "million": 1e6, "billion": 1e9}
PROSE_NUMBER = re.compile(
    r"(?<![\w.$\\/-])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"   # 5,977,530 or 0.818
    r"(?:\s?([kKMG]|million|billion)(?![a-zA-Z]))?"          # 13.39M, 3.17 G
    r"(\s?%|\s+times\b|x(?![\w]))?")                          # 11%, 2.4 times, 2.4x
CODE_NUMBER = re.compile(r"(?<![\w])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def prose(markdown):
    """The markdown without code, link targets, HTML tags and directive options."""
    text = re.sub(r"```.*?```", " ", markdown, flags=re.S)
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


def untraced(nb, pool):
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "markdown":
            continue
        text = prose("".join(cell["source"]))
        for match in PROSE_NUMBER.finditer(text):
            raw, suffix, tail = match.group(1), match.group(2), (match.group(3) or "").strip()
            kind = "%" if tail == "%" else ("ratio" if tail else "")
            plain = raw.replace(",", "")
            if not kind and significant_digits(raw) < 3:
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
                                "0.913 in 2015"]}]}
    assert list(untraced(nb, computed(nb))) == [(1, "2.4 times"), (1, "0.913")]
