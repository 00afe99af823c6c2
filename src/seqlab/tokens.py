"""The special tokens every vocabulary starts with, and their ids.

A leaf of the house (floor 0): models need the ids (padding, the start and end of a
sequence) and data builds vocabularies around them, but models and data never import each
other, so the ids live here.

    <pad>=0  <unk>=1  <bos>=2  <eos>=3
"""
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")
PAD, UNK, BOS, EOS = range(4)
