"""What ftfy.fix_text makes of odd prompts, for Easel's CLIP prompt clean-up test.

transformers' slow CLIPTokenizer (the class SD pipelines name) runs ftfy.fix_text on a prompt
before CLIP's BPE when ftfy is installed, as CLIP's own code does. ftfy is in the local wheel
directory, not in Debian:

    /usr/bin/python3 -m venv tools/reference/.work/ftfy
    tools/reference/.work/ftfy/bin/pip install --no-index --find-links /opt/pypi/files ftfy
    tools/reference/.work/ftfy/bin/python tools/reference/ftfy_prompt_fixture.py --out test/fixtures/prompts/ftfy.json
"""

import argparse
import json
import pathlib

import ftfy

PROMPTS = [
    # what people paste: curly quotes and apostrophes, from word processors and phones
    "don’t stop", "a cat’s “favourite” toy", "‘single’ and ‛reversed’", "„low“ quotes ‟here”", "it\u02bcs",
    # HTML entities, from web pages and APIs
    "salt &amp; pepper", "&lt;3 a heart", "caf&eacute; &#233; &#xE9;", "5 &gt; 3 &amp;&amp; 2 &lt; 4",
    "&quot;quoted&quot;", "&nbsp;spaced&nbsp;", "&checkmark; done", "fish &amp chips", "this&not that",
    "a <b>bold</b> &amp; tag", "&EACUTE;", "&#128512;",
    # fullwidth and halfwidth forms, from East Asian input methods
    "style：watercolor", "ＬＯＵＤ　ＮＯＩＳＥＳ", "ｈｅｌｌｏ，ｗｏｒｌｄ！", "Ｕﾀｰﾝ", "（１２３）",
    # ligatures
    "ﬁne ﬂowers", "ﬀ ﬃ ﬄ ﬅ ﬆ", "ĳs ǆ ǈ",
    # line breaks and control characters
    "line one\r\nline two", "a\rb", "para\u2029graph\u2028line", "next\u0085line",
    "zero\u200bwidth", "bom\ufeffhere", "bell\u0007 and tab\tkept", "\u001b[31mred\u001b[0m text",
    "arabic\u206acontrol", "object\ufffcchar",
    # C1 controls that are windows-1252 punctuation
    "smart\u0093quotes\u0094", "euro \u0080 sign",
    # normalisation: decomposed accents become composed (NFC)
    "cafe\u0301", "n\u0303",
    # already clean
    "a red circle on a blue background", "", "   spaces   ", "emoji 🎨🖌️", "日本語のテキスト",
    "Ünïcödé ÀÉÎÕÜ", "math ≤ ≥ ≠ ∞", "dashes – — and … ellipsis",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    args = parser.parse_args()
    cases = [{"text": text, "fixed": ftfy.fix_text(text)} for text in PROMPTS]
    fixture = {"source": f"ftfy {ftfy.__version__} fix_text, default configuration", "cases": cases}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
