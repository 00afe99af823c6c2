"""Simple per-character features of a text, to look for the recurrent cells that track them.

Karpathy, Johnson & Fei-Fei (2016), "Visualizing and Understanding Recurrent Networks", §4.1,
found LSTM cells that switch on inside quotes, count the position in a line, or follow the
depth of nested brackets. Each feature here is one number per character, read *after* that
character, like the cell state it is compared with: an opening quote is already inside the
quote, the closing one is outside again.

One left-to-right scan, a small lexer with four states (text, double-quoted, single-quoted,
comment), so that the features agree with one another: a quote inside a comment opens no
string and `//` inside a string starts no comment.

- `double_quote`: inside "...". A backslash escapes the next character; may span lines.
- `single_quote`: inside '...'. English uses the same mark as an apostrophe, so a `'` only
  opens a quote at the start of a word (no letter or digit before it, or a string prefix
  r b f u before it, and no space after it) and only closes one at the end of a word (no
  letter or digit after it); "don't" and "o'er" open nothing. A newline closes it, so an
  elided "'tis" taken for an opening quote costs one line at most.
- `comment`: inside /* ... */, or from // or # to the end of the line.
- `line_position`: characters since the last newline (0 on the newline itself).
- `line_remaining`: characters until the next newline (what a line-length cell must predict).
- `bracket_depth`: open (, [ and { minus closed ones outside strings and comments, never
  below 0.
"""
from __future__ import annotations

import numpy as np

FEATURES = ("double_quote", "single_quote", "comment", "line_position", "line_remaining", "bracket_depth")
LABELS = {"double_quote": "inside double quotes", "single_quote": "inside single quotes",
          "comment": "inside a comment", "line_position": "position in the line",
          "line_remaining": "characters left in the line", "bracket_depth": "bracket depth"}

TEXT, DOUBLE, SINGLE, LINE_COMMENT, BLOCK_COMMENT = range(5)
OPENERS, CLOSERS = "([{", ")]}"
STRING_PREFIXES = "rbfuRBFU"


def _opens_single(text: str, t: int) -> bool:
    before = text[t - 1] if t > 0 else " "
    after = text[t + 1] if t + 1 < len(text) else " "
    if after.isspace():
        return False
    if not before.isalnum():
        return True
    # a string prefix such as r'...' or f'...': one prefix letter standing alone
    return before in STRING_PREFIXES and (t < 2 or not text[t - 2].isalnum())


def _closes_single(text: str, t: int) -> bool:
    after = text[t + 1] if t + 1 < len(text) else " "
    return not after.isalnum()


def char_features(text: str) -> dict[str, np.ndarray]:
    """Every feature of FEATURES for each character of `text`: name -> (N,) float32."""
    n = len(text)
    out = {name: np.zeros(n, dtype=np.float32) for name in FEATURES}
    state, depth, column, escaped = TEXT, 0, 0, False
    fresh = -1        # index of the last character that opened or closed a comment: it pairs with nothing
    for t, ch in enumerate(text):
        previous = text[t - 1] if t > 0 and t - 1 != fresh else ""
        if state == TEXT:
            if ch == '"':
                state = DOUBLE
            elif ch == "'" and _opens_single(text, t):
                state = SINGLE
            elif ch == "#" or (ch == "/" and previous == "/"):
                state, fresh = LINE_COMMENT, t
            elif ch == "*" and previous == "/":
                state, fresh = BLOCK_COMMENT, t
            elif ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(depth - 1, 0)
        elif state in (DOUBLE, SINGLE):
            quote = '"' if state == DOUBLE else "'"
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote and (state == DOUBLE or _closes_single(text, t)):
                state = TEXT
            elif ch == "\n" and state == SINGLE:
                state = TEXT
        elif state == LINE_COMMENT and ch == "\n":
            state = TEXT
        elif state == BLOCK_COMMENT and ch == "/" and previous == "*":
            state, fresh = TEXT, t
        column = 0 if ch == "\n" else column + 1
        out["double_quote"][t] = state == DOUBLE
        out["single_quote"][t] = state == SINGLE
        out["comment"][t] = state in (LINE_COMMENT, BLOCK_COMMENT)
        out["line_position"][t] = column
        out["bracket_depth"][t] = depth
    out["line_remaining"][:] = _line_remaining(text)
    return out


def _line_remaining(text: str) -> np.ndarray:
    """(N,) characters from each one to the next newline (0 on the newline)."""
    remaining = np.zeros(len(text), dtype=np.float32)
    count = 0
    for t in range(len(text) - 1, -1, -1):
        count = 0 if text[t] == "\n" else count + 1
        remaining[t] = count - 1 if text[t] != "\n" else 0
    return remaining


def feature_matrix(text: str) -> tuple[list[str], np.ndarray]:
    """(names, (N, F) float32) in the order of FEATURES."""
    values = char_features(text)
    return list(FEATURES), np.stack([values[name] for name in FEATURES], axis=1)
