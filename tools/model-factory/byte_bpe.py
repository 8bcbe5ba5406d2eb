"""A GPT-2-style byte-level BPE, trained here and saved as a Hugging Face `tokenizer.json`
(model BPE, ByteLevel pre-tokenizer and decoder) that maintained tokenizer libraries load.

No tokenizer library is packaged for Debian's Python, so the trainer is written here; Easel
itself loads the result with a maintained library.
"""
import collections
import json
import re

from clip_bpe import apply_merges, bytes_to_unicode, learn_merges

BYTE_ENCODER = bytes_to_unicode()
# GPT-2's pre-tokenization, restricted to what our ASCII corpus holds.
PRETOKENIZE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+")


def to_symbols(piece: str) -> tuple[str, ...]:
    return tuple(BYTE_ENCODER[b] for b in piece.encode("utf-8"))


def train(texts: list[str], vocab_size: int, specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    words = collections.Counter()
    split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
    for t in texts:
        for part in split.split(t):
            if part in specials or not part:
                continue
            for w in PRETOKENIZE.findall(part):
                words[to_symbols(w)] += 1
    base = list(BYTE_ENCODER.values())
    merges = learn_merges(words, vocab_size - len(base) - len(specials))
    tokens = specials + base + ["".join(m) for m in merges]
    return {t: i for i, t in enumerate(tokens)}, merges


class ByteBpe:
    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], specials: list[str]):
        self.vocab, self.specials = vocab, specials
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        self.cache: dict[str, list[int]] = {}
        self.inverse = {i: t for t, i in vocab.items()}
        self.byte_decoder = {v: k for k, v in BYTE_ENCODER.items()}

    def _bpe(self, piece: str) -> list[int]:
        if piece in self.cache:
            return self.cache[piece]
        syms = apply_merges(list(to_symbols(piece)), self.ranks)
        ids = [self.vocab[s] for s in syms]
        self.cache[piece] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for part in self.split.split(text):
            if not part:
                continue
            if part in self.specials:
                ids.append(self.vocab[part])
            else:
                for w in PRETOKENIZE.findall(part):
                    ids += self._bpe(w)
        return ids

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.inverse[i] for i in ids)
        out = bytearray()
        for ch in text:
            out.extend(self.byte_decoder[ch].to_bytes(1, "big") if ch in self.byte_decoder else ch.encode())
        return out.decode("utf-8", errors="replace")


def added_tokens(vocab: dict[str, int], specials: list[str]) -> list[dict]:
    """tokenizer.json's added_tokens: special, matched before normalisation."""
    return [{"id": vocab[s], "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True} for s in specials]


def save_tokenizer_json(path: str, vocab: dict[str, int], merges: list[tuple[str, str]], specials: list[str]) -> None:
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(vocab, specials),
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
            "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges],
        },
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
