"""`seqlab viz`: the self-contained HTML page, checked as data and in headless Chromium.

The browser tests need Debian's `chromium` (the test set-up installs it). Without it they fail
with the command that installs it, unless SEQLAB_SKIP_BROWSER=1 says to skip them."""
from __future__ import annotations

import base64
import json
import math
import re

import numpy as np
import pytest
import torch


CORPUS = ('the "king" said (to [the] queen) {now}\n'
          "and 'she' said: \"no (never)\" // a comment\n"
          "night /* dark */ falls; crown [of (gold)]\n")
RED, BLUE = (178, 24, 43), (33, 102, 172)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A tiny 2 x 16 char LSTM trained for a few updates, and its page on a text that also
    holds characters HTML and JSON treat specially."""
    from seqlab.cli import main
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("viz")
    corpus = folder / "corpus.txt"
    corpus.write_text(CORPUS * 40, encoding="utf-8")
    run = folder / "run"
    assert main(["train", f"data.path={corpus}", "model.embedding_size=8", "model.hidden_size=16",
                 "model.num_layers=2", "train.batch_size=4", "train.bptt_steps=20", "train.max_steps=4",
                 "train.eval_every=4", "train.progress=false", "--out", str(run)]) == 0
    text = folder / "text.txt"
    text.write_text(CORPUS * 3 + "</script><b>x & y</b> \\u2028 ünï\n", encoding="utf-8")
    html, png = folder / "page.html", folder / "cell.png"
    assert main(["viz", str(run), "--text", str(text), "--out", str(html), "--cell", "2:3", "--png", str(png)]) == 0
    assert png.stat().st_size > 5000
    return {"html": html, "text": text.read_text(encoding="utf-8"), "data": embedded(html)}


def embedded(html) -> dict:
    source = html.read_text(encoding="utf-8")
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', source, re.S)
    return json.loads(match.group(1))


def expected_colours(data: dict, layer: int, unit: int) -> list[tuple[int, int, int]]:
    """The page's blue-white-red scale, recomputed here from the embedded int8 activations."""
    raw = np.frombuffer(base64.b64decode(data["acts"]), dtype=np.int8).reshape(-1, len(data["text"]))
    colours = []
    for q in raw[layer * data["hidden"] + unit]:
        v = q / 127
        target, amount = (RED, v) if v >= 0 else (BLUE, -v)
        colours.append(tuple(math.floor(255 + (c - 255) * amount + 0.5) for c in target))
    return colours


def test_the_page_is_self_contained_and_holds_the_reading(page):
    source = page["html"].read_text(encoding="utf-8")
    assert "/*DATA*/" not in source
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", source)     # nothing fetched
    assert "@import" not in source and "url(" not in source
    data = page["data"]
    assert data["text"] == page["text"]                       # "</script>" and "\u2028" survived
    assert source.count("</script>") == 2                     # the data block's and the script's own
    assert (data["layers"], data["hidden"], data["initial"]) == (2, 16, {"layer": 1, "unit": 3})
    n = len(page["text"])
    assert len(base64.b64decode(data["acts"])) == n * 32 and len(data["loss"]) == n
    assert data["loss"][0] is None and all(v > 0 for v in data["loss"][1:])
    assert data["top"][0] == [] and all(len(row) == 5 for row in data["top"][1:])
    assert set(data["best"]) == set(data["feature_names"]) and data["best"]["comment"]


def test_page_data_quantises_the_activations_it_was_given():
    from seqlab.analysis.cells import Reading
    from seqlab.analysis.viz import page_data
    rng = np.random.default_rng(0)
    text = "ab (c)\n" * 10
    acts = np.tanh(rng.normal(size=(len(text), 2, 3))).astype(np.float32)
    column = np.tile([1, 2, 3, 4, 5, 6, 0], 10)                            # position in the line
    acts[:, 1, 2] = column / 7 + 0.05 * rng.normal(size=len(text))       # a line-position cell
    loss = rng.uniform(0, 3, len(text)).astype(np.float32)
    loss[0] = np.nan
    reading = Reading(text, acts, loss, np.zeros((len(text), 2), int), np.full((len(text), 2), 0.5), "tanh(c)")
    data = page_data(reading, ["a", "b"], "run", "text")
    raw = np.frombuffer(base64.b64decode(data["acts"]), dtype=np.int8).reshape(6, len(text))
    np.testing.assert_allclose(raw / 127, acts.reshape(len(text), 6).T, atol=0.5 / 127 + 1e-7)
    assert data["initial"] == {"layer": 1, "unit": 2}          # the cell that tracks a feature best
    assert data["best"]["line_position"][0]["cell"] == 5 and data["best"]["line_position"][0]["r"] > 0.9
    assert data["loss"][0] is None and data["loss"][1] == round(float(loss[1]), 3)


def span_colours(browser, count: int) -> list[tuple[int, ...]]:
    values = browser.evaluate(f"Array.from(document.querySelectorAll('#text span.c')).slice(0, {count})"
                              ".map((s) => getComputedStyle(s).backgroundColor)")
    return [tuple(int(x) for x in re.findall(r"\d+", v)) for v in values]


def test_the_harness_reports_console_errors_and_exceptions(browser, tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text("<script>console.error('planted'); undefinedFunction();</script>", encoding="utf-8")
    browser.open(broken)
    errors = browser.errors()
    assert any("planted" in e for e in errors) and any("undefinedFunction" in e for e in errors)


def test_the_page_in_chromium_picks_cells_colours_loss_and_hovers(browser, page):
    data, text = page["data"], page["text"]
    browser.open(page["html"])
    assert browser.errors() == []
    # 1. every character is a span, in order; newlines drawn as a return arrow
    shown = browser.evaluate("Array.from(document.querySelectorAll('#text span.c')).map((s) => s.textContent).join('')")
    assert shown == text.replace("\n", "\u21b5")
    # 2. the cell chosen with --cell 2:3, in the page's own colours
    n = len(text)
    first = span_colours(browser, n)
    assert first == expected_colours(data, 1, 3)
    # 3. pick layer 1, unit 5 through the picker's own controls
    browser.evaluate("""(() => {
        const layer = document.getElementById('layer'), unit = document.getElementById('unit');
        layer.value = '0'; layer.dispatchEvent(new Event('change'));
        unit.value = '5'; unit.dispatchEvent(new Event('change'));
    })()""")
    second = span_colours(browser, n)
    assert second != first and second == expected_colours(data, 0, 5)
    assert browser.evaluate("document.getElementById('status').textContent").startswith("cell 1:5, ")
    # 4. a cell from the list of the best bracket-depth cells, by clicking it
    best = data["best"]["bracket_depth"][0]
    browser.evaluate("document.querySelector('button.pick[data-feature=bracket_depth]').click()")
    assert span_colours(browser, n) == expected_colours(data, best["layer"], best["unit"])
    # 5. loss mode: white to red over [0, loss_scale] nats, the first character grey
    browser.evaluate("document.querySelector('input[value=loss]').click()")
    losses = span_colours(browser, 50)
    assert losses[0] == (225, 225, 225)
    for colour, loss in zip(losses[1:], data["loss"][1:50]):
        amount = min(1.0, loss / data["loss_scale"])
        assert colour == tuple(math.floor(255 + (c - 255) * amount + 0.5) for c in RED)
    # 6. hovering a character shows its loss and the top predictions, likeliest first
    t = 7
    box = browser.evaluate(f"(() => {{ const r = document.querySelectorAll('#text span.c')[{t}]"
                           ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    browser.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": box[0], "y": box[1]})
    tip = browser.evaluate("(() => { const tip = document.getElementById('tip'); return [getComputedStyle(tip).display,"
                           " tip.textContent]; })()")
    assert tip[0] == "block"
    assert f"loss {data['loss'][t]:.3f} nats" in tip[1]
    guesses = [f"{100 * p:.1f}%" for _, p in data["top"][t]]
    positions = [tip[1].index(g) for g in guesses]
    assert positions == sorted(positions)
    # 7. the canvas export draws something
    url = browser.evaluate("exportCanvas().toDataURL('image/png')")
    assert url.startswith("data:image/png;base64,") and len(url) > 5000
    assert browser.errors() == []
