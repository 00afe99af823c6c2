"""`seqlab compress` / `seqlab decompress` (compress/): the command-line side.

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once.
"""
from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

from seqlab import SeqlabError
from seqlab.io import Output, read_input

EXAMPLES = """examples:
  seqlab compress notes.txt                          # adaptive n-gram + match model, mixed -> notes.txt.sqz
  seqlab compress notes.txt --adaptive ngram         # the n-gram alone (faster)
  seqlab compress notes.txt --adaptive mix-lstm      # an LSTM that learns as it codes, mixed in too
  seqlab compress notes.txt --model runs/bytes-lm    # a trained byte-level run (data.level=byte)
  seqlab decompress notes.txt.sqz -o notes.copy.txt
"""


def add_parsers(sub, fmt) -> None:
    p = sub.add_parser("compress", formatter_class=fmt, help="compress a file with a sequence model (.sqz)",
                       description="Code a file with an arithmetic coder driven by a model's next-byte\n"
                                   "probabilities: bits per byte become file size. Adaptive (the default): no\n"
                                   "model is stored, it learns as it codes and the decoder replays it. Static\n"
                                   "(--model RUN): a trained byte-level run, needed again to decompress.\n"
                                   "Decompress on the same kind of machine (CPU type, torch version).",
                       epilog=EXAMPLES)
    p.add_argument("file", metavar="FILE", help="the file to compress (any bytes)")
    p.add_argument("-o", "--out", metavar="OUT", help="where to write (default: FILE.sqz)")
    p.add_argument("--adaptive", default=None, metavar="MODEL",
                   help="the model that learns as it codes: mix (an n-gram and a match model, mixed), ngram "
                        "(alone; faster), lstm, or mix-lstm (all three; slowest) (default: mix)")
    p.add_argument("--model", metavar="RUN", help="code with this trained byte-level run instead (static mode)")
    p.add_argument("--order", type=int, help="the n-gram's order (default: 6 alone, 8 in a mix)")
    p.add_argument("--hidden", type=int, help="the LSTM's hidden size (default: 256 alone, 128 in a mix)")
    p.add_argument("--streams", type=int, help="segments coded side by side (default: 256; 32 for lstm, 128 for mix-lstm)")
    p.add_argument("--chunk", type=int, help="steps between two updates of an adaptive model (default: 64; 16 "
                                             "where an LSTM learns)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--progress", action="store_true", default=sys.stderr.isatty(), help="show a progress bar")

    p = sub.add_parser("decompress", formatter_class=fmt, help="restore a file made by `seqlab compress`",
                       description="Decode a .sqz file; it is checked against the original's checksum before\n"
                                   "anything is written.", epilog=EXAMPLES)
    p.add_argument("file", metavar="FILE.sqz", help="a file made by seqlab compress")
    p.add_argument("-o", "--out", metavar="OUT", help="where to write (default: FILE without .sqz)")
    p.add_argument("--model", metavar="RUN", help="the run a static-mode file was compressed with")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--progress", action="store_true", default=sys.stderr.isatty(), help="show a progress bar")


def _read(path: str) -> bytes:
    return read_input(path)


def _target(out: str, overwrite: bool, source: str) -> Output:
    """The output, claimed before any work: refused if it exists (unless --overwrite) or is the input;
    at the end it is created only if nothing appeared under its name meanwhile."""
    return Output(out, "-o", overwrite=overwrite, inputs=[source])


def _write(out: Output, data: bytes) -> None:
    out.path.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)


def _static(run_path: str):
    """(predictor, description) of a trained byte-level run."""
    from seqlab.compress.predictors import StaticPredictor
    from seqlab.training.checkpoint import RunDir
    from seqlab.training.runs import load_run

    run = RunDir(Path(run_path)).require()
    from seqlab.registry import get
    if run.config().data.level != "byte" or "score" not in get("task", run.config().task.name).offered():
        raise SeqlabError(f"{run_path} is not a byte-level language model; train one with "
                          f"`seqlab train data.level=byte ...`, or compress without --model")
    cfg, _, model, _ = load_run(run_path, "cpu")
    return StaticPredictor(model, {"family": "run", "run": Path(run_path).name, "model": cfg.model.name,
                                   "weights_sha256": weights_checksum(model)})


def weights_checksum(model) -> str:
    """sha256 over the weights the model codes with (names, shapes, dtypes and bytes, in name
    order): never empty, whichever checkpoint the run loaded them from."""
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(t.shape)}:{t.dtype};".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cmd_compress(args) -> int:
    from seqlab.compress.codec import compress
    from seqlab.compress.predictors import ADAPTIVE, LAYOUT, adaptive

    from seqlab.compress.container import MAX_CHUNK, MAX_STREAMS
    from seqlab.compress.predictors import MAX_HIDDEN, MAX_ORDER

    for flag, value, most in (("--streams", args.streams, MAX_STREAMS), ("--chunk", args.chunk, MAX_CHUNK),
                              ("--order", args.order, MAX_ORDER), ("--hidden", args.hidden, MAX_HIDDEN)):
        if value is not None and not 1 <= value <= most:
            raise SeqlabError(f"{flag} must be between 1 and {most:,}, got {value:,}")
    if args.model and (args.adaptive or args.order or args.hidden):
        given = next(f for f, v in (("--adaptive", args.adaptive), ("--order", args.order), ("--hidden", args.hidden)) if v)
        raise SeqlabError(f"{given} chooses an adaptive model; --model RUN codes with the trained run instead: "
                          f"give one of them")
    args.adaptive = args.adaptive or "mix"
    if args.adaptive not in ADAPTIVE:
        raise SeqlabError(f"--adaptive must be one of {', '.join(ADAPTIVE)}; got {args.adaptive!r}")
    if args.hidden and "lstm" not in args.adaptive:
        raise SeqlabError(f"--hidden is the LSTM's size; --adaptive {args.adaptive} has no LSTM (use lstm or mix-lstm)")
    if args.order and args.adaptive == "lstm":
        raise SeqlabError("--order is the n-gram's order; --adaptive lstm has no n-gram (use ngram, mix or mix-lstm)")
    out = _target(args.out or args.file + ".sqz", args.overwrite, args.file)
    data = _read(args.file)
    if args.model:
        predictor, mode = _static(args.model), "static"
    else:
        options = {"order": args.order, "hidden": args.hidden}
        options = {k: v for k, v in options.items() if v is not None}
        predictor, mode = adaptive(args.adaptive, **options), "adaptive"
    started = time.perf_counter()
    streams, chunk = LAYOUT.get(args.adaptive if mode == "adaptive" else "static", (256, 64))
    blob = compress(data, predictor, mode=mode, streams=args.streams or streams, chunk=args.chunk or chunk,
                    progress=args.progress)
    _write(out, blob)
    seconds = time.perf_counter() - started
    bits = 8 * len(blob) / max(len(data), 1)
    print(f"{args.file}: {len(data):,} -> {len(blob):,} bytes ({bits:.3f} bits per byte, {mode} "
          f"{args.adaptive if mode == 'adaptive' else 'run ' + Path(args.model).name}) in {seconds:.1f} s -> {out}")
    return 0


def cmd_decompress(args) -> int:
    from seqlab.compress.codec import decompress
    from seqlab.compress.predictors import from_description

    blob = _read(args.file)
    default = args.file[:-4] if args.file.endswith(".sqz") else args.file + ".out"
    out = _target(args.out or default, args.overwrite, args.file)

    def predictor_for(header: dict):
        model = header.get("model", {})
        if header["mode"] == "static":
            if not args.model:
                raise SeqlabError(f"{args.file} was compressed with the run {model.get('run')!r}; "
                                  f"give it with --model RUN")
            predictor = _static(args.model)
            if predictor.description["weights_sha256"] != model.get("weights_sha256"):
                raise SeqlabError(f"{args.model} is not the run {args.file} was compressed with "
                                  f"({model.get('run')!r}: its weights differ)")
            return predictor
        if args.model:
            raise SeqlabError(f"{args.file} was compressed adaptively; it needs no --model")
        try:
            return from_description(model)
        except SeqlabError as e:
            raise SeqlabError(f"{args.file}: {e}; the file was not made by this seqlab's compress") from None

    started = time.perf_counter()
    data = decompress(blob, predictor_for, name=args.file, progress=args.progress)
    _write(out, data)
    print(f"{args.file}: {len(blob):,} -> {len(data):,} bytes in {time.perf_counter() - started:.1f} s -> {out}")
    return 0
