"""The pure parts of benchmarks/ablations.py (the ablation runs themselves are run on demand, not here)."""

from __future__ import annotations


from benchmarks import ablations
from stages.config import load



def test_every_variant_is_a_valid_configuration():
    groups = ablations.variants(["human", "llm", "llm+answer"])
    assert set(groups["teachers"]) == {"teacher=human", "teacher=llm", "teacher=llm+answer",
                                       "teacher=fused (mean score)", "teacher=fused (mean softmax)"}
    shared = ["data.split.dev_fraction=0.2", "evaluate.split=dev", 'teacher.systems=["human","llm","llm+answer"]']
    for group in groups.values():
        for sets in group.values():
            cfg = load("demo", None, [*shared, *sets])
            assert cfg.evaluate.split == "dev" and cfg.data.split.dev_fraction == 0.2
    cfg = load("demo", None, [*shared, *groups["sparsity"]["FLOPS lambda_q=0.1"]])
    assert (cfg.distill.reg, cfg.distill.lambda_q) == ("flops", 0.1)


def test_report_lists_baselines_variants_and_depths():
    metrics = {"RR@10": 0.5, "nDCG@3": 0.4, "R@10": 0.7, "R@100": 0.9}
    state = {
        "split": "dev", "turns": 40, "teachers": ["human"],
        "baselines": {"last_turn": metrics}, "baseline_depth": {"last_turn": {"1": {"RR@10": 0.8, "turns": 10}}},
        "variants": {"KL only": {"group": "losses", **metrics, "query_terms": 20.0, "flops": 2.0,
                                 "p_vs_last_turn": 0.03, "train_s": 12.0,
                                 "by_depth": {"1": {"RR@10": 0.75, "turns": 10}}}},
    }
    md = ablations.report(state)
    assert md.startswith("Split `dev`: 40 judged turns; teachers human.")
    assert "| losses | KL only | 0.500 | 0.400 | 0.700 | 0.900 | 20.000 | 2.000 | 0.03 | 12.000 |" in md
    assert "| KL only | 0.750 |" in md and "| last_turn | 0.800 |" in md
