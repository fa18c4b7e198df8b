"""Every entry point the package declares resolves to the registered function of that name."""

from importlib.metadata import entry_points

import pytest
from spacy.language import Language
from spacy.util import registry

GROUPS = {
    "spacy_factories": None,
    "spacy_architectures": registry.architectures,
    "spacy_scorers": registry.scorers,
    "spacy_loggers": registry.loggers,
}


def declared():
    found = []
    for group in GROUPS:
        for ep in entry_points(group=group):
            if ep.value.startswith("spacy_emotion"):
                found.append((group, ep))
    return found


def test_entry_points_are_declared():
    names = {(g, ep.name) for g, ep in declared()}
    assert ("spacy_factories", "emotion_classifier") in names
    assert ("spacy_architectures", "spacy_emotion.TransformerModel.v1") in names
    assert ("spacy_scorers", "spacy_emotion.emotion_scorer.v1") in names
    assert ("spacy_loggers", "spacy_emotion.ConsoleLogger.v1") in names


@pytest.mark.parametrize("group,ep", declared(), ids=lambda x: getattr(x, "name", x))
def test_entry_point_resolves_to_registered_name(group, ep):
    func = ep.load()
    if group == "spacy_factories":
        assert Language.has_factory(ep.name)
        assert Language.get_factory_meta(ep.name).factory == ep.name
    else:
        assert GROUPS[group].get(ep.name) is func
