"""The local backend's "model": an honest extractive summarizer (selects sentences, writes none).

Pure text in, summary sentences out. It is not an LLM: it finds the transcript inside a prompt,
splits it into sentences, scores them (content-word frequency, the customer's issue, the agent's
resolution, position) and returns the best few in their original order. Same input, same output.
Also holds the token counting the local backend bills with, so counts agree everywhere.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from itertools import chain, filterfalse, islice
from operator import methodcaller
from typing import NamedTuple

LABEL = "[local extractive summary] "

_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further
    had has have having he her here hers herself him himself his how i if in into is it its itself
    just let me more most my myself no nor not now of off on once only or other our ours ourselves
    out over own same she should so some such than that the their theirs them themselves then there
    these they this those through to too under until up very was we were what when where which
    while who whom why will with would you your yours yourself yourselves okay ok yes yeah sure
    um uh oh well right alright just really also get got go going one thing things like know see
    please thank thanks hi hello bye goodbye today day great good morning afternoon evening
    s t ll re ve d m don doesn didn isn wasn can't i'm i've i'll it's that's you're we'll""".split()
)

# Words that mark the customer's problem or the agent's fix; the summary should carry both.
_ISSUE_CUES = frozenset(
    """problem problems issue issues error errors broken wrong charged charge overcharged double
    billed bill fee cancel cancelled refund late missing lost stolen declined failed failing fails
    stopped down unable cannot can't won't doesn't isn't didn't haven't hasn't not never complaint
    disconnected outage slow locked damaged delayed incorrect frustrated upset because calling
    called""".split()
)
_RESOLUTION_CUES = frozenset(
    """refund refunded credit credited resolved fixed fix reset replaced replacement scheduled
    processed sent shipped escalated escalate ticket updated waived reversed reactivated restored
    confirmed confirmation arranged will i've i'll we'll approved cancelled applied""".split()
)
# Pleasantries carry no content; a summary made of them would be useless.
_SMALL_TALK = re.compile(
    r"^(hi|hello|hey|good (morning|afternoon|evening)|thank(s| you)|you're welcome|bye|goodbye|"
    r"have a (great|good|nice)|is there anything else|no,? that'?s (all|it)|okay|ok|sure|yes|no)\b",
    re.IGNORECASE,
)
# Call-center openings and closings: long enough to look substantive, but say nothing about the call.
_SCRIPT = re.compile(
    r"thank(s| you) for (calling|contacting|holding|your patience)|my name is|this is \w+ from|"
    r"how (can|may) i "
    r"(help|assist)|anything else i can|have a (great|good|nice|wonderful)|is there anything else",
    re.IGNORECASE,
)
_TAGGED = re.compile(r"<transcript>(.*?)</transcript>", re.IGNORECASE | re.DOTALL)
_MARKER = re.compile(r"^\s*(?:call\s+)?transcript\s*:\s*", re.IGNORECASE | re.MULTILINE)
# "Agent: ...", "Customer 2: ...", "[00:01] Agent: ...", "SPEAKER_1: ..." - a short label then text.
_SPEAKER_LINE = re.compile(
    r"^\s*(?:\[[^\]]{1,20}\]\s*)?(?P<speaker>[A-Za-z][\w .'\-]{0,24}?)\s*:\s+(?P<text>\S.*)$"
)
# The same for every line of a text in one findall (a match call per line cost more than the
# matching): whitespace and brackets kept within a line. Only for text whose line breaks are all
# "\n": str.splitlines also breaks at _OTHER_LINE_BREAKS, and text holding one goes line by line.
_SPEAKER_LINES = re.compile(
    r"^[^\S\n]*(?:\[[^\]\n]{1,20}\][^\S\n]*)?([A-Za-z][\w .'\-]{0,24}?)[^\S\n]*:[^\S\n]+(\S.*)$",
    re.MULTILINE,
)
_OTHER_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
# Chat-template control tokens of raw-prompt families (Llama, Mistral), not content.
_CONTROL_TOKENS = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|</?s>|<<\/?SYS>>|^(?:system|user|assistant)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
# Token model for billing: words cost one token per started 6 characters, punctuation one each.
# Each match of _TOKEN is one token: a greedy \w{1,6} cuts a word into its 6-character pieces.
_TOKEN_CHARS = 6
_TOKEN = re.compile(r"\w{1,%d}|[^\w\s]" % _TOKEN_CHARS)

class Sentence(NamedTuple):
    """One candidate sentence: who said it, where it was, and its text (a tuple: a transcript
    makes dozens, and a NamedTuple is several times cheaper to build than a dataclass)."""

    index: int
    turn: int
    speaker: str | None
    text: str


def _token_classes() -> bytes:
    """bytes.translate table: each Latin-1 character to its class for _TOKEN: "a" for a word
    character (\w), " " for whitespace (\s), "." for any other character (one token each)."""
    classes = bytearray()
    for code in range(256):
        char = chr(code)
        classes.append(ord("a") if char.isalnum() or char == "_" else
                       ord(" ") if char.isspace() else ord("."))
    return bytes(classes)


_TOKEN_CLASSES = _token_classes()


def count_tokens(text: str) -> int:
    """Deterministic, plausible token count (about 1.3 tokens per English word).

    The number of ``_TOKEN`` matches, computed for Latin-1 text (nearly all transcripts) with C
    string operations instead of one regex match per token: a word of n characters costs
    ceil(n / 6) tokens, any other non-space character one.

    Args:
        text: The text to count.
    """
    try:
        classes = text.encode("latin-1").translate(_TOKEN_CLASSES)
    except UnicodeEncodeError:  # characters beyond Latin-1: the regex knows their classes
        return len(_TOKEN.findall(text))
    words = classes.replace(b".", b" ") + b" "  # runs of "a", each ending in " "
    # ceil(n / 6) is a token per whole 6-character piece, and one more where characters are
    # left over: count the pieces, drop them, then count the words that still end in "a".
    piece = b"a" * _TOKEN_CHARS
    leftovers = words.replace(piece, b"").count(b"a ")
    return words.count(piece) + leftovers + classes.count(b".")


def cut_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """Longest prefix of ``text`` costing at most ``max_tokens``; True when anything was cut.

    A long word that does not fit whole is cut inside, as a model stops mid-word on a sub-word
    token, so a truncated output uses exactly ``max_tokens``.

    Args:
        text: The model's output.
        max_tokens: The output budget.
    """
    text, cut, _ = _cut_and_count(text, max_tokens)
    return text, cut


def _cut_and_count(text: str, max_tokens: int) -> tuple[str, bool, int]:
    """``cut_to_tokens`` and the tokens the text it returns costs, counted once."""
    tokens = count_tokens(text)
    if tokens <= max_tokens:  # the usual case, without a Python loop per token
        return text, False, tokens
    if max_tokens <= 0:
        return "", True, 0
    # The last token that fits; islice walks the matches in C, not one Python step per token.
    last = next(islice(_TOKEN.finditer(text), max_tokens - 1, None))
    # The cut ends where a token ends, so the text left costs exactly max_tokens.
    return text[:last.end()], True, max_tokens


_OPEN_TAG, _CLOSE_TAG = "<transcript>", "</transcript>"
# Lower-cased text that any _CONTROL_TOKENS match holds; text without all of them is left alone.
_CONTROL_HINTS = ("<|", "inst]", "</s>", "<s>", "sys>>", "system", "user", "assistant")
# All of those but the role words hold "<", ">" or "]", as does _CLOSE_TAG; text without these
# characters (a fast one-character search each) needs only the role words looked for.
_MARKUP_CHARS = ("<", ">", "]")
_ROLE_HINTS = ("system", "user", "assistant")


def _tagged_region(prompt: str) -> str | None:
    """The text between the prompt's <transcript> tags when plain string search finds the same
    region ``_TAGGED`` would (one lower-case pair, no control tokens inside), else None.

    The pipeline's prompts take this path; it costs a few scans in C instead of a regex pass.
    """
    start = prompt.find(_OPEN_TAG)
    end = prompt.find(_CLOSE_TAG, start + len(_OPEN_TAG)) if start >= 0 else -1
    if end < 0 or _OPEN_TAG in prompt[:start].lower():
        return None
    region = prompt[start + len(_OPEN_TAG):end]
    folded = _fold(region)
    markup = any([char in region for char in _MARKUP_CHARS])
    hints = (_CLOSE_TAG, *_CONTROL_HINTS) if markup else _ROLE_HINTS
    if any([hint in folded for hint in hints]):
        return None
    return region


def _region(prompt: str) -> tuple[str, str]:
    """The transcript region of ``prompt`` (see ``extract_transcript``) and the cleaned prompt."""
    region = _tagged_region(prompt)
    if region is not None:
        return region, prompt
    cleaned = _CONTROL_TOKENS.sub("\n", prompt)
    tagged = _TAGGED.search(cleaned)
    if tagged:
        return tagged.group(1), cleaned
    markers = list(_MARKER.finditer(cleaned))
    return (cleaned[markers[-1].end():] if markers else cleaned), cleaned


def _speaker_lines(text: str) -> list[tuple[str, str]]:
    """(speaker, text) of each line of ``text`` that ``_SPEAKER_LINE`` matches, in order. The
    lazy speaker group never ends in a space: no strip needed."""
    if any([line_break in text for line_break in _OTHER_LINE_BREAKS]):
        return [match.group("speaker", "text")
                for match in map(_SPEAKER_LINE.match, text.splitlines()) if match]
    return _SPEAKER_LINES.findall(text)


def _turns(prompt: str) -> list[tuple[str | None, str]]:
    """(speaker, text) per turn of the transcript in ``prompt``: its speaker lines when it has
    two or more, else one turn of free text (wrapped lines joined so sentences stay whole)."""
    region, cleaned = _region(prompt)
    speaker_lines = _speaker_lines(region)
    if len(speaker_lines) >= 2:
        return speaker_lines
    text = region.strip() or cleaned.strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return [(None, " ".join(lines))] if lines else []


def extract_transcript(prompt: str) -> str:
    """The transcript part of a summarization prompt, or the whole prompt when none is marked.

    Looks for <transcript>...</transcript>, then a "Transcript:" marker, then speaker lines
    ("Agent: ...", "Customer: ..."). Within a marked region speaker lines are preferred so
    instructions after the transcript ("Summary:") stay out of the summary.

    Args:
        prompt: The text the model reads.
    """
    region, cleaned = _region(prompt)
    speaker_lines = [line for line in region.splitlines() if _SPEAKER_LINE.match(line)]
    if len(speaker_lines) >= 2:
        return "\n".join(line.strip() for line in speaker_lines)
    return region.strip() or cleaned.strip()


_SPEAKER_AND_TEXT = methodcaller("group", "speaker", "text")


def _sentence_classes() -> bytes:
    """bytes.translate table for ``_one_sentence_each``, Latin-1 character to class: "." for a
    stop or a closing quote or bracket (what ``_SENTENCE_END`` needs before its whitespace),
    " " and "\\n" for themselves, "\\t" for any other whitespace, "a" for anything else."""
    table = bytearray()
    for code in range(256):
        char = chr(code)
        table.append(ord(".") if char in ".!?\"')]" else ord(char) if char in " \n" else
                     ord("\t") if char.isspace() else ord("a"))
    return bytes(table)


_SENTENCE_CLASSES = _sentence_classes()


def _one_sentence_each(texts: list[str]) -> bool:
    """Whether every text is already one single-spaced sentence: no whitespace but single
    spaces, none at either end, nowhere ``_SENTENCE_END`` could split. Checked on all texts at
    once, in C; any doubt answers False and the texts take the regex path."""
    joined = "\n".join(texts)
    try:
        classes = joined.encode("latin-1").translate(_SENTENCE_CLASSES)
    except UnicodeEncodeError:
        return False
    # Each check is one search in C; the classes make one search stand for several characters.
    return (all(texts) and b"\t" not in classes  # no whitespace but spaces and newlines
            and classes.count(b"\n") == len(texts) - 1  # the newlines are the joins
            and b". " not in classes  # no stop or closer before a space: nowhere to split
            and joined[0] != " " and joined[-1] != " "
            # No two spaces, nor a space next to a join: one search with the joins as spaces.
            and b"  " not in classes.replace(b"\n", b" "))


def _sentences_of(turns: list[tuple[str | None, str]]) -> list[Sentence]:
    """The sentences of (speaker, text) turns, numbered, their whitespace collapsed."""
    if turns:
        speakers, texts = zip(*turns)
        if _one_sentence_each(list(texts)):  # the usual case: no loop per turn
            return list(map(Sentence, range(len(texts)), range(len(texts)), speakers, texts))
    return _split_turns(turns)


def _split_turns(turns: list[tuple[str | None, str]]) -> list[Sentence]:
    """``_sentences_of`` turn by turn, with the regex: for turns that are not one sentence."""
    sentences: list[Sentence] = []
    for turn, (speaker, text) in enumerate(turns):
        for piece in _SENTENCE_END.split(text.strip()):
            piece = " ".join(piece.split())
            if piece:
                sentences.append(Sentence(len(sentences), turn, speaker, piece))
    return sentences


def split_sentences(transcript: str) -> list[Sentence]:
    """Sentences of a transcript, each tagged with its speaker when lines are "Speaker: text".

    Args:
        transcript: The transcript, as ``extract_transcript`` returns it.
    """
    lines = [line for line in transcript.splitlines() if line.strip()]
    speaker_lines = [_SPEAKER_LINE.match(line) for line in lines]
    if len(lines) >= 2 and all(speaker_lines):
        return _sentences_of(list(map(_SPEAKER_AND_TEXT, speaker_lines)))
    return _sentences_of([(None, " ".join(lines))])


def _role(speaker: str | None) -> str:
    """'customer', 'agent' or 'other' from a speaker label such as 'Customer' or 'Agent (Sam)'."""
    if speaker is None:
        return "other"
    label = speaker.lower()
    if any(k in label for k in ("customer", "caller", "client", "user", "patient", "member")):
        return "customer"
    if any(k in label for k in ("agent", "rep", "support", "advisor", "operator", "associate")):
        return "agent"
    return "other"


def _roles(speakers: list[str | None]) -> dict[str | None, str]:
    """Role per speaker label (``speakers``: each sentence's). Anonymous labels (Transcribe's
    spk_0, spk_1) get roles from who speaks first: in a contact-center call the agent answers,
    so the first speaker is the agent."""
    roles = {speaker: _role(speaker) for speaker in dict.fromkeys(speakers)}
    if set(roles.values()) == {"other"} and None not in roles and len(roles) == 2:
        first, second = roles  # dicts keep insertion order: first speaker first
        roles = {first: "agent", second: "customer"}
    return roles


def _latin1_table(keep: str) -> bytes:
    """bytes.translate table for Latin-1 text: lower-cases it; unless ``keep`` is "all", only
    letters, digits, apostrophes and newlines stay, every other character becomes a space."""
    table = bytearray()
    for code in range(256):
        char = chr(code).lower()
        kept = keep == "all" or char.isalnum() or char in "'\n"
        table.append(ord(char) if kept else ord(" "))
    return bytes(table)


# Latin-1 characters lower-case to Latin-1 characters, so one byte table does it in one C pass.
_LOWER = _latin1_table("all")
_WORD_CHARS = _latin1_table("words")
_NON_WORD = re.compile(r"[^\w'\n]|_")  # the same as _WORD_CHARS, for text beyond Latin-1
# Text every _SCRIPT match holds (lower-cased, punctuation as spaces): sentences without any of
# it skip the regex.
_SCRIPT_HINTS = ("thank you for", "thanks for", "my name is", "this is ", "how can i",
                 "how may i", "anything else", "have a ")


def _fold(text: str) -> str:
    """``text.lower()``, in one C pass for Latin-1 text (``str.lower`` goes character by
    character through the Unicode database once a character is not ASCII)."""
    try:
        return text.encode("latin-1").translate(_LOWER).decode("latin-1")
    except UnicodeEncodeError:
        return text.lower()


def _word_text(text: str) -> str:
    """``text`` lower-cased with everything but words, apostrophes and newlines turned to
    spaces, so ``split()`` yields its words: one C pass for Latin-1 text."""
    try:
        return text.encode("latin-1").translate(_WORD_CHARS).decode("latin-1")
    except UnicodeEncodeError:
        return _NON_WORD.sub(" ", text.lower())


def _script_lines(word_text: str, texts: list[str]) -> set[int]:
    """Indexes of the sentences that are call-center script (``_SCRIPT``): the hints are searched
    in the whole text at once (``word_text``: the sentences' word text, one line each), the
    regex runs only on the few sentences holding one."""
    candidates = set()
    for hint in _SCRIPT_HINTS:
        at = word_text.find(hint)
        while at >= 0:
            candidates.add(word_text.count("\n", 0, at))  # the line it is on
            at = word_text.find(hint, at + 1)
    return {i for i in candidates if _SCRIPT.search(texts[i])}


def score_sentences(sentences: list[Sentence]) -> list[float]:
    """A relevance score per sentence; higher is more summary-worthy, 0 for filler.

    Words, stopwords and script lines are found for the whole transcript in a few C-level
    passes; the loop per sentence only adds up what they found.

    Args:
        sentences: The transcript's sentences, as ``split_sentences`` returns them.
    """
    texts = [s.text for s in sentences]  # one line each: split_sentences collapses whitespace
    word_text = _word_text("\n".join(texts))
    words_of = list(map(str.split, word_text.split("\n")))
    content_of = [list(filterfalse(_STOPWORDS.__contains__, words)) for words in words_of]
    script = _script_lines(word_text, texts)
    # How many sentences each content word is in: words the call keeps coming back to.
    freq = Counter(chain.from_iterable(map(set, content_of)))
    sentences_with = freq.__getitem__
    top = max(freq.values(), default=1)
    last = max(len(sentences) - 1, 1)
    speakers = [s.speaker for s in sentences]
    roles = _roles(speakers)
    # The customer's first real sentence (the first of the text when nobody is labelled customer)
    # usually states why they called.
    has_customer = "customer" in roles.values()
    opener_found = False
    scores = []
    # Sentences are numbered by their place in the list, so enumerate gives each one's index.
    for index, (text, speaker, words, content) in enumerate(
            zip(texts, speakers, words_of, content_of)):
        # Fragments and pleasantries ("Hi Sam.", "Okay, thank you.") are not substantive.
        if len(content) < 2 or len(words) < 3 or (len(content) < 4 and _SMALL_TALK.match(text)):
            scores.append(0.0)
            continue
        role = roles[speaker]
        in_script = index in script
        opener = not opener_found and not in_script and (role == "customer" or not has_customer)
        opener_found = opener_found or opener
        score = sum(map(sentences_with, content)) / top / math.sqrt(len(content))
        early = index / last < 0.5
        bonus = 0.0
        if role != "agent" and not _ISSUE_CUES.isdisjoint(words):
            bonus = 1.0 + (0.5 if early else 0.0)  # the problem, usually stated early
        if role != "customer" and not _RESOLUTION_CUES.isdisjoint(words):
            bonus = max(bonus, 1.0 + (0.0 if early else 0.5))  # the fix, usually agreed late
        score += bonus + (1.0 if opener else 0.0)
        if in_script:
            score *= 0.2
        elif text.endswith("?"):
            score *= 0.6  # questions ask for facts; the answers state them
        scores.append(score)
    return scores


def summary_size(sentence_count: int) -> int:
    """How many sentences to keep: about a third of the call, between 1 and 5."""
    return max(1, min(5, math.ceil(sentence_count / 3)))


def summarize(prompt: str, max_sentences: int | None = None) -> list[str]:
    """Key sentences of the transcript in ``prompt``, in original order.

    Chosen sentences of one speaker's turn are joined and prefixed once ("Agent: A. B.").
    Returns an empty list only when the prompt holds no text at all.
    """
    sentences = _sentences_of(_turns(prompt))
    if not sentences:
        return []
    keep = max_sentences if max_sentences is not None else summary_size(len(sentences))
    scores = score_sentences(sentences)
    # Best first; ties go to the earlier sentence so the choice is deterministic (sorted is
    # stable, with reverse=True too). Sentences are numbered by their place in the list.
    ranked = sorted(range(len(sentences)), key=scores.__getitem__, reverse=True)[:keep]
    pieces: list[str] = []
    previous: Sentence | None = None
    for s in map(sentences.__getitem__, sorted(ranked)):
        same_turn = previous is not None and s.turn == previous.turn
        if same_turn and s.index == previous.index + 1:
            pieces[-1] += " " + s.text
        else:
            pieces.append(f"{s.speaker}: {s.text}" if s.speaker else s.text)
        previous = s
    return pieces


def summary_text(prompt: str) -> str:
    """The labelled summary the local backend answers with."""
    pieces = summarize(prompt)
    body = " ".join(pieces) if pieces else "(the input held no text to summarize)"
    return LABEL + body


@dataclass(frozen=True)
class Generation:
    """The model's output text, why it stopped ("end" | "max_tokens" | "stop_sequence") and its cost."""

    text: str
    stop: str
    stop_sequence: str | None
    output_tokens: int


def generate(prompt: str, max_tokens: int, stop_sequences: tuple[str, ...] = ()) -> Generation:
    """The labelled summary, stopped like a model stops: at a stop sequence or out of tokens."""
    text = summary_text(prompt)
    stop, matched = "end", None
    hits = [(text.find(seq), seq) for seq in stop_sequences if seq and seq in text]
    if hits:
        position, matched = min(hits)
        text, stop = text[:position], "stop_sequence"
    text, cut, tokens = _cut_and_count(text, max_tokens)
    if cut:
        stop, matched = "max_tokens", None
    return Generation(text, stop, matched, tokens)
