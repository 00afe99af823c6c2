"""The task verbs of the `seqlab` command: classify, tag, translate, forecast — and the task
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
from seqlab.io import check_output


def _sentence_arguments(p, verb: str) -> None:
    """RUN, --text, --file, --device and --json: what every verb that reads sentences takes."""
    p.add_argument("run", metavar="RUN", help=f"run directory made by `seqlab train task.name={verb}`")
    p.add_argument("--text", action="append", default=[], help="a sentence (repeatable)")
    p.add_argument("--file", metavar="PATH", help="a UTF-8 file, one sentence per line")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--json", action="store_true", help="one JSON object per sentence")


def add_task_parsers(sub, fmt) -> None:
    """The classify / tag / translate / forecast sub-commands."""
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

    p = sub.add_parser("forecast", formatter_class=fmt, help="forecast the future of a `task.name=forecast` run's series",
                       description="Closed-loop forecast after the end of the run's series: each prediction is\n"
                                   "fed back as the next input. Prints one value per line (or JSON) and can plot.",
                       epilog="example:\n  seqlab forecast runs/airline --steps 36 --plot airline-future.png")
    p.add_argument("run", metavar="RUN", help="run directory made by `seqlab train task.name=forecast`")
    p.add_argument("--steps", type=int, default=12, help="values to forecast (default: 12)")
    p.add_argument("--plot", metavar="PNG", help="also draw the series and the forecast into this PNG file")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of lines")


def _task_of(run_path: str) -> str:
    from seqlab.train.runs import task_of
    return task_of(run_path)


def _eval_task(args) -> int:
    from seqlab.train.runs import evaluate_run
    if _task_of(args.run) == "forecast":
        from seqlab.tasks.forecast import load_forecaster
        _, meta, _ = load_forecaster(args.run)
        if args.split != "test":
            raise SeqlabError("a forecast run is scored on its test horizon only; use --split test")
        result = {"horizon": meta["horizon"], **meta["test"],
                  **{f"seasonal_naive_{k}": v for k, v in meta["seasonal_naive_test"].items()}}
        print(json.dumps({"run": args.run, **result}) if args.json else
              " | ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()))
        return 0
    if args.file:
        raise SeqlabError("--file evaluates language models; a task run is evaluated on --split of its data")
    result = evaluate_run(args.run, args.split, args.device, log=lambda m: print(m, file=sys.stderr))
    if args.json:
        print(json.dumps({"run": args.run, "split": args.split, **result}))
    else:
        print(f"{args.split} split: " + " | ".join(f"{k} {v:.4f}" for k, v in result.items()))
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
    from seqlab.train.runs import load_trained
    name = _task_of(args.run)
    if name != verb:
        raise SeqlabError(f"{args.run} is a task.name={name} run; `seqlab {verb}` needs a task.name={verb} run")
    return load_trained(args.run, args.device)


def cmd_classify(args) -> int:
    import torch
    sentences = _sentences(args)
    cfg, task, model, device = _load_task_run(args, "classify")
    with torch.no_grad():
        out = task.predict(model, [(task.encode_text(s), 0) for s in sentences], device)
    for sentence, row in zip(sentences, out):
        if task.regression:
            result = {"score": float(row)}
        else:
            best = int(row.argmax())
            result = {"label": task.labels[best], "probability": float(row[best])}
        if args.json:
            print(json.dumps({"text": sentence, **result}, ensure_ascii=False))
        elif task.regression:
            print(f"{result['score']:+.3f}\t{sentence}")
        else:
            print(f"{result['label']}\t{result['probability']:.3f}\t{sentence}")
    return 0


def cmd_tag(args) -> int:
    import torch
    from seqlab.tasks.base import words
    sentences = _sentences(args)
    cfg, task, model, device = _load_task_run(args, "tag")
    tokens = [s.split() if " " in s.strip() else words(s) for s in sentences]
    with torch.no_grad():
        tags = task.predict(model, [task.encode_words(t) for t in tokens], device)
    for toks, ids in zip(tokens, tags):
        if args.json:
            print(json.dumps({"tokens": toks, "tags": [task.tags[i] for i in ids]}, ensure_ascii=False))
        else:
            print(" ".join(f"{w}/{task.tags[i]}" for w, i in zip(toks, ids)))
    return 0


def cmd_translate(args) -> int:
    import torch
    if args.beam < 0:
        raise SeqlabError(f"--beam must be 1 or more (0 = the run's own), got {args.beam}")
    check_output(args.attention, "--attention")
    sentences = _sentences(args)
    cfg, task, model, device = _load_task_run(args, "translate")
    beam = args.beam or cfg.task.beam_size
    alpha = cfg.task.length_penalty if args.alpha is None else args.alpha
    if not math.isfinite(alpha):
        raise SeqlabError(f"--alpha must be a finite number, got {alpha}")
    if beam > len(task.tgt_vocab):
        raise SeqlabError(f"--beam {beam} is wider than the target vocabulary ({len(task.tgt_vocab)} tokens); "
                          f"use at most {len(task.tgt_vocab)} (5 to 10 is usual)")
    sources = [task.encode_text(s) for s in sentences]
    with torch.no_grad():
        outputs = task.translate(model, sources, device, beam, alpha)
    for sentence, ids in zip(sentences, outputs):
        text = task.tgt_vocab.decode(ids)
        print(json.dumps({"source": sentence, "translation": text}, ensure_ascii=False) if args.json else text)
    if args.attention:
        from seqlab.analysis.attention import plot_attention
        from seqlab.data.sequences import seq2seq_batch as make_batch
        src, lengths, tgt_in, _ = make_batch([(sources[0], outputs[0])], device)
        with torch.no_grad():
            _, weights = model(src, lengths, tgt_in)                           # (1, U, S)
        plot_attention(args.attention, weights[0].cpu().numpy(), [task.src_vocab.itos[i] for i in sources[0]],
                       [task.tgt_vocab.itos[i] for i in outputs[0]] + ["<eos>"],
                       title=f"{Path(args.run).name}: attention ({cfg.task.attention})")
        print(f"attention map: {args.attention}", file=sys.stderr)
    return 0


def cmd_forecast(args) -> int:
    from seqlab.tasks.forecast import forecast_future
    if args.steps <= 0:
        raise SeqlabError(f"--steps must be greater than 0, got {args.steps}")
    check_output(args.plot, "--plot")
    name = _task_of(args.run)
    if name != "forecast":
        raise SeqlabError(f"{args.run} is a task.name={name} run; `seqlab forecast` needs a task.name=forecast run")
    meta, future = forecast_future(args.run, args.steps)
    if args.plot:
        import numpy as np

        from seqlab.tasks.forecast_eval import plot_forecast
        history = np.asarray(meta["values"])
        plot_forecast(args.plot, history, None, None, {"forecast": future}, show_last=4 * args.steps,
                      title=f"{meta['series']}: the next {args.steps} values, fed back step by step")
        print(f"plot: {args.plot}", file=sys.stderr)
    if args.json:
        print(json.dumps({"series": meta["series"], "forecast": future.tolist()}))
    else:
        print("\n".join(f"{v:.6g}" for v in future))
    return 0


def _sample_conditional(args) -> int:
    import torch

    from seqlab.data.vocab import BOS, EOS, PAD, UNK
    from seqlab.decode.beam import beam_search
    from seqlab.decode.sampling import generate
    from seqlab.tasks.conditional import Conditioned
    from seqlab.train.runs import load_trained

    cfg, task, model, device = load_trained(args.run, args.device)
    if args.condition not in task.labels:
        raise SeqlabError(f"--condition must be one of {', '.join(task.labels)}; got {args.condition!r}")
    lm = Conditioned(model, task.labels.index(args.condition)).eval()
    prime = [BOS] + ([task.vocab.stoi.get(w, UNK) for w in args.prime.split()] if args.prime else [])
    banned = (PAD, UNK, BOS)
    if args.beam:
        ids = beam_search(lm, prime, args.length, args.beam, alpha=args.alpha, banned=banned, eos_id=EOS)[0].tokens
    else:
        generator = torch.Generator().manual_seed(args.seed) if args.seed is not None else None
        ids = []
        for token in generate(lm, prime, args.length, greedy=args.greedy, temperature=args.temperature,
                              top_k=args.top_k, top_p=args.top_p, banned=banned, generator=generator):
            if token == EOS:
                break
            ids.append(token)
    words = [task.vocab.itos[i] for i in prime[1:] + [i for i in ids if i != EOS]]
    print(" ".join(words))
    return 0
