"""`seqlab sample`: continue a prime from a trained language model (streamed), draw several
continuations as one batch (--num-samples), or search with a beam; conditional runs write a
sentence of a class (cli_tasks.py).

Imports inside the command functions are deliberate: only the command that runs pays for
torch and the modules it needs, so `seqlab --help` and a mistyped option answer at once."""
from __future__ import annotations

import math
import sys

from seqlab import SeqlabError
from seqlab.cli_tasks import _sample_conditional, _task_of


def cmd_sample(args) -> int:
    import torch

    from seqlab.data.vocab import BOS, EOS, PAD, SPECIALS, UNK
    from seqlab.decode.beam import beam_search
    from seqlab.decode.sampling import generate, generate_batch
    from seqlab.train.runs import load_run

    if args.length <= 0:
        raise SeqlabError(f"--length must be greater than 0, got {args.length}")
    for flag, value in (("--temperature", args.temperature), ("--top-p", args.top_p), ("--alpha", args.alpha)):
        if not math.isfinite(value):
            raise SeqlabError(f"{flag} must be a finite number, got {value}")
    if args.temperature <= 0:
        raise SeqlabError(f"--temperature must be greater than 0, got {args.temperature} (use --greedy for T -> 0)")
    if args.top_k < 0:
        raise SeqlabError(f"--top-k must be 0 (off) or more, got {args.top_k}")
    if not 0 < args.top_p <= 1:
        raise SeqlabError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.beam < 0:
        raise SeqlabError(f"--beam must be 0 (off) or more, got {args.beam}")
    if args.beam and args.greedy:
        raise SeqlabError("choose one of --greedy and --beam")
    if not 1 <= args.num_samples <= 100_000:
        raise SeqlabError(f"--num-samples must be between 1 and 100000, got {args.num_samples}")
    if args.num_samples > 1 and (args.beam or args.greedy):
        raise SeqlabError("--num-samples draws different samples; --greedy and --beam give one continuation")
    if _task_of(args.run) == "conditional":
        if args.num_samples > 1:
            raise SeqlabError("--num-samples applies to language-model runs; a conditional run writes one "
                              "sentence per --condition")
        return _sample_conditional(args)
    if args.condition:
        raise SeqlabError("--condition applies to task.name=conditional runs")
    cfg, vocab, model, device = load_run(args.run, args.device, lm_for="seqlab sample")
    if args.prime is None:
        prime_ids = [EOS] if vocab.level == "word" else vocab.encode("\n").tolist()
        prime_text = ""
    else:
        if args.prime == "":
            raise SeqlabError("--prime is empty; give some text, or leave --prime out")
        specials = [t for t in SPECIALS if vocab.level == "word" and t in args.prime.split()]
        if specials:
            raise SeqlabError(f"--prime contains {' '.join(specials)}, seqlab's own markers, which the model never "
                              f"reads as text; write the words alone (a new line stands for <eos>)")
        missing = vocab.unknown(args.prime)
        if missing:
            raise SeqlabError(f"--prime has {len(missing)} token(s) the model never saw: "
                              f"{' '.join(repr(m) for m in missing[:10])}; remove them")
        prime_ids, prime_text = vocab.encode(args.prime).tolist(), args.prime
    # a character stream never contains <eos>; a word stream ends lines with it
    banned = (PAD, UNK, BOS, EOS) if vocab.level == "char" else (PAD, BOS)
    out = sys.stdout
    out.write(prime_text + (" " if prime_text and vocab.level == "word" else ""))
    if args.beam:
        best = beam_search(model, prime_ids, args.length, args.beam, alpha=args.alpha, banned=banned)[0]
        out.write(vocab.decode(best.tokens) + "\n")
        return 0
    generator = None
    if args.seed is not None:
        generator = torch.Generator().manual_seed(args.seed)
    sep = "" if vocab.level == "char" else " "
    if args.num_samples > 1:
        samples = generate_batch(model, prime_ids, args.length, args.num_samples, temperature=args.temperature,
                                 top_k=args.top_k, top_p=args.top_p, banned=banned, generator=generator)
        lead = prime_text + (" " if prime_text and vocab.level == "word" else "")
        out.write(vocab.decode(samples[0]) + "\n")
        for tokens in samples[1:]:
            out.write("----\n" + lead + vocab.decode(tokens) + "\n")
        return 0
    for token in generate(model, prime_ids, args.length, greedy=args.greedy, temperature=args.temperature,
                          top_k=args.top_k, top_p=args.top_p, banned=banned, generator=generator):
        piece = vocab.decode([token])
        out.write(piece if sep == "" or piece == "\n" else piece + sep)
        out.flush()
    out.write("\n")
    return 0
