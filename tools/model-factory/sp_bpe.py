"""A SentencePiece-style BPE (Llama's and Mistral's kind): words carry a leading `▁` for the space
before them, characters outside the vocabulary fall back to byte tokens `<0x00>`…`<0xFF>`, and
the `<s>` BOS is added by the post-processor. Saved as a Hugging Face `tokenizer.json` in the form
`convert_slow_tokenizer` writes for Llama with `legacy: false`: a Metaspace pre-tokenizer that
prepends `▁` to the first section only (`prepend_scheme: first`), a BPE model with
`byte_fallback`, and the Replace/ByteFallback/Fuse/Strip decoder.

No tokenizer library is packaged for Debian's Python, so the trainer and an encoder that follows
the same rules are written here (the encoder makes the training data; tiny_llama.py checks it
against the maintained library Easel loads the file with).
"""
import collections
import json
import re

from byte_bpe import added_tokens
from clip_bpe import apply_merges, learn_merges

SPACE = "\u2581"
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
BYTES = [f"<0x{b:02X}>" for b in range(256)]
# Characters with their own token; everything else (newlines, non-ASCII) falls back to bytes.
CHARS = [SPACE] + [chr(c) for c in range(0x21, 0x7F)]
# Training words: SentencePiece splits at spaces and between letters, digits and punctuation
# (split_by_unicode_script, split_by_number), so no piece spans two of them.
WORD = re.compile(SPACE + r"?[A-Za-z]+|" + SPACE + r"?[0-9]|" + SPACE + r"?[^\sA-Za-z0-9" + SPACE + r"]+|" + SPACE)


def train(texts: list[str], vocab_size: int, added: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    split = re.compile("(" + "|".join(re.escape(s) for s in added) + ")")
    words = collections.Counter()
    for t in texts:
        for part in split.split(t):
            if part and part not in added:
                for w in WORD.findall(part.replace(" ", SPACE)):
                    words[tuple(w)] += 1
    base = [UNK, BOS, EOS] + BYTES + CHARS
    merges = learn_merges(words, vocab_size - len(base) - len(added))
    tokens = base + ["".join(m) for m in merges] + added
    return {t: i for i, t in enumerate(tokens)}, merges


class SpBpe:
    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], added: list[str]):
        self.vocab, self.added = vocab, added
        self.specials = [UNK, BOS, EOS] + added
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.split = re.compile("(" + "|".join(re.escape(s) for s in self.specials) + ")")
        self.inverse = {i: t for t, i in vocab.items()}
        self.cache: dict[str, list[int]] = {}

    def _word(self, w: str) -> list[int]:
        if w not in self.cache:
            ids = []
            for sym in apply_merges(list(w), self.ranks):
                ids += [self.vocab[sym]] if sym in self.vocab else [self.vocab[f"<0x{b:02X}>"] for b in sym.encode("utf-8")]
            self.cache[w] = ids
        return self.cache[w]

    def encode(self, text: str, add_bos: bool = True) -> list[int]:
        """As the tokenizer.json below encodes: special tokens split out first; `▁` prepended to
        the first section only; spaces become `▁`; merges never cross the training split."""
        ids = [self.vocab[BOS]] if add_bos else []
        for index, part in enumerate(self.split.split(text)):
            if not part:
                continue
            if part in self.specials:
                ids.append(self.vocab[part])
                continue
            s = part.replace(" ", SPACE)
            if index == 0 and not s.startswith(SPACE):
                s = SPACE + s
            pos = 0
            for m in WORD.finditer(s):
                ids += [self.vocab[f"<0x{b:02X}>"] for c in s[pos : m.start()] for b in c.encode("utf-8")]
                ids += self._word(m.group())
                pos = m.end()
            ids += [self.vocab[f"<0x{b:02X}>"] for c in s[pos:] for b in c.encode("utf-8")]
        return ids

    def decode(self, ids: list[int]) -> str:
        out, pending = [], bytearray()
        for i in ids:
            t = self.inverse[i]
            if t in self.specials:
                continue
            if re.fullmatch(r"<0x[0-9A-F]{2}>", t):
                pending.append(int(t[3:5], 16))
                continue
            if pending:
                out.append(pending.decode("utf-8", errors="replace"))
                pending = bytearray()
            out.append(t.replace(SPACE, " "))
        if pending:
            out.append(pending.decode("utf-8", errors="replace"))
        text = "".join(out)
        return text[1:] if text.startswith(" ") else text


def save_tokenizer_json(path: str, vocab: dict[str, int], merges: list[tuple[str, str]], added: list[str]) -> None:
    specials = [UNK, BOS, EOS] + added
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added_tokens(vocab, specials),
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "first", "split": False},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": BOS, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": BOS, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {BOS: {"id": BOS, "ids": [vocab[BOS]], "tokens": [BOS]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": SPACE}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": UNK, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": [[a, b] for a, b in merges],
        },
    }
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
