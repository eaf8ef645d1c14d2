"""Which objects a report shows: top candidates, false positives, missed lenses, a random sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lexactum.inspection.galleries import choose, ranks_of


def by_key(selection):
    return {g.key: g.rows for g in selection.galleries}


def test_labelled_galleries_follow_the_scores():
    scores = np.array([0.9, 0.1, 0.8, 0.3, 0.95, 0.2, 0.7, 0.05])
    labels = np.array([1, 1, 0, 0, 0, 1, 0, 1])
    galleries = by_key(choose(scores, labels, top=3, random=0, seed=0))
    assert list(galleries) == ["top", "false_positives", "missed", "random"]
    assert galleries["top"].tolist() == [4, 0, 2]  # 0.95, 0.9, 0.8
    assert galleries["false_positives"].tolist() == [4, 2, 6]  # non-lenses, highest score first
    assert galleries["missed"].tolist() == [7, 1, 5]  # lenses, lowest score first
    assert galleries["random"].tolist() == []


def test_unlabelled_has_top_and_random_only():
    scores = np.linspace(0, 1, 20)
    selection = choose(scores, None, top=5, random=4, seed=3)
    assert [g.key for g in selection.galleries] == ["top", "random"]
    assert choose(scores, np.full(20, -1), top=5, random=4, seed=3).galleries[1].key == "random"


def test_ranks_break_ties_in_file_order():
    order, ranks = ranks_of(np.array([0.5, 0.9, 0.5, 0.1]))
    assert order.tolist() == [1, 0, 2, 3]
    assert ranks.tolist() == [2, 1, 3, 4]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), top=st.integers(1, 70), random=st.integers(0, 70), seed=st.integers(0, 5),
       data=st.data())
def test_galleries_and_cards_agree(n, top, random, seed, data):
    scores = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    labels = np.array(data.draw(st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)))
    selection = choose(scores, labels, top, random, seed)
    galleries = by_key(selection)
    shown = np.concatenate(list(galleries.values()))
    # every shown row has exactly one card, in order of first appearance
    assert sorted(selection.cards.tolist()) == sorted(set(shown.tolist()))
    first = list(dict.fromkeys(shown.tolist()))
    assert selection.cards.tolist() == first
    assert len(galleries["top"]) == min(top, n)
    if "false_positives" in galleries:
        fp = galleries["false_positives"]
        assert (labels[fp] == 0).all() and (np.diff(scores[fp]) <= 0).all()
        assert len(fp) == min(top, int((labels == 0).sum()))
        missed = galleries["missed"]
        assert (labels[missed] == 1).all() and (np.diff(scores[missed]) >= 0).all()
    sample = galleries["random"]
    assert len(sample) == min(random, n) and len(set(sample.tolist())) == len(sample)
    assert (np.diff(selection.ranks[sample]) > 0).all()  # shown in rank order
    again = by_key(choose(scores, labels, top, random, seed))["random"]
    assert again.tolist() == sample.tolist()  # the seed fixes the sample


def test_random_sample_depends_on_the_seed():
    scores = np.linspace(0, 1, 200)
    a = by_key(choose(scores, None, 1, 20, seed=0))["random"]
    b = by_key(choose(scores, None, 1, 20, seed=1))["random"]
    assert a.tolist() != b.tolist()


@pytest.mark.parametrize("labels", [np.zeros(5, int), np.ones(5, int)])
def test_one_class_gives_an_empty_gallery_not_an_error(labels):
    galleries = by_key(choose(np.linspace(0, 1, 5), labels, 3, 2, 0))
    assert len(galleries["false_positives"]) + len(galleries["missed"]) == 3
