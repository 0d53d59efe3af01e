#!/usr/bin/env python3
"""Generates tests/unicode/vectors.txt: test vectors for `--transform unicode`,
whose definition is Python's

    b.decode('utf-8', 'surrogateescape').upper().encode('utf-8', 'surrogateescape')

so Python itself computes every expected output here.

Python's Unicode version (unicodedata.unidata_version) and the Rust standard
library's (char::UNICODE_VERSION) differ, and upecho follows Rust's. So the
script asks the Rust toolchain on PATH for its upper-case mapping of every
code point (it compiles and runs a ten-line program with `rustc`), compares it
with Python's `chr(c).upper()` for every code point, and leaves out of the
vectors every code point where the two differ; the header of the output lists
them.

Usage (from the repository root):

    python3 tests/unicode/gen_vectors.py            # rewrites tests/unicode/vectors.txt
    python3 tests/unicode/gen_vectors.py --check    # fails if the file is not what it would write

The output is deterministic for a given Python and Rust toolchain. Format, after
the `#` header lines: one vector per line, `name<TAB>input hex<TAB>expected hex`.
"""

import argparse
import pathlib
import random
import subprocess
import sys
import tempfile
import unicodedata

HERE = pathlib.Path(__file__).resolve().parent
OUTPUT = HERE / "vectors.txt"
SEED = 20240917

RUST_PROGRAM = r"""
fn main() {
    let (major, minor, update) = char::UNICODE_VERSION;
    println!("version {major}.{minor}.{update}");
    for c in (0..=char::MAX as u32).filter_map(char::from_u32) {
        let upper: Vec<String> = c.to_uppercase().map(|u| format!("{:X}", u as u32)).collect();
        if upper.len() != 1 || c.to_uppercase().next() != Some(c) {
            println!("{:X} {}", c as u32, upper.join(" "));
        }
    }
}
"""

# Text in many scripts, each chosen for a case-mapping feature. Characters whose
# mapping differs between the two Unicode versions are dropped (and reported).
SAMPLES = {
    "latin basic": "The quick brown fox jumps over the lazy dog",
    "latin german sharp s": "Straße, Fuß, größer, ẞ stays",
    "latin ligatures": "ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ ﬁnancial oﬃce",
    "latin digraphs": "ǆ ǅ Ǆ ǉ ǈ Ǉ ǌ ǋ Ǌ ǳ ǲ Ǳ ǆungla",
    "latin special casing": "ŉ ǰ ẖ ẗ ẘ ẙ ẚ ı i̇ ſ ǝ ɐ ɑ ɒ ɜ ɡ ɥ ɦ ɪ ʇ ʞ ʝ ʂ ꭓ",
    "latin accents": "àáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿ āăą",
    "latin extended additional": "ḁḃḅ ẝ ẟ ỳ ỹ ỿ ꜣ ꜳ ꝏ ꞁ ꞑ ꞵ",
    "latin fullwidth": "ａｂｃ ｘｙｚ ＡＢＣ",
    "latin circled and roman": "ⓐⓑⓩ ⅰⅱⅻⅿ ↄ ⅎ",
    "greek": "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία",
    "greek final sigma": "σοφός ὁδός ΣΟΦΟΣ ς σ Σ",
    "greek iota subscript": "ᾳ ῃ ῳ ᾀ ᾁ ᾂ ᾈ ᾼ ῌ ῼ ᾷ ῇ ῷ ᾲ ᾴ ῂ ῄ ῲ ῴ ͅ",
    "greek dialytika": "ΐ ΰ ϊ ϋ ῒ ΐ ῢ ΰ ῗ ῧ",
    "greek polytonic": "Ὀδυσσεὺς δ᾽ ἐν Ἰθάκῃ ᾠδὴ τῇ ψυχῇ ὐ ὒ ὔ ὖ ῤ ῥ ῦ",
    "greek symbols": "ϐ ϑ ϕ ϖ ϗ ϰ ϱ ϲ ϳ ϵ ͱ ͳ ͷ ͻ ͼ ͽ",
    "cyrillic": "Съешь же ещё этих мягких французских булок, да выпей чаю",
    "cyrillic extended": "ґ є ї ў ђ ћ џ ѡ ѣ ѥ ҁ ҋ ӏ ԁ ԯ ᲀ ᲁ ᲈ ꙁ ꚛ",
    "armenian": "Բարեւ աշխարհ մենք սիրում ենք",
    "armenian ligatures": "և ﬓ ﬔ ﬕ ﬖ ﬗ",
    "georgian mkhedruli": "ქართული ენა ძალიან ლამაზი ა ბ გ ჰ ჷ ჸ ჺ ჽ ჾ ჿ",
    "georgian asomtavruli nuskhuri": "Ⴀ Ⴁ Ⴥ ⴀ ⴁ ⴥ ⴧ ⴭ",
    "georgian mtavruli": "Ა Ბ Ჰ Ჿ",
    "cherokee": "ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ ꭰ ꭱ ꮿ ᏸ ᏹ ᏽ",
    "glagolitic and coptic": "ⰰ ⰱ ⱞ ⱟ ⲁ ⲃ ⳣ ⳬ ⳮ ⳳ",
    "deseret": "𐐔𐐯𐑅𐐨𐑉𐐯𐐻 𐐨 𐐩 𐑏",
    "osage": "𐓘 𐓙 𐓻",
    "vithkuqi": "𐖗 𐖘 𐖼",
    "old hungarian": "𐳀 𐳁 𐳲",
    "warang citi": "𑣀 𑣁 𑣟",
    "medefaidrin": "𖹠 𖹡 𖹿",
    "adlam": "𞤢 𞤣 𞥃",
    "cjk": "我能吞下玻璃而不伤身体 天地玄黄 宇宙洪荒 𠀀𪜀",
    "japanese": "いろはにほへと ちりぬるを カタカナ ｶﾀｶﾅ",
    "korean": "다람쥐 헌 쳇바퀴에 타고파 가 힣",
    "devanagari arabic hebrew": "ऋषियों नص حكيم דג סקרן",
    "emoji": "😀🎉👍🏽👩‍👩‍👧 ❤️ ✨ 🇫🇷",
    "combining marks": "e\u0301 a\u0308 n\u0303 o\u0302\u0323 \u0345 i\u0307",
    "mixed with ascii": "ǅemal, ὒ and ß: stra\u00dfe ﬁle",
}

# Bytes that are not valid UTF-8, each with why.
INVALID = {
    "invalid 0xff": b"\xff",
    "invalid 0xfe and 0xf5..0xf7": b"\xfe\xf5\xf6\xf7",
    "invalid lone continuation bytes": b"\x80\x8f\x90\x9f\xa0\xbf",
    "invalid continuation after ascii": b"a\x80b\xbfc",
    "invalid c0 c1 overlong 2-byte": b"\xc0\x80\xc0\xaf\xc1\xbf",
    "invalid overlong 3-byte": b"\xe0\x80\x80\xe0\x80\xaf\xe0\x9f\xbf",
    "invalid overlong 4-byte": b"\xf0\x80\x80\x80\xf0\x80\x80\xaf\xf0\x8f\xbf\xbf",
    "invalid encoded surrogates": b"\xed\xa0\x80\xed\xad\xbf\xed\xae\x80\xed\xbf\xbf",
    "invalid surrogate pair": b"\xed\xa0\xbd\xed\xb8\x80",
    "invalid past u+10ffff": b"\xf4\x90\x80\x80\xf5\x80\x80\x80\xf7\xbf\xbf\xbf",
    "invalid 5 and 6 byte forms": b"\xf8\x88\x80\x80\x80\xfc\x84\x80\x80\x80\x80",
    "invalid truncated 2-byte at end": b"ab\xc3",
    "invalid truncated 3-byte at end": b"ab\xe2\x82",
    "invalid truncated 4-byte at end": b"ab\xf0\x9f\x98",
    "invalid truncated then ascii": b"\xc3a\xe2\x82b\xf0\x9f\x98c",
    "invalid truncated then cased": b"\xe2\x82\xc3\x9f\xf0\x9f\xc3\xa4",
    "invalid truncated cased lead then cased": b"\xc3\xc3\xa4\xd0\xd0\xb0",
    "invalid lead then lead": b"\xe2\xe2\x82\xac\xf0\xf0\x9f\x98\x80",
    "valid edges": "\u0080\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff".encode("utf-8"),
    "valid noncharacters": "\ufdd0\ufffe\U0001fffe\U0010fffe".encode("utf-8"),
    "invalid nul and controls around": b"\x00\xc3\x00\xe4\x00\x7f\xc3\xa4\x7f",
    "invalid mixed with sharp s": b"\xffstra\xc3\x9fe\xfe\xc3\x9f\x80",
}


def rust_mapping():
    """Returns (Rust's Unicode version, {code point: upper-case code points}) for
    every code point that Rust's `char::to_uppercase` changes."""
    with tempfile.TemporaryDirectory() as tmp:
        source = pathlib.Path(tmp) / "upper_map.rs"
        binary = pathlib.Path(tmp) / "upper_map"
        source.write_text(RUST_PROGRAM)
        subprocess.run(["rustc", "-O", "-o", str(binary), str(source)], check=True)
        lines = subprocess.run([str(binary)], check=True, capture_output=True, text=True).stdout.splitlines()
        rustc = subprocess.run(["rustc", "--version"], check=True, capture_output=True, text=True).stdout.strip()
    version = lines[0].split()[1]
    mapping = {}
    for line in lines[1:]:
        code, *upper = line.split()
        mapping[int(code, 16)] = tuple(int(u, 16) for u in upper)
    return rustc, version, mapping


def python_mapping():
    """{code point: upper-case code points} for every scalar value that
    Python's `str.upper` changes."""
    mapping = {}
    for code in range(0x110000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        upper = chr(code).upper()
        if upper != chr(code):
            mapping[code] = tuple(ord(u) for u in upper)
    return mapping


def transform(data: bytes) -> bytes:
    """The definition of `--transform unicode`."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


def fmt_mapping(mapping, code):
    upper = mapping.get(code, (code,))
    return " ".join(f"U+{u:04X}" for u in upper)


def vectors(excluded, python_map):
    """Yields (name, input bytes)."""
    def usable(text):
        kept = "".join(c for c in text if ord(c) not in excluded)
        return kept

    for name, text in SAMPLES.items():
        yield f"script {name}", usable(text).encode("utf-8")

    # Every character that has an upper case (in both versions), 24 per line.
    cased = [c for c in sorted(python_map) if c not in excluded]
    for start in range(0, len(cased), 24):
        group = cased[start:start + 24]
        yield f"cased U+{group[0]:04X}..U+{group[-1]:04X}", "".join(map(chr, group)).encode("utf-8")

    # A sample of every other kind of code point: upper-case letters, caseless
    # scripts, symbols, unassigned, private use, astral planes.
    rng = random.Random(SEED)
    scalars = [c for c in rng.sample(range(0x110000), 4000) if not 0xD800 <= c <= 0xDFFF and c not in excluded]
    others = [c for c in scalars if c not in python_map][:800]
    for start in range(0, len(others), 40):
        group = others[start:start + 40]
        yield f"uncased sample {start // 40}", "".join(map(chr, group)).encode("utf-8")

    for name, data in INVALID.items():
        yield name, data

    # Byte soup: valid characters, ASCII, invalid bytes and characters cut short,
    # in random order, so invalid bytes meet cased leads in every way.
    pieces_valid = [chr(c).encode("utf-8") for c in cased] + [chr(c).encode("utf-8") for c in others]
    for n in range(40):
        parts = []
        for _ in range(rng.randint(10, 30)):
            kind = rng.random()
            if kind < 0.45:
                parts.append(rng.choice(pieces_valid))
            elif kind < 0.6:
                parts.append(bytes([rng.randint(0x20, 0x7E)]))
            elif kind < 0.8:
                parts.append(bytes([rng.randint(0x80, 0xFF)]))
            else:
                whole = rng.choice(pieces_valid)
                parts.append(whole[: rng.randint(1, max(1, len(whole) - 1))] if len(whole) > 1 else bytes([0xC3]))
        yield f"soup {n}", b"".join(parts)


def render():
    rustc, rust_version, rust_map = rust_mapping()
    python_map = python_mapping()
    excluded = sorted(c for c in set(rust_map) | set(python_map) if rust_map.get(c) != python_map.get(c))
    header = [
        "# Test vectors for `upecho serve --transform unicode`, generated by",
        "# tests/unicode/gen_vectors.py: do not edit; rerun it.",
        "# Expected = Python's b.decode('utf-8','surrogateescape').upper().encode('utf-8','surrogateescape').",
        f"# python {sys.version.split()[0]}, unicodedata.unidata_version {unicodedata.unidata_version}",
        f"# {rustc}, char::UNICODE_VERSION {rust_version}",
        f"# Excluded from the vectors ({len(excluded)} code points): their upper case differs between",
        "# the two versions (compared for every code point). code point: python -> rust",
    ]
    for code in excluded:
        header.append(
            f"#   U+{code:04X} {unicodedata.name(chr(code), '<unassigned in python>')}: "
            f"{fmt_mapping(python_map, code)} -> {fmt_mapping(rust_map, code)}"
        )
    header.append("# Format: name<TAB>input hex<TAB>expected hex")
    body = []
    for name, data in vectors(set(excluded), python_map):
        assert "\t" not in name
        body.append(f"{name}\t{data.hex()}\t{transform(data).hex()}")
    return "\n".join(header + body) + "\n", excluded


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if vectors.txt is out of date")
    args = parser.parse_args()
    text, excluded = render()
    if args.check:
        if OUTPUT.read_text() != text:
            sys.exit(f"{OUTPUT} is out of date: rerun {__file__}")
        print(f"{OUTPUT} is up to date")
        return
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}: {text.count(chr(10))} lines, {len(text)} bytes, {len(excluded)} code points excluded")


if __name__ == "__main__":
    main()
