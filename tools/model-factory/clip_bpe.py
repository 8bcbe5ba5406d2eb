"""A CLIP-style byte-level BPE, trained on a caption corpus and saved in the layout of a
Stable Diffusion `tokenizer/` folder (vocab.json, merges.txt, tokenizer_config.json,
special_tokens_map.json).

The vocabulary is built the way CLIP's is: the 256 byte symbols, the same with `</w>`, the
merged symbols in merge order, then `<|startoftext|>` and `<|endoftext|>` (so EOS has the
largest id, which CLIP's pooling relies on).
No tokenizer library is packaged for Debian's Python, so the trainer is written here; Easel
itself loads the result with a maintained tokenizer library.
"""
import collections
import json
import os
import re

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
WORD_RE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENCODER = bytes_to_unicode()


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def word_symbols(word: str) -> tuple[str, ...]:
    chars = [BYTE_ENCODER[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + "</w>",)


def merge_pair(syms: tuple[str, ...] | list[str], a: str, b: str) -> list[str]:
    """Replaces every adjacent (a, b) in syms with the merged symbol."""
    out, i = [], 0
    while i < len(syms):
        if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
            out.append(a + b)
            i += 2
        else:
            out.append(syms[i])
            i += 1
    return out


def learn_merges(words: collections.Counter, max_merges: int) -> list[tuple[str, str]]:
    """BPE training over word counts (words as symbol tuples): repeatedly merge the most
    frequent adjacent pair (ties broken lexicographically, so runs are deterministic)."""
    merges: list[tuple[str, str]] = []
    vocab = dict(words)
    while len(merges) < max_merges:
        pairs = collections.Counter()
        for syms, count in vocab.items():
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += count
        if not pairs:
            break
        (a, b), count = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        if count < 2:
            break
        merges.append((a, b))
        merged: dict = {}
        for syms, c in vocab.items():
            key = tuple(merge_pair(syms, a, b))
            merged[key] = merged.get(key, 0) + c
        vocab = merged
    return merges


def apply_merges(syms: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Encodes one word: merge the lowest-ranked pair until none applies."""
    while len(syms) > 1:
        rank, i = min((ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(syms, syms[1:])))
        if rank == 1 << 30:
            break
        syms = merge_pair(syms, syms[i], syms[i + 1])
    return syms


def train(corpus: list[str], num_merges: int) -> list[tuple[str, str]]:
    words = collections.Counter()
    for line in corpus:
        for w in WORD_RE.findall(normalise(line)):
            words[word_symbols(w)] += 1
    return learn_merges(words, num_merges)


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    symbols = list(BYTE_ENCODER.values())
    symbols = symbols + [s + "</w>" for s in symbols]
    symbols += ["".join(m) for m in merges]
    symbols += [BOS, EOS]
    return {s: i for i, s in enumerate(symbols)}


class ClipBpe:
    """Encodes with the trained merges (used by the factory for training; Easel uses a library)."""

    def __init__(self, merges: list[tuple[str, str]], max_length: int, pad: str = EOS):
        self.pad = pad
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.vocab = build_vocab(merges)
        self.max_length = max_length
        self.cache: dict[str, list[int]] = {}

    def _bpe(self, word: str) -> list[int]:
        if word in self.cache:
            return self.cache[word]
        syms = apply_merges(list(word_symbols(word)), self.ranks)
        ids = [self.vocab[s] for s in syms]
        self.cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """BOS, tokens, EOS, truncated and padded to max_length (with EOS, as SD's CLIP does, or `pad`)."""
        ids = [self.vocab[BOS]]
        for w in WORD_RE.findall(normalise(text)):
            ids += self._bpe(w)
        ids = ids[: self.max_length - 1] + [self.vocab[EOS]]
        return ids + [self.vocab[self.pad]] * (self.max_length - len(ids))


def save(merges: list[tuple[str, str]], out_dir: str, max_length: int, pad: str = EOS) -> None:
    """`pad` is EOS for SD's tokenizer; SDXL's second tokenizer pads with "!"."""
    os.makedirs(out_dir, exist_ok=True)
    vocab = build_vocab(merges)
    with open(os.path.join(out_dir, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for a, b in merges:
            f.write(f"{a} {b}\n")
    special = {
        "bos_token": {"content": BOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": pad,
        "unk_token": {"content": EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    }
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "do_lower_case": True,
        "model_max_length": max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": pad,
        "unk_token": EOS,
        "errors": "replace",
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": True,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=2)
