"""Every entry point that setup.cfg declares resolves to the registered function of that name."""

import configparser
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from spacy.language import Language
from spacy.util import registry

SETUP_CFG = Path(__file__).resolve().parent.parent / "setup.cfg"


def declared_in_setup_cfg():
    """(group, name, target) of every spaCy (and thinc) entry point in setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG, encoding="utf8")
    found = []
    for group, lines in parser["options.entry_points"].items():
        if not group.startswith(("spacy_", "thinc_")):
            continue
        for line in filter(None, (line.strip() for line in lines.splitlines())):
            name, target = (part.strip() for part in line.split("=", 1))
            found.append((group, name, target))
    return found


DECLARED = declared_in_setup_cfg()


def test_every_group_is_declared():
    groups = {group for group, _, _ in DECLARED}
    expected = {"spacy_factories", "spacy_scorers", "spacy_loggers", "spacy_architectures", "spacy_callbacks"}
    assert expected | {"thinc_optimizers"} <= groups


@pytest.mark.parametrize("group,name,target", DECLARED, ids=[f"{g}:{n}" for g, n, _ in DECLARED])
def test_entry_point_resolves_to_registered_name(group, name, target):
    installed = {ep.name: ep for ep in entry_points(group=group)}
    assert name in installed, f"{group}:{name} is in setup.cfg but not in the installed metadata (reinstall)"
    assert installed[name].value == target
    func = installed[name].load()
    if group == "spacy_factories":
        assert Language.has_factory(name)
        assert Language.get_factory_meta(name).factory == name
    else:
        table = getattr(registry, group.split("_", 1)[1])
        assert table.get(name) is func
