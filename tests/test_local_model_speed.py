"""The local model's fast paths give what the regular expressions they replace give.

count_tokens counts Latin-1 text with a byte table instead of matching ``_TOKEN``; cut_to_tokens
jumps to the last token that fits; turns that are single-spaced single sentences skip
``_SENTENCE_END``; raw prompts lose their chat markup by two literal-led patterns and Titan's
wrapper by a match and a search. Each is checked against the regex on awkward text (non-Latin-1 letters, Unicode spaces, long words, quotes after stops).
"""
from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from benchmarks import data
from pipeline.local import responses, summarizer
from pipeline.local.summarizer import count_tokens

AWKWARD = ["", " ", "hello world.", "internationalization", "a_b c__d 123456789012345",
           "«hi» ×÷ ª µ º ² ¼ \x85 \xa0 naïve Zoë", "\x1cq\x1fr\tz\r\n", "İstanbul — “quoted” …",
           "emoji \U0001F600!", "She said \"Yes.\" Then left.", "(ok.) [no!] it's"]
TEXT = st.text(alphabet=st.sampled_from(list("aZé_ .!?\"')]([\t\n\xa0×—İ7")), max_size=60)


def _regex_count(text: str) -> int:
    return len(summarizer._TOKEN.findall(text))


def test_count_tokens_matches_the_regex_on_awkward_and_generated_text():
    texts = AWKWARD + [" ".join(t["text"] for t in row["turns"])
                       for row in data.transcripts(20, seed=3)]
    assert [count_tokens(t) for t in texts] == [_regex_count(t) for t in texts]


@settings(max_examples=10, deadline=None)
@given(text=TEXT)
def test_count_tokens_matches_the_regex(text):
    assert count_tokens(text) == _regex_count(text)


@settings(max_examples=10, deadline=None)
@given(turns=st.lists(st.tuples(st.sampled_from(["Agent", "Customer", None]), TEXT),
                      min_size=1, max_size=5))
def test_one_sentence_fast_path_matches_the_regex_split(turns):
    assert summarizer._sentences_of(turns) == summarizer._split_turns(turns)


def test_fast_path_taken_for_plain_turns_and_not_for_several_sentences():
    plain = [("Agent", "Your refund is processed."), ("Customer", "Thanks a lot.")]
    assert summarizer._one_sentence_each([text for _, text in plain])
    assert not summarizer._one_sentence_each(["Hi Sam. My internet is down."])
    assert summarizer._sentences_of(plain) == summarizer._split_turns(plain)


@settings(max_examples=10, deadline=None)
@given(text=TEXT, max_tokens=st.integers(min_value=0, max_value=40))
def test_cut_to_tokens_ends_at_the_last_token_that_fits(text, max_tokens):
    ends = [match.end() for match in summarizer._TOKEN.finditer(text)]
    expected = (text, False) if len(ends) <= max_tokens else \
        (text[:ends[max_tokens - 1]] if max_tokens else "", True)
    assert summarizer.cut_to_tokens(text, max_tokens) == expected


# The single patterns the parsers used before, kept here as the reference.
_TEMPLATE_MARKUP = re.compile(r"<\|start_header_id\|>\w+<\|end_header_id\|>|<\|[a-z_]+\|>|</?s>|\[/?INST\]")
_TITAN_WRAPPER = re.compile(r"\A\s*User:\s*|\n\s*Bot:\s*\Z")
MARKUP = st.lists(st.sampled_from(["<|", "|>", "start_header_id", "end_header_id", "<", ">", "/",
                                   "s", "[", "]", "INST", "a", "_", "é", "<|eot_id|>", "</s>",
                                   "[INST]", "[/INST]"]),
                  max_size=12).map("".join)
WRAPPED = st.lists(st.sampled_from(["User:", "Bot:", "User", ":", "\n", "\r\n", " ", "\t", "x",
                                    "\x85", "\u2028"]), max_size=10).map("".join)


@settings(max_examples=10, deadline=None)
@given(prompt=MARKUP)
def test_raw_prompt_markup_is_removed_as_the_single_pattern_removed_it(prompt):
    parse = responses._HANDLERS["llama"][0]
    assert parse({"prompt": prompt}).prompt == _TEMPLATE_MARKUP.sub(" ", prompt)


@settings(max_examples=10, deadline=None)
@given(text=WRAPPED)
def test_titan_wrapper_is_removed_as_the_single_pattern_removed_it(text):
    parse = responses._HANDLERS["titan"][0]
    assert parse({"inputText": text}).prompt == _TITAN_WRAPPER.sub("", text)
    assert parse({"inputText": f"User: {text}\nBot:"}).prompt == \
        _TITAN_WRAPPER.sub("", f"User: {text}\nBot:")


LINES = st.lists(st.sampled_from(["Agent", "Customer 2", "spk_0", ":", ": ", " ", "\n", "\t", "\xa0",
                                  "[00:01]", "[", "]", "Hi there.", "x", "\r\n", "\x85", "é"]),
                 max_size=14).map("".join)


def _speaker_lines_one_by_one(text: str) -> list[tuple[str, str]]:
    return [match.group("speaker", "text")
            for match in map(summarizer._SPEAKER_LINE.match, text.splitlines()) if match]


@settings(max_examples=10, deadline=None)
@given(text=LINES)
@example(text="[0\n1] Agent: a bracket across lines\nAgent\n: a colon on the next line\nCustomer:\nx")
def test_speaker_lines_found_at_once_as_line_by_line(text):
    only_newlines = text.replace("\r", "").replace("\x85", "")  # the findall path
    for each in (text, only_newlines):
        assert summarizer._speaker_lines(each) == _speaker_lines_one_by_one(each)
