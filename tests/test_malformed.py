"""A corpus of malformed nets: each must raise our error class, of the kind
and with the message its first line expects (`# expect: Kind regex`), and no
other exception type may escape."""

import re
from pathlib import Path

import pytest

from pyfrcnn import errors
from pyfrcnn.net import Net

CORPUS = sorted((Path(__file__).parent / "malformed").glob("*.prototxt"))


def test_corpus_is_large_enough():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_malformed_net_gives_a_clear_error(path):
    first = path.read_text().splitlines()[0]
    kind, pattern = re.match(r"# expect: (\w+) (.*)", first).groups()
    with pytest.raises(errors.PyfrcnnError) as e:
        Net(str(path))
    assert type(e.value) is getattr(errors, kind) or isinstance(e.value, getattr(errors, kind))
    assert re.search(pattern, str(e.value)), str(e.value)
    assert "\n" not in str(e.value)
