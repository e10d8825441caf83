"""What a reader meets on each page, in figures (the reader's-pass budgets).

    python tools/page_stats.py            # a table of every page
    python tools/page_stats.py --wide     # and every line over 75 characters

For each notebook under chapters/: visible code lines (cells not hidden
with ``hide-cell``/``remove-cell``/``remove-input``), words of prose
(markdown as the page shows it: notes and open admonitions count, code blocks,
collapsed dropdowns and directives' options do not), lines wider than the
content column (75 characters: text outputs, and code that a reader sees or
can open: code cells, collapsed ones too, and the markdown's code blocks,
dropdowns included), and how often the most repeated run-scale, device or
precision notice is printed. Exits 1 when a page is over a budget, so it can
guard the figures once they are met. (tests/test_book.py measures the
rendered pages, where a tab or a note is a few pixels narrower.)
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 75
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes: the book shows colours, not them
HIDDEN = {"hide-cell", "remove-cell", "remove-input", "hide-input", "colab-setup"}
#: The lines d2l_lite prints about scale, device and precision (runtime, training).
NOTICE = re.compile(r"small-scale mode|no GPU: a reduced run|full run: 60,000|"
                    r": no GPU found, running on the CPU|: using the GPU \(|"
                    r"float32 instead of bfloat16|tf.function graph in float32")
#: Budgets from the reader's-pass issue: visible code lines and words of prose.
CODE_BUDGET = {"parallel": 150, "variants/index": 200}  # parallel: framework pages
WORDS_BUDGET = 1600  # every framework page


def text_of(source) -> str:
    return "".join(source) if isinstance(source, list) else source


#: A fence opens with ``` or ~~~ (three or more) and closes only with the same run.
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})([^\n]*)\n(.*?)^[ \t]*\1[ \t]*$", re.S | re.M)


def unfence(markdown: str, keep, pad: str = "") -> str:
    """The markdown with each fenced block replaced by a space, or, where
    ``keep(name, body)`` says its body is prose, by that body (its own fences
    replaced alike) with ``pad`` on either side. ``name`` is the opening line
    after the fence characters, stripped (``{note}``, ``python``, ``""``).
    The one walk of fences for this table and tests/test_prose.py."""
    def replace(match):
        if not keep(match[2].strip(), match[3]):
            return " "
        return pad + FENCE.sub(replace, match[3]) + pad
    return FENCE.sub(replace, markdown)


def _visible(name: str, body: str) -> bool:
    """Whether the page shows a fenced block's prose: a directive's body (a note, an
    open admonition) is read; code and collapsed dropdowns are not."""
    collapsed = name == "{dropdown}" or re.search(r"^:class:.*\bdropdown\b", body, re.M)
    return name.startswith("{") and not collapsed


def prose_words(markdown: str) -> int:
    markdown = re.sub(r"<!--.*?-->", " ", unfence(markdown, _visible), flags=re.S)
    markdown = re.sub(r"^:\w[\w-]*:.*$", " ", markdown, flags=re.M)  # options
    return len(re.findall(r"[A-Za-z0-9][\w'.,-]*", markdown))


def code_block_lines(markdown: str) -> list:
    """The lines of the markdown's fenced code blocks, at any depth of directives."""
    lines = []

    def keep(name, body):
        if not name.startswith("{"):
            lines.extend(body.splitlines())
            return False
        return True  # a directive: walk its body for code blocks
    unfence(markdown, keep)
    return lines


def output_lines(cell) -> list:
    """The cell's text output as the book shows it (``remove-stderr``: no stderr)."""
    lines = []
    no_stderr = "remove-stderr" in cell.get("metadata", {}).get("tags", [])
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and not (no_stderr and out.get("name") == "stderr"):
            lines += text_of(out.get("text", "")).splitlines()
        elif "text/plain" in out.get("data", {}) and "image/png" not in out["data"] \
                and "text/html" not in out["data"]:
            lines += text_of(out["data"]["text/plain"]).splitlines()
    return lines


def stats(path: Path) -> dict:
    nb = json.loads(path.read_text())
    code = words = 0
    wide, notices = [], Counter()
    for cell in nb["cells"]:
        source = text_of(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            words += prose_words(source)
            wide += [line for line in code_block_lines(source) if len(line) > WIDTH]
            continue
        if cell["cell_type"] != "code":
            continue
        tags = set(cell.get("metadata", {}).get("tags", []))
        lines = [ANSI.sub("", line) for line in output_lines(cell)]  # as rendered
        notices.update(line.strip() for line in lines if NOTICE.search(line))
        if not tags & {"remove-cell", "remove-input"}:  # collapsed code can be opened
            lines += source.splitlines()
        if not tags & HIDDEN:
            code += len([line for line in source.splitlines() if line.strip()])
        wide += [line for line in lines if len(line) > WIDTH]
    # the same notice again (each run of a loop, each cell) says nothing new
    return {"code": code, "words": words, "wide": wide,
            "notices": max(notices.values(), default=0)}


def over_budget(page: str, s: dict) -> list:
    chapter, name = page.split("/")
    framework_page = name != "index"
    code = CODE_BUDGET.get(page, CODE_BUDGET.get(chapter) if framework_page else None)
    problems = [f"{s['code']} code lines > {code}"] if code and s["code"] > code else []
    if framework_page and s["words"] > WORDS_BUDGET:
        problems.append(f"{s['words']} words > {WORDS_BUDGET}")
    if s["wide"]:
        problems.append(f"{len(s['wide'])} lines > {WIDTH} characters")
    if s["notices"] > 1:
        problems.append(f"a notice {s['notices']} times")
    return problems


def main(argv) -> int:
    if set(argv) - {"--wide"}:  # --help too: the usage is this module's docstring
        print(__doc__)
        return 2
    pages = sorted((ROOT / "chapters").rglob("*.ipynb"))
    print(f"{'page':24} {'code':>5} {'words':>6} {'wide':>5} {'notice':>6}  over budget")
    failed = 0
    for path in pages:
        page = str(path.relative_to(ROOT / "chapters").with_suffix(""))
        s = stats(path)
        problems = over_budget(page, s)
        failed += bool(problems)
        print(f"{page:24} {s['code']:5} {s['words']:6} {len(s['wide']):5} "
              f"{s['notices']:6}  {'; '.join(problems)}")
        if "--wide" in argv:
            for line in s["wide"]:
                print(f"    {len(line):3} | {line}")
    total = sum(len(stats(p)["wide"]) for p in pages)
    print(f"{failed} of {len(pages)} pages over a budget; {total} lines over {WIDTH}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
