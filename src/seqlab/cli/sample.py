"""`seqlab sample`: continue a prime from a trained language model (streamed), draw several
continuations as one batch (--num-samples), or search with a beam; conditional runs write a
sentence of a class (tasks.py).

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once."""
from __future__ import annotations

import sys

from seqlab import SeqlabError
from seqlab.cli.tasks import need, offers


def flag(name: str) -> str:
    """How the command line names an option of the Python API: top_p -> --top-p."""
    return "--" + name.replace("_", "-")


def cmd_sample(args) -> int:
    from seqlab.api import load
    from seqlab.api.run import check_sampling

    if args.format == "abc":
        return write_tunes(args)
    if args.warmup is not None:
        raise SeqlabError("--warmup is the number of tunes thrown away before --format abc tunes; drop it for text")
    if "speak" in offers(args.run):
        return write_speech(args)
    if args.seconds is not None:
        raise SeqlabError("--seconds is the length of audio from a task.name=speech run; give --length for text")
    if args.out:
        raise SeqlabError("-o/--out names the folder for --format abc tunes; text samples are printed "
                          "(redirect them: seqlab sample RUN > file.txt)")
    args.length = 500 if args.length is None else args.length
    check_sampling(args.length, args.temperature, args.top_k, args.top_p, args.beam, args.greedy, args.num_samples,
                   args.alpha, flag, args.seed)
    need(args.run, "stream", "seqlab sample")
    if args.num_samples > 1 and "batch sampling" not in offers(args.run):
        raise SeqlabError("--num-samples applies to language-model runs; a conditional run writes one "
                          "sentence per --condition")
    if args.prime == "":
        raise SeqlabError("--prime is empty; give some text, or leave --prime out")
    run = load(args.run, args.device, checkpoint=getattr(args, "checkpoint", None))
    word_level = run.level == "word"
    if args.allow_unk and not word_level:
        raise SeqlabError(f"--allow-unk applies to word-level models; {args.run} is {run.level or 'not'}-level "
                          f"and never writes <unk>")
    options = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                   allow_unk=args.allow_unk)
    lead = (args.prime or "") + (" " if args.prime and word_level else "")
    out = sys.stdout
    if args.num_samples > 1:
        samples = run.sample(args.prime, args.length, num_samples=args.num_samples, **options)
        out.write(lead + samples[0] + "\n")
        for text in samples[1:]:
            out.write("----\n" + lead + text + "\n")
        return 0
    pieces = run.stream(args.prime, args.length, greedy=args.greedy, beam=args.beam, alpha=args.alpha,
                        condition=args.condition, name=flag, **options)
    first = next(pieces)              # the prime is checked before anything is written
    out.write(lead + first)
    out.flush()
    for piece in pieces:
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


TUNE_END = "\n\n"             # the folk corpus separates tunes by a blank line


def write_tunes(args) -> int:
    """`seqlab sample RUN --format abc -o DIR`: whole tunes, one file each (tune-001.abc, ...)."""
    from pathlib import Path

    from seqlab.api import load
    from seqlab.api.run import check_sampling
    from seqlab.io import output_folder

    length = 2000 if args.length is None else args.length
    check_sampling(length, args.temperature, args.top_k, args.top_p, args.beam, args.greedy, args.num_samples,
                   args.alpha, flag, args.seed)
    if not args.out:
        raise SeqlabError("--format abc writes one file per tune: give the folder, e.g. -o tunes/")
    if args.warmup is not None and not 0 <= args.warmup <= 1000:
        raise SeqlabError(f"--warmup must be from 0 to 1,000 tunes, got {args.warmup:,}")
    if args.beam or args.condition:
        raise SeqlabError("--format abc samples tunes; drop --beam / --condition")
    if "tunes" not in offers(args.run):
        raise SeqlabError(f"{args.run} is not a language model; --format abc samples from a character model "
                          f"trained on tunes (seqlab train --config configs/folk.toml)")
    out = Path(args.out)
    width = max(3, len(str(args.num_samples)))
    names = [f"tune-{i:0{width}d}.abc" for i in range(1, args.num_samples + 1)]
    outs = output_folder(out, "-o", names, args.overwrite)       # refused before any sampling
    if out.is_dir() and not args.overwrite and any(out.glob("tune-*.abc")):
        raise SeqlabError(f"-o {out} already holds tune-*.abc files (another sampling's); give an empty or new "
                          f"folder, or add --overwrite")
    head = args.prime if args.prime is not None else "T:"
    if head == "":
        raise SeqlabError("--prime is empty; give the start of a tune (e.g. 'T:' or 'T:Reel\nM:4/4'), or leave it out")
    run = load(args.run, args.device, checkpoint=getattr(args, "checkpoint", None))
    if run.level in ("word", "subword"):
        raise SeqlabError(f"{args.run} is a {run.level}-level model; tunes are sampled from character or byte models")
    samples = run.tunes(args.num_samples, head, length, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, greedy=args.greedy, seed=args.seed,
                        warmup=1 if args.warmup is None else args.warmup, end=TUNE_END)
    out.mkdir(parents=True, exist_ok=True)
    unfinished = 0
    for i, (name, body) in enumerate(zip(names, samples), start=1):
        unfinished += len(body) - len(head) >= length   # ran to --length without the blank line that ends a tune
        outs[name].write_text(f"X:{i}\n{body}\n")
    note = f" ({unfinished} reached --length {length} before the tune ended)" if unfinished else ""
    print(f"wrote {len(samples)} tunes to {out}{note}; check them: seqlab analyze tunes {out} --reference folk")
    return 0


def write_speech(args) -> int:
    """`seqlab sample RUN --condition VOICE --seconds S -o out.wav`: a WaveNet speaking."""
    from pathlib import Path

    from tqdm import tqdm

    from seqlab.api import load
    from seqlab.api.verbs import check_speaking
    from seqlab.data.audio import RATE, write_wav
    from seqlab.io import Output

    if not args.out or not args.out.lower().endswith(".wav"):
        raise SeqlabError("a speech run writes audio: give the file, e.g. -o speech.wav")
    for flag_name, given in (("--prime", args.prime is not None), ("--length", args.length is not None),
                             ("--beam", bool(args.beam)), ("--greedy", args.greedy), ("--num-samples", args.num_samples > 1)):
        if given:
            raise SeqlabError(f"{flag_name} applies to text; a speech run takes --condition VOICE, --seconds, "
                              f"--temperature, --top-k, --top-p and --seed")
    out = Output(args.out, "-o", overwrite=args.overwrite)
    seconds = 2.0 if args.seconds is None else args.seconds
    run = load(args.run, args.device, checkpoint=getattr(args, "checkpoint", None))
    check_speaking(run, args.condition, seconds)              # refused before the progress bar starts
    with tqdm(total=round(seconds * RATE), unit="sample", unit_scale=True, desc="speaking", leave=False,
              file=sys.stderr) as bar:
        samples = run.speak(args.condition, seconds, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed, progress=bar.update)
    write_wav(out, samples, RATE)
    print(f"wrote {args.out}: {len(samples) / RATE:.2f} s at {RATE} Hz" + (f" in the voice {args.condition}"
                                                                           if args.condition else ""))
    return 0
