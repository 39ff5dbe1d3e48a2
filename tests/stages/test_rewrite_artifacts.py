"""The rewrite stage's quality artifact says how many LLM rewrites fell back to the utterance, and why."""

from __future__ import annotations

from stages.rewrite import quality_rows


def test_quality_rows_show_the_fallbacks_and_their_reasons():
    stats = {"quality": [{"teacher": "answer", "turns": 70, "token_f1": 0.4, "exact_match": 0.0},
                         {"teacher": "llm", "turns": 70, "token_f1": 0.66, "exact_match": 0.1}],
             "fallbacks": {"llm": {"turns": 201, "fallback": 195, "not-a-query": 120, "drops-words": 75}}}
    rows = {r["teacher"]: r for r in quality_rows(stats)}
    assert rows["llm"]["fallbacks"] == "195 of 201"
    assert rows["llm"]["why"] == "not-a-query 120, drops-words 75"
    assert "fallbacks" not in rows["answer"]  # a dataset teacher has no output checks


def test_a_teacher_without_human_rewrites_still_shows_its_fallbacks():
    rows = quality_rows({"quality": [], "fallbacks": {"llm": {"turns": 10, "fallback": 0}}})
    assert rows == [{"teacher": "llm", "fallbacks": "0 of 10", "why": "-"}]
