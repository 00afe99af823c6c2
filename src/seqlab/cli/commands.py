"""The `seqlab` command: train, eval, sample, data, info, analyze, viz, gallery (bench: bench.py; the
task verbs: tasks.py).

Every user-fixable problem is a SeqlabError, printed as one line (`seqlab: error: ...`)
with exit code 2; Ctrl-C exits with 130 after saving what there is to save.

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once.
"""
from __future__ import annotations

import argparse
import json
import sys
import textwrap

from seqlab import SeqlabError, __version__
from seqlab.cli.guard import guarded as _guarded
from seqlab.cli.help import Narrowed, _help_table, _narrow_help
from seqlab.io import Output
from seqlab.cli.bench import BENCHES, add_bench_parser, cmd_bench
from seqlab.cli.compress import cmd_compress, cmd_decompress
from seqlab.cli.sample import cmd_sample
from seqlab.cli.tasks import _eval_task, offers, cmd_caption, cmd_classify, cmd_forecast, cmd_tag, cmd_translate


TRAIN_EXAMPLES = """
examples:
  seqlab data fetch shakespeare
  seqlab train --config configs/demo.toml --out runs/demo
  seqlab train data.path=notes.txt model.hidden_size=256 train.max_time=600 --out runs/notes
  seqlab train --resume runs/notes train.max_epochs=20      # continue, with a larger budget
  seqlab train --config sentiment --out runs/sentiment       # task=classify, Bi-LSTM
  seqlab train --config reverse --out runs/reverse            # seq2seq with attention, ~3 min on 2 cores
  seqlab train task=forecast data=airline model=ar --out runs/airline-ar
"""


def build_parser(only: Narrowed = Narrowed()) -> argparse.ArgumentParser:
    """The `seqlab` parser; `only` narrows the option table of `train --help`."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="seqlab", formatter_class=fmt,
        description="Deep sequence modelling on PyTorch: language models, classifiers, taggers,\n"
                    "translators and forecasters — train, evaluate, decode.",
        epilog="Run `seqlab COMMAND --help` for each command's options.")
    parser.add_argument("--version", action="version", version=f"seqlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from seqlab.cli.verbs import add_to_help

    # train ---------------------------------------------------------------------------------
    p = sub.add_parser("train", formatter_class=fmt, help="train a model (a language model, or task.name=...) into a run directory",
                       description="Train a character- or word-level language model with truncated BPTT, or with\n"
                                   "task.name=NAME another task (task.name below lists them: classify, tag, translate, ...).\n"
                                   "Options come from defaults, then a TOML preset (--config), then\n"
                                   "section.key=value overrides. Ctrl-C saves a checkpoint; --resume continues it.",
                       epilog=_help_table(only) + "\n" + TRAIN_EXAMPLES)
    p.add_argument("overrides", nargs="*", metavar="section.key=value", help="option overrides (listed below)")
    p.add_argument("--config", metavar="TOML", help="a preset from configs/ (a path, or a name like 'demo')")
    p.add_argument("--out", metavar="DIR", help="run directory to create (default: runs/<model>-<corpus>)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it is an existing run (default: refuse)")
    p.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint (overrides may change train.*)")

    # eval ------------------------------------------------------------------------------------
    p = sub.add_parser("eval", formatter_class=fmt, help="negative log-likelihood, perplexity, bits per token",
                       description="Evaluate a run's best weights on a split of its corpus or on any text file.")
    p.add_argument("run", metavar="RUN", help="run directory made by `seqlab train`")
    p.add_argument("--split", default="test", choices=["train", "valid", "test"], help="split of the run's corpus (default: test)")
    p.add_argument("--file", metavar="PATH", help="evaluate on this UTF-8 text file instead of a split")
    p.add_argument("--batch-size", type=int, default=None,
                   help="parallel streams (default: 32 for a split, as in training; 1 for --file, the exact "
                        "left-to-right score)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--checkpoint", metavar="NAME", default=None,
                   help="the weights of one of the run's checkpoints ('step-600', '600' or 'last': the newest) "
                        "instead of its best (model.safetensors)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")

    # sample ----------------------------------------------------------------------------------
    p = sub.add_parser("sample", formatter_class=fmt, help="generate text from a trained run",
                       description="Continue a prime text, streaming tokens as they are generated.\n"
                                   "Default: sampling at --temperature; --greedy takes the most likely token;\n"
                                   "--beam K keeps the K most likely continuations (length-normalised).",
                       epilog="examples:\n  seqlab sample runs/demo --prime 'ROMEO.' --length 500 --temperature 0.8 --top-p 0.95\n"
                              "  seqlab sample runs/folk --format abc --num-samples 100 -o tunes/\n"
                              "  seqlab sample runs/speech --condition beth --seconds 2 -o beth.wav")
    p.add_argument("run", metavar="RUN", help="run directory made by `seqlab train`")
    p.add_argument("--prime", default=None, help="text to start from (default: a newline, or <eos> for words)")
    p.add_argument("--length", type=int, default=None,
                   help="tokens to generate (default: 500; with --format abc the most per tune, default 2000)")
    p.add_argument("--temperature", type=float, default=1.0, help="divide logits by T; <1 is safer, >1 wilder (default: 1.0)")
    p.add_argument("--top-k", type=int, default=0, help="sample from the K most likely tokens only (default: 0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, help="sample from the smallest set holding P of the mass (default: 1.0 = off)")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token")
    p.add_argument("--beam", type=int, default=0, metavar="K", help="beam search with K beams (default: 0 = off)")
    p.add_argument("--alpha", type=float, default=0.6, help="beam length-normalisation exponent (default: 0.6)")
    p.add_argument("--condition", metavar="LABEL", help="task.name=conditional runs: the class to write a sentence of; "
                                                          "task.name=speech runs: the voice to speak in")
    p.add_argument("--num-samples", type=int, default=1, metavar="N",
                   help="draw N continuations as one batch (one batched step per token); printed one after "
                        "another, separated by a '----' line (default: 1, streamed as it is generated)")
    p.add_argument("--seed", type=int, default=None, help="random seed for reproducible samples (default: none)")
    p.add_argument("--allow-unk", action="store_true",
                   help="word-level models: let <unk> (every word the model was not taught) be written (default: "
                        "never, so beam search and greedy decoding do not loop on it)")
    p.add_argument("--format", choices=("text", "abc"), default="text",
                   help="abc: whole folk tunes (a run trained on ABC, e.g. configs/folk.toml): each sample starts "
                        "at --prime (default 'T:') and stops at the blank line that ends a tune; written one "
                        "file per tune to -o DIR (default: text, printed)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="with --format abc: tunes drawn first, one after another, and thrown away, so each tune "
                        "starts from the model's state after a tune of its own, as in training (default: 1)")
    p.add_argument("-o", "--out", metavar="PATH", help="with --format abc: the folder to write tune-001.abc, ... to; "
                                                      "for a task.name=speech run: the WAV file to write")
    p.add_argument("--seconds", type=float, default=None,
                   help="task.name=speech runs: seconds of audio to generate (default: 2)")
    p.add_argument("--overwrite", action="store_true", help="with -o: replace files that exist (default: refuse)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--checkpoint", metavar="NAME", default=None,
                   help="the weights of one of the run's checkpoints ('step-600', '600' or 'last': the newest) "
                        "instead of its best (model.safetensors)")

    # export ----------------------------------------------------------------------------------
    p = sub.add_parser("export", formatter_class=fmt, help="write a trained language model for other tools: ONNX or ARPA",
                       description="Write a language-model run for another runtime: --format onnx, the step function\n"
                                   "(token + state -> logits + state) of a neural model, for onnxruntime and the\n"
                                   "like; --format arpa, an n-gram model in the back-off format of SRILM and KenLM.\n"
                                   "The file is written whole or not at all.",
                       epilog="examples:\n  seqlab export runs/demo -o demo.onnx\n"
                              "  seqlab export runs/linux-ngram --format arpa -o linux.arpa")
    p.add_argument("run", metavar="RUN", help="run directory of a task.name=lm run")
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="onnx or arpa (default: from FILE's suffix, .onnx or .arpa)")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it exists (default: refuse)")

    # compress / decompress (compress.py) ------------------------------------------------------
    from seqlab.cli.compress import add_parsers as add_compress_parsers
    add_compress_parsers(sub, fmt)

    # data ------------------------------------------------------------------------------------
    p = sub.add_parser("data", formatter_class=fmt, help="list and fetch corpora",
                       description="Named corpora are fetched once into $SEQLAB_DATA (default ~/.cache/seqlab).\n"
                                   "Any UTF-8 file or folder also works: seqlab train data.path=FILE")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.add_parser("list", help="the named corpora, their size, licence and whether they are cached")
    f = dsub.add_parser("fetch", help="download and cache corpora")
    f.add_argument("names", nargs="+", metavar="NAME", help="corpus names (see `seqlab data list`)")

    # info ------------------------------------------------------------------------------------
    p = sub.add_parser("info", formatter_class=fmt, help="versions, threads, GPUs, the fused kernels, the data cache",
                       description="What this installation runs on: paste it into a bug report.")
    p.add_argument("--build-native", action="store_true",
                   help="build seqlab's fused CPU LSTM kernels now (else on first use, ~20 s)")

    # task verbs: classify, tag, translate, forecast (tasks.py) --------------------------------
    from seqlab.cli.tasks import add_task_parsers
    add_task_parsers(sub, fmt)

    # analyze ---------------------------------------------------------------------------------
    p = sub.add_parser("analyze", formatter_class=fmt, help="look inside a trained language model",
                       description="Analyses of a trained run (Karpathy, Johnson & Fei-Fei 2016).")
    asub = p.add_subparsers(dest="analyze_command", metavar="WHAT")
    for name, what in MODULE_ANALYSES.items():
        a = asub.add_parser(name, help=what[1], add_help=False,
                            description=f"{what[1]}; options: seqlab analyze {name} --help")
        a.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    for name, (_, what) in PAGES.items():
        p = sub.add_parser(name, help=what, add_help=False, description=f"{what}; options: seqlab {name} --help")
        p.add_argument("args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    # bench (bench.py) --------------------------------------------------------------------------
    add_bench_parser(sub, fmt)
    add_to_help(sub)                      # the verbs tasks declare, plug-ins' too (verbs.py)
    return parser


# analyses whose module has its own argument parser: name -> (module, help)
MODULE_ANALYSES = {
    "saturation": ("seqlab.analysis.gates", "how often each LSTM / GRU gate unit is saturated, as a scatter PNG"),
    "gradients": ("seqlab.analysis.gradients", "how the gradient of a last-step loss fades back through time, RNN vs LSTM vs GRU"),
    "onebit": ("seqlab.analysis.experiments", "one-bit memory (Bengio et al. 1994): success rate against T for RNN, LSTM, GRU"),
    "clipping": ("seqlab.analysis.experiments", "exploding gradients with and without norm clipping: loss and gradient-norm traces"),
    "forget-bias": ("seqlab.analysis.experiments", "forget-gate bias 0 against 1 on a long-dependency task (Jozefowicz et al. 2015)"),
    "cells": ("seqlab.analysis.cells", "the LSTM cells whose activation best correlates with quotes, line position, bracket depth, ..."),
    "errors": ("seqlab.analysis.errors", "which characters the model predicts better than an n-gram on the same data, grouped"),
    "spectrogram": ("seqlab.analysis.spectrogram", "frequency against time of WAV files, one row each (real beside generated speech)"),
    "tunes": ("seqlab.analysis.tunes", "folk tunes in ABC: share that parse and keep their meter, key, range; MIDI and piano rolls"),
}
# offline pages, each a module with its own argument parser: command -> (module, help)
PAGES = {"viz": ("seqlab.analysis.viz", "one offline HTML page: the text coloured by a cell's activation, cell picker, loss, predictions"),
         "gallery": ("seqlab.analysis.gallery", "one offline HTML page to listen and look: generated tunes and speech, audio and pictures")}


def _module_main(argv: list[str]):
    """The `main(argv)` of a command whose module parses its own arguments, or None."""
    import importlib
    target = None
    if len(argv) >= 2 and argv[0] == "bench" and argv[1] in BENCHES:
        target = BENCHES[argv[1]][0]
        # `bench list` / `bench run NAME` share one module, which needs to know which verb it serves
        rest = argv[1:] if target == "seqlab.bench.suite" else argv[2:]
    elif len(argv) >= 2 and argv[0] == "analyze" and argv[1] in MODULE_ANALYSES:
        target, rest = MODULE_ANALYSES[argv[1]][0], argv[1:]
    elif argv and argv[0] in PAGES:
        target, rest = PAGES[argv[0]][0], argv[1:]
    if target is None:
        return None
    return lambda: importlib.import_module(target).main(rest)


# -- commands ---------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from seqlab.api.training import run_training

    if args.resume:
        if args.config or args.out:
            raise SeqlabError("--resume takes its config and directory from the run; drop --config/--out")
        run_training(args.overrides, args.resume, resume=True)
        return 0
    from seqlab.config import load_config
    run_training(load_config(args.config, args.overrides), args.out, overwrite=args.overwrite)
    return 0


def cmd_eval(args) -> int:
    from seqlab.api import load

    if args.batch_size is not None and args.batch_size <= 0:
        raise SeqlabError(f"--batch-size must be greater than 0, got {args.batch_size}")
    if "score" not in offers(args.run):          # not a language model: scored on a split of its data
        return _eval_task(args)
    run = load(args.run, args.device, checkpoint=args.checkpoint)
    say = lambda m: print(m, file=sys.stderr)                           # noqa: E731
    result = run.evaluate(args.split, file=args.file, streams=args.batch_size, log=say)
    unknown = result.pop("unknown", [])
    if unknown:
        say(f"warning: {len(unknown)} distinct tokens in {args.file} are not in the run's vocabulary "
            f"and count as <unk> (e.g. {unknown[:5]})")
    result = {"run": args.run, **result}
    if args.json:
        print(json.dumps(result))
    else:
        key = next(k for k in ("bpc", "bits_per_byte", "bits_per_token") if k in result)
        print(f"{result['data']}: {result['tokens']:,} tokens | loss {result['loss']:.4f} nats | "
              f"ppl {result['ppl']:.3f} | {key} {result[key]:.4f}")
    return 0


def cmd_export(args) -> int:
    from seqlab.api import load
    from seqlab.api.run import export_format

    fmt = export_format(args.out, args.format)        # a bad format or path: refused before loading
    Output(args.out, "-o", overwrite=args.overwrite)
    info = load(args.run, "cpu").export(args.out, fmt, overwrite=args.overwrite)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    return 0


def cmd_analyze(args) -> int:
    # every analysis parses its own arguments (MODULE_ANALYSES); main() forwards them before here
    raise SeqlabError("name an analysis: seqlab analyze " + " | ".join(MODULE_ANALYSES))


def cmd_data(args) -> int:
    from seqlab.data import datasets, sources

    if args.data_command == "list" or args.data_command is None:
        print(f"cache: {sources.cache_dir()}  (set SEQLAB_DATA to move it)\n")
        groups = (("text corpora (task.name=lm)", sources.corpus_names(), sources.corpus),
                  ("labelled data (task.name=classify, tag, translate, forecast)", datasets.dataset_names(),
                   datasets.dataset))
        for title, names, get in groups:
            print(title + ":")
            for name in names:
                c = get(name)
                status = "ready" if c.is_ready() else "not fetched"
                print(f"  {name:<12} {status:<12} {c.size}")
                print(textwrap.indent(f"{c.description}\nlicence: {c.licence}\nsource: {c.how}", " " * 15) + "\n")
        print("Your own text: seqlab train data.path=FILE_OR_FOLDER")
        return 0
    known = set(sources.corpus_names()) | set(datasets.dataset_names())
    for name in args.names:
        if name not in known:
            raise SeqlabError(f"unknown corpus or dataset {name!r}; valid: {', '.join(sorted(known))}")
    for name in args.names:
        if name in sources.corpus_names():
            sources.corpus(name).fetch(log=print)
        else:
            datasets.dataset(name).fetch(log=print)
    return 0


def cmd_info(args) -> int:
    from seqlab.cli.info import main as info_main
    return info_main(args.build_native)


COMMANDS = {"info": cmd_info, "export": cmd_export, "compress": cmd_compress, "decompress": cmd_decompress, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "data": cmd_data, "bench": cmd_bench,
            "classify": cmd_classify, "tag": cmd_tag, "forecast": cmd_forecast, "translate": cmd_translate,
            "caption": cmd_caption,
            "analyze": cmd_analyze}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    delegated = _module_main(argv)     # modules with their own parsers, --help included
    if delegated is not None:
        return _guarded(delegated, argv[0])
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        from seqlab.cli.verbs import find, run_verb
        verb = find(argv[0])                # a verb a task declares (its own module's)
        if verb is not None:
            return _guarded(lambda: run_verb(verb, argv[1:]), argv[0])
    if argv[:1] == ["train"] and ("-h" in argv or "--help" in argv):
        from seqlab.options import load_declaring
        load_declaring()                    # the options families and tasks declare, listed too
        only = _narrow_help([a for a in argv[1:] if not a.startswith("-")])
    else:
        only = Narrowed()
    parser = build_parser(only)
    # Overrides may come before or after options (`train --out R model.hidden_size=8`):
    # argparse stops a nargs="*" positional at the first option, so collect the rest here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides += extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.command:
        parser.print_help()
        return 2
    return _guarded(lambda: COMMANDS[args.command](args), args.command)


if __name__ == "__main__":
    sys.exit(main())
