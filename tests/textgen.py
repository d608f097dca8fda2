"""Deterministic synthetic news texts for tests (no corpus text is ever copied into the repo)."""

from __future__ import annotations

import random

EN_WORDS = (
    "government minister said report market shares rose fell percent company profit quarter city council plan "
    "police officers arrested court judge ruled appeal election voters party leader campaign budget tax spending "
    "hospital doctors patients health service school teachers pupils exam results weather storm flooding homes "
    "energy prices oil gas electricity football club match season coach players win defeat league title bank "
    "interest rates inflation economy growth jobs workers union strike talks agreement deal trade exports imports "
    "technology software phone users data privacy research scientists study climate emissions carbon project "
    "railway trains passengers delays airport flights airline tourism visitors museum exhibition film festival"
).split()

ZH_CHARS = (
    "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行"
    "学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前"
    "外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军"
    "很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别"
)


def en_article(seed: int, words: int = 220) -> str:
    rng = random.Random(seed)
    sents = []
    while sum(len(s.split()) for s in sents) < words:
        n = rng.randint(8, 18)
        s = " ".join(rng.choice(EN_WORDS) for _ in range(n))
        sents.append(s[0].upper() + s[1:] + ".")
    paras = [" ".join(sents[i:i + 4]) for i in range(0, len(sents), 4)]
    return "\n".join(paras)


def zh_article(seed: int, chars: int = 700) -> str:
    rng = random.Random(seed)
    out = []
    total = 0
    while total < chars:
        n = rng.randint(15, 40)
        s = "".join(rng.choice(ZH_CHARS) for _ in range(n)) + "。"
        out.append(s)
        total += len(s)
    return "\n".join("".join(out[i:i + 4]) for i in range(0, len(out), 4))


def light_edit(text: str, seed: int, rate: float = 0.02) -> str:
    rng = random.Random(seed)
    chars = list(text)
    for _ in range(max(1, int(len(chars) * rate))):
        i = rng.randrange(len(chars))
        if chars[i].strip():
            chars[i] = rng.choice("的是在有和人这中大" if "\u4e00" <= chars[i] <= "\u9fff" else "abcdefghij")
    return "".join(chars)


def word_story(seed: int, n: int = 120, words: list[str] | None = None) -> str:
    """An English-like text of ``n`` words; different seeds share almost no shingles."""
    rng = random.Random(seed)
    vocab = words or EN_WORDS
    return " ".join(" ".join(rng.choice(vocab) for _ in range(12)).capitalize() + "." for _ in range(n // 12))


def near_copy(text: str) -> str:
    """The same story lightly edited: a few words changed at the end, plus a line added."""
    words = text.split()
    words[-3:] = ["changed", "ending", "here."]
    return " ".join(words) + "\nUpdated with a correction."


def stories_and_copies(seed: int, stories: int, copies: int) -> tuple[list[str], list[dict[str, str]]]:
    """Stories ``o<i>`` (Chinese and English in turn) and a light edit ``c<i>`` of the first ``copies``."""
    texts = [zh_article(seed + i, 500) if i % 2 else en_article(seed + i, 200) for i in range(stories)]
    arts = [{"id": f"o{i}", "text": t} for i, t in enumerate(texts)]
    arts += [{"id": f"c{i}", "text": light_edit(t, i, 0.01)} for i, t in enumerate(texts[:copies])]
    return texts, arts
