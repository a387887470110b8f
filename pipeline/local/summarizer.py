"""The local backend's "model": an honest extractive summarizer (selects sentences, writes none).

Pure text in, summary sentences out. It is not an LLM: it finds the transcript inside a prompt,
splits it into sentences, scores them (content-word frequency, the customer's issue, the agent's
resolution, position) and returns the best few in their original order. Same input, same output.
Also holds the token counting the local backend bills with, so counts agree everywhere.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

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
# Every _SCRIPT match holds one of these (case-folded): most sentences are ruled out by a
# substring test, far cheaper than the case-insensitive alternation at every position.
_SCRIPT_WORDS = ("thank", "my name is", "this is", "how ", "anything else", "have a")

_TAGGED = re.compile(r"<transcript>(.*?)</transcript>", re.IGNORECASE | re.DOTALL)
_MARKER = re.compile(r"^\s*(?:call\s+)?transcript\s*:\s*", re.IGNORECASE | re.MULTILINE)
# "Agent: ...", "Customer 2: ...", "[00:01] Agent: ...", "SPEAKER_1: ..." - a short label then text.
_SPEAKER_LINE = re.compile(
    r"^\s*(?:\[[^\]]{1,20}\]\s*)?(?P<speaker>[A-Za-z][\w .'\-]{0,24}?)\s*:\s+(?P<text>\S.*)$"
)
# Chat-template control tokens of raw-prompt families (Llama, Mistral), not content.
_CONTROL_TOKENS = re.compile(
    r"<\|[a-z_]+\|>|\[/?INST\]|</?s>|<<\/?SYS>>|^(?:system|user|assistant)\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Token model for billing: words cost one token per started 6 characters, punctuation one each.
# Each match of _TOKEN is one token: a greedy \w{1,6} cuts a word into its 6-character pieces.
_TOKEN_CHARS = 6
_TOKEN = re.compile(r"\w{1,%d}|[^\w\s]" % _TOKEN_CHARS)

@dataclass(frozen=True)
class Sentence:
    """One candidate sentence: who said it, where it was, and its text."""

    index: int
    turn: int
    speaker: str | None
    text: str


def count_tokens(text: str) -> int:
    """Deterministic, plausible token count (about 1.3 tokens per English word)."""
    return len(_TOKEN.findall(text))


def cut_to_tokens(text: str, max_tokens: int) -> tuple[str, bool]:
    """Longest prefix of ``text`` costing at most ``max_tokens``; True when anything was cut.

    A long word that does not fit whole is cut inside, as a model stops mid-word on a sub-word
    token, so a truncated output uses exactly ``max_tokens``.
    """
    if count_tokens(text) <= max_tokens:  # the usual case, without a Python loop per token
        return text, False
    end = 0
    for number, match in enumerate(_TOKEN.finditer(text)):
        if number == max_tokens:
            return text[:end], True
        end = match.end()
    return text, False


def extract_transcript(prompt: str) -> str:
    """The transcript part of a summarization prompt, or the whole prompt when none is marked.

    Looks for <transcript>...</transcript>, then a "Transcript:" marker, then speaker lines
    ("Agent: ...", "Customer: ..."). Within a marked region speaker lines are preferred so
    instructions after the transcript ("Summary:") stay out of the summary.
    """
    cleaned = _CONTROL_TOKENS.sub("\n", prompt)
    tagged = _TAGGED.search(cleaned)
    if tagged:
        region = tagged.group(1)
    else:
        markers = list(_MARKER.finditer(cleaned))
        region = cleaned[markers[-1].end():] if markers else cleaned
    speaker_lines = [line for line in region.splitlines() if _SPEAKER_LINE.match(line)]
    if len(speaker_lines) >= 2:
        return "\n".join(line.strip() for line in speaker_lines)
    return region.strip() or cleaned.strip()


def split_sentences(transcript: str) -> list[Sentence]:
    """Sentences of a transcript, each tagged with its speaker when lines are "Speaker: text"."""
    sentences: list[Sentence] = []
    lines = [line for line in transcript.splitlines() if line.strip()]
    turns = []
    speaker_lines = [_SPEAKER_LINE.match(line) for line in lines]
    if len(lines) >= 2 and all(speaker_lines):
        turns = [(m.group("speaker").strip(), m.group("text")) for m in speaker_lines]
    else:
        # Free text: paragraphs without speakers; join wrapped lines so sentences stay whole.
        turns = [(None, " ".join(lines))]
    for turn, (speaker, text) in enumerate(turns):
        for piece in _SENTENCE_END.split(text.strip()):
            piece = " ".join(piece.split())
            if piece:
                sentences.append(Sentence(len(sentences), turn, speaker, piece))
    return sentences


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


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


def _roles(sentences: list[Sentence]) -> dict[str | None, str]:
    """Role per speaker label. Anonymous labels (Transcribe's spk_0, spk_1) get roles from who
    speaks first: in a contact-center call the agent answers, so the first speaker is the agent."""
    roles = {s.speaker: _role(s.speaker) for s in sentences}
    if set(roles.values()) == {"other"} and None not in roles and len(roles) == 2:
        first, second = roles  # dicts keep insertion order: first speaker first
        roles = {first: "agent", second: "customer"}
    return roles


def _substantive(sentence: Sentence, words: list[str] | None = None) -> bool:
    """False for fragments and pleasantries ("Hi Sam.", "Okay, thank you."); ``words``: the
    sentence's ``_words`` when already known."""
    words = _words(sentence.text) if words is None else words
    content = [w for w in words if w not in _STOPWORDS]
    return len(words) >= 3 and len(content) >= 2 and not (
        _SMALL_TALK.match(sentence.text) and len(content) < 4
    )


def _is_script(text: str) -> bool:
    folded = text.casefold()
    return any(word in folded for word in _SCRIPT_WORDS) and bool(_SCRIPT.search(text))


def score_sentences(sentences: list[Sentence]) -> list[float]:
    """A relevance score per sentence; higher is more summary-worthy, 0 for filler."""
    # Each sentence's words and flags are found once: scoring reads them several times.
    words_of = [_words(s.text) for s in sentences]
    content = [[w for w in words if w not in _STOPWORDS] for words in words_of]
    substantive = [_substantive(s, words) for s, words in zip(sentences, words_of)]
    script = [_is_script(s.text) for s in sentences]
    freq: dict[str, int] = {}
    for words in content:
        for w in set(words):
            freq[w] = freq.get(w, 0) + 1
    top = max(freq.values(), default=1)
    last = max(len(sentences) - 1, 1)
    roles = _roles(sentences)
    # The customer's first real sentence (the first of the text when nobody is labelled customer)
    # usually states why they called.
    has_customer = "customer" in roles.values()
    opener = next((s.index for s in sentences
                   if substantive[s.index] and not script[s.index]
                   and (roles[s.speaker] == "customer" or not has_customer)), None)
    scores = []
    for sentence, words in zip(sentences, content):
        if not substantive[sentence.index]:
            scores.append(0.0)
            continue
        # Frequency: words the whole call keeps coming back to are its topic.
        score = sum(freq[w] / top for w in words) / math.sqrt(len(words))
        all_words = set(words_of[sentence.index])
        role = roles[sentence.speaker]
        early = sentence.index / last < 0.5
        bonus = 0.0
        if role != "agent" and all_words & _ISSUE_CUES:
            bonus = 1.0 + (0.5 if early else 0.0)  # the problem, usually stated early
        if role != "customer" and all_words & _RESOLUTION_CUES:
            bonus = max(bonus, 1.0 + (0.0 if early else 0.5))  # the fix, usually agreed late
        score += bonus + (1.0 if sentence.index == opener else 0.0)
        if script[sentence.index]:
            score *= 0.2
        elif sentence.text.endswith("?"):
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
    sentences = split_sentences(extract_transcript(prompt))
    if not sentences:
        return []
    keep = max_sentences if max_sentences is not None else summary_size(len(sentences))
    scores = score_sentences(sentences)
    # Ties go to the earlier sentence so the choice is deterministic.
    ranked = sorted(sentences, key=lambda s: (-scores[s.index], s.index))[:keep]
    pieces: list[str] = []
    previous: Sentence | None = None
    for s in sorted(ranked, key=lambda s: s.index):
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
    text, cut = cut_to_tokens(text, max_tokens)
    if cut:
        stop, matched = "max_tokens", None
    return Generation(text, stop, matched, count_tokens(text))
