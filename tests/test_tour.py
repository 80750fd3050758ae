"""docs/autograd.md runs: every ```python block executes, in order, in one namespace, and prints
exactly the ```text block that follows it (nothing, when none follows); its links into
minires/ops/ point at the lines of the functions they name.

    python tests/test_tour.py      rewrites the doc's ```text blocks with what the code prints now
"""
import contextlib
import io
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "docs" / "autograd.md"
BLOCK = re.compile(r"```python\n(.*?)```\n(?:\n```text\n(.*?)```\n)?", re.S)
QUOTE = re.compile(r"```\n(def .*?)```\n", re.S)           # source quoted in a plain fence
OPS_LINK = re.compile(r"\[`(\w+)`\]\(\.\./(minires/ops/\w+\.py)#L(\d+)-L(\d+)\)")


def run_blocks(text, workdir):
    """[(match, printed output)] for every python block of ``text``, run in ``workdir``."""
    namespace, results = {"__name__": "tour"}, []
    previous = os.getcwd()
    os.chdir(workdir)
    try:
        for m in BLOCK.finditer(text):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(m.group(1), f"{TOUR.name} block at offset {m.start()}", "exec"), namespace)
            results.append((m, out.getvalue()))
    finally:
        os.chdir(previous)
    return results


def _clean(text):
    return "\n".join(line.rstrip() for line in (text or "").splitlines())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_every_block_prints_what_the_tour_shows(tmp_path):
    text = TOUR.read_text()
    results = run_blocks(text, tmp_path)
    assert len(results) >= 15, "the tour lost its code blocks"
    for m, printed in results:
        line = text[:m.start()].count("\n") + 1
        assert _clean(printed) == _clean(m.group(2)), (
            f"docs/autograd.md line {line}: the block printed something else than the text "
            f"block shows; run `python tests/test_tour.py` to update it")
    assert (tmp_path / "basic_block.dot").read_text().startswith("digraph minires {")


def test_links_into_ops_point_at_the_functions_they_name():
    text = TOUR.read_text()
    sources = "\n".join(p.read_text() for p in (ROOT / "minires" / "ops").glob("*.py"))
    quotes = QUOTE.findall(text)
    assert quotes and all(q in sources for q in quotes), \
        "docs/autograd.md quotes code that is no longer in minires/ops/: copy the current version"
    links = OPS_LINK.findall(text)
    assert len(links) >= 5
    for name, path, first, last in links:
        lines = (ROOT / path).read_text().splitlines()
        first, last = int(first), int(last)
        assert lines[first - 1].startswith(f"def {name}("), \
            f"docs/autograd.md: the link to `{name}` ({path}#L{first}) no longer starts at its def"
        ends = last == len(lines) or not lines[last].strip() or not lines[last].startswith(" ")
        assert ends and lines[last - 1].startswith(" "), \
            f"docs/autograd.md: the link to `{name}` ({path}#L{first}-L{last}) does not end where it does"


if __name__ == "__main__":
    import tempfile
    text = TOUR.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_blocks(text, tmp)
    pieces, at = [], 0
    for m, printed in results:
        shown = f"```python\n{m.group(1)}```\n" + (f"\n```text\n{printed}```\n" if printed else "")
        pieces += [text[at:m.start()], shown]
        at = m.end()
    TOUR.write_text("".join(pieces) + text[at:])
    print(f"updated {len(results)} blocks of {TOUR}")
