"""A greedy model soup over training seeds, chosen on dev.

Model soups (Wortsman et al., "Model soups: averaging weights of multiple fine-tuned models improves accuracy
without increasing inference time", ICML 2022): models fine-tuned from the same initial weights with different
hyper-parameters or seeds often lie in one basin of the loss, so the uniform average of their weights works as
one model, often better than each, at the cost of a single one at inference. The greedy recipe (their
Algorithm 1) sorts the ingredients by held-out score, starts the soup with the best one and adds each next one
when the average with it scores at least as well as the soup without it.

Here the ingredients are the student's trainings of one setting with different seeds (``distill.soup_seeds``),
each at its own dev-best epoch (epoch 0, the starting weights, included), all from the same initial weights
(:func:`models.distill.train_student`). Scores are those of the dev turns only (:mod:`models.selection`),
compared by the same :class:`models.selection.Rule` as epochs and interpolation mixes (the selection metric
within the query-term budget); the sort and each step's ties go to keeping. The test split never takes part.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from models.selection import Rule

State = dict[str, torch.Tensor]


def average(states: Sequence[State]) -> State:
    """The uniform average of every floating-point tensor of ``states`` (others, e.g. position ids, as the
    first's), summed in the given order then divided, in the tensors' own dtype."""
    if not states:
        raise ValueError("no weights to average")
    first = states[0]
    if any(s.keys() != first.keys() for s in states[1:]):
        raise ValueError("the ingredients differ in their parameters: they cannot be averaged")
    out = {}
    for k, v in first.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        total = v.detach().clone()
        for s in states[1:]:
            total += s[k]
        out[k] = total / len(states)
    return out


def _first(rows: Sequence[dict], rule: Rule) -> int:
    """The index of ``rule``'s best row (ties to the earlier row)."""
    return rule.best([{**r, "_at": i} for i, r in enumerate(rows)])["_at"]


def _ranked(rows: list[dict], rule: Rule) -> list[int]:
    """Indices of ``rows`` from best to worst by ``rule``: each the rule's best of those left."""
    left, order = list(range(len(rows))), []
    while left:
        order.append(left.pop(_first([rows[i] for i in left], rule)))
    return order


def greedy_soup(model: torch.nn.Module, ingredients: Sequence[tuple[int, State]],
                score: Callable[[torch.nn.Module], dict[str, float]], rule: Rule) -> tuple[list[int], list[dict]]:
    """Load into ``model`` the greedy soup of ``ingredients`` (``(seed, weights)`` pairs, weights of ``model``'s
    parameters) scored by ``score(model) -> dev measures`` and compared by ``rule``; return the seeds kept, in the
    order added, and one row per ingredient in the order tried: ``{"seed", its own measures, "kept", "soup_<m>"
    for each measure of the soup after the step}``."""
    if not ingredients:
        raise ValueError("a soup needs at least one ingredient")
    own = []
    for _, state in ingredients:
        model.load_state_dict(state)
        own.append(score(model))
    order = _ranked(own, rule)
    members = [order[0]]
    soup = own[order[0]]
    rows = [{"seed": ingredients[order[0]][0], **own[order[0]], "kept": True, **_prefixed(soup)}]
    for i in order[1:]:
        model.load_state_dict(average([ingredients[j][1] for j in members + [i]]))
        tried = score(model)
        kept = _first([tried, soup], rule) == 0  # at least as good: a tie keeps the ingredient
        if kept:
            members.append(i)
            soup = tried
        rows.append({"seed": ingredients[i][0], **own[i], "kept": kept, **_prefixed(soup)})
    model.load_state_dict(average([ingredients[j][1] for j in members]))
    return [ingredients[j][0] for j in members], rows


def _prefixed(measures: dict[str, float]) -> dict[str, float]:
    return {f"soup_{m}": v for m, v in measures.items()}
