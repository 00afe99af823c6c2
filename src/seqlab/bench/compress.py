"""`seqlab bench compress`: seqlab's compression modes beside gzip, bzip2, xz and zstd on the
same files, in one session: size, bits per byte, compress and decompress seconds.

    seqlab bench compress                                  # -> benchmarks/results/compress.json + benchmarks/compress.md
    seqlab bench compress --files shakespeare --modes ngram --out /tmp/compress

Files (real data; each named by what it is): Shakespeare (the demo corpus), the Linux kernel
corpus (karpathy2016's), Austen (the Gutenberg novels of Debian's corpus), the Spanish side of
the en-es Bible pairs (one verse per line) and a binary file (this Python's shared library or
executable). The everyday compressors run as subprocesses at their strongest settings
(gzip -9, bzip2 -9, xz -9e, zstd -19), seqlab's modes in this process; every round trip is
checked byte for byte. One run per cell: the seqlab cells take minutes, where timing noise of
a few percent does not change a ranking; sizes do not vary at all.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from seqlab import SeqlabError
from seqlab.bench.common import bench_parser, commit, machine, provenance, write_report
from seqlab.compress import container
from seqlab.compress.codec import compress, decompress
from seqlab.compress.predictors import ADAPTIVE, LAYOUT, adaptive, from_description
from seqlab.data import datasets, sources

TOOLS = {"gzip -9": (["gzip", "-9", "-c"], ["gzip", "-d", "-c"]), "bzip2 -9": (["bzip2", "-9", "-c"], ["bzip2", "-d", "-c"]),
         "xz -9e": (["xz", "-9e", "-c"], ["xz", "-d", "-c"]), "zstd -19": (["zstd", "-19", "-q", "-c"], ["zstd", "-d", "-q", "-c"])}
# seqlab's adaptive modes: (predictor options, streams, chunk), the command line's defaults
MODES = {name: ({}, *LAYOUT[name]) for name in ADAPTIVE}
FILES = ("shakespeare", "linux", "austen", "en-es", "binary")


def load_file(name: str) -> tuple[bytes, str]:
    """(bytes, what they are) of a benchmark file; named corpora are fetched if needed."""
    if name in ("shakespeare", "linux", "austen"):
        corpus = sources.corpus(name)
        if not corpus.is_ready():
            corpus.fetch(log=print)
        return corpus.text().encode("utf-8"), f"corpus {name}, UTF-8"
    if name == "en-es":
        data = datasets.dataset("en-es")
        if not data.is_ready():
            data.fetch(log=print)
        pairs = data.load()
        return ("\n".join(p[1] for p in pairs) + "\n").encode("utf-8"), "the Spanish side of en-es, a verse per line"
    if name == "binary":        # a Python interpreter: the system's executable, else this Python's library
        lib = Path(sysconfig.get_config_var("LIBDIR") or "") / (sysconfig.get_config_var("LDLIBRARY") or "")
        path = next((p for p in (Path("/usr/bin/python3.11"), Path("/usr/bin/python3"), lib, Path(sys.executable))
                     if p.is_file() and p.stat().st_size > 100_000), Path(sys.executable)).resolve()
        return path.read_bytes(), f"{path} (a Python interpreter, x86-64 ELF)"
    raise SeqlabError(f"unknown file {name!r}; one of {', '.join(FILES)}")


def external(tool: str, data: bytes, folder: Path) -> dict:
    packer, unpacker = TOOLS[tool]
    started = time.perf_counter()
    packed = subprocess.run(packer, input=data, capture_output=True, check=True).stdout
    middle = time.perf_counter()
    back = subprocess.run(unpacker, input=packed, capture_output=True, check=True).stdout
    done = time.perf_counter()
    return {"size": len(packed), "compress_s": middle - started, "decompress_s": done - middle, "exact": back == data}


def seqlab_mode(mode: str, data: bytes) -> dict:
    options, streams, chunk = MODES[mode]
    started, stats = time.perf_counter(), {}
    blob = compress(data, adaptive(mode, **options), mode="adaptive", streams=streams, chunk=chunk, stats=stats)
    middle = time.perf_counter()
    back = decompress(blob, lambda header: from_description(header["model"]))
    done = time.perf_counter()
    return {"size": len(blob), "compress_s": middle - started, "decompress_s": done - middle, "exact": back == data,
            "options": {**options, "streams": streams, "chunk": chunk}, "model": container.unpack(blob)[0]["model"],
            "model_bytes": stats["model_bits"] / 8, "payload_bytes": stats["payload_bytes"],
            "header_bytes": stats["header_bytes"]}


def describe(r: dict, mode: str) -> str:
    """The model a mode used, in words, from the first file's header."""
    model = r["files"][0]["results"][f"seqlab {mode}"]["model"]
    if model["family"] == "ngram":
        return f"{model['order']}-gram ({model['smoothing']}, refitted as the data grows by a quarter)"
    if model["family"] == "lstm":
        return f"LSTM {model['hidden']} units, {model['optimizer']} lr {model['lr']}"
    parts = " + ".join(describe_part(p) for p in model["parts"])
    return f"{parts} + a match model (min {model['min_len']} bytes), mixed (rate {model['rate']})"


def describe_part(p: dict) -> str:
    return f"{p['order']}-gram" if p["family"] == "ngram" else f"LSTM {p['hidden']}"


def markdown(r: dict) -> str:
    tools = list(TOOLS) + [f"seqlab {m}" for m in r["modes"]]
    lines = ["# Compression: seqlab's models beside the everyday compressors", "",
             "Bits per byte (size in bytes; compress / decompress seconds, 2 CPU cores). Best per file in bold.", "",
             "| file | bytes | " + " | ".join(tools) + " |", "|---|---:|" + "---:|" * len(tools)]
    for row in r["files"]:
        best = min(row["results"][t]["size"] for t in tools if t in row["results"])
        cells = []
        for t in tools:
            c = row["results"].get(t)
            if c is None:
                cells.append("—")
                continue
            bpb = f"{8 * c['size'] / row['bytes']:.3f}"
            cells.append(f"{'**' + bpb + '**' if c['size'] == best else bpb} ({c['size']:,}; "
                         f"{c['compress_s']:.1f} / {c['decompress_s']:.1f} s)")
        lines.append(f"| {row['file']} | {row['bytes']:,} | " + " | ".join(cells) + " |")
    lines += ["", "Files: " + "; ".join(f"{row['file']}: {row['what']}" for row in r["files"]) + ".", "",
              "seqlab modes: " + "; ".join(f"{m}: {describe(r, m)}, {MODES[m][1]} streams, update every "
                                           f"{MODES[m][2]} steps" for m in r["modes"]) + ". Every round trip was checked byte for byte "
              f"({'all exact' if r['all_exact'] else 'NOT ALL EXACT'}).", ""] + overhead(r) + [
              provenance(r, threads=r["threads"])]
    return "\n".join(lines)


def overhead(r: dict) -> list[str]:
    """The coded payloads against the models' own cross-entropy of each file (Σ −log2 p / 8)."""
    pairs = [(row["file"], tool, c) for row in r["files"] for tool, c in row["results"].items() if "model_bytes" in c]
    if not pairs:
        return []
    worst = max(pairs, key=lambda p: p[2]["payload_bytes"] / max(p[2]["model_bytes"], 1))
    ratio = worst[2]["payload_bytes"] / max(worst[2]["model_bytes"], 1) - 1
    return [f"Coded size against each model's cross-entropy of the file (Σ −log2 p(x) / 8 bytes, measured as it "
            f"coded): the payload is at most {100 * ratio:+.3f} % from it ({worst[1]} on {worst[0]}), plus the header "
            f"({min(c['header_bytes'] for _, _, c in pairs)}–{max(c['header_bytes'] for _, _, c in pairs)} bytes).",
            ""]


def main(argv: list[str]) -> int:
    p = bench_parser("compress", __doc__, "benchmarks/compress")
    p.add_argument("--files", nargs="+", default=list(FILES), choices=FILES, help="which files")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="seqlab's adaptive modes")
    p.add_argument("--threads", type=int, default=2, help="torch threads for seqlab's modes")
    p.add_argument("--limit", type=int, help="only each file's first LIMIT bytes (a quick look; the table is "
                                             "made without it)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="seqlab-compress-") as tmp:
        for name in args.files:
            data, what = load_file(name)
            if args.limit:
                data, what = data[:args.limit], f"{what}, its first {args.limit:,} bytes only"
            row = {"file": name, "what": what, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                   "results": {}}
            for tool in TOOLS:
                row["results"][tool] = external(tool, data, Path(tmp))
                print(f"{name}: {tool} {row['results'][tool]['size']:,}", flush=True)
            for mode in args.modes:
                row["results"][f"seqlab {mode}"] = seqlab_mode(mode, data)
                c = row["results"][f"seqlab {mode}"]
                print(f"{name}: seqlab {mode} {c['size']:,} ({8 * c['size'] / len(data):.3f} bits per byte, "
                      f"{c['compress_s']:.0f} / {c['decompress_s']:.0f} s)", flush=True)
            rows.append(row)
    report = {"benchmark": "compress", "command": "seqlab bench compress " + " ".join(argv), "commit": commit(),
              "machine": machine(), "date": time.strftime("%Y-%m-%d"), "threads": args.threads, "modes": args.modes, "files": rows,
              "all_exact": all(c["exact"] for row in rows for c in row["results"].values())}
    write_report(args.out, report, markdown)
    return 0 if report["all_exact"] else 1
