"""The task verbs of the `seqlab` command: classify, tag, translate, caption, forecast — and the task
runs' side of eval and sample. cli.py builds the parser and dispatches; this file holds
what is specific to task.name != lm runs.

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from seqlab import SeqlabError
from seqlab.io import output


def _sentence_arguments(p, verb: str) -> None:
    """RUN, --text, --file, --device and --json: what every verb that reads sentences takes."""
    p.add_argument("run", metavar="RUN", help=f"run directory made by `seqlab train task.name={verb}`")
    p.add_argument("--text", action="append", default=[], help="a sentence (repeatable)")
    p.add_argument("--file", metavar="PATH", help="a UTF-8 file, one sentence per line")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--json", action="store_true", help="one JSON object per sentence")


def add_task_parsers(sub, fmt) -> None:
    """The classify / tag / translate / caption / forecast sub-commands."""
    for verb, what, example in (
            ("classify", "label sentences with a `task.name=classify` run",
             "seqlab classify runs/sentiment --text 'a gripping, funny film'"),
            ("tag", "tag each word of sentences with a `task.name=tag` run",
             "seqlab tag runs/pos --text 'The old man saw the boat .'")):
        p = sub.add_parser(verb, formatter_class=fmt, help=what, description=what[0].upper() + what[1:] + ".",
                           epilog=f"example:\n  {example}")
        _sentence_arguments(p, verb)

    p = sub.add_parser("translate", formatter_class=fmt, help="translate sentences with a `task.name=translate` run",
                       description="Translate sentences by beam search (or greedily with --beam 1) and\n"
                                   "optionally draw the attention of the first one as a heat map.",
                       epilog="example:\n  seqlab translate runs/en-es --text 'And God said, Let there be light.' "
                              "--attention light.png")
    _sentence_arguments(p, "translate")
    p.add_argument("--beam", type=int, default=0, metavar="K", help="beam width (default: the run's task.beam_size; 1 = greedy)")
    p.add_argument("--alpha", type=float, default=None, help="length-penalty exponent (default: the run's task.length_penalty)")
    p.add_argument("--attention", metavar="PNG", help="draw the first sentence's attention weights into this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the --attention PNG if it exists (default: refuse)")

    p = sub.add_parser("caption", formatter_class=fmt, help="caption images with a `task.name=caption` run",
                       description="Write a caption for each image by beam search (or greedily with --beam 1)\n"
                                   "and optionally draw, for the first image, where the model looked for each\n"
                                   "word. Any image Pillow reads is converted to grey and scaled to the scenes'\n"
                                   "64 x 96; light digits on a dark ground, as the model was trained.",
                       epilog="example:\n  seqlab caption runs/caption --image scene.png --beam 5 --attention looked.png")
    p.add_argument("run", metavar="RUN", help="run directory made by `seqlab train task.name=caption`")
    p.add_argument("--image", action="append", default=[], metavar="FILE", help="an image (repeatable)")
    p.add_argument("--beam", type=int, default=0, metavar="K", help="beam width (default: the run's task.beam_size; 1 = greedy)")
    p.add_argument("--alpha", type=float, default=None, help="length-penalty exponent (default: the run's task.length_penalty)")
    p.add_argument("--attention", metavar="PNG", help="draw the first image's attention, one panel per word, into this PNG")
    p.add_argument("--overwrite", action="store_true", help="replace the --attention PNG if it exists (default: refuse)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")

    p = sub.add_parser("forecast", formatter_class=fmt, help="forecast the future of a `task.name=forecast` run's series",
                       description="Closed-loop forecast after the end of the run's series: each prediction is\n"
                                   "fed back as the next input. Prints one value per line (or JSON) and can plot.",
                       epilog="example:\n  seqlab forecast runs/airline --steps 36 --plot airline-future.png")
    p.add_argument("run", metavar="RUN", help="run directory made by `seqlab train task.name=forecast`")
    p.add_argument("--steps", type=int, default=12, help="values to forecast (default: 12)")
    p.add_argument("--plot", metavar="PNG", help="also draw the series and the forecast into this PNG file")
    p.add_argument("--overwrite", action="store_true", help="replace the --plot PNG if it exists (default: refuse)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")


def _task_of(run_path: str) -> str:
    from seqlab.training.runs import task_of
    return task_of(run_path)


def offers(run_path: str) -> tuple[str, ...]:
    """What the run's task offers (Task.offers and its verbs), read before the weights are loaded."""
    from seqlab.registry import get
    return get("task", _task_of(run_path)).offered()


def need(run_path: str, offer: str, command: str) -> None:
    """Refuse `command` on a run whose task does not offer `offer`, naming what it does offer."""
    from seqlab.registry import get
    from seqlab.training.task import offering
    kind = get("task", _task_of(run_path))
    if offer in kind.offered():
        return
    tasks = offering(offer)
    instead = f"; use `seqlab {kind.command()} {run_path} ...`" if kind.command() else ""
    what = ", not a language model" if any(t in offering("stream") for t in tasks) else ""
    raise SeqlabError(f"{run_path} is a task.name={kind.name} run{what}; {command} reads "
                      f"task.name={' or '.join(tasks)} runs{instead}")


def _eval_task(args) -> int:
    from seqlab.api import load
    if args.file:
        raise SeqlabError("--file evaluates language models; a task run is evaluated on --split of its data")
    run = load(args.run, args.device, checkpoint=getattr(args, "checkpoint", None))
    result = run.evaluate(args.split, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps({"run": args.run, "split": args.split, **result}))
    else:
        print(f"{args.split} split: " + " | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in result.items()))
    return 0


def _sentences(args) -> list[str]:
    from seqlab.data.sources import read_path
    lines = list(args.text)
    if any(not line.strip() for line in lines):
        raise SeqlabError("--text is empty; give a sentence, e.g. --text 'the cat sat'")
    if args.file:
        lines += [line for line in read_path(args.file).splitlines() if line.strip()]
    if not lines:
        raise SeqlabError("give sentences with --text '...' (repeatable) or --file PATH")
    return lines


def _load_task_run(args, verb: str):
    from seqlab.api import load
    need(args.run, verb, f"`seqlab {verb}`")
    return load(args.run, getattr(args, "device", "auto"), checkpoint=getattr(args, "checkpoint", None))


def _note_unknown(run, sentences) -> None:
    """One line on stderr naming the words the model never saw (it reads them as <unk>)."""
    seen = list(dict.fromkeys(w for s in sentences for w in run.unknown(s)))
    if seen:
        print(f"note: {len(seen)} word(s) the run never saw in training, read as <unk>: "
              f"{', '.join(repr(w) for w in seen[:10])}{' ...' if len(seen) > 10 else ''}", file=sys.stderr)


def cmd_classify(args) -> int:
    sentences = _sentences(args)
    run = _load_task_run(args, "classify")
    _note_unknown(run, sentences)
    for sentence, result in zip(sentences, run.classify(sentences)):
        if args.json:
            print(json.dumps({"text": sentence, **result}, ensure_ascii=False))
        elif "score" in result:
            print(f"{result['score']:+.3f}\t{sentence}")
        else:
            print(f"{result['label']}\t{result['probability']:.3f}\t{sentence}")
    return 0


def cmd_tag(args) -> int:
    sentences = _sentences(args)
    run = _load_task_run(args, "tag")
    _note_unknown(run, sentences)
    for result in run.tag(sentences):
        if args.json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            print(" ".join(f"{w}/{t}" for w, t in zip(result["tokens"], result["tags"])))
    return 0


def _check_beam(args) -> None:
    """--beam and --alpha of the decoding verbs (translate, caption)."""
    if args.beam < 0:
        raise SeqlabError(f"--beam must be 1 or more (0 = the run's own), got {args.beam}")
    if args.alpha is not None and not math.isfinite(args.alpha):
        raise SeqlabError(f"--alpha must be a finite number, got {args.alpha}")


def cmd_translate(args) -> int:
    _check_beam(args)
    picture = output(args.attention, "--attention", args.overwrite, inputs=[args.file])
    sentences = _sentences(args)
    run = _load_task_run(args, "translate")
    _note_unknown(run, sentences)
    for sentence, text in zip(sentences, run.translate(sentences, beam=args.beam or None, alpha=args.alpha)):
        print(json.dumps({"source": sentence, "translation": text}, ensure_ascii=False) if args.json else text)
    if args.attention:
        from seqlab.analysis.attention import plot_attention
        drawn = run.attention(sentences[0], beam=args.beam or None)
        plot_attention(picture, drawn["weights"], drawn["source"], drawn["target"],
                       title=f"{Path(args.run).name}: attention ({run.config['task']['attention']})")
        print(f"attention map: {args.attention}", file=sys.stderr)
    return 0


def cmd_forecast(args) -> int:
    if args.steps <= 0:
        raise SeqlabError(f"--steps must be greater than 0, got {args.steps}")
    picture = output(args.plot, "--plot", args.overwrite)
    run = _load_task_run(args, "forecast")
    future = run.forecast(args.steps)
    series = run.meta["series"]
    if args.plot:
        import numpy as np

        from seqlab.tasks.forecast_eval import plot_forecast
        history = np.asarray(run.meta["values"])
        plot_forecast(picture, history, None, None, {"forecast": future}, show_last=4 * args.steps,
                      title=f"{series}: the next {args.steps} values, fed back step by step")
        print(f"plot: {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps({"series": series, "forecast": future.tolist()}))
    else:
        print("\n".join(f"{v:.6g}" for v in future))
    return 0


def cmd_caption(args) -> int:
    _check_beam(args)
    if not args.image:
        raise SeqlabError("give an image with --image FILE (repeatable)")
    picture = output(args.attention, "--attention", args.overwrite, inputs=args.image)
    run = _load_task_run(args, "caption")
    if args.attention and run.config["task"]["attention"] == "none":
        raise SeqlabError(f"{args.run} has no attention (task.attention=none): there is nothing to draw; "
                          f"remove --attention")
    results = run.caption(args.image, beam=args.beam or None, alpha=args.alpha)
    for path, result in zip(args.image, results):
        print(json.dumps({"image": path, "caption": result["caption"]}) if args.json else result["caption"])
    if args.attention:
        from seqlab.analysis.attention import plot_image_attention
        first = results[0]
        plot_image_attention(picture, first["image"], first["attention"], first["grid"], first["words"],
                             title=f"{Path(args.image[0]).name}: {first['caption']}")
    return 0
